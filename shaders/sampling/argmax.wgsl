// argmax — (index, value) of the largest logit, two stages: per-workgroup partials, then one
// workgroup reduces the partials. Ties go to the lowest index (torch.argmax on CPU).
//
// @binding(0) x:       (N,) act          logits
// @binding(1) partial: (G, 2) u32        per-workgroup (index, bitcast<u32>(value f32))
// @binding(2) out:     (2,) u32          [index, bitcast<u32>(value f32)]
// @binding(3) P:       uniform Params
//
// Order: a beats b when a.value > b.value, or the values are equal and a.index < b.index.
// An empty slot is (−inf, 0xffffffff), which every real element (−inf included) beats.
// NaN logits are not supported (comparisons with NaN are false: a NaN is never selected).

struct Params {
    n: u32,        // logits
    groups: u32,   // G: stage-1 workgroups (partials)
    groups_x: u32, // stage-1 workgroups along x (2-D grid)
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> x: array<act>;
@group(0) @binding(1) var<storage, read_write> partial: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;
@group(0) @binding(3) var<uniform> P: Params;

override WG: u32 = 256;
const MAX_WG: u32 = 256u;
const NONE: u32 = 0xffffffffu;

var<workgroup> rv: array<f32, MAX_WG>;
var<workgroup> ri: array<u32, MAX_WG>;

fn neg_inf() -> f32 {
    // through a `var`: a constant bitcast to −inf is a const-expression, which Tint rejects
    var bits = 0xff800000u;
    return bitcast<f32>(bits);
}

fn beats(v: f32, i: u32, bv: f32, bi: u32) -> bool {
    return v > bv || (v == bv && i < bi);
}

// Tree reduction of (rv, ri) over the workgroup; the winner ends in slot 0.
fn reduce(lid: u32) {
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s && beats(rv[lid + s], ri[lid + s], rv[lid], ri[lid])) {
            rv[lid] = rv[lid + s];
            ri[lid] = ri[lid + s];
        }
        workgroupBarrier();
    }
}

// Stage 1: workgroup g scans elements g·WG + lid, strided by G·WG.
@compute @workgroup_size(WG)
fn argmax_partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let g = wid.y * P.groups_x + wid.x;
    var bv = neg_inf();
    var bi = NONE;
    if (g < P.groups) {
        for (var j = g * WG + lid; j < P.n; j += P.groups * WG) {
            let v = f32(x[j]);
            if (beats(v, j, bv, bi)) {
                bv = v;
                bi = j;
            }
        }
    }
    rv[lid] = bv;
    ri[lid] = bi;
    reduce(lid);
    if (lid == 0u && g < P.groups) {
        partial[2u * g] = ri[0];
        partial[2u * g + 1u] = bitcast<u32>(rv[0]);
    }
}

// Stage 2: one workgroup reduces the G partials.
@compute @workgroup_size(WG)
fn argmax_final(@builtin(local_invocation_index) lid: u32) {
    var bv = neg_inf();
    var bi = NONE;
    for (var g = lid; g < P.groups; g += WG) {
        let i = partial[2u * g];
        let v = bitcast<f32>(partial[2u * g + 1u]);
        if (beats(v, i, bv, bi)) {
            bv = v;
            bi = i;
        }
    }
    rv[lid] = bv;
    ri[lid] = bi;
    reduce(lid);
    if (lid == 0u) {
        out[0] = ri[0];
        out[1] = bitcast<u32>(rv[0]);
    }
}
