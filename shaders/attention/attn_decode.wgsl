// attn_decode — one query token against KV cache positions [0, L), split-K ("flash decoding").
//
// @binding(0) q:     (Hq, D) act              the new token's queries
// @binding(1) cache: (2, Hkv, Tmax, D) act    [0] keys, [1] values (see kv_append)
// @binding(2) part:  f32 scratch              acc (S, Hq, D), then (m, l) (S, Hq, 2)
// @binding(3) out:   (Hq, D) act
// @binding(4) P:     uniform Params
//
// Pass 1 (`attn_decode`, grid (S, Hkv)): workgroup (s, kh) takes keys [256·s, 256·s + 256) of
// kv head kh and all G = Hq/Hkv query heads that share it (GQA: head h uses kv head h / G), so
// each key and value is read once per group. It writes the split's unnormalised partial
// (max m, Σ exp(score − m) = l, Σ exp(score − m)·v = acc) in f32.
// Pass 2 (`attn_decode_combine`, grid (Hq)): rescales the S partials to the global max and
// divides. Scores, softmax and accumulation are f32 throughout; only `out` is `act`.

struct Params {
    hq: u32,
    hkv: u32,
    len: u32,    // L, keys visible
    tmax: u32,   // cache capacity
    nsplit: u32, // S = ⌈L / 256⌉
    scale: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> q: array<act>;
@group(0) @binding(1) var<storage, read> cache: array<act>;
@group(0) @binding(2) var<storage, read_write> part: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<act>;
@group(0) @binding(4) var<uniform> P: Params;

override G: u32 = 7u;   // query heads per kv head, ≤ MAXG
override D: u32 = 128u; // head dim, ≤ MAXD

const CH: u32 = 256u;   // keys per split = workgroup size (one key per invocation)
const MAXG: u32 = 8u;
const MAXD: u32 = 128u;
const LANES: u32 = 32u; // invocations per head in the max/sum reductions (MAXG·LANES = CH)
const LOWEST: f32 = -1e30; // "minus infinity" that keeps exp(LOWEST − m) finite (= 0)

var<workgroup> qs: array<f32, 1024>;  // (G, D) scaled queries          (MAXG·MAXD)
var<workgroup> sc: array<f32, 2048>;  // (G, CH) scores, then exp(score − m)
var<workgroup> red: array<f32, 256>;  // reduction scratch
var<workgroup> gmax: array<f32, 8>;   // per-head max of this split

@compute @workgroup_size(256)
fn attn_decode(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let s = wid.x;
    let kh = wid.y;
    let h0 = kh * G;
    for (var i = t; i < G * D; i += CH) {
        qs[i] = f32(q[h0 * D + i]) * P.scale;
    }
    workgroupBarrier();
    let k0 = s * CH;
    let nk = min(CH, P.len - k0); // keys in this split (the last one is ragged)

    // scores: invocation t takes key k0 + t against every head of the group
    if (t < nk) {
        var acc: array<f32, MAXG>;
        let kb = (kh * P.tmax + k0 + t) * D;
        for (var dd = 0u; dd < D; dd++) {
            let kv = f32(cache[kb + dd]);
            for (var g = 0u; g < G; g++) {
                acc[g] += qs[g * D + dd] * kv;
            }
        }
        for (var g = 0u; g < G; g++) {
            sc[g * CH + t] = acc[g];
        }
    }
    workgroupBarrier();

    // per-head max: LANES invocations per head, CH / LANES keys each, then a tree
    let g = t / LANES;
    let lane = t % LANES;
    var mx = LOWEST;
    if (g < G) {
        for (var j = lane; j < nk; j += LANES) {
            mx = max(mx, sc[g * CH + j]);
        }
    }
    red[t] = mx;
    workgroupBarrier();
    for (var st = LANES / 2u; st > 0u; st >>= 1u) {
        if (lane < st) {
            red[t] = max(red[t], red[t + st]);
        }
        workgroupBarrier();
    }
    if (lane == 0u && g < G) {
        gmax[g] = red[t];
    }
    workgroupBarrier();

    // probabilities (unnormalised) and their per-head sum
    if (t < nk) {
        for (var gg = 0u; gg < G; gg++) {
            sc[gg * CH + t] = exp(sc[gg * CH + t] - gmax[gg]);
        }
    }
    workgroupBarrier();
    var sm = 0.0;
    if (g < G) {
        for (var j = lane; j < nk; j += LANES) {
            sm += sc[g * CH + j];
        }
    }
    red[t] = sm;
    workgroupBarrier();
    for (var st = LANES / 2u; st > 0u; st >>= 1u) {
        if (lane < st) {
            red[t] += red[t + st];
        }
        workgroupBarrier();
    }

    // weighted values: invocation i takes (head gg, dim dd); consecutive invocations read
    // consecutive dims of one value row
    let vb = ((P.hkv + kh) * P.tmax + k0) * D;
    for (var i = t; i < G * D; i += CH) {
        let gg = i / D;
        let dd = i % D;
        var a = 0.0;
        for (var j = 0u; j < nk; j++) {
            a += sc[gg * CH + j] * f32(cache[vb + j * D + dd]);
        }
        part[(s * P.hq + h0 + gg) * D + dd] = a;
    }
    if (t < G) {
        let ml = P.nsplit * P.hq * D + (s * P.hq + h0 + t) * 2u;
        part[ml] = gmax[t];
        part[ml + 1u] = red[t * LANES];
    }
}

// Pass 2: one workgroup per query head, one invocation per dim.
@compute @workgroup_size(128)
fn attn_decode_combine(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
) {
    let h = wid.x;
    let ml = P.nsplit * P.hq * D;
    var m = LOWEST;
    for (var s = 0u; s < P.nsplit; s++) {
        m = max(m, part[ml + (s * P.hq + h) * 2u]);
    }
    var l = 0.0;
    for (var s = 0u; s < P.nsplit; s++) {
        let i = ml + (s * P.hq + h) * 2u;
        l += exp(part[i] - m) * part[i + 1u];
    }
    for (var dd = t; dd < D; dd += 128u) {
        var a = 0.0;
        for (var s = 0u; s < P.nsplit; s++) {
            let w = exp(part[ml + (s * P.hq + h) * 2u] - m);
            a += w * part[(s * P.hq + h) * D + dd];
        }
        out[h * D + dd] = act(a / l);
    }
}
