//! RoPE reference (HF `apply_rotary_pos_emb` with `rotate_half`).

/// `x` (T, H, D) at positions `p0 + t`; `inv_freq` (D/2) f32 as HF's buffer. The angle is the
/// f32 product `f32(pos) · inv_freq[i]` (as HF forms it), then cos/sin in f64.
pub fn rope(x: &[f32], t: usize, h: usize, d: usize, inv_freq: &[f32], p0: usize) -> Vec<f32> {
    let half = d / 2;
    let mut y = vec![0.0f32; t * h * d];
    for f in 0..t {
        for hh in 0..h {
            let base = (f * h + hh) * d;
            for i in 0..half {
                let a = ((p0 + f) as f32 * inv_freq[i]) as f64;
                let (s, c) = a.sin_cos();
                let (x1, x2) = (x[base + i] as f64, x[base + i + half] as f64);
                y[base + i] = (x1 * c - x2 * s) as f32;
                y[base + i + half] = (x2 * c + x1 * s) as f32;
            }
        }
    }
    y
}
