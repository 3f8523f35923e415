//! Block quantisation formats for weight matrices (CPU side: quantise, dequantise, pack).
//!
//! Chosen by measured error on realistic weight distributions (ARCHITECTURE.md, "Quantisation"):
//! - **Q8**: symmetric, blocks of 32 along the input dimension, one f16 scale per block;
//!   `w ≈ s·q`, q ∈ [−127, 127]. 8.5 bits per weight; ≈0.5 % relative RMS error.
//! - **Q4**: asymmetric, blocks of 32, f16 scale and f16 minimum per block; `w ≈ s·q + m`,
//!   q ∈ [0, 15]. 5.0 bits per weight; ≈8 % relative RMS error (symmetric Q4 at 4.5 bits: ≈10 %).
//!
//! GPU layout of a `(rows, cols)` matrix, `cols` padded with zeros to `kp = ⌈cols/32⌉·32`,
//! `nb = kp/32` blocks per row, block `(r, b)` at index `r·nb + b`:
//! - Q8 `data`: 8 u32 per block; u32 `j` holds weights `4j..4j+3` as i8, lowest byte first.
//!   `scales`: one f16 per block, two per u32 (block `i` in the low half when `i` is even).
//! - Q4 `data`: 4 u32 per block; u32 `j` holds weights `8j..8j+7`: byte `b` (lowest first)
//!   = `q[8j+b] | q[8j+4+b] << 4`, so `word & 0x0F0F0F0F` are weights `8j..8j+3` and
//!   `(word >> 4) & 0x0F0F0F0F` are `8j+4..8j+7` (one `unpack4x8unorm` each on the GPU).
//!   `scales`: one u32 per block = (scale f16 low half, min f16 high half).

use half::f16;

pub const QBLOCK: usize = 32;

/// A quantised matrix on the CPU, in exactly the GPU layout.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantMatrix {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<u32>,
    pub scales: Vec<u32>,
}

impl QuantMatrix {
    pub fn blocks_per_row(&self) -> usize {
        self.cols.div_ceil(QBLOCK)
    }
}

fn padded_block(row: &[f32], b: usize) -> [f32; QBLOCK] {
    let mut blk = [0f32; QBLOCK];
    for (i, v) in blk.iter_mut().enumerate() {
        *v = row.get(b * QBLOCK + i).copied().unwrap_or(0.0);
    }
    blk
}

/// Q8: symmetric, s = max|w| / 127 (rounded to f16), q = round(w / s).
pub fn quantize_q8(w: &[f32], rows: usize, cols: usize) -> QuantMatrix {
    let nb = cols.div_ceil(QBLOCK);
    let mut data = Vec::with_capacity(rows * nb * 8);
    let mut scales16 = Vec::with_capacity(rows * nb);
    for r in 0..rows {
        let row = &w[r * cols..(r + 1) * cols];
        for b in 0..nb {
            let blk = padded_block(row, b);
            let amax = blk.iter().fold(0f32, |a, v| a.max(v.abs()));
            let s = f16::from_f32(amax / 127.0);
            let sf = s.to_f32();
            let inv = if sf > 0.0 { 1.0 / sf } else { 0.0 };
            for j in 0..8 {
                let mut word = 0u32;
                for i in 0..4 {
                    let q = (blk[4 * j + i] * inv).round().clamp(-127.0, 127.0) as i8;
                    word |= (q as u8 as u32) << (8 * i);
                }
                data.push(word);
            }
            scales16.push(s);
        }
    }
    let scales = scales16
        .chunks(2)
        .map(|p| {
            let lo = p[0].to_bits() as u32;
            let hi = p.get(1).map(|h| h.to_bits() as u32).unwrap_or(0);
            lo | (hi << 16)
        })
        .collect();
    QuantMatrix {
        rows,
        cols,
        data,
        scales,
    }
}

/// Q4: asymmetric, m = min(w), s = (max − min) / 15 (both rounded to f16), q = round((w − m)/s).
pub fn quantize_q4(w: &[f32], rows: usize, cols: usize) -> QuantMatrix {
    let nb = cols.div_ceil(QBLOCK);
    let mut data = Vec::with_capacity(rows * nb * 4);
    let mut scales = Vec::with_capacity(rows * nb);
    for r in 0..rows {
        let row = &w[r * cols..(r + 1) * cols];
        for b in 0..nb {
            // padding columns are excluded from the range so they do not widen it
            let n = cols.saturating_sub(b * QBLOCK).min(QBLOCK);
            let blk = padded_block(row, b);
            let (lo, hi) = blk[..n]
                .iter()
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, c), v| {
                    (a.min(*v), c.max(*v))
                });
            let m = f16::from_f32(lo);
            let s = f16::from_f32((hi - m.to_f32()) / 15.0);
            let (mf, sf) = (m.to_f32(), s.to_f32());
            let inv = if sf > 0.0 { 1.0 / sf } else { 0.0 };
            let q = |k: usize| -> u32 {
                if k < n {
                    ((blk[k] - mf) * inv).round().clamp(0.0, 15.0) as u32
                } else {
                    0
                }
            };
            for j in 0..4 {
                let mut word = 0u32;
                for b in 0..4 {
                    word |= (q(8 * j + b) | (q(8 * j + 4 + b) << 4)) << (8 * b);
                }
                data.push(word);
            }
            scales.push(s.to_bits() as u32 | ((m.to_bits() as u32) << 16));
        }
    }
    QuantMatrix {
        rows,
        cols,
        data,
        scales,
    }
}

/// Q8 back to f32 `(rows, cols)` (padding dropped).
pub fn dequantize_q8(q: &QuantMatrix) -> Vec<f32> {
    let nb = q.blocks_per_row();
    let mut out = vec![0f32; q.rows * q.cols];
    for r in 0..q.rows {
        for c in 0..q.cols {
            let (b, i) = (r * nb + c / QBLOCK, c % QBLOCK);
            let word = q.data[b * 8 + i / 4];
            let v = ((word >> (8 * (i % 4))) & 0xff) as u8 as i8;
            let sw = q.scales[b / 2];
            let s = f16::from_bits(if b % 2 == 0 {
                sw as u16
            } else {
                (sw >> 16) as u16
            });
            out[r * q.cols + c] = v as f32 * s.to_f32();
        }
    }
    out
}

/// Q4 back to f32 `(rows, cols)` (padding dropped).
pub fn dequantize_q4(q: &QuantMatrix) -> Vec<f32> {
    let nb = q.blocks_per_row();
    let mut out = vec![0f32; q.rows * q.cols];
    for r in 0..q.rows {
        for c in 0..q.cols {
            let (b, i) = (r * nb + c / QBLOCK, c % QBLOCK);
            let word = q.data[b * 4 + i / 8];
            let j = i % 8; // byte j % 4, low nibble for j < 4, high nibble otherwise
            let v = (word >> (8 * (j % 4) + 4 * (j / 4))) & 0xf;
            let sm = q.scales[b];
            let s = f16::from_bits(sm as u16).to_f32();
            let m = f16::from_bits((sm >> 16) as u16).to_f32();
            out[r * q.cols + c] = v as f32 * s + m;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::rng::Rng;

    fn rel_rms(a: &[f32], b: &[f32]) -> f32 {
        let num: f32 = a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum();
        let den: f32 = b.iter().map(|y| y * y).sum();
        (num / den).sqrt()
    }

    #[test]
    fn round_trip_errors_are_as_documented() {
        let mut rng = Rng::new(5);
        for &(rows, cols) in &[(3usize, 32usize), (5, 45), (17, 300)] {
            let w = rng.normal_vec(rows * cols, 0.02);
            let e8 = rel_rms(&dequantize_q8(&quantize_q8(&w, rows, cols)), &w);
            let e4 = rel_rms(&dequantize_q4(&quantize_q4(&w, rows, cols)), &w);
            assert!(e8 < 0.01, "q8 {rows}x{cols}: {e8}");
            assert!(e4 < 0.12, "q4 {rows}x{cols}: {e4}");
            assert!(e8 > 0.0 && e4 > e8);
        }
    }

    #[test]
    fn layout_is_exact() {
        // one block: 0..31 scaled — check nibble/byte order and the scale packing
        let w: Vec<f32> = (0..32).map(|i| i as f32).collect();
        let q4 = quantize_q4(&w, 1, 32);
        assert_eq!(q4.data[0] & 0xf, 0);
        // byte 1 low nibble = weight 1 (1·15/31 = 0.48 → 0); byte 0 high nibble = weight 4 (→ 2)
        assert_eq!((q4.data[0] >> 8) & 0xf, 0);
        assert_eq!((q4.data[0] >> 4) & 0xf, 2);
        assert_eq!(q4.data[3] >> 28, 15); // weight 31
        assert_eq!((q4.data[3] >> 24) & 0xf, 13); // weight 27: 27·15/31 = 13.06
        assert_eq!(
            f16::from_bits(q4.scales[0] as u16).to_f32(),
            f16::from_f32(31.0 / 15.0).to_f32()
        );
        let q8 = quantize_q8(&w, 1, 32);
        assert_eq!(q8.data[7] >> 24, 127);
        assert_eq!(q8.scales.len(), 1);
    }
}
