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

/// x quantised as gemv_xq.wgsl does: per block of 32, scale d = max|x|/127,
/// q = ⌊0.5 + 127·clamp(x/max|x|, −1, 1)⌋, and the exact block sum. Returns (q, d, sum) per block.
/// `pack4x8snorm` may round an exact tie either way (SPIR-V leaves it to the implementation),
/// and FMA contraction moves near-ties: [`gemv_i8`] reports how far that can move each output.
pub fn quantise_x_i8(x: &[f32]) -> Vec<([i32; 32], f32, f32)> {
    x.chunks(32)
        .map(|blk| {
            let amax = blk.iter().fold(0f32, |a, v| a.max(v.abs()));
            let inv = if amax > 0.0 { 1.0 / amax } else { 0.0 };
            let mut q = [0i32; 32];
            for (qi, v) in q.iter_mut().zip(blk) {
                *qi = (0.5 + 127.0 * (v * inv).clamp(-1.0, 1.0)).floor() as i32;
            }
            (q, amax / 127.0, blk.iter().sum())
        })
        .collect()
}

/// The int8-activation product of gemv_i8.wgsl: `W` given as its q4/q8 blocks (`tensor::quant`
/// layouts), x quantised by [`quantise_x_i8`]; integer block dots, f64 accumulation.
/// Returns (y, slack): slack[r] bounds the change of y[r] if every x element within 1e-3 of a
/// rounding tie were rounded the other way.
pub fn gemv_i8(q: &crate::tensor::quant::QuantMatrix, q4: bool, x: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let nb = q.blocks_per_row();
    let xb = quantise_x_i8(x);
    // elements whose 127·x/max|x| + 0.5 lies within 1e-3 of an integer
    let near_tie: Vec<bool> = x
        .chunks(32)
        .flat_map(|blk| {
            let amax = blk.iter().fold(0f32, |a, v| a.max(v.abs()));
            let inv = if amax > 0.0 { 1.0 / amax } else { 0.0 };
            blk.iter()
                .map(move |v| {
                    let t = 0.5 + 127.0 * (v * inv).clamp(-1.0, 1.0) as f64;
                    (t - t.round()).abs() < 1e-3
                })
                .collect::<Vec<_>>()
        })
        .collect();
    (0..q.rows)
        .map(|r| {
            let mut acc = 0f64;
            let mut slack = 0f64;
            for (b, (xq, d, sum)) in xb.iter().enumerate() {
                let blk = r * nb + b;
                let mut dot = 0i64;
                let mut amb = 0i64;
                for (i, xi) in xq.iter().enumerate() {
                    let w = if q4 {
                        let word = q.data[blk * 4 + i / 8];
                        let j = i % 8;
                        ((word >> (8 * (j % 4) + 4 * (j / 4))) & 0xf) as i64
                    } else {
                        let word = q.data[blk * 8 + i / 4];
                        ((word >> (8 * (i % 4))) & 0xff) as u8 as i8 as i64
                    };
                    dot += w * *xi as i64;
                    if near_tie.get(b * 32 + i).copied().unwrap_or(false) {
                        amb += w.abs();
                    }
                }
                let s = if q4 {
                    let sm = q.scales[blk];
                    let s = half::f16::from_bits(sm as u16).to_f32() as f64;
                    let m = half::f16::from_bits((sm >> 16) as u16).to_f32() as f64;
                    acc += s * *d as f64 * dot as f64 + m * *sum as f64;
                    s
                } else {
                    let sw = q.scales[blk / 2];
                    let bits = if blk.is_multiple_of(2) {
                        sw as u16
                    } else {
                        (sw >> 16) as u16
                    };
                    let s = half::f16::from_bits(bits).to_f32() as f64;
                    acc += s * *d as f64 * dot as f64;
                    s
                };
                slack += s.abs() * *d as f64 * amb as f64;
            }
            (acc as f32, slack as f32)
        })
        .unzip()
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

/// The gather of `ops::relayout`: writes box `s` of `src` into `dst` (values as f32; the
/// caller rounds to f16 where the GPU stores f16).
pub fn relayout(src: &[f32], dst: &mut [f32], s: &crate::ops::Strided) {
    for x in 0..s.x {
        for y in 0..s.y {
            for z in 0..s.z {
                let v = if z < s.zvalid {
                    src[s.sbase + x * s.sx + y * s.sy + z * s.sz]
                } else {
                    0.0
                };
                dst[s.dbase + x * s.dx + y * s.dy + z] = v;
            }
        }
    }
}
