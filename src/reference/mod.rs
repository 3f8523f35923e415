//! Plain CPU references for every kernel, written for clarity, accumulated in f64.
//! Inputs are the values the GPU sees (already rounded to f16 where the GPU stores f16).

pub mod attention;
pub mod conv;
pub mod elementwise;
pub mod embedding;
pub mod norm;
pub mod rope;
pub mod rvq;
pub mod sampling;

/// `y = W x (+ b)`, W row-major (m, k).
pub fn gemv(w: &[f32], m: usize, k: usize, x: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    (0..m)
        .map(|r| {
            let row = &w[r * k..(r + 1) * k];
            let mut acc: f64 = row.iter().zip(x).map(|(a, b)| *a as f64 * *b as f64).sum();
            if let Some(b) = bias {
                acc += b[r] as f64;
            }
            acc as f32
        })
        .collect()
}

/// RMSNorm over rows of length `cols`.
pub fn rmsnorm(x: &[f32], cols: usize, w: &[f32], eps: f32) -> Vec<f32> {
    x.chunks(cols)
        .flat_map(|row| {
            let ms = row.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / cols as f64;
            let inv = 1.0 / (ms + eps as f64).sqrt();
            row.iter()
                .zip(w)
                .map(move |(v, g)| (*v as f64 * inv * *g as f64) as f32)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Softmax over rows of length `cols`.
pub fn softmax(x: &[f32], cols: usize) -> Vec<f32> {
    x.chunks(cols)
        .flat_map(|row| {
            let m = row.iter().fold(f64::NEG_INFINITY, |a, v| a.max(*v as f64));
            let e: Vec<f64> = row.iter().map(|v| (*v as f64 - m).exp()).collect();
            let s: f64 = e.iter().sum();
            e.into_iter()
                .map(move |v| (v / s) as f32)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// SiLU (x·σ(x)).
pub fn silu(x: f32) -> f32 {
    let x = x as f64;
    (x / (1.0 + (-x).exp())) as f32
}

/// Exact GELU, 0.5·x·(1 + erf(x/√2)), with erf from a high-precision series/continued fraction.
pub fn gelu(x: f32) -> f32 {
    let x = x as f64;
    (0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2))) as f32
}

/// erf to ~1e-15 (Taylor series for |x| < 3, asymptotic complement beyond).
pub fn erf(x: f64) -> f64 {
    let a = x.abs();
    let r = if a < 3.0 {
        // erf(x) = 2/√π Σ (−1)^n x^(2n+1) / (n! (2n+1))
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
        // erfc(x) ≈ e^(−x²)/(x√π) · (1 − 1/(2x²) + 3/(4x⁴) − 15/(8x⁶))
        let x2 = a * a;
        let series = 1.0 - 1.0 / (2.0 * x2) + 3.0 / (4.0 * x2 * x2) - 15.0 / (8.0 * x2 * x2 * x2);
        1.0 - (-x2).exp() / (a * std::f64::consts::PI.sqrt()) * series
    };
    r.copysign(x)
}
