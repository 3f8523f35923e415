//! Conv references: direct loops over the PyTorch formulas, time-major (T, C) activations,
//! PyTorch weight layouts, f64 accumulation.

/// Conv1d: `x` (tin, cin), `w` (cout, cin/groups, k) → (tout, cout) with
/// `y[t, co] = b[co] + Σ_ci Σ_j w[co, ci, j] · x[t·s − pad_l + j·d, g·cin_g + ci]`.
#[allow(clippy::too_many_arguments)]
pub fn conv1d(
    x: &[f32],
    tin: usize,
    cin: usize,
    w: &[f32],
    cout: usize,
    k: usize,
    bias: Option<&[f32]>,
    stride: usize,
    pad_l: usize,
    pad_r: usize,
    dil: usize,
    groups: usize,
) -> Vec<f32> {
    let (cin_g, cout_g) = (cin / groups, cout / groups);
    let tout = (tin + pad_l + pad_r - dil * (k - 1) - 1) / stride + 1;
    let mut y = vec![0.0f32; tout * cout];
    for t in 0..tout {
        for co in 0..cout {
            let g = co / cout_g;
            let mut acc = bias.map_or(0.0, |b| b[co] as f64);
            for ci in 0..cin_g {
                for j in 0..k {
                    let ti = (t * stride + j * dil) as i64 - pad_l as i64;
                    if ti >= 0 && (ti as usize) < tin {
                        acc += w[(co * cin_g + ci) * k + j] as f64
                            * x[ti as usize * cin + g * cin_g + ci] as f64;
                    }
                }
            }
            y[t * cout + co] = acc as f32;
        }
    }
    y
}

/// ConvTranspose1d: `x` (tin, cin), `w` (cin, cout/groups, k) → (tout, cout), scattering
/// `y[ti·s − p + j·d, g·cout_g + co] += w[ci, co, j] · x[ti, ci]` (then + b).
#[allow(clippy::too_many_arguments)]
pub fn conv_transpose1d(
    x: &[f32],
    tin: usize,
    cin: usize,
    w: &[f32],
    cout: usize,
    k: usize,
    bias: Option<&[f32]>,
    stride: usize,
    padding: usize,
    output_padding: usize,
    dil: usize,
    groups: usize,
) -> Vec<f32> {
    let (cin_g, cout_g) = (cin / groups, cout / groups);
    let tout = (tin - 1) * stride + dil * (k - 1) + output_padding + 1 - 2 * padding;
    let mut acc = vec![0.0f64; tout * cout];
    for ti in 0..tin {
        for ci in 0..cin {
            let g = ci / cin_g;
            for co in 0..cout_g {
                for j in 0..k {
                    let t = (ti * stride + j * dil) as i64 - padding as i64;
                    if t >= 0 && (t as usize) < tout {
                        acc[t as usize * cout + g * cout_g + co] +=
                            w[(ci * cout_g + co) * k + j] as f64 * x[ti * cin + ci] as f64;
                    }
                }
            }
        }
    }
    acc.iter()
        .enumerate()
        .map(|(i, v)| (v + bias.map_or(0.0, |b| b[i % cout] as f64)) as f32)
        .collect()
}

/// AvgPool1d(kernel = stride = k) over time of `x` (t, c) → (⌊t/k⌋, c).
pub fn avgpool1d(x: &[f32], t: usize, c: usize, k: usize) -> Vec<f32> {
    (0..t / k)
        .flat_map(|o| {
            (0..c).map(move |ch| {
                ((0..k).map(|j| x[(o * k + j) * c + ch] as f64).sum::<f64>() / k as f64) as f32
            })
        })
        .collect()
}
