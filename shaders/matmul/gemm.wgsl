// gemm — y (N, M) = act(x (N, K) · Wᵀ + bias) + res, for many input rows at once (prefill, the
// audio encoder and decoders): W read once per 64 rows of x instead of once per 4 (gemv).
// Same weight layouts, scales, epilogue semantics and bindings as gemv.wgsl (read it first).
//
// @binding(0) w:      weight data as u32 words (gemv.wgsl's vec4<u32> blocks, flattened)
// @binding(1) s:      scales (q8: f16 pairs per u32; q4: (scale, min) f16 per u32; f16: unused)
// @binding(2) x:      (N, K/4) act4   rows of x (K a multiple of 4)
// @binding(3) bias:   (M,) act        read when P.flags & 1
// @binding(4) res:    (N, M_out) act  added last when P.flags & 2
// @binding(5) y:      (N, M_out) act  M_out = M, or M/2 with SwiGLU
// @binding(6) P:      uniform Params
//
// Tiling: a workgroup of 16×16 threads owns a 64 (x rows) × 64 (W rows) output tile; each
// thread accumulates a 4×4 block in named vec4 registers. Per K step of 32 (one q4/q8 block,
// four f16 blocks) the workgroup dequantises the W tile and loads the x tile into shared
// memory, both k-major (`[k][row]`) so the inner loop reads one vec4 of each per k. 2 × 8 KiB
// of shared memory: within WebGPU's default 16 KiB. SwiGLU (ACT = 3) works on interleaved
// gate/up rows: a thread's 4 W rows are two (gate, up) pairs, so it is fused here too.

struct Params {
    m: u32,      // W rows
    k: u32,      // columns (logical)
    nb: u32,     // blocks per row (q: K/32 rounded up; f16: stride/8)
    flags: u32,  // bit 0: bias, bit 1: residual
    n: u32,      // rows of x
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<storage, read> w: array<u32>;
@group(0) @binding(1) var<storage, read> s: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<act4>;
@group(0) @binding(3) var<storage, read> bias: array<act>;
@group(0) @binding(4) var<storage, read> res: array<act>;
@group(0) @binding(5) var<storage, read_write> y: array<act>;
@group(0) @binding(6) var<uniform> P: Params;

override ACT: u32 = 0; // 0 none, 1 SiLU, 2 GELU (erf), 3 SwiGLU over row pairs
override FMT: u32 = 0; // weight format: 0 f16, 1 q8, 2 q4

// #include act_fns

// #include gemm_tile64

// #include gemm_store

@compute @workgroup_size(16, 16)
fn gemm(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wg: vec3<u32>) {
    let tx = lid.x; // W rows tx*4 .. +4
    let ty = lid.y; // x rows ty*4 .. +4
    let m0 = wg.x * TN;
    let n0 = wg.y * TM;
    let a = tile_acc(tx, ty, m0, n0, 0u, P.k);
    let mm = m0 + tx * 4u;
    store(n0 + ty * 4u, mm, a.r0);
    store(n0 + ty * 4u + 1u, mm, a.r1);
    store(n0 + ty * 4u + 2u, mm, a.r2);
    store(n0 + ty * 4u + 3u, mm, a.r3);
}

// ---- gemm_big: 128 × 128 tiles, K steps of 16, 8 × 8 outputs per thread -------------------
// Twice the arithmetic per shared-memory read of `gemm`, for N ≥ 128. Same shared arrays
// (128 rows × 16 k = 512 vec4 each). A thread owns x rows {ty·4 + r, 64 + ty·4 + r} and W rows
// {tx·4 + c, 64 + tx·4 + c}, so neighbouring threads read neighbouring vec4s (no bank conflicts).

fn put_w2(k: u32, row: u32, v: f32) {
    wt[k * 32u + row / 4u][row % 4u] = v;
}

fn load_w2(t: u32, m0: u32, k0: u32) {
    let kb = k0 / 32u;
    let h = (k0 / 16u) % 2u; // which half of the 32-wide q block
    if (FMT == 2u) {
        // 128 rows × 2 words (words 2h, 2h+1 of the block hold k 16h .. 16h+15)
        let row = t / 2u;
        let jj = t % 2u;
        let gm = m0 + row;
        var lo = vec4<f32>(0.0);
        var hi = vec4<f32>(0.0);
        if (gm < P.m && kb < P.nb) {
            let b = gm * P.nb + kb;
            let sm = unpack2x16float(s[b]);
            let word = w[b * 4u + 2u * h + jj];
            lo = unpack4x8unorm(word & 0x0F0F0F0Fu) * (sm.x * 255.0) + sm.y;
            hi = unpack4x8unorm((word >> 4u) & 0x0F0F0F0Fu) * (sm.x * 255.0) + sm.y;
        }
        for (var b = 0u; b < 4u; b++) {
            let ka = 8u * jj + b;
            let kh = ka + 4u;
            put_w2(ka, row, select(0.0, lo[b], k0 + ka < P.k));
            put_w2(kh, row, select(0.0, hi[b], k0 + kh < P.k));
        }
    } else if (FMT == 1u) {
        for (var i = 0u; i < 2u; i++) {
            let idx = t + i * 256u; // 128 rows × 4 words
            let row = idx / 4u;
            let j = idx % 4u;
            let gm = m0 + row;
            var v = vec4<f32>(0.0);
            if (gm < P.m && kb < P.nb) {
                let b = gm * P.nb + kb;
                let sw = unpack2x16float(s[b / 2u]);
                let sc = select(sw.x, sw.y, (b & 1u) == 1u) * 127.0;
                v = unpack4x8snorm(w[b * 8u + 4u * h + j]) * sc;
            }
            for (var c = 0u; c < 4u; c++) {
                let kk = 4u * j + c;
                put_w2(kk, row, select(0.0, v[c], k0 + kk < P.k));
            }
        }
    } else {
        for (var i = 0u; i < 4u; i++) {
            let idx = t + i * 256u; // 128 rows × 8 words
            let row = idx / 8u;
            let j = idx % 8u;
            let gm = m0 + row;
            let kk = 2u * j;
            var v = vec2<f32>(0.0);
            if (gm < P.m && k0 + kk < P.nb * 8u) {
                v = unpack2x16float(w[gm * P.nb * 4u + (k0 + kk) / 2u]);
            }
            put_w2(kk, row, select(0.0, v.x, k0 + kk < P.k));
            put_w2(kk + 1u, row, select(0.0, v.y, k0 + kk + 1u < P.k));
        }
    }
}

fn load_x2(t: u32, n0: u32, k0: u32) {
    let k4 = P.k / 4u;
    for (var i = 0u; i < 2u; i++) {
        let idx = t + i * 256u; // 128 rows × 4 vec4
        let row = idx / 4u;
        let q = idx % 4u;
        let gn = n0 + row;
        let kq = k0 / 4u + q;
        var v = vec4<f32>(0.0);
        if (gn < P.n && kq < k4) {
            v = vec4<f32>(x[gn * k4 + kq]);
        }
        for (var c = 0u; c < 4u; c++) {
            xt[(4u * q + c) * 32u + row / 4u][row % 4u] = v[c];
        }
    }
}

@compute @workgroup_size(16, 16)
fn gemm_big(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wg: vec3<u32>) {
    let tx = lid.x;
    let ty = lid.y;
    let t = ty * 16u + tx;
    let m0 = wg.x * 128u;
    let n0 = wg.y * 128u;
    // a{r}{h}: x row (ty·4 + r) [+64 for r ≥ 4], W rows tx·4 .. +4 (h = 0) or 64 + tx·4 .. (h = 1)
    var a00 = vec4<f32>(0.0); var a01 = vec4<f32>(0.0);
    var a10 = vec4<f32>(0.0); var a11 = vec4<f32>(0.0);
    var a20 = vec4<f32>(0.0); var a21 = vec4<f32>(0.0);
    var a30 = vec4<f32>(0.0); var a31 = vec4<f32>(0.0);
    var a40 = vec4<f32>(0.0); var a41 = vec4<f32>(0.0);
    var a50 = vec4<f32>(0.0); var a51 = vec4<f32>(0.0);
    var a60 = vec4<f32>(0.0); var a61 = vec4<f32>(0.0);
    var a70 = vec4<f32>(0.0); var a71 = vec4<f32>(0.0);
    for (var k0 = 0u; k0 < P.k; k0 += 16u) {
        load_w2(t, m0, k0);
        load_x2(t, n0, k0);
        workgroupBarrier();
        for (var kk = 0u; kk < 16u; kk++) {
            let xa = xt[kk * 32u + ty];
            let xb = xt[kk * 32u + 16u + ty];
            let w0 = wt[kk * 32u + tx];
            let w1 = wt[kk * 32u + 16u + tx];
            a00 += xa.x * w0; a01 += xa.x * w1;
            a10 += xa.y * w0; a11 += xa.y * w1;
            a20 += xa.z * w0; a21 += xa.z * w1;
            a30 += xa.w * w0; a31 += xa.w * w1;
            a40 += xb.x * w0; a41 += xb.x * w1;
            a50 += xb.y * w0; a51 += xb.y * w1;
            a60 += xb.z * w0; a61 += xb.z * w1;
            a70 += xb.w * w0; a71 += xb.w * w1;
        }
        workgroupBarrier();
    }
    let r0 = n0 + ty * 4u;
    let r1 = n0 + 64u + ty * 4u;
    let c0 = m0 + tx * 4u;
    let c1 = m0 + 64u + tx * 4u;
    store(r0, c0, a00); store(r0, c1, a01);
    store(r0 + 1u, c0, a10); store(r0 + 1u, c1, a11);
    store(r0 + 2u, c0, a20); store(r0 + 2u, c1, a21);
    store(r0 + 3u, c0, a30); store(r0 + 3u, c1, a31);
    store(r1, c0, a40); store(r1, c1, a41);
    store(r1 + 1u, c0, a50); store(r1 + 1u, c1, a51);
    store(r1 + 2u, c0, a60); store(r1 + 2u, c1, a61);
    store(r1 + 3u, c0, a70); store(r1 + 3u, c1, a71);
}
