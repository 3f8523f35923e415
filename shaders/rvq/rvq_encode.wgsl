// rvq_encode — one level of residual VQ: code_t = argmin_j dist(r_t, c_j), r_t ← r_t − c_code,
// with dist = sqrt(max(‖r‖² + ‖c‖² − 2 r·c, 0)) in f32 (ties → lowest index), as the
// reference's cdist-then-argmax(−dist). Two dispatches per level:
//   rvq_encode_dist: workgroup (bx, by) scores ROWS = WG/TPR codewords against FT frames and
//                    writes, per frame, its best (dist, index) to partial[t, bx];
//   rvq_encode_pick: workgroup t reduces partial[t, ·] to the code, subtracts the codeword.
//
// @binding(0) x:       (T, Dq) f32        input frames (read at level 0)
// @binding(1) r:       (T, Dq) f32        running residual (read at levels ≥ 1, written by pick)
// @binding(2) cb:      (ΣN_i, Dq) f32     all 8 codebooks, level after level
// @binding(3) norms:   (ΣN_i,) f32        ‖c‖² (rvq_norms)
// @binding(4) partial: (T, GX, 2) u32     per row-block best: (bitcast<u32>(dist), index)
// @binding(5) codes:   (T, 8) u32         output codes
// @binding(6) res:     (8, T, Dq) f32     per-level residuals, written when P.flags & 2
// @binding(7) P:       uniform Params
//
// Deviation from the reference: it casts the residual to bf16 between levels; we keep f32.

struct Params {
    t: u32,        // frames
    dq: u32,       // vector width
    n: u32,        // codewords of this level
    row0: u32,     // first row of this level in cb / norms
    level: u32,    // 0..7
    gx: u32,       // row blocks of this level = ⌈n / ROWS⌉ (partial stride per frame)
    flags: u32,    // bit 0: read x (level 0) instead of r; bit 1: write res
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> r: array<f32>;
@group(0) @binding(2) var<storage, read> cb: array<f32>;
@group(0) @binding(3) var<storage, read> norms: array<f32>;
@group(0) @binding(4) var<storage, read_write> partial: array<u32>;
@group(0) @binding(5) var<storage, read_write> codes: array<u32>;
@group(0) @binding(6) var<storage, read_write> res: array<f32>;
@group(0) @binding(7) var<uniform> P: Params;

override WG: u32 = 256;
override TPR: u32 = 32; // threads per codeword (power of two ≤ WG)
const FT: u32 = 8u;     // frames per workgroup
const MAX_WG: u32 = 256u;
const NONE: u32 = 0xffffffffu;

var<workgroup> red: array<f32, MAX_WG>;
var<workgroup> dots: array<f32, 256>; // (ROWS, FT) with ROWS = WG / TPR ≤ 32
var<workgroup> rr: array<f32, FT>;
var<workgroup> rv: array<f32, MAX_WG>;
var<workgroup> ri: array<u32, MAX_WG>;

fn inf() -> f32 {
    // through a `var`: a constant bitcast to +inf is a const-expression, which Tint rejects
    var bits = 0x7f800000u;
    return bitcast<f32>(bits);
}

fn src(i: u32) -> f32 {
    if ((P.flags & 1u) != 0u) {
        return x[i];
    }
    return r[i];
}

// (dv, di) is closer than (bv, bi): smaller distance, or equal and lower index.
fn closer(dv: f32, di: u32, bv: f32, bi: u32) -> bool {
    return dv < bv || (dv == bv && di < bi);
}

// Sums red[] within each TPR-wide segment into the segment's first slot.
fn segment_sum(lid: u32) {
    workgroupBarrier();
    for (var s = TPR / 2u; s > 0u; s >>= 1u) {
        if (lid % TPR < s) {
            red[lid] += red[lid + s];
        }
        workgroupBarrier();
    }
}

@compute @workgroup_size(WG)
fn rvq_encode_dist(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let rows = WG / TPR;
    let row = lid / TPR;
    let lane = lid % TPR;
    let j = wid.x * rows + row; // codeword within this level
    let t0 = wid.y * FT;
    let nf = min(FT, P.t - t0);
    var acc: array<f32, FT>;
    var sq: array<f32, FT>;
    for (var f = 0u; f < FT; f++) {
        acc[f] = 0.0;
        sq[f] = 0.0;
    }
    let cbase = (P.row0 + min(j, P.n - 1u)) * P.dq;
    for (var d = lane; d < P.dq; d += TPR) {
        let c = cb[cbase + d];
        for (var f = 0u; f < nf; f++) {
            let v = src((t0 + f) * P.dq + d);
            acc[f] += c * v;
            sq[f] += v * v;
        }
    }
    for (var f = 0u; f < FT; f++) {
        red[lid] = acc[f];
        segment_sum(lid);
        if (lane == 0u) {
            dots[row * FT + f] = red[lid];
        }
        workgroupBarrier();
        if (row == 0u) {
            red[lid] = sq[f];
        }
        segment_sum(lid);
        if (lid == 0u) {
            rr[f] = red[0];
        }
        workgroupBarrier();
    }
    // one thread per frame: best of this workgroup's rows
    if (lid < nf) {
        let f = lid;
        var bv = inf();
        var bi = NONE;
        for (var k = 0u; k < rows; k++) {
            let jj = wid.x * rows + k;
            if (jj < P.n) {
                let d2 = rr[f] + norms[P.row0 + jj] - 2.0 * dots[k * FT + f];
                let dist = sqrt(max(d2, 0.0));
                if (closer(dist, jj, bv, bi)) {
                    bv = dist;
                    bi = jj;
                }
            }
        }
        let o = 2u * ((t0 + f) * P.gx + wid.x);
        partial[o] = bitcast<u32>(bv);
        partial[o + 1u] = bi;
    }
}

@compute @workgroup_size(WG)
fn rvq_encode_pick(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = wid.x;
    var bv = inf();
    var bi = NONE;
    for (var g = lid; g < P.gx; g += WG) {
        let o = 2u * (t * P.gx + g);
        let dv = bitcast<f32>(partial[o]);
        let di = partial[o + 1u];
        if (closer(dv, di, bv, bi)) {
            bv = dv;
            bi = di;
        }
    }
    rv[lid] = bv;
    ri[lid] = bi;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s && closer(rv[lid + s], ri[lid + s], rv[lid], ri[lid])) {
            rv[lid] = rv[lid + s];
            ri[lid] = ri[lid + s];
        }
        workgroupBarrier();
    }
    let code = ri[0];
    if (lid == 0u) {
        codes[t * 8u + P.level] = code;
    }
    let cbase = (P.row0 + code) * P.dq;
    let rbase = t * P.dq;
    for (var d = lid; d < P.dq; d += WG) {
        let v = src(rbase + d) - cb[cbase + d];
        r[rbase + d] = v;
        if ((P.flags & 2u) != 0u) {
            res[(P.level * P.t + t) * P.dq + d] = v;
        }
    }
}
