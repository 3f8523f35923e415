//! LayerNorm and GroupNorm references (f64, two-pass mean/variance, biased variance as torch).

/// LayerNorm over rows of length `cols`: `(x − mean) / sqrt(var + eps) · w + b`.
pub fn layernorm(x: &[f32], cols: usize, w: &[f32], b: &[f32], eps: f32) -> Vec<f32> {
    x.chunks(cols)
        .flat_map(|row| {
            let n = cols as f64;
            let mean = row.iter().map(|v| *v as f64).sum::<f64>() / n;
            let var = row.iter().map(|v| (*v as f64 - mean).powi(2)).sum::<f64>() / n;
            let inv = 1.0 / (var + eps as f64).sqrt();
            (0..cols)
                .map(|c| ((row[c] as f64 - mean) * inv * w[c] as f64 + b[c] as f64) as f32)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// GroupNorm(`groups`, C) over a time-major `x` (T, C): group g holds channels
/// `[g·C/G, (g+1)·C/G)` of every frame.
pub fn groupnorm(
    x: &[f32],
    t: usize,
    c: usize,
    groups: usize,
    w: &[f32],
    b: &[f32],
    eps: f32,
) -> Vec<f32> {
    let cg = c / groups;
    let mut y = vec![0.0f32; t * c];
    for g in 0..groups {
        let vals = || (0..t).flat_map(move |f| (g * cg..(g + 1) * cg).map(move |ch| (f, ch)));
        let n = (t * cg) as f64;
        let mean = vals().map(|(f, ch)| x[f * c + ch] as f64).sum::<f64>() / n;
        let var = vals()
            .map(|(f, ch)| (x[f * c + ch] as f64 - mean).powi(2))
            .sum::<f64>()
            / n;
        let inv = 1.0 / (var + eps as f64).sqrt();
        for (f, ch) in vals() {
            let v = (x[f * c + ch] as f64 - mean) * inv * w[ch] as f64 + b[ch] as f64;
            y[f * c + ch] = v as f32;
        }
    }
    y
}
