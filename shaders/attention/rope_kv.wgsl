// rope_kv — the QKV epilogue of T tokens (T = 1 when decoding, a prefill chunk otherwise):
// split each fused QKV vector, rotate q and k (Qwen2 rotate-half RoPE at position `pos + t`),
// write q out and append k, v to the KV cache. One dispatch instead of split + 2 RoPE + append.
//
// @binding(0) qkv:      (T, (Hq + 2·Hkv)·D) act  output of the W_pack product: [q | k | v]
// @binding(1) inv_freq: (D/2,) f32               1/θ^(2i/D)
// @binding(2) q:        (T, Hq, D) act           rotated queries
// @binding(3) cache:    (2, Hkv, Tmax, D) act    keys (index 0) and values (index 1)
// @binding(4) P:        uniform Params
//
// Angles are pos·inv_freq[i] in f32 with f32 cos/sin, as HF's Qwen2RotaryEmbedding.

struct Params {
    hq: u32,
    hkv: u32,
    d: u32,
    tmax: u32,
    pos: u32,
    tokens: u32,
    groups_x: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> qkv: array<act>;
@group(0) @binding(1) var<storage, read> inv_freq: array<f32>;
@group(0) @binding(2) var<storage, read_write> q: array<act>;
@group(0) @binding(3) var<storage, read_write> cache: array<act>;
@group(0) @binding(4) var<uniform> P: Params;

override WG: u32 = 256;

fn cache_index(kind: u32, head: u32, p: u32, i: u32) -> u32 {
    return ((kind * P.hkv + head) * P.tmax + p) * P.d + i;
}

// #include trig

@compute @workgroup_size(WG)
fn rope_kv(@builtin(global_invocation_id) gid: vec3<u32>) {
    let half = P.d / 2u;
    let rot = (P.hq + P.hkv) * half; // rotation pairs: q heads, then k heads
    let per = rot + P.hkv * P.d; // invocations per token
    let idx = gid.x + gid.y * P.groups_x * WG;
    let tok = idx / per;
    if (tok >= P.tokens) {
        return;
    }
    let t = idx % per;
    let pos = P.pos + tok;
    let src = tok * (P.hq + 2u * P.hkv) * P.d;
    let qdst = tok * P.hq * P.d;
    if (t < rot) {
        let head = t / half;
        let i = t % half;
        let cs = cos_sin(f32(pos) * inv_freq[i]);
        let c = cs.x;
        let s = cs.y;
        let base = head * P.d;
        let x0 = f32(qkv[src + base + i]);
        let x1 = f32(qkv[src + base + i + half]);
        let y0 = x0 * c - x1 * s;
        let y1 = x1 * c + x0 * s;
        if (head < P.hq) {
            q[qdst + base + i] = act(y0);
            q[qdst + base + i + half] = act(y1);
        } else {
            let kh = head - P.hq;
            cache[cache_index(0u, kh, pos, i)] = act(y0);
            cache[cache_index(0u, kh, pos, i + half)] = act(y1);
        }
    } else {
        let j = t - rot;
        let head = j / P.d;
        let i = j % P.d;
        cache[cache_index(1u, head, pos, i)] = qkv[src + (P.hq + P.hkv) * P.d + j];
    }
}
