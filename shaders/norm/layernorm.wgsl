// layernorm — y = (x − mean) / sqrt(var + eps) · w + b per row (Whisper / diffusers LayerNorm).
//
// @binding(0) x: (R, C) act   input rows
// @binding(1) w: (C,) f32     scale
// @binding(2) b: (C,) f32     shift
// @binding(3) y: (R, C) act   output (must not alias x)
// @binding(4) P: uniform Params
// @binding(5) add: (C,) act   a row added after the activation (POST 2; dummy otherwise)
//
// After the affine part, the override POST: 0 nothing, 1 Mish, 2 Mish then + add[c] (the flow
// U-Net's CausalBlock1D: LayerNorm → Mish, the first one of a ResBlock plus its time
// embedding's projection), in f32 before the one rounding to act.
//
// One workgroup per row (2-D grid when R > 65535). Two passes over the row in f32: the mean,
// then the mean of squared deviations (biased variance, as torch) — no E[x²]−E[x]² cancellation.

struct Params {
    rows: u32,
    cols: u32,
    eps: f32,
    groups_x: u32, // workgroups along x (2-D → 1-D row mapping)
}

@group(0) @binding(0) var<storage, read> x: array<act>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<act>;
@group(0) @binding(4) var<uniform> P: Params;
@group(0) @binding(5) var<storage, read> add: array<act>;

override WG: u32 = 256; // a power of two ≤ 256
override POST: u32 = 0;
const MAX_WG: u32 = 256u;
var<workgroup> red: array<f32, MAX_WG>;

fn ln_in(i: u32) -> f32 {
    return f32(x[i]);
}

fn ln_out(i: u32, v: f32) {
    var o = v;
    if (POST >= 1u) {
        o = mish(o);
    }
    if (POST == 2u) {
        o += f32(add[i % P.cols]);
    }
    y[i] = act(o);
}

// #include act_fns

// #include layernorm_row

@compute @workgroup_size(WG)
fn layernorm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = wid.y * P.groups_x + wid.x;
    if (row >= P.rows) {
        return; // uniform per workgroup
    }
    layernorm_row(lid, row * P.cols, P.cols, P.eps);
}
