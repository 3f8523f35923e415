// The core of the q4/q8 matrix–vector kernels with int8 input vectors (gemv_i8.wgsl,
// gemv_i8_xqo.wgsl): params, the bindings every entry shares, and one lane's partial sums over
// its blocks. Layouts and the arithmetic are described in gemv_i8.wgsl.

struct Params {
    m: u32,
    k: u32,
    nb: u32,
    flags: u32,
    groups_x: u32,
    xs: u32,
    n: u32,
    n0: u32,
    eps: f32,
    _p0: u32, // `_rope` entries: query heads
    _p1: u32, //                  position
    _p2: u32, //                  cache positions (Tmax)
}

@group(0) @binding(0) var<storage, read> w: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read> s: array<u32>;
@group(0) @binding(2) var<storage, read> xq: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> bias: array<act>;
@group(0) @binding(4) var<storage, read> res: array<act>;
@group(0) @binding(5) var<storage, read_write> y: array<act>;
@group(0) @binding(6) var<uniform> P: Params;
@group(0) @binding(7) var<storage, read> xd: array<vec2<f32>>;

override WG: u32 = 256;
override TPR: u32 = 32;
override NB: u32 = 1;
override R: u32 = 1;
override ACT: u32 = 0;
override Q8: u32 = 0; // entries for either format: 1 for q8 weights, 0 for q4

const MAX_WG: u32 = 256u;
var<workgroup> partial: array<vec4<f32>, MAX_WG>;

// One q4 block (16 bytes of nibbles, its (scale, min) word) against an int8 x block (xa, xc; d).
fn q4_block(wv: vec4<u32>, sw: u32, xa: vec4<u32>, xc: vec4<u32>, d: vec2<f32>) -> f32 {
    let mask = vec4<u32>(0x0F0F0F0Fu);
    let sm = unpack2x16float(sw);
    let lo = wv & mask;
    let hi = (wv >> vec4<u32>(4u)) & mask;
    let i = dot4I8Packed(lo.x, xa.x) + dot4I8Packed(hi.x, xa.y)
          + dot4I8Packed(lo.y, xa.z) + dot4I8Packed(hi.y, xa.w)
          + dot4I8Packed(lo.z, xc.x) + dot4I8Packed(hi.z, xc.y)
          + dot4I8Packed(lo.w, xc.z) + dot4I8Packed(hi.w, xc.w);
    return sm.x * d.x * f32(i) + sm.y * d.y;
}

// One q8 block (32 int8 weights as two vec4<u32>) against an int8 x block: the integer dot.
fn q8_dot(w0: vec4<u32>, w1: vec4<u32>, xa: vec4<u32>, xc: vec4<u32>) -> i32 {
    return dot4I8Packed(w0.x, xa.x) + dot4I8Packed(w0.y, xa.y)
         + dot4I8Packed(w0.z, xa.z) + dot4I8Packed(w0.w, xa.w)
         + dot4I8Packed(w1.x, xc.x) + dot4I8Packed(w1.y, xc.y)
         + dot4I8Packed(w1.z, xc.z) + dot4I8Packed(w1.w, xc.w);
}

// The f16 scale of q8 block b (two per u32).
fn q8_scale(b: u32) -> f32 {
    let sw = unpack2x16float(s[b / 2u]);
    return select(sw.x, sw.y, (b & 1u) == 1u);
}

// A lane's partial sums over blocks c0, c0 + TPR, … of its rows, added to `acc` in that order.
fn group_partial_q4_from(row0: u32, c0: u32, acc0: vec4<f32>) -> vec4<f32> {
    var acc = acc0;
    for (var c = c0; c < pnb(); c += TPR) {
        for (var n = 0u; n < NB; n++) {
            let xb = (pn0() + n) * pxs() + c;
            let xa = xq[2u * xb];
            let xc = xq[2u * xb + 1u];
            let d = xd[xb];
            for (var r = 0u; r < R; r++) {
                let b = min(row0 + r, pm() - 1u) * pnb() + c;
                acc[r * NB + n] += q4_block(w[b], s[b], xa, xc, d);
            }
        }
    }
    return acc;
}

fn group_partial_q8_from(row0: u32, c0: u32, acc0: vec4<f32>) -> vec4<f32> {
    var acc = acc0;
    for (var c = c0; c < pnb(); c += TPR) {
        for (var n = 0u; n < NB; n++) {
            let xb = (pn0() + n) * pxs() + c;
            let xa = xq[2u * xb];
            let xc = xq[2u * xb + 1u];
            let d = xd[xb];
            for (var r = 0u; r < R; r++) {
                let b = min(row0 + r, pm() - 1u) * pnb() + c;
                let i = q8_dot(w[2u * b], w[2u * b + 1u], xa, xc);
                acc[r * NB + n] += q8_scale(b) * d.x * f32(i);
            }
        }
    }
    return acc;
}

fn group_partial_q4(row0: u32, lane: u32) -> vec4<f32> {
    return group_partial_q4_from(row0, lane, vec4<f32>(0.0));
}

fn group_partial_q8(row0: u32, lane: u32) -> vec4<f32> {
    return group_partial_q8_from(row0, lane, vec4<f32>(0.0));
}

// group_partial_q4 or _q8 as Q8 says (the entries that serve both formats).
fn group_partial(row0: u32, lane: u32) -> vec4<f32> {
    if (Q8 == 1u) {
        return group_partial_q8(row0, lane);
    }
    return group_partial_q4(row0, lane);
}
