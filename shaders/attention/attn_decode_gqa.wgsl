// attn_decode_gqa — pass 1 of attn_decode.wgsl for head dims that are a multiple of 4, with one
// workgroup per (split, KV head) instead of per (split, query head): the split's 64 keys and
// values are read once for all G query heads of the group (7 in Qwen2.5-7B), and the chain of
// dependent steps is short (one round of loads, issued together, then five barriers). Same
// bindings, params, scratch layout and combine pass (`attn_decode_combine` in attn_decode.wgsl).
//
// @binding(0) q:     (Hq, D) act
// @binding(1) cache: (2, Hkv, Tmax, D/4) act4
// @binding(2) part:  f32 scratch  acc (S, Hq, D), then (m, l) (S, Hq, 2)
// @binding(3) out:   (Hq, D) act  (written here only when there is one split: no combine pass)
// @binding(4) P:     uniform Params
// @binding(5) xq:    (Hq·D/32, 8) u32      with XQ = 1 and one split: out as gemv_i8's int8 x
// @binding(6) xd:    (Hq·D/32) vec2<f32>   (xq_block.wgsl), so the next product skips gemv_xq
//
// Scores: 256/CH invocations per key (4 or 8), invocation u of a key takes the key's vec4s u,
// u+4, u+8, … (neighbours read neighbouring vec4s), dots them with all G queries, and the
// partials meet in workgroup memory. Softmax: 32 invocations per head, each of which finds the
// head's max by reading its CH scores (a loop, not a reduction tree of barriers). Values:
// invocation t takes dim t % 128 over half of the keys and accumulates all G heads (two vec4
// accumulators).

// #include attn_decode_binds

override G: u32 = 7u;   // query heads per kv head, ≤ 8
override D: u32 = 128u; // head dim, a multiple of 4, ≤ 128 (of 32 with XQ = 1)
override XQ: u32 = 0u;
// The cache's Tmax and KV heads as pipeline constants, so that the key and value loads wait
// on no read of the params (a uniform read before a dispatch's first loads cost 0.33 µs on an
// H100, BENCHMARKS.md fifteenth session). So keys past the length load whatever the cache holds
// there, within Tmax. It may be anything, NaN included: their scores are masked, and their
// values are selected out (`select` below, not multiplied by a zero weight).
override TM: u32;
override HKV: u32;

override CH: u32 = 64u; // keys per split, 32 or 64 (the split length of ops::attn_decode)
override KPI: u32 = 256u / CH; // invocations per key: 4 or 8
override NL: u32 = 32u / KPI;  // vec4 loads per invocation for a 128-dim key: 8 or 4
const MAXG: u32 = 8u;
const D4MAX: u32 = 32u;
const LOWEST: f32 = -1e30;

// 14 KiB with f16 activations, 16 KiB with f32 (the engine asks no more of a device)
var<workgroup> qs: array<vec4<f32>, 256>;  // [G][D/4] queries; after the scores, Σ ex of head h in qs[h].x
var<workgroup> red: array<f32, 2048>;      // score partials [KPI][G][CH], summed in place into
                                           // the scores [G][CH] at 0; exp(score − the head's
                                           // max) [G][CH] at EX; later values [2][G][128]
// the output for XQ with one split, as `out` holds it: in the activation dtype, so each value
// is rounded as stored (see the combine pass's `wo`)
var<workgroup> qo: array<act4, 256>;
const EX: u32 = 1024u;

// #include xq_block

fn kload(base: u32, i: u32) -> vec4<f32> {
    if (i < D / 4u) {
        return vec4<f32>(cache[base + i]);
    }
    return vec4<f32>(0.0);
}

fn qdot(h: u32, i: u32, k: vec4<f32>) -> f32 {
    if (i < D / 4u) {
        return dot(qs[h * D4MAX + i], k);
    }
    return 0.0;
}

// What every invocation loads before anything else (see the entries): its key vec4s and its
// values; the queries go into `qs`.
struct GqaLoads {
    kv: array<vec4<f32>, 8>,
    vv: array<f32, 32>,
}

// Every load of the workgroup, issued first and together: q, the invocation's key vec4s and
// its values (a fixed trip count the compiler unrolls; keys past the length load what the
// cache holds there, keys past Tmax the last one again, and none of them counts). No address
// needs the params. The rest is arithmetic on registers and workgroup memory. Ends with the
// barrier after which `qs` holds the queries (so it is called in uniform control flow).
fn gqa_loads(t: u32, s: u32, kh: u32) -> GqaLoads {
    let d4 = D / 4u;
    for (var i = t; i < G * D4MAX; i += 256u) {
        let h = i / D4MAX;
        let c = i % D4MAX;
        var v = vec4<f32>(0.0);
        if (c < d4) {
            let b = ((kh * G + h) * D) + 4u * c;
            v = vec4<f32>(f32(q[b]), f32(q[b + 1u]), f32(q[b + 2u]), f32(q[b + 3u]));
        }
        qs[i] = v;
    }
    let j = t / KPI;
    let u = t % KPI;
    let kb = (kh * TM + min(s * CH + j, TM - 1u)) * d4;
    var ld: GqaLoads;
    for (var r = 0u; r < NL; r++) {
        ld.kv[r] = kload(kb, u + KPI * r);
    }
    // values: dim t % 128 over half of the split's keys (dims past D read dim D − 1, unused)
    let dd = t % 128u;
    let half = t / 128u;
    let hk = CH / 2u;
    let vb = ((HKV + kh) * TM + s * CH) * D + min(dd, D - 1u);
    let last = min(CH, TM - s * CH) - 1u; // the split's last key within the cache
    for (var i = 0u; i < hk; i++) {
        let e = vb + min(half * hk + i, last) * D;
        ld.vv[i] = f32(cache[e / 4u][e % 4u]);
    }
    workgroupBarrier();
    return ld;
}

// After the softmax (the weights exp(score − max) of head h, key j at red[EX + h·CH + j], Σ
// of head h in qs[h].x, the split's statistics written): the values weighted and summed over
// the two key halves, then the split's partial (or, with one split, the output).
fn gqa_values_out(t: u32, s: u32, kh: u32, vv: array<f32, 32>) {
    let dd = t % 128u;
    let half = t / 128u;
    let hk = CH / 2u;
    var a0 = vec4<f32>(0.0); // heads 0..3
    var a1 = vec4<f32>(0.0); // heads 4..7
    if (dd < D) {
        for (var i = 0u; i < hk; i++) {
            let jj = half * hk + i;
            // a key past the length adds 0 (its weight is 0, and what it loaded may be anything)
            let v = select(0.0, vv[i], s * CH + jj < P.len);
            let e = EX + jj;
            a0 += vec4<f32>(red[e], red[e + CH], red[e + 2u * CH], red[e + 3u * CH]) * v;
            if (G > 4u) {
                a1 += vec4<f32>(red[e + 4u * CH], red[e + 5u * CH], red[e + 6u * CH], red[e + 7u * CH]) * v;
            }
        }
    }
    workgroupBarrier(); // the weights in red are read; it takes the two key halves' values
    if (dd < D) {
        for (var hh = 0u; hh < 4u; hh++) {
            red[(half * MAXG + hh) * 128u + dd] = a0[hh];
            red[(half * MAXG + hh + 4u) * 128u + dd] = a1[hh];
        }
    }
    workgroupBarrier();
    // four consecutive outputs of one head per invocation (D is a multiple of 4)
    for (var i4 = t; i4 < G * D / 4u; i4 += 256u) {
        let i = 4u * i4;
        let hh = i / D;
        let d = i % D;
        let r0 = hh * 128u + d;
        let r1 = (MAXG + hh) * 128u + d;
        let a = vec4<f32>(red[r0], red[r0 + 1u], red[r0 + 2u], red[r0 + 3u])
              + vec4<f32>(red[r1], red[r1 + 1u], red[r1 + 2u], red[r1 + 3u]);
        let o = (kh * G + hh) * D + d;
        if (P.nsplit == 1u) {
            // one split: the combine pass would only divide by the sum, so it is skipped
            let v = vec4<f32>(act4(a / qs[hh].x));
            out[o] = act(v.x);
            out[o + 1u] = act(v.y);
            out[o + 2u] = act(v.z);
            out[o + 3u] = act(v.w);
            if (XQ == 1u) {
                qo[i4] = act4(v);
            }
        } else {
            let po = (s * P.hq + kh * G + hh) * D + d;
            part[po] = a.x;
            part[po + 1u] = a.y;
            part[po + 2u] = a.z;
            part[po + 3u] = a.w;
        }
    }
    if (XQ == 1u && P.nsplit == 1u) {
        // the group's G·D outputs, as rounded to act, quantised in blocks of 32
        workgroupBarrier();
        let nb = G * D / 32u;
        if (t < nb) {
            var a: array<vec4<f32>, 8>;
            for (var j = 0u; j < 8u; j++) {
                a[j] = vec4<f32>(qo[8u * t + j]);
            }
            let b = xq_block(a);
            let blk = kh * nb + t;
            for (var j = 0u; j < 8u; j++) {
                xq[blk * 8u + j] = b.q[j];
            }
            xd[blk] = b.d;
        }
    }
}

// Invocation (key, lane u)'s partial dot of head h's query with its key vec4s.
fn head_dot(h: u32, u: u32, kv: array<vec4<f32>, 8>) -> f32 {
    var a = 0.0;
    for (var r = 0u; r < NL; r++) {
        a += qdot(h, u + KPI * r, kv[r]);
    }
    return a;
}

// The split's statistics of head h (its max m and Σ l), by the head's first invocation.
fn gqa_stats(s: u32, kh: u32, h: u32, m: f32, l: f32) {
    qs[h].x = l; // (the queries are dead since the scores)
    let ml = P.nsplit * P.hq * D;
    let o = (s * P.hq + kh * G + h) * 2u;
    part[ml + o] = m;
    part[ml + o + 1u] = l;
}

@compute @workgroup_size(256)
fn attn_decode_gqa(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
) {
    let s = wid.x;
    let kh = wid.y;
    let ld = gqa_loads(t, s, kh);
    let j = t / KPI;
    let u = t % KPI;
    for (var h = 0u; h < G; h++) {
        red[(u * G + h) * CH + j] = head_dot(h, u, ld.kv);
    }
    workgroupBarrier();
    // the scores, in place: red[i] is read (u = 0) and written only by the invocation that
    // owns i, and the other partials lie past G·CH
    for (var i = t; i < G * CH; i += 256u) {
        let jj = i % CH;
        var v = LOWEST;
        if (s * CH + jj < P.len) {
            var a = 0.0;
            for (var uu = 0u; uu < KPI; uu++) {
                a += red[uu * G * CH + i];
            }
            v = a * P.scale;
        }
        red[i] = v;
    }
    workgroupBarrier();
    // softmax per head: invocations 32h .. 32h+31 take keys lane and (CH = 64) lane + 32; each
    // finds the head's max itself from workgroup memory (no reduction tree, no barrier)
    let h = t / 32u;
    let lane = t % 32u;
    var m = LOWEST;
    if (h < G) {
        for (var jj = 0u; jj < CH; jj++) {
            m = max(m, red[h * CH + jj]);
        }
        let v0 = red[h * CH + lane];
        red[EX + h * CH + lane] = select(0.0, exp(v0 - m), v0 > LOWEST);
        if (CH == 64u) {
            let v1 = red[h * CH + lane + 32u];
            red[EX + h * CH + lane + 32u] = select(0.0, exp(v1 - m), v1 > LOWEST);
        }
    }
    workgroupBarrier();
    if (h < G && lane == 0u) {
        var l = 0.0;
        for (var jj = 0u; jj < CH; jj++) {
            l += red[EX + h * CH + jj];
        }
        gqa_stats(s, kh, h, m, l);
    }
    gqa_values_out(t, s, kh, ld.vv);
}

// #if subgroups
// The same pass with subgroup reductions (subgroups of at least KPI invocations, laid out in
// order): a key's KPI partial dots meet by shuffles instead of through workgroup memory, and
// each head's max and sum over its CH scores by shuffles within 32 invocations (through
// workgroup memory across subgroups narrower than 32) instead of loops over workgroup memory.
// Sums are in another order than the portable pass's: within rounding of it. The engine takes
// it for 64-key splits (past 1024 keys), where it gained 10–22 µs per q4 token on H100s at 4k
// and 4–10 at 2k; with 32-key splits it gained nothing.

// The max (op 0) or sum (op 1) of v over the 32 invocations 32⌊t/32⌋ … +31: shuffles within
// the subgroup, then across the 32 / sgs subgroups of the group through qs[64 …] (uniform
// control flow: every invocation calls it, with the barriers where sgs < 32).
fn group32(v: f32, op: u32, t: u32, sgs: u32) -> f32 {
    var a = v;
    let w = min(sgs, 32u);
    for (var o = 1u; o < w; o <<= 1u) {
        let b = subgroupShuffleXor(a, o);
        a = select(max(a, b), a + b, op == 1u);
    }
    if (sgs >= 32u) {
        return a;
    }
    let per = 32u / sgs;
    if (t % sgs == 0u) {
        qs[64u + t / sgs].x = a;
    }
    workgroupBarrier();
    let g0 = 64u + (t / 32u) * per;
    var r = qs[g0].x;
    for (var i = 1u; i < per; i++) {
        let b = qs[g0 + i].x;
        r = select(max(r, b), r + b, op == 1u);
    }
    workgroupBarrier(); // qs[64 …] may be written again
    return r;
}

@compute @workgroup_size(256)
fn attn_decode_gqa_sg(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
    @builtin(subgroup_size) sgs: u32,
) {
    let s = wid.x;
    let kh = wid.y;
    let ld = gqa_loads(t, s, kh);
    let j = t / KPI;
    let u = t % KPI;
    // the scores: each key's KPI partial dots meet by shuffles; its first invocation stores
    let valid = s * CH + j < P.len;
    for (var h = 0u; h < G; h++) {
        var a = head_dot(h, u, ld.kv);
        for (var o = 1u; o < KPI; o <<= 1u) {
            a += subgroupShuffleXor(a, o);
        }
        if (u == 0u) {
            red[h * CH + j] = select(LOWEST, a * P.scale, valid);
        }
    }
    workgroupBarrier();
    // softmax per head: invocations 32h .. 32h+31 take keys lane and (CH = 64) lane + 32
    let h = t / 32u;
    let lane = t % 32u;
    let hc = min(h, G - 1u); // heads past G compute a copy, stored nowhere
    let v0 = red[hc * CH + lane];
    var v1 = LOWEST;
    if (CH == 64u) {
        v1 = red[hc * CH + lane + 32u];
    }
    let m = group32(max(v0, v1), 0u, t, sgs);
    let e0 = select(0.0, exp(v0 - m), v0 > LOWEST);
    let e1 = select(0.0, exp(v1 - m), v1 > LOWEST);
    let l = group32(e0 + e1, 1u, t, sgs);
    if (h < G) {
        red[EX + h * CH + lane] = e0;
        if (CH == 64u) {
            red[EX + h * CH + lane + 32u] = e1;
        }
        if (lane == 0u) {
            gqa_stats(s, kh, h, m, l);
        }
    }
    workgroupBarrier();
    gqa_values_out(t, s, kh, ld.vv);
}
// #endif
