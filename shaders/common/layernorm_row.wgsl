// The LayerNorm of one row, y = (x − mean) / sqrt(var + eps) · w + b, in f32: the mean, then the
// mean of squared deviations (biased variance, as torch). Shared by layernorm.wgsl and
// gemm_reduce_ln.wgsl, so the two agree to the bit. The including file declares WG (a power of
// two ≤ 256), `red: array<f32, ≥ WG>` in workgroup memory, the f32 bindings `w` and `b`, and
// defines ln_in(i) -> f32 (input element i) and ln_out(i, v) (stores output element i).

// Sum of `v` over the workgroup (every thread reaches every barrier).
fn wg_sum(lid: u32, v: f32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            red[lid] += red[lid + s];
        }
        workgroupBarrier();
    }
    let total = red[0];
    workgroupBarrier(); // red is reused by the next call
    return total;
}

// The row of `cols` elements from `base`; every thread of the workgroup calls it.
fn layernorm_row(lid: u32, base: u32, cols: u32, eps: f32) {
    let n = f32(cols);
    var s = 0.0;
    for (var c = lid; c < cols; c += WG) {
        s += ln_in(base + c);
    }
    let mean = wg_sum(lid, s) / n;
    var ss = 0.0;
    for (var c = lid; c < cols; c += WG) {
        let d = ln_in(base + c) - mean;
        ss += d * d;
    }
    let inv = inverseSqrt(wg_sum(lid, ss) / n + eps);
    for (var c = lid; c < cols; c += WG) {
        ln_out(base + c, (ln_in(base + c) - mean) * inv * w[c] + b[c]);
    }
}
