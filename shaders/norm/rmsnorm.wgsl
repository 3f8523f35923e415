// rmsnorm — y = x / sqrt(mean(x²) + eps) · w, one workgroup per row (Qwen2 / Pre-Net RMSNorm).
//
// @binding(0) x: (R, C) act   input rows
// @binding(1) w: (C,) f32     scale (norm weights are small; kept in f32 on every path)
// @binding(2) y: (R, C) act   output
// @binding(3) P: uniform Params
//
// The variance is accumulated in f32 whatever `act` is, as the reference does.

struct Params {
    rows: u32,
    cols: u32,
    eps: f32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> x: array<act>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<act>;
@group(0) @binding(3) var<uniform> P: Params;

override WG: u32 = 256;
const MAX_WG: u32 = 256u;
var<workgroup> red: array<f32, MAX_WG>;

@compute @workgroup_size(WG)
fn rmsnorm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = wid.x;
    if (row >= P.rows) {
        return; // uniform per workgroup: every thread of this workgroup returns
    }
    let base = row * P.cols;
    var ss = 0.0;
    for (var c = lid; c < P.cols; c += WG) {
        let v = f32(x[base + c]);
        ss += v * v;
    }
    red[lid] = ss;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            red[lid] += red[lid + s];
        }
        workgroupBarrier();
    }
    let inv = inverseSqrt(red[0] / f32(P.cols) + P.eps);
    for (var c = lid; c < P.cols; c += WG) {
        y[base + c] = act(f32(x[base + c]) * inv * w[c]);
    }
}
