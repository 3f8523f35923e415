// attn_decode_head — one query token's attention over a short cache in one pass: one workgroup
// of 1024 invocations per query head over every key (up to NK: the engine uses it up to 384,
// ops::ONE_PASS_MAX_KEYS, with NK 256 or 384), so no split partials and no combine pass. For head dim 128 where the
// adapter has subgroups (of 8 or more invocations, laid out in order). Same bindings and params
// as attn_decode_gqa.wgsl (`part` unused).
//
// Why only short caches: one workgroup reads all of its head's keys and values, so its time
// grows with the length faster than the split passes', whose loads spread over many
// workgroups. On an H100 the q4 step at 256 keys took 2131 µs against 2200–2203 with the split
// passes, at 384 keys 2228–2229 against 2247–2249; it was even at 512 keys and lost at 1024
// (2386 against 2269).
//
// Scores: 8 invocations per key (invocation u takes the key's vec4s u, u+8, u+16, u+24), 128
// keys per round, KR rounds' loads issued together (none waits on the params); the 8 partial
// dots meet by shuffles. Softmax: one score per invocation, subgroup max and sum, the
// subgroups' results through workgroup memory. Values: invocation t takes dims 4·(t % 32) … +3
// over keys t / 32, t / 32 + 32, … (eight loads in flight per round of 256 keys), and the 32
// key groups meet in workgroup memory.
// Keys past the length load whatever the cache holds there (within Tmax) and are masked: their
// score is LOWEST, their weight 0, and their values are selected out (NaN there is harmless).

// #include attn_decode_binds

override G: u32 = 7u; // query heads per kv head
override XQ: u32 = 0u;
override TM: u32;     // the cache's Tmax
override HKV: u32;    // the cache's kv heads
// Keys this pipeline takes at most, a multiple of 128 up to 512 (the engine's are 256 and 384,
// ops::ONE_PASS_MAX_KEYS). They are loaded in KR rounds of 128, together (no params needed for
// the addresses).
override NK: u32 = 256u;
override KR: u32 = NK / 128u;
const D4: u32 = 32u;  // vec4s per key (head dim 128)
const LOWEST: f32 = -1e30;

var<workgroup> sc: array<f32, 1024>;   // scores, then exp(score − max)
var<workgroup> red: array<f32, 2048>;  // value partials [16 key groups][128]
var<workgroup> wr: array<f32, 128>;    // one value per subgroup (max, then sum)
var<workgroup> qo: array<act, 128>;    // the output as `out` holds it (for XQ)

// #include xq_block

// The KR rounds of keys: invocation (key kk, lane u)'s 4·KR vec4 loads.
fn key_loads(kb: u32, kk: u32, u: u32) -> array<act4, 16> {
    var kv: array<act4, 16>;
    for (var i = 0u; i < KR; i++) {
        let j = min(128u * i + kk, TM - 1u);
        for (var c = 0u; c < 4u; c++) {
            kv[4u * i + c] = cache[kb + j * D4 + u + 8u * c];
        }
    }
    return kv;
}

fn key_scores(kv: array<act4, 16>, qv: array<vec4<f32>, 4>, kk: u32, u: u32) {
    for (var i = 0u; i < KR; i++) {
        var a = dot(vec4<f32>(kv[4u * i]), qv[0]) + dot(vec4<f32>(kv[4u * i + 1u]), qv[1])
              + dot(vec4<f32>(kv[4u * i + 2u]), qv[2]) + dot(vec4<f32>(kv[4u * i + 3u]), qv[3]);
        a += subgroupShuffleXor(a, 1u);
        a += subgroupShuffleXor(a, 2u);
        a += subgroupShuffleXor(a, 4u);
        let j = 128u * i + kk;
        if (u == 0u) {
            sc[j] = select(LOWEST, a * P.scale, j < P.len);
        }
    }
}

@compute @workgroup_size(1024)
fn attn_decode_head(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
    @builtin(subgroup_size) sgs: u32,
) {
    let h = wid.x;
    let kh = h / G;
    let u = t % 8u;
    let kk = t / 8u;
    let kb = kh * TM * D4;
    // the first 128·KR keys' loads before anything else, then q
    let kv = key_loads(kb, kk, u);
    if (t >= NK) {
        sc[t] = LOWEST; // a key this pipeline does not load
    }
    var qv: array<vec4<f32>, 4>;
    for (var c = 0u; c < 4u; c++) {
        let b = h * 128u + 4u * (u + 8u * c);
        qv[c] = vec4<f32>(f32(q[b]), f32(q[b + 1u]), f32(q[b + 2u]), f32(q[b + 3u]));
    }
    key_scores(kv, qv, kk, u);
    workgroupBarrier();
    // softmax: invocation t's score; the subgroups' maxima and sums in `wr`
    let s = sc[t];
    let ns = 1024u / sgs;
    let m0 = subgroupMax(s);
    if (t % sgs == 0u) {
        wr[t / sgs] = m0;
    }
    workgroupBarrier();
    var m = LOWEST;
    for (var i = 0u; i < ns; i++) {
        m = max(m, wr[i]);
    }
    let e = select(0.0, exp(s - m), s > LOWEST);
    sc[t] = e;
    let l0 = subgroupAdd(e);
    workgroupBarrier(); // every invocation has read the maxima
    if (t % sgs == 0u) {
        wr[t / sgs] = l0;
    }
    workgroupBarrier();
    var l = 0.0;
    for (var i = 0u; i < ns; i++) {
        l += wr[i];
    }
    // values: dims 4·dq … over keys kg, kg + 32, …
    let dq = t % 32u;
    let kg = t / 32u;
    let vb = (HKV + kh) * TM * D4 + dq;
    var acc = vec4<f32>(0.0);
    for (var i0 = 0u; i0 < NK / 32u; i0 += 8u) {
        if (32u * i0 < P.len) {
            var vv: array<act4, 8>;
            for (var i = 0u; i < 8u; i++) {
                let j = kg + 32u * (i0 + i);
                vv[i] = cache[vb + min(j, TM - 1u) * D4];
            }
            for (var i = 0u; i < 8u; i++) {
                let j = kg + 32u * (i0 + i);
                acc += select(vec4<f32>(0.0), vec4<f32>(vv[i]) * sc[j], j < P.len);
            }
        }
    }
    // the 32 key groups: 16 … 31 stage theirs, 0 … 15 add them, then 128 invocations sum 16
    let r = 128u * (kg % 16u) + 4u * dq;
    if (kg >= 16u) {
        red[r] = acc.x;
        red[r + 1u] = acc.y;
        red[r + 2u] = acc.z;
        red[r + 3u] = acc.w;
    }
    workgroupBarrier();
    if (kg < 16u) {
        red[r] += acc.x;
        red[r + 1u] += acc.y;
        red[r + 2u] += acc.z;
        red[r + 3u] += acc.w;
    }
    workgroupBarrier();
    if (t < 128u) {
        var o = 0.0;
        for (var g = 0u; g < 16u; g++) {
            o += red[128u * g + t];
        }
        let v = act(o / l);
        out[h * 128u + t] = v;
        qo[t] = v;
    }
    if (XQ == 1u) {
        workgroupBarrier();
        if (t < 4u) {
            var a: array<vec4<f32>, 8>;
            for (var j = 0u; j < 8u; j++) {
                let e4 = 32u * t + 4u * j;
                a[j] = vec4<f32>(f32(qo[e4]), f32(qo[e4 + 1u]), f32(qo[e4 + 2u]), f32(qo[e4 + 3u]));
            }
            let b = xq_block(a);
            let blk = h * 4u + t;
            for (var j = 0u; j < 8u; j++) {
                xq[blk * 8u + j] = b.q[j];
            }
            xd[blk] = b.d;
        }
    }
}
