// gemm_tile64 — the 64 × 64 tile loaders shared by gemm.wgsl's `gemm` and gemm_splitk.wgsl:
// per K step of TK = 32, W rows [m0, m0+64) dequantised into `wt` and x rows [n0, n0+64) into
// `xt`, both k-major (`[k][row / 4]` vec4s), zeros outside the matrices, and `tile_acc`, the
// K loop of one thread's 4 × 4 block. The including file declares the bindings `w`, `s`, `x`
// and a uniform `P` with m, k, nb, n, and the override FMT.

const TM: u32 = 64u; // x rows per tile
const TN: u32 = 64u; // W rows per tile
const TK: u32 = 32u; // k per step

var<workgroup> xt: array<vec4<f32>, 512>; // [k][x row / 4]
var<workgroup> wt: array<vec4<f32>, 512>; // [k][W row / 4]

fn put_w(k: u32, row: u32, v: f32) {
    wt[k * 16u + row / 4u][row % 4u] = v;
}

// Dequantises W rows [m0, m0+64) × k [k0, k0+32) into wt (rows ≥ M and k ≥ K as 0).
fn load_w(t: u32, m0: u32, k0: u32) {
    if (FMT == 2u) {
        load_w_q4(t, m0, k0);
    } else if (FMT == 1u) {
        load_w_q8(t, m0, k0);
    } else {
        load_w_f16(t, m0, k0);
    }
}

fn load_w_q4(t: u32, m0: u32, k0: u32) {
    let kb = k0 / TK;
    {
        let row = t / 4u;
        let j = t % 4u;
        let gm = m0 + row;
        var lo = vec4<f32>(0.0);
        var hi = vec4<f32>(0.0);
        if (gm < P.m && kb < P.nb) {
            let b = gm * P.nb + kb;
            let sm = unpack2x16float(s[b]);
            let word = w[b * 4u + j];
            lo = unpack4x8unorm(word & 0x0F0F0F0Fu) * (sm.x * 255.0) + sm.y;
            hi = unpack4x8unorm((word >> 4u) & 0x0F0F0F0Fu) * (sm.x * 255.0) + sm.y;
        }
        for (var b = 0u; b < 4u; b++) {
            let ka = 8u * j + b;
            let kh = ka + 4u;
            put_w(ka, row, select(0.0, lo[b], k0 + ka < P.k));
            put_w(kh, row, select(0.0, hi[b], k0 + kh < P.k));
        }
    }
}

fn load_w_q8(t: u32, m0: u32, k0: u32) {
    let kb = k0 / TK;
    for (var i = 0u; i < 2u; i++) {
        let idx = t + i * 256u; // 64 rows × 8 words
        let row = idx / 8u;
        let j = idx % 8u;
        let gm = m0 + row;
        var v = vec4<f32>(0.0);
        if (gm < P.m && kb < P.nb) {
            let b = gm * P.nb + kb;
            let sw = unpack2x16float(s[b / 2u]);
            let sc = select(sw.x, sw.y, (b & 1u) == 1u) * 127.0;
            v = unpack4x8snorm(w[b * 8u + j]) * sc;
        }
        for (var c = 0u; c < 4u; c++) {
            let kk = 4u * j + c;
            put_w(kk, row, select(0.0, v[c], k0 + kk < P.k));
        }
    }
}

fn load_w_f16(t: u32, m0: u32, k0: u32) {
    for (var i = 0u; i < 4u; i++) {
        let idx = t + i * 256u; // 64 rows × 16 words (2 halves each)
        let row = idx / 16u;
        let j = idx % 16u;
        let gm = m0 + row;
        let kk = 2u * j;
        var v = vec2<f32>(0.0);
        // f16 rows are padded to nb·8 elements; read only inside the row
        if (gm < P.m && k0 + kk < P.nb * 8u) {
            v = unpack2x16float(w[gm * P.nb * 4u + (k0 + kk) / 2u]);
        }
        put_w(kk, row, select(0.0, v.x, k0 + kk < P.k));
        put_w(kk + 1u, row, select(0.0, v.y, k0 + kk + 1u < P.k));
    }
}

fn load_x(t: u32, n0: u32, k0: u32) {
    let k4 = P.k / 4u;
    for (var i = 0u; i < 2u; i++) {
        let idx = t + i * 256u; // 64 rows × 8 vec4
        let row = idx / 8u;
        let q = idx % 8u;
        let gn = n0 + row;
        let kq = k0 / 4u + q;
        var v = vec4<f32>(0.0);
        if (gn < P.n && kq < k4) {
            v = vec4<f32>(x[gn * k4 + kq]);
        }
        for (var c = 0u; c < 4u; c++) {
            xt[(4u * q + c) * 16u + row / 4u][row % 4u] = v[c];
        }
    }
}

// A thread's 4 × 4 block: x rows ty·4 + r (field r_r) against W rows tx·4 .. +4 (the vec4).
struct Acc4 {
    r0: vec4<f32>,
    r1: vec4<f32>,
    r2: vec4<f32>,
    r3: vec4<f32>,
}

// Thread (tx, ty) of the 64 × 64 tile at (m0, n0), summed over k in [k_lo, k_hi) (k_lo a
// multiple of TK; both uniform: the loop has barriers).
fn tile_acc(tx: u32, ty: u32, m0: u32, n0: u32, k_lo: u32, k_hi: u32) -> Acc4 {
    let t = ty * 16u + tx;
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    for (var k0 = k_lo; k0 < k_hi; k0 += TK) {
        load_w(t, m0, k0);
        load_x(t, n0, k0);
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            let xa = xt[kk * 16u + ty];
            let wb = wt[kk * 16u + tx];
            a0 += xa.x * wb;
            a1 += xa.y * wb;
            a2 += xa.z * wb;
            a3 += xa.w * wb;
        }
        workgroupBarrier();
    }
    return Acc4(a0, a1, a2, a3);
}
