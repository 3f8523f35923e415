// groupnorm — GroupNorm(G, C) on a time-major (T, C) tensor: group g = channels
// [g·C/G, (g+1)·C/G) over ALL T frames; y = (x − mean_g) / sqrt(var_g + eps) · w[c] + b[c].
// The audio decoder's GroupNorm(1, 1280) reduces over up to 3000 × 1280 elements, so the
// statistics are a multi-workgroup reduction in three dispatches:
//   groupnorm_partial  grid (chunks, G): each workgroup reduces F frames of one group into
//                      (count, mean, M2) — per-thread Welford, then Chan's pairwise merge;
//   groupnorm_finalize grid (G): one workgroup merges the `chunks` partials of its group →
//                      (mean, 1/sqrt(var + eps));
//   groupnorm_apply    one thread per element.
// Welford/Chan keeps f32 accumulation sound for large counts and large means (no E[x²]−E[x]²).
//
// @binding(0) x:     (T, C) act          input
// @binding(1) w:     (C,) f32            per-channel scale
// @binding(2) b:     (C,) f32            per-channel shift
// @binding(3) y:     (T, C) act          output (must not alias x)
// @binding(4) stats: (G·chunks + G, 4) f32  scratch: partials (count, mean, M2, _) per
//                                        (group, chunk) at g·chunks + k, then (mean, rstd, _, _)
//                                        per group at G·chunks + g
// @binding(5) P: uniform Params

struct Params {
    t: u32,         // frames
    c: u32,         // channels
    g: u32,         // groups (divides c)
    chunks: u32,    // frame chunks per group
    frames: u32,    // frames per chunk (F)
    eps: f32,
    groups_x: u32,  // apply: workgroups along x
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> x: array<act>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<act>;
@group(0) @binding(4) var<storage, read_write> stats: array<vec4<f32>>;
@group(0) @binding(5) var<uniform> P: Params;

override WG: u32 = 256; // a power of two ≤ 256
const MAX_WG: u32 = 256u;
var<workgroup> s_n: array<f32, MAX_WG>;
var<workgroup> s_mean: array<f32, MAX_WG>;
var<workgroup> s_m2: array<f32, MAX_WG>;

// Chan et al.: merge (n, mean, m2) of slot `j` into slot `i`.
fn merge_into(i: u32, j: u32) {
    let nb = s_n[j];
    if (nb == 0.0) {
        return;
    }
    let na = s_n[i];
    let n = na + nb;
    let d = s_mean[j] - s_mean[i];
    s_mean[i] = s_mean[i] + d * (nb / n);
    s_m2[i] = s_m2[i] + s_m2[j] + d * d * (na * nb / n);
    s_n[i] = n;
}

fn tree(lid: u32) {
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            merge_into(lid, lid + s);
        }
        workgroupBarrier();
    }
}

@compute @workgroup_size(WG)
fn groupnorm_partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let chunk = wid.x;
    let grp = wid.y;
    let cg = P.c / P.g;
    let t0 = chunk * P.frames;
    let t1 = min(t0 + P.frames, P.t);
    let count = (t1 - t0) * cg; // elements of this chunk, walked as a flat (frame, channel) index
    var n = 0.0;
    var mean = 0.0;
    var m2 = 0.0;
    for (var e = lid; e < count; e += WG) {
        let t = t0 + e / cg;
        let ch = grp * cg + e % cg;
        let v = f32(x[t * P.c + ch]);
        n += 1.0;
        let d = v - mean;
        mean += d / n;
        m2 += d * (v - mean);
    }
    s_n[lid] = n;
    s_mean[lid] = mean;
    s_m2[lid] = m2;
    tree(lid);
    if (lid == 0u) {
        stats[grp * P.chunks + chunk] = vec4<f32>(s_n[0], s_mean[0], s_m2[0], 0.0);
    }
}

@compute @workgroup_size(WG)
fn groupnorm_finalize(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let grp = wid.x;
    // each thread first merges its strided share of the partials, then the tree merges threads
    var n = 0.0;
    var mean = 0.0;
    var m2 = 0.0;
    for (var k = lid; k < P.chunks; k += WG) {
        let p = stats[grp * P.chunks + k];
        if (p.x > 0.0) {
            let nn = n + p.x;
            let d = p.y - mean;
            mean += d * (p.x / nn);
            m2 += p.z + d * d * (n * p.x / nn);
            n = nn;
        }
    }
    s_n[lid] = n;
    s_mean[lid] = mean;
    s_m2[lid] = m2;
    tree(lid);
    if (lid == 0u) {
        let var_ = max(s_m2[0] / s_n[0], 0.0); // biased variance, as torch
        stats[P.g * P.chunks + grp] = vec4<f32>(s_mean[0], inverseSqrt(var_ + P.eps), 0.0, 0.0);
    }
}

@compute @workgroup_size(WG)
fn groupnorm_apply(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * P.groups_x + wid.x) * WG + lid;
    if (i >= P.t * P.c) {
        return;
    }
    let ch = i % P.c;
    let s = stats[P.g * P.chunks + ch / (P.c / P.g)];
    y[i] = act((f32(x[i]) - s.x) * s.y * w[ch] + b[ch]);
}
