// attn_decode_gqa — pass 1 of attn_decode.wgsl for head dims that are a multiple of 4, with one
// workgroup per (split, KV head) instead of per (split, query head): the split's 64 keys and
// values are read once for all G query heads of the group (7 in Qwen2.5-7B), and the chain of
// dependent steps is short (one round of key loads, one of value loads). Same bindings, params,
// scratch layout and combine pass (`attn_decode_combine` in attn_decode.wgsl).
//
// @binding(0) q:     (Hq, D) act; with ROPE = 1 the fused W_pack output ((Hq + 2·Hkv)·D) act
// @binding(1) cache: (2, Hkv, Tmax, D/4) act4
// @binding(2) part:  f32 scratch  acc (S, Hq, D), then (m, l) (S, Hq, 2)
// @binding(3) out:   (Hq, D) act  (written here only when there is one split: no combine pass)
// @binding(4) P:     uniform Params
// @binding(5) inv_freq: (D/2,) f32  (ROPE = 1)
//
// ROPE = 1 is rope_kv.wgsl folded in (one token at position len − 1): q and the new key are
// rotated as they are loaded from the W_pack output, and the workgroup whose split holds the
// new position uses its key from there, writes key and value to the cache, and reads the value
// back after a storage barrier; no other workgroup reads that position, so one dispatch does
// what rope_kv + this pass did.
//
// Scores: 4 invocations per key, invocation u of a key takes the key's vec4s u, u+4, u+8, …
// (neighbours read neighbouring vec4s), dots them with all G queries, and the 4 partials meet
// in workgroup memory. Softmax: 32 invocations per head. Values: invocation t takes dim t % 128
// over half of the keys and accumulates all G heads (two vec4 accumulators).

struct Params {
    hq: u32,
    hkv: u32,
    len: u32,
    tmax: u32,
    nsplit: u32,
    scale: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> q: array<act>;
@group(0) @binding(1) var<storage, read_write> cache: array<act4>;
@group(0) @binding(2) var<storage, read_write> part: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<act>;
@group(0) @binding(4) var<uniform> P: Params;
@group(0) @binding(5) var<storage, read> inv_freq: array<f32>;

override G: u32 = 7u;   // query heads per kv head, ≤ 8
override D: u32 = 128u; // head dim, a multiple of 4, ≤ 128
override ROPE: u32 = 0u;

const CH: u32 = 64u;    // keys per split (DECODE_SPLIT)
const MAXG: u32 = 8u;
const D4MAX: u32 = 32u;
const LOWEST: f32 = -1e30;

var<workgroup> qs: array<vec4<f32>, 256>;  // [G][D/4]
var<workgroup> red: array<f32, 2048>;      // score partials [4][G][CH]; later values [2][G][128]
var<workgroup> sc: array<f32, 512>;        // [G][CH] scores, then exp(score − m)
var<workgroup> mx: array<f32, 256>;        // softmax reductions, 32 per head

fn kload(base: u32, i: u32, ok: bool) -> vec4<f32> {
    if (ok && i < D / 4u) {
        return vec4<f32>(cache[base + i]);
    }
    return vec4<f32>(0.0);
}

// #include trig

// Element e of the head whose D values start at q[off], rotated to position len − 1 (Qwen2's
// rotate-half RoPE, angles in f32 as rope_kv.wgsl).
fn roped(off: u32, e: u32) -> f32 {
    let half = D / 2u;
    let i = e % half;
    let cs = cos_sin(f32(P.len - 1u) * inv_freq[i]);
    let x0 = f32(q[off + i]);
    let x1 = f32(q[off + i + half]);
    return select(x1 * cs.x + x0 * cs.y, x0 * cs.x - x1 * cs.y, e < half);
}

// vec4 i (elements 4i .. 4i+3) of that head, rotated.
fn roped4(off: u32, i: u32) -> vec4<f32> {
    if (i >= D / 4u) {
        return vec4<f32>(0.0);
    }
    let e = 4u * i;
    return vec4<f32>(roped(off, e), roped(off, e + 1u), roped(off, e + 2u), roped(off, e + 3u));
}

// The new key's vec4 i (rotated) or the cache's, for key j of split s.
fn key4(kb: u32, s: u32, j: u32, i: u32, ok: bool, kh: u32) -> vec4<f32> {
    if (ROPE == 1u && s * CH + j == P.len - 1u) {
        return roped4((P.hq + kh) * D, i);
    }
    return kload(kb, i, ok);
}

fn qdot(h: u32, i: u32, k: vec4<f32>) -> f32 {
    if (i < D / 4u) {
        return dot(qs[h * D4MAX + i], k);
    }
    return 0.0;
}

@compute @workgroup_size(256)
fn attn_decode_gqa(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
) {
    let s = wid.x;
    let kh = wid.y;
    let d4 = D / 4u;
    for (var i = t; i < G * D4MAX; i += 256u) {
        let h = i / D4MAX;
        let c = i % D4MAX;
        var v = vec4<f32>(0.0);
        if (c < d4) {
            let b = ((kh * G + h) * D) + 4u * c;
            if (ROPE == 1u) {
                v = roped4((kh * G + h) * D, c);
            } else {
                v = vec4<f32>(f32(q[b]), f32(q[b + 1u]), f32(q[b + 2u]), f32(q[b + 3u]));
            }
        }
        qs[i] = v;
    }
    // keys: all loads of an invocation issued together
    let j = t / 4u;
    let u = t % 4u;
    let ok = s * CH + j < P.len;
    let kb = (kh * P.tmax + s * CH + j) * d4;
    let k0 = key4(kb, s, j, u, ok, kh);
    let k1 = key4(kb, s, j, u + 4u, ok, kh);
    let k2 = key4(kb, s, j, u + 8u, ok, kh);
    let k3 = key4(kb, s, j, u + 12u, ok, kh);
    let k4 = key4(kb, s, j, u + 16u, ok, kh);
    let k5 = key4(kb, s, j, u + 20u, ok, kh);
    let k6 = key4(kb, s, j, u + 24u, ok, kh);
    let k7 = key4(kb, s, j, u + 28u, ok, kh);
    if (ROPE == 1u && s * CH + j == P.len - 1u) {
        // the new position: its rotated key and its value go to the cache
        let ks = array<vec4<f32>, 8>(k0, k1, k2, k3, k4, k5, k6, k7);
        let vb = (P.hkv + kh) * P.tmax * d4 + (P.len - 1u) * d4;
        let vsrc = (P.hq + P.hkv + kh) * D;
        for (var r = 0u; r < 8u; r++) {
            let i = u + 4u * r;
            if (i < d4) {
                cache[kb + i] = act4(ks[r]);
                let e = vsrc + 4u * i;
                cache[vb + i] = act4(vec4<f32>(f32(q[e]), f32(q[e + 1u]), f32(q[e + 2u]), f32(q[e + 3u])));
            }
        }
    }
    if (ROPE == 1u) {
        // the new value is read back from the cache below, by other invocations
        storageBarrier();
    }
    workgroupBarrier();
    for (var h = 0u; h < G; h++) {
        var a = qdot(h, u, k0) + qdot(h, u + 4u, k1) + qdot(h, u + 8u, k2) + qdot(h, u + 12u, k3);
        a += qdot(h, u + 16u, k4) + qdot(h, u + 20u, k5) + qdot(h, u + 24u, k6) + qdot(h, u + 28u, k7);
        red[(u * G + h) * CH + j] = a;
    }
    workgroupBarrier();
    for (var i = t; i < G * CH; i += 256u) {
        let jj = i % CH;
        var v = LOWEST;
        if (s * CH + jj < P.len) {
            v = (red[i] + red[G * CH + i] + red[2u * G * CH + i] + red[3u * G * CH + i]) * P.scale;
        }
        sc[i] = v;
    }
    workgroupBarrier();
    // softmax per head: invocations 32h .. 32h+31 take keys lane and lane + 32
    let h = t / 32u;
    let lane = t % 32u;
    let hv = h < G;
    var v0 = LOWEST;
    var v1 = LOWEST;
    if (hv) {
        v0 = sc[h * CH + lane];
        v1 = sc[h * CH + lane + 32u];
    }
    mx[t] = max(v0, v1);
    workgroupBarrier();
    for (var st = 16u; st > 0u; st >>= 1u) {
        if (lane < st) {
            mx[t] = max(mx[t], mx[t + st]);
        }
        workgroupBarrier();
    }
    let m = mx[h * 32u];
    workgroupBarrier();
    let e0 = select(0.0, exp(v0 - m), v0 > LOWEST);
    let e1 = select(0.0, exp(v1 - m), v1 > LOWEST);
    if (hv) {
        sc[h * CH + lane] = e0;
        sc[h * CH + lane + 32u] = e1;
    }
    mx[t] = e0 + e1;
    workgroupBarrier();
    for (var st = 16u; st > 0u; st >>= 1u) {
        if (lane < st) {
            mx[t] += mx[t + st];
        }
        workgroupBarrier();
    }
    if (hv && lane == 0u) {
        let ml = P.nsplit * P.hq * D;
        let o = (s * P.hq + kh * G + h) * 2u;
        part[ml + o] = m;
        part[ml + o + 1u] = mx[t];
    }
    // values: dim t % 128 over half of the split's keys, all heads at once
    let dd = t % 128u;
    let half = t / 128u;
    let nk = min(CH, P.len - s * CH);
    var a0 = vec4<f32>(0.0); // heads 0..3
    var a1 = vec4<f32>(0.0); // heads 4..7
    if (dd < D) {
        // all 32 value loads issued before any is used (a fixed trip count the compiler
        // unrolls): keys past the end load the last key again, and their weights are 0
        let vb = ((P.hkv + kh) * P.tmax + s * CH) * D + dd;
        var vv: array<f32, 32>;
        for (var i = 0u; i < 32u; i++) {
            let e = vb + min(half * 32u + i, nk - 1u) * D;
            vv[i] = f32(cache[e / 4u][e % 4u]);
        }
        for (var i = 0u; i < 32u; i++) {
            let jj = half * 32u + i;
            let v = vv[i];
            a0 += vec4<f32>(sc[jj], sc[CH + jj], sc[2u * CH + jj], sc[3u * CH + jj]) * v;
            if (G > 4u) {
                a1 += vec4<f32>(sc[4u * CH + jj], sc[5u * CH + jj], sc[6u * CH + jj], sc[7u * CH + jj]) * v;
            }
        }
    }
    workgroupBarrier(); // red's score partials are dead; reuse it for the two key halves
    if (dd < D) {
        for (var hh = 0u; hh < 4u; hh++) {
            red[(half * MAXG + hh) * 128u + dd] = a0[hh];
            red[(half * MAXG + hh + 4u) * 128u + dd] = a1[hh];
        }
    }
    workgroupBarrier();
    for (var i = t; i < G * D; i += 256u) {
        let hh = i / D;
        let d = i % D;
        let a = red[hh * 128u + d] + red[(MAXG + hh) * 128u + d];
        if (P.nsplit == 1u) {
            // one split: the combine pass would only divide by the sum, so it is skipped
            out[(kh * G + hh) * D + d] = act(a / mx[hh * 32u]);
        } else {
            part[(s * P.hq + kh * G + hh) * D + d] = a;
        }
    }
}
