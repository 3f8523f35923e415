// layernorm — y = (x − mean) / sqrt(var + eps) · w + b per row (Whisper / diffusers LayerNorm).
//
// @binding(0) x: (R, C) act   input rows
// @binding(1) w: (C,) f32     scale
// @binding(2) b: (C,) f32     shift
// @binding(3) y: (R, C) act   output (must not alias x)
// @binding(4) P: uniform Params
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

override WG: u32 = 256; // a power of two ≤ 256
const MAX_WG: u32 = 256u;
var<workgroup> red: array<f32, MAX_WG>;

// Sum of `v` over the workgroup (every thread reaches every barrier).
fn wg_sum(lid: u32, v: f32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            red[lid] += red[lid + s];
        }
        workgroupBarrier();
    }
    let total = red[0];
    workgroupBarrier(); // red is reused by the next call
    return total;
}

@compute @workgroup_size(WG)
fn layernorm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = wid.y * P.groups_x + wid.x;
    if (row >= P.rows) {
        return; // uniform per workgroup
    }
    let base = row * P.cols;
    let n = f32(P.cols);
    var s = 0.0;
    for (var c = lid; c < P.cols; c += WG) {
        s += f32(x[base + c]);
    }
    let mean = wg_sum(lid, s) / n;
    var ss = 0.0;
    for (var c = lid; c < P.cols; c += WG) {
        let d = f32(x[base + c]) - mean;
        ss += d * d;
    }
    let inv = inverseSqrt(wg_sum(lid, ss) / n + P.eps);
    for (var c = lid; c < P.cols; c += WG) {
        y[base + c] = act((f32(x[base + c]) - mean) * inv * w[c] + b[c]);
    }
}
