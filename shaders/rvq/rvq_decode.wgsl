// rvq_decode — e_t = Σ_{i=7..0} C_i[code_{t,i}], summed in f32 in the order 7 → 0 (spec §4
// decode, §17 #5). One thread per output element.
//
// @binding(0) codes: (T, 8) u32          codes per frame
// @binding(1) cb:    (ΣN_i, Dq) f32      all 8 codebooks, level after level
// @binding(2) out:   (T, Dq) f32         output
// @binding(3) flags: (1,) atomic<u32>    bit i set when some code of level i was ≥ N_i
// @binding(4) P:     uniform Params
//
// An out-of-range code is clamped to N_i − 1 (so nothing reads outside level i) and flagged;
// the caller zeroes `flags` before and checks it after (ops::rvq_decode says how).

struct Params {
    t: u32,
    dq: u32,
    groups_x: u32, // workgroups along x (2-D grid)
    _pad: u32,
    sizes: array<vec4<u32>, 2>, // N_i
    row0: array<vec4<u32>, 2>,  // first row of level i in cb
}

@group(0) @binding(0) var<storage, read> codes: array<u32>;
@group(0) @binding(1) var<storage, read> cb: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read_write> flags: array<atomic<u32>>;
@group(0) @binding(4) var<uniform> P: Params;

override WG: u32 = 256;

@compute @workgroup_size(WG)
fn rvq_decode(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let e = (wid.y * P.groups_x + wid.x) * WG + lid;
    if (e >= P.t * P.dq) {
        return;
    }
    let t = e / P.dq;
    let d = e % P.dq;
    var acc = 0.0;
    for (var k = 0u; k < 8u; k++) {
        let i = 7u - k;
        let n = P.sizes[i / 4u][i % 4u];
        var code = codes[t * 8u + i];
        if (code >= n) {
            if (d == 0u) {
                atomicOr(&flags[0], 1u << i);
            }
            code = n - 1u;
        }
        acc += cb[(P.row0[i / 4u][i % 4u] + code) * P.dq + d];
    }
    out[e] = acc;
}
