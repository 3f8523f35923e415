// gemm_store — the tiled products' epilogue, shared by gemm.wgsl and gemm_splitk.wgsl: outputs
// (n, m0 .. m0+3) of x row n get bias → activation → residual → store (SwiGLU: the 4 values
// are two (gate, up) pairs, giving outputs m0/2 and m0/2 + 1). The including file declares the
// bindings `bias`, `res`, `y`, a uniform `P` with m, n, flags, the override ACT, and includes
// act_fns.

fn store(n: u32, m0: u32, v: vec4<f32>) {
    if (n >= P.n) {
        return;
    }
    if (ACT == 3u) {
        let m_out = P.m / 2u;
        let o = m0 / 2u;
        if (m0 + 1u < P.m) {
            var a = silu(v.x) * v.y;
            if ((P.flags & 2u) != 0u) { a += f32(res[n * m_out + o]); }
            y[n * m_out + o] = act(a);
        }
        if (m0 + 3u < P.m) {
            var b = silu(v.z) * v.w;
            if ((P.flags & 2u) != 0u) { b += f32(res[n * m_out + o + 1u]); }
            y[n * m_out + o + 1u] = act(b);
        }
        return;
    }
    for (var c = 0u; c < 4u; c++) {
        let m = m0 + c;
        if (m >= P.m) {
            break;
        }
        var o = v[c];
        if ((P.flags & 1u) != 0u) {
            o += f32(bias[m]);
        }
        if (ACT == 1u) {
            o = silu(o);
        } else if (ACT == 2u) {
            o = 0.5 * o * (1.0 + erf_approx(o * 0.70710678118654752));
        }
        if ((P.flags & 2u) != 0u) {
            o += f32(res[n * P.m + m]);
        }
        y[n * P.m + m] = act(o);
    }
}
