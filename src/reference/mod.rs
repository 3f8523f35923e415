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
