// rvq_encode — one level of residual VQ: code_t = argmin_j dist(r_t, c_j), r_t ← r_t − c_code,
// with dist = sqrt(max(‖r‖² + ‖c‖² − 2 r·c, 0)) in f32 (ties → lowest index), as the
// reference's cdist-then-argmax(−dist). Two dispatches per level:
//   rvq_encode_dist: workgroup (bx, by) scores 64 codewords against 16 frames and writes,
//                    per frame, its best (dist, index) to partial[t, bx];
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
const MAX_WG: u32 = 256u;
const NONE: u32 = 0xffffffffu;

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

// Tiled like a matrix product: the workgroup's 256 invocations own CB = 64 codewords × FF = 16
// frames; per step of KT = 32 dims it stages the codeword tile k-major (`cs[k][codeword]`)
// and the frame tile (`rs[k][frame]`) in workgroup memory, and each invocation accumulates
// one frame against 4 adjacent codewords (a vec4 of dots). Then ‖r‖² (summed in the same
// pass by the first 16 lanes), distances, the best of 4, and the best of the frame's 16
// invocations → partial[t, bx].
const CB: u32 = 64u;
const FF: u32 = 16u;
const KT: u32 = 32u;

var<workgroup> cs: array<vec4<f32>, 512>; // [k][codeword / 4]
var<workgroup> rs: array<f32, 512>;       // [k][frame]
var<workgroup> nrm: array<f32, 16>;       // ‖r‖² per frame
var<workgroup> bdv: array<f32, 256>;
var<workgroup> bdi: array<u32, 256>;

@compute @workgroup_size(256)
fn rvq_encode_dist(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let j0 = wid.x * CB;
    let t0 = wid.y * FF;
    let f = lid / 16u;         // frame of the tile
    let q = lid % 16u;         // codewords 4q..4q+3 of the tile
    var acc = vec4<f32>(0.0);
    var sq = 0.0;
    for (var k0 = 0u; k0 < P.dq; k0 += KT) {
        // codeword tile: 64 × 32 values, 8 per invocation
        for (var i = lid; i < CB * KT; i += 256u) {
            let c = i / KT;
            let k = i % KT;
            var v = 0.0;
            if (j0 + c < P.n && k0 + k < P.dq) {
                v = cb[(P.row0 + j0 + c) * P.dq + k0 + k];
            }
            cs[k * 16u + c / 4u][c % 4u] = v;
        }
        // frame tile: 16 × 32 values, 2 per invocation
        for (var i = lid; i < FF * KT; i += 256u) {
            let ff = i / KT;
            let k = i % KT;
            var v = 0.0;
            if (t0 + ff < P.t && k0 + k < P.dq) {
                v = src((t0 + ff) * P.dq + k0 + k);
            }
            rs[k * FF + ff] = v;
        }
        workgroupBarrier();
        for (var k = 0u; k < KT; k++) {
            let rv = rs[k * FF + f];
            acc += cs[k * 16u + q] * rv;
            if (q == 0u) {
                sq += rv * rv;
            }
        }
        workgroupBarrier();
    }
    if (q == 0u) {
        nrm[f] = sq;
    }
    workgroupBarrier();
    var bv = inf();
    var bi = NONE;
    if (t0 + f < P.t) {
        for (var c = 0u; c < 4u; c++) {
            let jj = j0 + 4u * q + c;
            if (jj < P.n) {
                let d2 = nrm[f] + norms[P.row0 + jj] - 2.0 * acc[c];
                let dist = sqrt(max(d2, 0.0));
                if (closer(dist, jj, bv, bi)) {
                    bv = dist;
                    bi = jj;
                }
            }
        }
    }
    bdv[lid] = bv;
    bdi[lid] = bi;
    workgroupBarrier();
    if (q == 0u && t0 + f < P.t) {
        for (var k = 1u; k < 16u; k++) {
            if (closer(bdv[lid + k], bdi[lid + k], bv, bi)) {
                bv = bdv[lid + k];
                bi = bdi[lid + k];
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
