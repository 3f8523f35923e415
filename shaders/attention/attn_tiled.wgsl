// attn_tiled — attention of a block of queries against tiles of keys with an online softmax
// (flash-attention style). One kernel serves three masks, chosen by the MODE override:
//   0 causal prefix (chunked prefill from the KV cache): query i (at position pos0 + i) sees
//     keys j ≤ pos0 + i;
//   1 varlen: packed sequences, query i sees the keys of its own sequence [cu[s], cu[s+1]);
//   2 chunk-causal over sequences of `seq` rows packed one after another: query i of the
//     sequence starting at s0 sees keys s0 ≤ j < s0 + min((⌊(i−s0)/C⌋ + 1)·C, seq), j < Tk
//     (C = 1: plain causal; one sequence: seq = Tq).
//
// @binding(0) q:   act               query (t, h, d) at t·q_st + h·D + d (q_st = Hq·D packed)
// @binding(1) k:   act               key (t, kvh, d) at k_off + t·k_st + kvh·k_sh + d
// @binding(2) v:   act               value, same with v_off / v_st / v_sh
// @binding(3) cu:  (nseq + 1,) u32   sequence starts (MODE 1 only; a dummy otherwise)
// @binding(4) out: (Tq, Hq, D) act
// @binding(5) P:   uniform Params
//
// The strides let the same code read the cache layout (2, Hkv, Tmax, D) and packed (T, H, D)
// tensors. Workgroup (x, h) takes BQ = 8 queries of head h (GQA: kv head h / group); per key
// tile of BK = 16 it stages K in workgroup memory, computes the 8 × 16 scores (one per
// invocation), stages V in the same memory, then each query's 16 lanes update their running
// (max, sum, acc) for D/16 dims each. Keys outside a query's range are skipped, never read
// into the softmax, so whatever the cache holds past the visible positions cannot leak in.

// #include attn_common

@group(0) @binding(0) var<storage, read> q: array<act>;
@group(0) @binding(1) var<storage, read> k: array<act>;
@group(0) @binding(2) var<storage, read> v: array<act>;
@group(0) @binding(3) var<storage, read> cu: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<act>;
@group(0) @binding(5) var<uniform> P: Params;
// attn_rows with SPLITS > 1 writes per-split partial states here, attn_combine reads them:
// ((split · Tq + row) · Hq + h) · (D + 2) + [acc (D, unnormalised) | max | sum]. A dummy where
// unused.
@group(0) @binding(6) var<storage, read_write> part: array<f32>;

const WG: u32 = 128u;
const BQ: u32 = 8u;    // queries per workgroup
const BK: u32 = 16u;   // keys per tile
const LPQ: u32 = 16u;  // lanes per query (= BK: in the score phase lane = key of the tile)
const MAXD: u32 = 128u;
const RPL: u32 = 8u;   // dims per lane = MAXD / LPQ

var<workgroup> qs: array<f32, 1024>;  // (BQ, D)
var<workgroup> kvs: array<f32, 2048>; // (BK, D): keys, then values of the tile
var<workgroup> sc: array<f32, 128>;   // (BQ, BK) scaled scores
var<workgroup> rlo: array<u32, 8>;    // per-query visible key range [rlo, rhi)
var<workgroup> rhi: array<u32, 8>;
var<workgroup> ulo: u32;              // union over the block
var<workgroup> uhi: u32;

@compute @workgroup_size(128)
fn attn_tiled(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let h = wid.y;
    let kvh = h / P.group;
    let q0 = wid.x * BQ;
    let qi = t / LPQ;
    let lane = t % LPQ;
    let row = q0 + qi;
    let live = row < P.tq;

    for (var i = t; i < BQ * D; i += WG) {
        let r = q0 + i / D;
        var x = 0.0;
        if (r < P.tq) {
            x = f32(q[r * P.q_st + h * D + i % D]);
        }
        qs[i] = x;
    }
    if (t < BQ) {
        var rg = vec2<u32>(0u, 0u);
        if (q0 + t < P.tq) {
            rg = key_range(q0 + t);
        }
        rlo[t] = rg.x;
        rhi[t] = rg.y;
    }
    workgroupBarrier();
    if (t == 0u) {
        var lo = 0xffffffffu;
        var hi = 0u;
        for (var i = 0u; i < BQ; i++) {
            if (q0 + i < P.tq && rlo[i] < rhi[i]) {
                lo = min(lo, rlo[i]);
                hi = max(hi, rhi[i]);
            }
        }
        ulo = lo;
        uhi = hi;
    }
    // workgroupUniformLoad makes the tile loop bounds uniform (its body has barriers)
    let klo = workgroupUniformLoad(&ulo);
    let khi = workgroupUniformLoad(&uhi);
    let mylo = rlo[qi];
    let myhi = rhi[qi];

    var m = LOWEST;
    var l = 0.0;
    var acc: array<f32, RPL>;
    for (var k0 = klo; k0 < khi; k0 += BK) {
        for (var i = t; i < BK * D; i += WG) {
            let j = k0 + i / D;
            var x = 0.0;
            if (j < khi) {
                x = f32(k[P.k_off + j * P.k_st + kvh * P.k_sh + i % D]);
            }
            kvs[i] = x;
        }
        workgroupBarrier();
        var s = 0.0;
        for (var dd = 0u; dd < D; dd++) {
            s += qs[qi * D + dd] * kvs[lane * D + dd];
        }
        sc[qi * BK + lane] = s * P.scale;
        workgroupBarrier();
        for (var i = t; i < BK * D; i += WG) {
            let j = k0 + i / D;
            var x = 0.0;
            if (j < khi) {
                x = f32(v[P.v_off + j * P.v_st + kvh * P.v_sh + i % D]);
            }
            kvs[i] = x;
        }
        workgroupBarrier();
        let jlo = max(k0, mylo);
        let jhi = min(k0 + BK, myhi);
        if (live && jlo < jhi) {
            var tm = LOWEST;
            for (var j = jlo; j < jhi; j++) {
                tm = max(tm, sc[qi * BK + j - k0]);
            }
            let mn = max(m, tm);
            let corr = exp(m - mn);
            l *= corr;
            for (var r = 0u; r < RPL; r++) {
                acc[r] *= corr;
            }
            for (var j = jlo; j < jhi; j++) {
                let p = exp(sc[qi * BK + j - k0] - mn);
                l += p;
                let vb = (j - k0) * D;
                for (var r = 0u; r < RPL; r++) {
                    let dd = lane + r * LPQ;
                    if (dd < D) {
                        acc[r] += p * kvs[vb + dd];
                    }
                }
            }
            m = mn;
        }
        workgroupBarrier();
    }
    if (live) {
        for (var r = 0u; r < RPL; r++) {
            let dd = lane + r * LPQ;
            if (dd < D) {
                out[(row * P.hq + h) * D + dd] = act(acc[r] / l);
            }
        }
    }
}

// attn_rows — the same three masks for head dims D ≤ 64 (D % 4 = 0): the encoder's and the
// flow U-Net's 64. One invocation per query row keeps its scaled query and its output
// accumulator in registers (D/4 vec4 each); the workgroup's RB rows share each tile of TK keys
// and values staged in workgroup memory, which every invocation reads at the same address
// (a broadcast). Per tile an invocation scores its TK keys, rescales once by the tile's max
// and accumulates. The key loop covers the union of the rows' ranges, which the masks make
// [range(first row).lo, range(last row).hi) since ranges never move backwards.

override RB: u32 = 64u; // query rows per workgroup (one per invocation; 32 measured no faster)
// Key-range splits (workgroup z): each split covers a contiguous, tile-aligned part of the
// block's key range and leaves a partial state for attn_combine, so a grid of few workgroups
// (the flow's 8 heads × a few hundred rows) still fills the GPU. 1: write the output directly.
override SPLITS: u32 = 1u;
const TK: u32 = 16u;   // keys per tile
const D4MAX: u32 = 16u;

var<workgroup> kt: array<vec4<f32>, 256>; // (TK, D/4)
var<workgroup> vt: array<vec4<f32>, 256>;

@compute @workgroup_size(RB)
fn attn_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let h = wid.y;
    let kvh = h / P.group;
    let q0 = wid.x * RB;
    let row = q0 + t;
    let live = row < P.tq;
    let d4n = D / 4u;

    var qv: array<vec4<f32>, D4MAX>;
    var acc: array<vec4<f32>, D4MAX>;
    var rg = vec2<u32>(0u, 0u);
    if (live) {
        rg = key_range(row);
        let qb = row * P.q_st + h * D;
        for (var d4 = 0u; d4 < d4n; d4++) {
            let b = qb + 4u * d4;
            qv[d4] = vec4<f32>(f32(q[b]), f32(q[b + 1u]), f32(q[b + 2u]), f32(q[b + 3u])) * P.scale;
        }
    }
    // union of the block's key ranges (uniform: workgroup id and params only), then this
    // split's part of it
    let last = min(q0 + RB, P.tq) - 1u;
    var klo = key_range(q0).x;
    var khi = key_range(last).y;
    if (SPLITS > 1u) {
        var span = 0u;
        if (khi > klo) {
            span = khi - klo;
        }
        let ps = ((span + SPLITS - 1u) / SPLITS + TK - 1u) / TK * TK;
        let lo = min(khi, klo + wid.z * ps);
        khi = min(khi, lo + ps);
        klo = lo;
    }

    var m = LOWEST;
    var l = 0.0;
    for (var k0 = klo; k0 < khi; k0 += TK) {
        for (var i = t; i < TK * d4n; i += RB) {
            let j = k0 + i / d4n;
            let d = 4u * (i % d4n);
            var kx = vec4<f32>(0.0);
            var vx = vec4<f32>(0.0);
            if (j < khi) {
                let kb = P.k_off + j * P.k_st + kvh * P.k_sh + d;
                let vb = P.v_off + j * P.v_st + kvh * P.v_sh + d;
                kx = vec4<f32>(f32(k[kb]), f32(k[kb + 1u]), f32(k[kb + 2u]), f32(k[kb + 3u]));
                vx = vec4<f32>(f32(v[vb]), f32(v[vb + 1u]), f32(v[vb + 2u]), f32(v[vb + 3u]));
            }
            kt[i] = kx;
            vt[i] = vx;
        }
        workgroupBarrier();
        let jlo = max(max(k0, rg.x), klo);
        let jhi = min(min(k0 + TK, rg.y), khi);
        if (live && jlo < jhi) {
            var s: array<f32, TK>;
            var tm = LOWEST;
            for (var jj = 0u; jj < TK; jj++) {
                var x = 0.0;
                for (var d4 = 0u; d4 < d4n; d4++) {
                    x += dot(qv[d4], kt[jj * d4n + d4]);
                }
                let j = k0 + jj;
                if (j < jlo || j >= jhi) {
                    x = LOWEST;
                }
                s[jj] = x;
                tm = max(tm, x);
            }
            let mn = max(m, tm);
            let corr = exp(m - mn);
            l *= corr;
            for (var d4 = 0u; d4 < d4n; d4++) {
                acc[d4] *= corr;
            }
            for (var jj = 0u; jj < TK; jj++) {
                let j = k0 + jj;
                if (j >= jlo && j < jhi) {
                    let p = exp(s[jj] - mn);
                    l += p;
                    for (var d4 = 0u; d4 < d4n; d4++) {
                        acc[d4] += p * vt[jj * d4n + d4];
                    }
                }
            }
            m = mn;
        }
        workgroupBarrier();
    }
    if (SPLITS > 1u) {
        if (live) {
            let pb = ((wid.z * P.tq + row) * P.hq + h) * (D + 2u);
            for (var d4 = 0u; d4 < d4n; d4++) {
                let a = acc[d4];
                part[pb + 4u * d4] = a.x;
                part[pb + 4u * d4 + 1u] = a.y;
                part[pb + 4u * d4 + 2u] = a.z;
                part[pb + 4u * d4 + 3u] = a.w;
            }
            part[pb + D] = m;
            part[pb + D + 1u] = l;
        }
        return;
    }
    if (live) {
        let base = (row * P.hq + h) * D;
        let inv = select(0.0, 1.0 / l, l > 0.0);
        for (var d4 = 0u; d4 < d4n; d4++) {
            let o = acc[d4] * inv;
            out[base + 4u * d4] = act(o.x);
            out[base + 4u * d4 + 1u] = act(o.y);
            out[base + 4u * d4 + 2u] = act(o.z);
            out[base + 4u * d4 + 3u] = act(o.w);
        }
    }
}

// attn_combine — merges attn_rows' SPLITS partial states: one invocation per output element
// (row, h, d): common max, weights rescaled to it, Σ acc / Σ sum. Rows no key reached give 0.
@compute @workgroup_size(256)
fn attn_combine(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let i = (wid.y * 65535u + wid.x) * 256u + t;
    if (i >= P.tq * P.hq * D) {
        return;
    }
    let d = i % D;
    let rh = i / D;
    let plane = P.tq * P.hq;
    var mx = LOWEST;
    for (var sp = 0u; sp < SPLITS; sp++) {
        let b = (sp * plane + rh) * (D + 2u);
        if (part[b + D + 1u] > 0.0) {
            mx = max(mx, part[b + D]);
        }
    }
    var lsum = 0.0;
    var o = 0.0;
    for (var sp = 0u; sp < SPLITS; sp++) {
        let b = (sp * plane + rh) * (D + 2u);
        let l = part[b + D + 1u];
        if (l > 0.0) {
            let e = exp(part[b + D] - mx);
            lsum += l * e;
            o += part[b + d] * e;
        }
    }
    out[i] = act(select(0.0, o / lsum, lsum > 0.0));
}
