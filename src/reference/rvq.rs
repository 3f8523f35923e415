//! CPU reference of the bridge's residual VQ (spec §4), 8 levels.
//! Distances in f64 with the reference's formula; residual updates in f32 (as the GPU does;
//! the original casts the residual to bf16 between levels, a documented deviation).

/// Result of [`encode`].
pub struct RvqEncoded {
    /// (T, 8) codes.
    pub codes: Vec<u32>,
    /// (8, T, Dq): level i's residual after subtracting its codeword.
    pub residuals: Vec<f32>,
    /// (T, 8): (second-best − best) / second-best distance, the relative margin of each choice
    /// (1.0 when the codebook has one entry).
    pub margins: Vec<f64>,
}

/// `x (T, Dq)`, `codebooks` = the 8 codebooks concatenated, `sizes` = N_i.
pub fn encode(x: &[f32], dq: usize, codebooks: &[f32], sizes: &[usize]) -> RvqEncoded {
    let t = x.len() / dq;
    let levels = sizes.len();
    let mut codes = vec![0u32; t * levels];
    let mut residuals = vec![0f32; levels * t * dq];
    let mut margins = vec![0f64; t * levels];
    for f in 0..t {
        let mut r = x[f * dq..(f + 1) * dq].to_vec();
        let mut row0 = 0;
        for (i, &n) in sizes.iter().enumerate() {
            let rr: f64 = r.iter().map(|v| (*v as f64).powi(2)).sum();
            let (mut best, mut second) = ((f64::INFINITY, 0usize), f64::INFINITY);
            for j in 0..n {
                let c = &codebooks[(row0 + j) * dq..(row0 + j + 1) * dq];
                let cc: f64 = c.iter().map(|v| (*v as f64).powi(2)).sum();
                let rc: f64 = r.iter().zip(c).map(|(a, b)| *a as f64 * *b as f64).sum();
                let dist = (rr + cc - 2.0 * rc).max(0.0).sqrt();
                if dist < best.0 {
                    second = best.0;
                    best = (dist, j);
                } else if dist < second {
                    second = dist;
                }
            }
            let code = best.1;
            codes[f * levels + i] = code as u32;
            margins[f * levels + i] = if second.is_finite() && second > 0.0 {
                (second - best.0) / second
            } else {
                1.0
            };
            let c = &codebooks[(row0 + code) * dq..(row0 + code + 1) * dq];
            for (a, b) in r.iter_mut().zip(c) {
                *a -= *b;
            }
            residuals[(i * t + f) * dq..(i * t + f + 1) * dq].copy_from_slice(&r);
            row0 += n;
        }
    }
    RvqEncoded {
        codes,
        residuals,
        margins,
    }
}

/// `e_t = Σ_{i=7..0} C_i[codes[t, i]]`, accumulated in f32 in that order (spec §4 decode:
/// the order is part of the spec, so this reference does not use f64).
pub fn decode(codes: &[u32], dq: usize, codebooks: &[f32], sizes: &[usize]) -> Vec<f32> {
    let levels = sizes.len();
    let row0: Vec<usize> = sizes
        .iter()
        .scan(0, |acc, &n| {
            let r = *acc;
            *acc += n;
            Some(r)
        })
        .collect();
    codes
        .chunks(levels)
        .flat_map(|frame| {
            let mut e = vec![0f32; dq];
            for i in (0..levels).rev() {
                let c = &codebooks[(row0[i] + frame[i] as usize) * dq..][..dq];
                for (a, b) in e.iter_mut().zip(c) {
                    *a += *b;
                }
            }
            e
        })
        .collect()
}
