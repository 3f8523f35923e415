// rvq_norms — ‖c_j‖² of every codeword of every level (run once when the codebooks load).
//
// @binding(0) cb:    (ΣN_i, Dq) f32   all 8 codebooks, level after level
// @binding(1) norms: (ΣN_i,) f32      output
// @binding(2) P:     uniform Params
//
// One thread per codeword, f32 accumulation in d order.

struct Params {
    rows: u32,     // ΣN_i
    dq: u32,
    groups_x: u32, // workgroups along x (2-D grid)
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> cb: array<f32>;
@group(0) @binding(1) var<storage, read_write> norms: array<f32>;
@group(0) @binding(2) var<uniform> P: Params;

override WG: u32 = 256;

@compute @workgroup_size(WG)
fn rvq_norms(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = (wid.y * P.groups_x + wid.x) * WG + lid;
    if (row >= P.rows) {
        return;
    }
    let base = row * P.dq;
    var acc = 0.0;
    for (var d = 0u; d < P.dq; d++) {
        let c = cb[base + d];
        acc += c * c;
    }
    norms[row] = acc;
}
