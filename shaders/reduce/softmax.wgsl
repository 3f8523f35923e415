// softmax — y = exp(x − max) / Σ exp(x − max) along each row, one workgroup per row.
//
// @binding(0) x: (R, C) act   input rows
// @binding(1) y: (R, C) act   output rows
// @binding(2) P: uniform Params
//
// Max and sum are reduced in f32 in workgroup memory (two passes over the row).

struct Params {
    rows: u32,
    cols: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> x: array<act>;
@group(0) @binding(1) var<storage, read_write> y: array<act>;
@group(0) @binding(2) var<uniform> P: Params;

override WG: u32 = 256;
const MAX_WG: u32 = 256u;
var<workgroup> red: array<f32, MAX_WG>;

@compute @workgroup_size(WG)
fn softmax(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = wid.x;
    if (row >= P.rows) {
        return;
    }
    let base = row * P.cols;
    var m = -0x1.fffffep+127f; // lowest finite f32
    for (var c = lid; c < P.cols; c += WG) {
        m = max(m, f32(x[base + c]));
    }
    red[lid] = m;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            red[lid] = max(red[lid], red[lid + s]);
        }
        workgroupBarrier();
    }
    let row_max = red[0];
    workgroupBarrier();
    var sum = 0.0;
    for (var c = lid; c < P.cols; c += WG) {
        sum += exp(f32(x[base + c]) - row_max);
    }
    red[lid] = sum;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            red[lid] += red[lid + s];
        }
        workgroupBarrier();
    }
    let inv = 1.0 / red[0];
    for (var c = lid; c < P.cols; c += WG) {
        y[base + c] = act(exp(f32(x[base + c]) - row_max) * inv);
    }
}
