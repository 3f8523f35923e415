//! Activation references in f64 (erf from a series / continued fraction to ~1e-15).

/// erf(x) in f64: Taylor series for |x| < 3, asymptotic 1 − erfc (continued fraction) beyond.
pub fn erf(x: f64) -> f64 {
    let a = x.abs();
    let r = if a < 3.0 {
        // erf(x) = 2/√π Σ (−1)ⁿ x^(2n+1) / (n! (2n+1))
        let mut term = a;
        let mut sum = a;
        let mut n = 0.0;
        while term.abs() > 1e-17 * sum.abs() {
            n += 1.0;
            term *= -a * a / n;
            sum += term / (2.0 * n + 1.0);
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        // erfc(x) = exp(−x²)/√π · 1/(x + 1/2/(x + 1/(x + 3/2/(x + 2/(x + …)))))
        let mut f = a;
        for k in (1..60).rev() {
            f = a + (k as f64 / 2.0) / f;
        }
        1.0 - (-a * a).exp() / std::f64::consts::PI.sqrt() / f
    };
    r.copysign(x)
}

pub fn gelu(x: f64) -> f64 {
    0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2))
}

pub fn silu(x: f64) -> f64 {
    x / (1.0 + (-x).exp())
}

pub fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

pub fn mish(x: f64) -> f64 {
    x * softplus(x).tanh()
}

pub fn elu(x: f64) -> f64 {
    if x > 0.0 {
        x
    } else {
        x.exp_m1()
    }
}

pub fn leaky_relu(x: f64, slope: f64) -> f64 {
    if x >= 0.0 {
        x
    } else {
        slope * x
    }
}

/// Snake on (T, C): `x + 1/(α[c] + 1e-9) · sin²(α[c]·x)`; the sine's argument is the f32
/// product the GPU forms.
pub fn snake(x: &[f32], alpha: &[f32]) -> Vec<f32> {
    let c = alpha.len();
    x.iter()
        .enumerate()
        .map(|(i, v)| {
            let al = alpha[i % c];
            let s = ((al * v) as f64).sin();
            (*v as f64 + s * s / (al as f64 + 1e-9)) as f32
        })
        .collect()
}

/// `SiLU(gate) · up` element by element.
pub fn swiglu(gate: &[f32], up: &[f32]) -> Vec<f32> {
    gate.iter()
        .zip(up)
        .map(|(g, u)| (silu(*g as f64) * *u as f64) as f32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_known_values() {
        // erf(0.5), erf(1), erf(2), erf(3.5) from tables (15 digits)
        for (x, want) in [
            (0.5, 0.520499877813047),
            (1.0, 0.842700792949715),
            (2.0, 0.995322265018953),
            (3.5, 0.999999256901628),
        ] {
            assert!((erf(x) - want).abs() < 1e-14, "erf({x}) = {}", erf(x));
            assert!((erf(-x) + want).abs() < 1e-14);
        }
    }
}
