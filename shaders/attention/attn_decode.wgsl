// attn_decode — one query token against KV cache positions [0, L), split-K ("flash decoding").
//
// @binding(0) q:     (Hq, D) act              the new token's queries
// @binding(1) cache: (2, Hkv, Tmax, D) act    [0] keys, [1] values (see kv_append)
// @binding(2) part:  f32 scratch              acc (S, Hq, D), then (m, l) (S, Hq, 2)
// @binding(3) out:   (Hq, D) act
// @binding(4) P:     uniform Params
//
// Pass 1 (`attn_decode`, grid (S, Hq)): workgroup (s, h) takes keys [CH·s, CH·s + CH) of query
// head h's kv head (GQA: h / G). Many small workgroups, because a decode step has little work
// per layer and a few large ones leave most of the GPU idle: at L = 1024, 16 splits × 28 heads.
// Scores: the split's keys are staged through workgroup memory (coalesced reads), then one key
// per invocation is dotted with q. Values: invocations split D, so each value row is read
// coalesced. It writes the split's unnormalised partial (max m,
// l = Σ exp(score − m), acc = Σ exp(score − m)·v) in f32. GQA's shared keys come from L2.
// Pass 2 (`attn_decode_combine`, grid (Hq)): rescales the S partials to the global max and
// divides. Scores, softmax and accumulation are f32 throughout; only `out` is `act`.

struct Params {
    hq: u32,
    hkv: u32,
    len: u32,    // L, keys visible
    tmax: u32,   // cache capacity
    nsplit: u32, // S = ⌈L / CH⌉
    scale: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> q: array<act>;
@group(0) @binding(1) var<storage, read> cache: array<act>;
@group(0) @binding(2) var<storage, read_write> part: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<act>;
@group(0) @binding(4) var<uniform> P: Params;

override G: u32 = 7u;   // query heads per kv head
override D: u32 = 128u; // head dim, ≤ MAXD

const CH: u32 = 64u;    // keys per split = workgroup size
const MAXD: u32 = 128u;
const LOWEST: f32 = -1e30; // "minus infinity" that keeps exp(LOWEST − m) finite (= 0)

const KD: u32 = 32u;     // key dims staged per round
var<workgroup> qs: array<f32, MAXD>;
var<workgroup> kt: array<f32, 2112>; // CH keys × (KD + 1): padded against bank conflicts
var<workgroup> p: array<f32, CH>;
var<workgroup> red: array<f32, CH>;

@compute @workgroup_size(64)
fn attn_decode(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
) {
    let s = wid.x;
    let h = wid.y;
    let kh = h / G;
    for (var dd = t; dd < D; dd += CH) {
        qs[dd] = f32(q[h * D + dd]);
    }
    workgroupBarrier();
    let j = s * CH + t; // this invocation's key
    // The split's keys are one contiguous run of the cache: stage them KD dims at a time
    // through workgroup memory so global reads are coalesced, then each invocation dots its key.
    let kb0 = (kh * P.tmax + s * CH) * D;
    var dot_acc = 0.0;
    for (var d0 = 0u; d0 < D; d0 += KD) {
        // 4 independent loads per iteration keep several reads in flight per invocation
        for (var e0 = t; e0 < CH * KD; e0 += 4u * CH) {
            var v = vec4<f32>(0.0);
            for (var u = 0u; u < 4u; u++) {
                let e = e0 + u * CH;
                let key = e / KD;
                let dd = e % KD;
                if (e < CH * KD && s * CH + key < P.len && d0 + dd < D) {
                    v[u] = f32(cache[kb0 + key * D + d0 + dd]);
                }
            }
            for (var u = 0u; u < 4u; u++) {
                let e = e0 + u * CH;
                if (e < CH * KD) {
                    kt[(e / KD) * (KD + 1u) + e % KD] = v[u];
                }
            }
        }
        workgroupBarrier();
        let nd = min(KD, D - d0);
        for (var dd = 0u; dd < nd; dd++) {
            dot_acc += qs[d0 + dd] * kt[t * (KD + 1u) + dd];
        }
        workgroupBarrier();
    }
    var score = LOWEST;
    if (j < P.len) {
        score = dot_acc * P.scale;
    }
    red[t] = score;
    workgroupBarrier();
    for (var st = CH / 2u; st > 0u; st >>= 1u) {
        if (t < st) {
            red[t] = max(red[t], red[t + st]);
        }
        workgroupBarrier();
    }
    let m = red[0];
    workgroupBarrier();
    let e = select(0.0, exp(score - m), j < P.len);
    p[t] = e;
    red[t] = e;
    workgroupBarrier();
    for (var st = CH / 2u; st > 0u; st >>= 1u) {
        if (t < st) {
            red[t] += red[t + st];
        }
        workgroupBarrier();
    }
    let base = s * P.hq + h;
    let nk = min(CH, P.len - s * CH);
    let vb = ((P.hkv + kh) * P.tmax + s * CH) * D;
    // Values: 4 keys per iteration with independent loads (a plain loop waits on each load).
    for (var dd = t; dd < D; dd += CH) {
        var acc = vec4<f32>(0.0);
        var jj = 0u;
        for (; jj + 4u <= nk; jj += 4u) {
            let b = vb + jj * D + dd;
            let v = vec4<f32>(f32(cache[b]), f32(cache[b + D]), f32(cache[b + 2u * D]), f32(cache[b + 3u * D]));
            acc += vec4<f32>(p[jj], p[jj + 1u], p[jj + 2u], p[jj + 3u]) * v;
        }
        for (; jj < nk; jj++) {
            acc.x += p[jj] * f32(cache[vb + jj * D + dd]);
        }
        part[base * D + dd] = acc.x + acc.y + acc.z + acc.w;
    }
    if (t == 0u) {
        let ml = P.nsplit * P.hq * D;
        part[ml + base * 2u] = m;
        part[ml + base * 2u + 1u] = red[0];
    }
}

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
