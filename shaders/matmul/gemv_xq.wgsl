// gemv_xq — quantises the input vectors of a q4/q8 matrix–vector product to int8, one block of
// 32 per scale, so the product can use packed integer dot products (gemv_i8.wgsl). With
// NORM = 1 the vector is RMS-normalised and scaled by g first (the fused-norm epilogue).
//
// @binding(0) x:   (N, ⌈K/4⌉) act4     input vectors, rows padded to 4 elements
// @binding(1) g:   (K,) f32             RMSNorm weight (read when NORM = 1)
// @binding(2) xq:  (N, nbq, 8) u32      int8 x, 4 per word, k ascending from the low byte
// @binding(3) xd:  (N, nbq) vec2<f32>   (scale = max|x| / 127, Σ x over the block's valid k)
// @binding(4) P:   uniform Params
// @binding(5) xo:  (N, ⌈K/4⌉) act4     the normalised x (gemv_xq_out only: NORM = 1)
//
// One workgroup per vector. xq = ⌊0.5 + 127·clamp(x / max|x|, −1, 1)⌋ (pack4x8snorm), 0 past K.

struct Params {
    k: u32,    // columns (logical)
    xs: u32,   // stride between input vectors, in act4 units
    nbq: u32,  // blocks of 32 per vector
    eps: f32,  // RMSNorm epsilon
}

@group(0) @binding(0) var<storage, read> x: array<act4>;
@group(0) @binding(1) var<storage, read> g: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> xq: array<u32>;
@group(0) @binding(3) var<storage, read_write> xd: array<vec2<f32>>;
@group(0) @binding(4) var<uniform> P: Params;
@group(0) @binding(5) var<storage, read_write> xo: array<act4>;

override WG: u32 = 256;
override NORM: u32 = 0;

const MAX_WG: u32 = 256u;
var<workgroup> partial: array<f32, MAX_WG>;
var<private> inv_rms: f32 = 1.0;

// x[n][4i .. 4i+4) as stored (past K: padding), and which of the four are inside K.
fn xload(n: u32, i: u32) -> vec4<f32> {
    return vec4<f32>(x[n * P.xs + min(i, P.xs - 1u)]);
}

fn inside(i: u32) -> vec4<bool> {
    return vec4<u32>(4u * i) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(P.k);
}

// x[n][4i .. 4i+4) as f32, zero past K.
fn xraw(n: u32, i: u32) -> vec4<f32> {
    return select(vec4<f32>(0.0), xload(n, i), inside(i));
}

// The norm weights g[4i .. 4i+4) (NORM = 1).
fn gv(i: u32) -> vec4<f32> {
    return g[min(i, (P.k + 3u) / 4u - 1u)];
}

// x[n][4i .. 4i+4), normalised when NORM = 1 (after find_inv_rms), zero past K.
fn xv(n: u32, i: u32) -> vec4<f32> {
    var v = xload(n, i);
    if (NORM == 1u) {
        v *= gv(i) * inv_rms;
    }
    return select(vec4<f32>(0.0), v, inside(i));
}

// The sum of every invocation's v, returned to all (uniform control flow: the barriers).
fn wg_sum(lid: u32, v: f32) -> f32 {
    partial[lid] = v;
    workgroupBarrier();
    for (var st = WG / 2u; st > 0u; st >>= 1u) {
        if (lid < st) {
            partial[lid] += partial[lid + st];
        }
        workgroupBarrier();
    }
    return partial[0];
}

// 1 / RMS of the sum of squares ss over the vector's K values.
fn rms_inv(ss: f32) -> f32 {
    return inverseSqrt(ss / f32(P.k) + P.eps);
}

// 1 / RMS(x[n]) into inv_rms (every invocation of the workgroup calls it, in uniform control flow).
fn find_inv_rms(n: u32, lid: u32) {
    var ss = 0.0;
    for (var i = lid; i < (P.k + 3u) / 4u; i += WG) {
        let v = xraw(n, i);
        ss += dot(v, v);
    }
    inv_rms = rms_inv(wg_sum(lid, ss));
}

// #include xq_block

// Block c of vector n (its 32 values as 8 vec4s) quantised into xq / xd.
fn store_block(n: u32, c: u32, a: array<vec4<f32>, 8>) {
    let b = xq_block(a);
    let o = (n * P.nbq + c) * 8u;
    for (var j = 0u; j < 8u; j++) {
        xq[o + j] = b.q[j];
    }
    xd[n * P.nbq + c] = b.d;
}

fn load_block(n: u32, c: u32) -> array<vec4<f32>, 8> {
    var a: array<vec4<f32>, 8>;
    for (var j = 0u; j < 8u; j++) {
        a[j] = xv(n, 8u * c + j);
    }
    return a;
}

@compute @workgroup_size(WG)
fn gemv_xq(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let n = wid.x;
    if (NORM == 1u) {
        find_inv_rms(n, lid);
    }
    for (var c = lid; c < P.nbq; c += WG) {
        store_block(n, c, load_block(n, c));
    }
}

// gemv_xq with NORM = 1 that also writes the normalised vector to xo (the audio head's RMSNorm2,
// whose output is its FFN's residual too): one dispatch instead of an RMSNorm and a gemv_xq.
@compute @workgroup_size(WG)
fn gemv_xq_out(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let n = wid.x;
    find_inv_rms(n, lid);
    for (var c = lid; c < P.nbq; c += WG) {
        let a = load_block(n, c);
        store_block(n, c, a);
        store_xo(n, c, a);
    }
}

// Block c of vector n written out as act values (the normalised x of the `_out` entries).
fn store_xo(n: u32, c: u32, a: array<vec4<f32>, 8>) {
    for (var j = 0u; j < 8u; j++) {
        let i = 8u * c + j;
        if (i < P.xs) {
            xo[n * P.xs + i] = act4(a[j]);
        }
    }
}

// ---- One block per invocation (the decode path) ----------------------------------------------
// gemv_xq loops over blocks and, with NORM = 1, reads x twice (for the RMS, then to quantise);
// a decode step waits on it four times per layer. Here invocation i of workgroup w takes block
// w·WG + i: its 8 x vectors (and norm weights) are loaded once, all together, and kept in
// registers across the RMS reduction. Grid (⌈nbq / WG⌉, N); with NORM = 1 one workgroup must
// hold the whole vector (nbq ≤ WG), which the caller checks.

// Block c of vector n, RMS-normalised (NORM = 1) across the workgroup; every invocation calls
// it (uniform control flow: the barriers).
fn block_normed(n: u32, c: u32, lid: u32) -> array<vec4<f32>, 8> {
    var a: array<vec4<f32>, 8>;
    var gw: array<vec4<f32>, 8>;
    for (var j = 0u; j < 8u; j++) {
        a[j] = xraw(n, 8u * c + j);
        if (NORM == 1u) {
            gw[j] = gv(8u * c + j);
        }
    }
    if (NORM == 1u) {
        var ss = 0.0;
        for (var j = 0u; j < 8u; j++) {
            ss += dot(a[j], a[j]);
        }
        let r = rms_inv(wg_sum(lid, ss));
        for (var j = 0u; j < 8u; j++) {
            a[j] *= gw[j] * r;
        }
    }
    return a;
}

@compute @workgroup_size(WG)
fn gemv_xq1(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let n = wid.y;
    let c = wid.x * WG + lid;
    let a = block_normed(n, c, lid);
    if (c < P.nbq) {
        store_block(n, c, a);
    }
}

@compute @workgroup_size(WG)
fn gemv_xq1_out(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let n = wid.y;
    let c = wid.x * WG + lid;
    let a = block_normed(n, c, lid);
    if (c < P.nbq) {
        store_block(n, c, a);
        store_xo(n, c, a);
    }
}
