// Activation functions shared by the product kernels (gemv, gemv_i8, gemm), the elementwise
// kernels and the LayerNorm.

fn erf_approx(v: f32) -> f32 {
    // Abramowitz–Stegun 7.1.26 (|error| ≤ 1.5e-7)
    let a = abs(v);
    let t = 1.0 / (1.0 + 0.3275911 * a);
    let p = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    return sign(v) * (1.0 - p * exp(-a * a));
}

fn silu(v: f32) -> f32 {
    return v / (1.0 + exp(-v));
}

// Mish(x) = x · tanh(softplus(x)) = x · n / (n + 2), n = eˣ(eˣ + 2): exact, and stable for
// negative x (no log(1 + tiny)); for x ≥ 20, tanh(softplus(x)) = 1 in f32.
fn mish(x: f32) -> f32 {
    if (x >= 20.0) {
        return x;
    }
    let e = exp(x);
    let n = e * (e + 2.0);
    return x * n / (n + 2.0);
}
