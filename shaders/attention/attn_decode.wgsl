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
// 256 invocations: scores with 4 invocations per key over keys staged through workgroup memory
// (coalesced reads, all of an invocation's loads issued together), values with 2 invocations
// per dim, each over half the keys with 4 independent loads per step. It writes the split's unnormalised partial (max m,
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
// combine with XQ = 1: out also as gemv_i8's int8 x (xq_block.wgsl), so the next product
// skips gemv_xq
@group(0) @binding(5) var<storage, read_write> xq: array<u32>;
@group(0) @binding(6) var<storage, read_write> xd: array<vec2<f32>>;

override G: u32 = 7u;   // query heads per kv head
override D: u32 = 128u; // head dim, ≤ MAXD (a multiple of 32 with XQ = 1)
override XQ: u32 = 0u;

const CH: u32 = 64u;    // keys per split
const WGS: u32 = 256u;  // invocations per workgroup: 4 per key for scores, 2 per dim for values
const MAXD: u32 = 128u;
const KD: u32 = 32u;    // key dims staged per round
const LOWEST: f32 = -1e30; // "minus infinity" that keeps exp(LOWEST − m) finite (= 0)

var<workgroup> qs: array<f32, MAXD>;
var<workgroup> kt: array<f32, 2112>; // CH keys × (KD + 1): padded against bank conflicts
var<workgroup> red: array<f32, WGS>;
var<workgroup> p: array<f32, CH>;
var<workgroup> vacc: array<f32, 256>; // 2 key halves × MAXD

fn load_key(kb0: u32, s: u32, e: u32, d0: u32) -> f32 {
    let key = e / KD;
    let dd = e % KD;
    if (s * CH + key < P.len && d0 + dd < D) {
        return f32(cache[kb0 + key * D + d0 + dd]);
    }
    return 0.0;
}

@compute @workgroup_size(256)
fn attn_decode(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
) {
    let s = wid.x;
    let h = wid.y;
    let kh = h / G;
    if (t < D) {
        qs[t] = f32(q[h * D + t]);
    }
    // Scores. The split's keys are one contiguous run of the cache; they are staged KD dims at
    // a time (every invocation issues its 8 loads together, then stores), and 4 invocations
    // share a key's dot product.
    let kb0 = (kh * P.tmax + s * CH) * D;
    let key = t / 4u;
    let sub = t % 4u;
    var dot_acc = 0.0;
    for (var d0 = 0u; d0 < D; d0 += KD) {
        let a = vec4<f32>(load_key(kb0, s, t, d0), load_key(kb0, s, t + WGS, d0),
                          load_key(kb0, s, t + 2u * WGS, d0), load_key(kb0, s, t + 3u * WGS, d0));
        let b = vec4<f32>(load_key(kb0, s, t + 4u * WGS, d0), load_key(kb0, s, t + 5u * WGS, d0),
                          load_key(kb0, s, t + 6u * WGS, d0), load_key(kb0, s, t + 7u * WGS, d0));
        for (var u = 0u; u < 4u; u++) {
            let e0 = t + u * WGS;
            let e1 = t + (u + 4u) * WGS;
            kt[(e0 / KD) * (KD + 1u) + e0 % KD] = a[u];
            kt[(e1 / KD) * (KD + 1u) + e1 % KD] = b[u];
        }
        workgroupBarrier();
        for (var i = 0u; i < KD / 4u; i++) {
            let dd = sub + 4u * i;
            if (d0 + dd < D) {
                dot_acc += qs[d0 + dd] * kt[key * (KD + 1u) + dd];
            }
        }
        workgroupBarrier();
    }
    red[t] = dot_acc;
    workgroupBarrier();
    let j = s * CH + t;
    var score = LOWEST;
    if (t < CH && j < P.len) {
        score = (red[4u * t] + red[4u * t + 1u] + red[4u * t + 2u] + red[4u * t + 3u]) * P.scale;
    }
    workgroupBarrier();
    // softmax statistics of the split (threads ≥ CH carry LOWEST / 0)
    red[t] = score;
    workgroupBarrier();
    for (var st = WGS / 2u; st > 0u; st >>= 1u) {
        if (t < st) {
            red[t] = max(red[t], red[t + st]);
        }
        workgroupBarrier();
    }
    let m = red[0];
    workgroupBarrier();
    let e = select(0.0, exp(score - m), t < CH && j < P.len);
    if (t < CH) {
        p[t] = e;
    }
    red[t] = e;
    workgroupBarrier();
    for (var st = WGS / 2u; st > 0u; st >>= 1u) {
        if (t < st) {
            red[t] += red[t + st];
        }
        workgroupBarrier();
    }
    // Values: invocation t takes dim t % 128 over one half of the keys, 4 independent loads per
    // step; the two halves meet in workgroup memory.
    let base = s * P.hq + h;
    let nk = min(CH, P.len - s * CH);
    let dd = t % MAXD;
    let half = t / MAXD;
    var acc = vec4<f32>(0.0);
    if (dd < D) {
        let vb = ((P.hkv + kh) * P.tmax + s * CH) * D + dd;
        let k0 = half * (CH / 2u);
        let k1 = min(k0 + CH / 2u, nk);
        var jj = k0;
        for (; jj + 4u <= k1; jj += 4u) {
            let b = vb + jj * D;
            let v = vec4<f32>(f32(cache[b]), f32(cache[b + D]), f32(cache[b + 2u * D]), f32(cache[b + 3u * D]));
            acc += vec4<f32>(p[jj], p[jj + 1u], p[jj + 2u], p[jj + 3u]) * v;
        }
        for (; jj < k1; jj++) {
            acc.x += p[jj] * f32(cache[vb + jj * D]);
        }
    }
    vacc[t] = acc.x + acc.y + acc.z + acc.w;
    workgroupBarrier();
    if (t < D) {
        part[base * D + t] = vacc[t] + vacc[t + MAXD];
    }
    if (t == 0u) {
        let ml = P.nsplit * P.hq * D;
        part[ml + base * 2u] = m;
        part[ml + base * 2u + 1u] = red[0];
    }
}

// Combine: one workgroup per head, one dim per invocation. The chain is one round of loads
// and one barrier: every invocation issues its dim's partials of the first CB splits together
// with the split statistics (m_s, l_s) it stages, then, after the barrier, finds the max over
// the staged m_s itself (a loop over workgroup memory, no reduction tree) and sums
// w_s = exp(m_s − m) times its partials and l_s. Splits beyond CB come CB at a time; beyond
// MAXS (65536 keys) the passes rescale what came before to the new max.
const MAXS: u32 = 1024u; // splits staged per pass
const CB: u32 = 32u;     // partials per invocation in flight at once
var<workgroup> wm: array<f32, MAXS>; // m_s of the pass
var<workgroup> wl: array<f32, MAXS>; // l_s of the pass
// the output for XQ as `out` holds it: in the activation dtype, so each value is rounded as
// stored (an H100's compiler kept an f32 array's copy of act(a / l) at f32 precision, and the
// int8 x then differed from quantising `out`)
var<workgroup> wo: array<act, 128>;

// The partials of splits s .. s + CB − 1 for dim t of head h (splits past the last read the
// last again: their weight is masked to 0 by the caller).
fn combine_loads(h: u32, t: u32, s: u32) -> array<f32, CB> {
    var v: array<f32, CB>;
    let d = min(t, D - 1u);
    for (var i = 0u; i < CB; i++) {
        v[i] = part[(min(s + i, P.nsplit - 1u) * P.hq + h) * D + d];
    }
    return v;
}

@compute @workgroup_size(128)
fn attn_decode_combine(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
) {
    let h = wid.x;
    let ml = P.nsplit * P.hq * D;
    var m = LOWEST;
    var l = 0.0;
    var a = 0.0;
    for (var s0 = 0u; s0 < P.nsplit; s0 += MAXS) {
        let ns = min(MAXS, P.nsplit - s0);
        var pv = combine_loads(h, t, s0);
        workgroupBarrier(); // the previous pass's statistics are read
        for (var s = t; s < ns; s += 128u) {
            let i = ml + ((s0 + s) * P.hq + h) * 2u;
            wm[s] = part[i];
            wl[s] = part[i + 1u];
        }
        workgroupBarrier();
        var mp = m;
        for (var s = 0u; s < ns; s++) {
            mp = max(mp, wm[s]);
        }
        // a and l so far, rescaled to the new max (0 and 0 on the first pass)
        let r = exp(m - mp);
        a *= r;
        l *= r;
        m = mp;
        for (var b = 0u; b < ns; b += CB) {
            if (b > 0u) {
                pv = combine_loads(h, t, s0 + b);
            }
            for (var i = 0u; i < CB; i++) {
                let s = min(b + i, ns - 1u);
                let w = select(0.0, exp(wm[s] - m), b + i < ns);
                l += w * wl[s];
                a += w * pv[i];
            }
        }
    }
    let o = act(a / l);
    if (t < D) {
        out[h * D + t] = o;
    }
    if (XQ == 1u) {
        wo[t] = o;
        workgroupBarrier();
        if (t < D / 32u) {
            var v: array<vec4<f32>, 8>;
            for (var j = 0u; j < 8u; j++) {
                let e = 32u * t + 4u * j;
                v[j] = vec4<f32>(f32(wo[e]), f32(wo[e + 1u]), f32(wo[e + 2u]), f32(wo[e + 3u]));
            }
            let b = xq_block(v);
            let blk = h * (D / 32u) + t;
            for (var j = 0u; j < 8u; j++) {
                xq[blk * 8u + j] = b.q[j];
            }
            xd[blk] = b.d;
        }
    }
}

// #include xq_block
