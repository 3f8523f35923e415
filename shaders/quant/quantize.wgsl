// quantize — f16 weights (as stored in a checkpoint) → the q8 / q4 block formats of gemv.wgsl,
// on the GPU at load time, so raw f16 shards can be loaded as q8/q4 without a CPU pass.
//
// @binding(0) src:    (rows·cols,) f16 packed two per u32 (row-major, no row padding)
// @binding(1) data:   q8: (rows·nb·8,) u32   q4: (rows·nb·4,) u32     (layout: src/tensor/quant.rs)
// @binding(2) scales: q8: (⌈rows·nb/2⌉,) u32 f16 pairs   q4: (rows·nb,) u32 (scale, min)
// @binding(3) P:      uniform Params
//
// One thread per block of 32 (q8: per pair of blocks, since two scales share a word). The
// arithmetic mirrors the CPU quantiser exactly (f32, round half away from zero); only f32
// division may differ in the last bit, which can move a code by one at an exact tie.

struct Params {
    rows: u32,
    cols: u32,
    nb: u32,       // blocks per row = ⌈cols/32⌉
    groups_x: u32,
}

@group(0) @binding(0) var<storage, read> src: array<u32>;
@group(0) @binding(1) var<storage, read_write> data: array<u32>;
@group(0) @binding(2) var<storage, read_write> scales: array<u32>;
@group(0) @binding(3) var<uniform> P: Params;

override WG: u32 = 64;

fn weight(row: u32, col: u32) -> f32 {
    if (col >= P.cols) {
        return 0.0;
    }
    let e = row * P.cols + col;
    let pair = unpack2x16float(src[e / 2u]);
    return select(pair.x, pair.y, (e & 1u) == 1u);
}

// v rounded to f16 (as the stored scale), decoded from the f16 bits by integer arithmetic: an
// H100's compiler folded unpack2x16float(pack2x16float(v)) to v, so codes were computed with the
// unrounded scale and 4 of a 5×70 matrix's 350 differed from the CPU's by a step, at no tie.
// (Finite values only: a block's scale and minimum.)
fn f16_round(v: f32) -> f32 {
    let h = pack2x16float(vec2<f32>(v, 0.0)) & 0xFFFFu;
    let e = (h >> 10u) & 0x1Fu;
    let m = h & 0x3FFu;
    var a: f32;
    if (e == 0u) {
        a = f32(m) * 5.9604644775390625e-8; // subnormal: m · 2⁻²⁴ (exact)
    } else {
        a = bitcast<f32>(((e + 112u) << 23u) | (m << 13u));
    }
    return select(a, -a, (h & 0x8000u) != 0u);
}

fn round_away(v: f32) -> f32 {
    return sign(v) * floor(abs(v) + 0.5);
}

fn block_index(wid: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * P.groups_x + wid.x) * WG + lid;
}

// Quantises block `b` (global: row = b / nb) to q8; returns its f16 scale bits.
fn q8_block(b: u32) -> u32 {
    let row = b / P.nb;
    let col0 = (b % P.nb) * 32u;
    var amax = 0.0;
    for (var i = 0u; i < 32u; i++) {
        amax = max(amax, abs(weight(row, col0 + i)));
    }
    let s = f16_round(amax / 127.0);
    let inv = select(0.0, 1.0 / s, s > 0.0);
    for (var j = 0u; j < 8u; j++) {
        var word = 0u;
        for (var i = 0u; i < 4u; i++) {
            let q = i32(clamp(round_away(weight(row, col0 + 4u * j + i) * inv), -127.0, 127.0));
            word |= (u32(q) & 0xffu) << (8u * i);
        }
        data[b * 8u + j] = word;
    }
    return pack2x16float(vec2<f32>(s, 0.0)) & 0xffffu;
}

@compute @workgroup_size(WG)
fn quantize_q8(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let pair = block_index(wid, lid);
    let total = P.rows * P.nb;
    let b0 = 2u * pair;
    if (b0 >= total) {
        return;
    }
    var word = q8_block(b0);
    if (b0 + 1u < total) {
        word |= q8_block(b0 + 1u) << 16u;
    }
    scales[pair] = word;
}

@compute @workgroup_size(WG)
fn quantize_q4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let b = block_index(wid, lid);
    if (b >= P.rows * P.nb) {
        return;
    }
    let row = b / P.nb;
    let col0 = (b % P.nb) * 32u;
    let n = min(32u, P.cols - col0); // padding columns do not widen the range
    var lo = 3.4e38;
    var hi = -3.4e38;
    for (var i = 0u; i < n; i++) {
        let v = weight(row, col0 + i);
        lo = min(lo, v);
        hi = max(hi, v);
    }
    let m = f16_round(lo);
    let s = f16_round((hi - m) / 15.0);
    let inv = select(0.0, 1.0 / s, s > 0.0);
    for (var j = 0u; j < 4u; j++) {
        var word = 0u;
        for (var bb = 0u; bb < 4u; bb++) {
            let k0 = 8u * j + bb;
            let k1 = k0 + 4u;
            var q0 = 0u;
            var q1 = 0u;
            if (k0 < n) {
                q0 = u32(clamp(round_away((weight(row, col0 + k0) - m) * inv), 0.0, 15.0));
            }
            if (k1 < n) {
                q1 = u32(clamp(round_away((weight(row, col0 + k1) - m) * inv), 0.0, 15.0));
            }
            word |= (q0 | (q1 << 4u)) << (8u * bb);
        }
        data[b * 4u + j] = word;
    }
    scales[b] = pack2x16float(vec2<f32>(s, m));
}
