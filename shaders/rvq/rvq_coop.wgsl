// rvq_coop — rvq_encode.wgsl's level (same params, bindings and result: the code minimising
// the f32 distance sqrt(max(‖r‖² + ‖c‖² − 2 r·c, 0)), ties → lowest index) with the 19456 ×
// Dq scoring on cooperative matrices (tensor cores; native only, Caps::coop), then an exact
// f32 check of the few codewords the f16 scores cannot rule out:
//   rvq_coop_dist: a 64 codewords × 64 frames tile per workgroup (coop_mma.wgsl), r and c
//                  converted to f16 while staged, writes a[t, j] = ‖c_j‖² − 2 r̃·c̃_j;
//   rvq_coop_pick: a workgroup per frame. With e_j a bound on |a_j − (‖c_j‖² − 2 r·c_j)|
//                  (f16 rounding of r and c: 2·2⁻¹¹ relative per product; f32 accumulation
//                  over Dq terms; f16 subnormals; Σ|r_i c_i| ≤ ‖r‖‖c_j‖), the true nearest
//                  codeword is among {j : a_j − e_j ≤ min_k (a_k + e_k)}. Those (usually 1–3;
//                  every j whose score is not finite too) get the exact f32 distance, the
//                  best is the code, and the residual is updated as rvq_encode_pick does.
//                  More than CAND candidates → every codeword is checked exactly (slow, same
//                  result).
// Dq must be a multiple of 32 (the host falls back to rvq_encode.wgsl otherwise).
//
// @binding(4) partial: here (T, n) f32 scores a (the host sizes it).

enable wgpu_cooperative_matrix;

struct Params {
    t: u32,        // frames
    dq: u32,       // vector width
    n: u32,        // codewords of this level
    row0: u32,     // first row of this level in cb / norms
    level: u32,    // 0..7
    gx: u32,       // (unused here)
    flags: u32,    // bit 0: read x (level 0) instead of r; bit 1: write res
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> r: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> cb: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> norms: array<f32>;
@group(0) @binding(4) var<storage, read_write> score: array<f32>;
@group(0) @binding(5) var<storage, read_write> codes: array<u32>;
@group(0) @binding(6) var<storage, read_write> res: array<vec4<f32>>;
@group(0) @binding(7) var<uniform> P: Params;

const NONE: u32 = 0xffffffffu;

fn src4(i: u32) -> vec4<f32> {
    if ((P.flags & 1u) != 0u) {
        return x[i];
    }
    return r[i];
}

// ---- rvq_coop_dist -----------------------------------------------------------------------

override TK: u32 = 32u; // Dq is a multiple of 32 (the host checks)

// coop_mma's staging: codewords j0 .. j0+63 as W rows, frames t0 .. t0+63 as x rows, dims
// k0 .. k0+TK converted to f16; invocation t takes vec4 t % 8 of rows t / 8 + 16i.
fn stage(t: u32, j0: u32, t0: u32, k0: u32) {
    let dq4 = P.dq / 4u;
    for (var c0 = 0u; c0 < TK; c0 += 32u) {
        let kq = (k0 + c0) / 4u + t % 8u;
        var cr: array<vec4<f32>, 4>;
        var fr: array<vec4<f32>, 4>;
        for (var i = 0u; i < 4u; i++) {
            let row = t / 8u + 16u * i;
            if (j0 + row < P.n) {
                cr[i] = cb[(P.row0 + j0 + row) * dq4 + kq];
            }
            if (t0 + row < P.t) {
                fr[i] = src4((t0 + row) * dq4 + kq);
            }
        }
        for (var i = 0u; i < 4u; i++) {
            let o = (t / 8u + 16u * i) * XS4 + c0 / 4u + t % 8u;
            ws[o] = vec4<f16>(cr[i]);
            xs[o] = vec4<f16>(fr[i]);
        }
    }
}

// #include coop_mma

@compute @workgroup_size(128)
fn rvq_coop_dist(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let j0 = wid.x * 64u;
    let t0 = wid.y * 64u;
    coop_tile(t, j0, t0, 0u, P.dq);
    for (var i = 0u; i < 8u; i++) {
        let idx = t + i * 128u; // 64 frames × 16 groups of 4 codewords
        let f = t0 + idx / 16u;
        let jq = j0 + 4u * (idx % 16u);
        let d = cs[(idx / 16u) * CS4 + idx % 16u];
        if (f < P.t) {
            for (var c = 0u; c < 4u; c++) {
                if (jq + c < P.n) {
                    score[f * P.n + jq + c] = norms[P.row0 + jq + c] - 2.0 * d[c];
                }
            }
        }
    }
}

// ---- rvq_coop_pick -----------------------------------------------------------------------

const WG: u32 = 256u;
const CAND: u32 = 64u;

var<workgroup> red: array<f32, 256>;
var<workgroup> cand: array<u32, 64>;
var<workgroup> ncand: atomic<u32>;
var<workgroup> best_code: u32;

fn inf() -> f32 {
    // through a `var`: a constant bitcast to +inf is a const-expression, which Tint rejects
    var bits = 0x7f800000u;
    return bitcast<f32>(bits);
}

fn finite(v: f32) -> bool {
    return abs(v) < inf();
}

// Sum of `v` over the workgroup (tree; every invocation gets it).
fn wg_sum(lid: u32, v: f32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            red[lid] += red[lid + s];
        }
        workgroupBarrier();
    }
    let o = red[0];
    workgroupBarrier();
    return o;
}

// Minimum of `v` over the workgroup (every invocation gets it).
fn wg_min(lid: u32, v: f32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            red[lid] = min(red[lid], red[lid + s]);
        }
        workgroupBarrier();
    }
    let o = red[0];
    workgroupBarrier();
    return o;
}

// |a_j − (‖c_j‖² − 2 r·c_j)| ≤ err(j): 2 × (relative 2.5e-3 of ‖r‖‖c_j‖ — f16 rounding of both
// factors ≈ 9.8e-4, f32 accumulation over ≤ 5120 terms ≈ 3.1e-4, doubled for margin — plus
// f16 subnormals' absolute error), plus f32 rounding of a_j itself.
fn err(nr: f32, j: u32) -> f32 {
    let n2 = norms[P.row0 + j];
    let nc = sqrt(max(n2, 0.0));
    return 2.0 * (2.5e-3 * nr * nc + 2.5e-6 * (nr + nc) * sqrt(f32(P.dq))) + 1e-6 * (n2 + 2.0 * nr * nc);
}

@compute @workgroup_size(WG)
fn rvq_coop_pick(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = wid.x;
    let dq4 = P.dq / 4u;
    let rbase = t * dq4;
    var sq = 0.0;
    for (var d = lid; d < dq4; d += WG) {
        let v = src4(rbase + d);
        sq += dot(v, v);
    }
    let nrm = wg_sum(lid, sq); // ‖r‖²
    let nr = sqrt(nrm);
    // U = min_j (a_j + e_j)
    var u = inf();
    for (var j = lid; j < P.n; j += WG) {
        let a = score[t * P.n + j];
        let hi = a + err(nr, j);
        if (finite(hi)) {
            u = min(u, hi);
        }
    }
    u = wg_min(lid, u);
    if (lid == 0u) {
        atomicStore(&ncand, 0u);
    }
    workgroupBarrier();
    for (var j = lid; j < P.n; j += WG) {
        let a = score[t * P.n + j];
        let lo = a - err(nr, j);
        if (!finite(lo) || !finite(u) || lo <= u) {
            let i = atomicAdd(&ncand, 1u);
            if (i < CAND) {
                cand[i] = j;
            }
        }
    }
    let nc = workgroupUniformLoad(&ncand);
    // exact distances of the candidates (or of every codeword when there are too many)
    let all = nc > CAND;
    var count = nc;
    if (all) {
        count = P.n;
    }
    var bv = inf();
    var bi = NONE;
    for (var c = 0u; c < count; c++) {
        var j = c;
        if (!all) {
            j = cand[c];
        }
        let cbase = (P.row0 + j) * dq4;
        var part = 0.0;
        for (var d = lid; d < dq4; d += WG) {
            part += dot(src4(rbase + d), cb[cbase + d]);
        }
        let dotrc = wg_sum(lid, part);
        let dist = sqrt(max(nrm + norms[P.row0 + j] - 2.0 * dotrc, 0.0));
        if (dist < bv || (dist == bv && j < bi)) {
            bv = dist;
            bi = j;
        }
    }
    // NaN everywhere leaves no best: code 0 (the host's NaN guards report such input)
    let code = select(bi, 0u, bi == NONE);
    if (lid == 0u) {
        codes[t * 8u + P.level] = code;
    }
    let cbase = (P.row0 + code) * dq4;
    for (var d = lid; d < dq4; d += WG) {
        let v = src4(rbase + d) - cb[cbase + d];
        r[rbase + d] = v;
        if ((P.flags & 2u) != 0u) {
            res[(P.level * P.t + t) * dq4 + d] = v;
        }
    }
}
