// attn_common — what attn_tiled.wgsl's kernels and attn_coop.wgsl share: the params, the
// MODE and D overrides and `key_range`, the visible key range [lo, hi) of a query row under
// each mask (see attn_tiled.wgsl's header). The including file declares the bindings q, k, v,
// cu (0–3), out (4) and P (5), with element types of its choice.

struct Params {
    tq: u32,     // query rows
    hq: u32,     // query heads
    group: u32,  // Hq / Hkv
    tk: u32,     // key rows that exist (bounds every key read)
    pos0: u32,   // MODE 0: position of query 0
    chunk: u32,  // MODE 2: chunk length C
    nseq: u32,   // MODE 1: sequences
    seq: u32,    // MODE 2: rows per sequence
    k_off: u32,
    k_st: u32,
    k_sh: u32,
    q_st: u32,   // elements between query rows (Hq·D packed; 3·H·D for a fused [q | k | v])
    v_off: u32,
    v_st: u32,
    v_sh: u32,
    scale: f32,
}

override MODE: u32 = 0u;
override D: u32 = 128u; // head dim ≤ MAXD

const LOWEST: f32 = -1e30;

fn key_range(i: u32) -> vec2<u32> {
    if (MODE == 0u) {
        return vec2<u32>(0u, min(P.pos0 + i + 1u, P.tk));
    }
    if (MODE == 1u) {
        // last s with cu[s] ≤ i (skips empty sequences)
        var s = 0u;
        for (var j = 1u; j < P.nseq; j++) {
            if (cu[j] <= i) {
                s = j;
            }
        }
        return vec2<u32>(cu[s], min(cu[s + 1u], P.tk));
    }
    let s0 = (i / P.seq) * P.seq;
    let hi = s0 + min(((i - s0) / P.chunk + 1u) * P.chunk, P.seq);
    return vec2<u32>(s0, min(hi, P.tk));
}
