// avgpool1d — AvgPool1d(kernel = stride = k) on time-major x: y[t, c] = mean_j x[t·k + j, c],
// Tout = ⌊T / k⌋ (a ragged tail is dropped, as torch).
//
// @binding(0) x: (T, C) act
// @binding(1) y: (Tout, C) act
// @binding(2) P: uniform Params

struct Params {
    tout: u32,
    c: u32,
    k: u32,
    groups_x: u32,
}

@group(0) @binding(0) var<storage, read> x: array<act>;
@group(0) @binding(1) var<storage, read_write> y: array<act>;
@group(0) @binding(2) var<uniform> P: Params;

override WG: u32 = 256;

@compute @workgroup_size(WG)
fn avgpool1d(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * P.groups_x + wid.x) * WG + lid;
    if (i >= P.tout * P.c) {
        return;
    }
    let t = i / P.c;
    let c = i % P.c;
    var acc = 0.0;
    for (var j = 0u; j < P.k; j++) {
        acc += f32(x[(t * P.k + j) * P.c + c]);
    }
    y[i] = act(acc / f32(P.k));
}
