//! Element types of stored tensors and conversions between them.
//!
//! bf16 → f16 goes through f32 (exact for bf16's 8 mantissa bits when the value is in f16's
//! normal range; tiny values become f16 subnormals or zero, huge ones ±inf — `half`'s rounding).

use half::{bf16, f16};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    BF16,
    F16,
    F32,
}

impl DType {
    pub const fn size(self) -> usize {
        match self {
            DType::BF16 | DType::F16 => 2,
            DType::F32 => 4,
        }
    }
    /// The safetensors spelling (`BF16`, `F16`, `F32`).
    pub const fn safetensors_name(self) -> &'static str {
        match self {
            DType::BF16 => "BF16",
            DType::F16 => "F16",
            DType::F32 => "F32",
        }
    }
    pub fn from_safetensors(s: &str) -> Option<Self> {
        match s {
            "BF16" => Some(DType::BF16),
            "F16" => Some(DType::F16),
            "F32" => Some(DType::F32),
            _ => None,
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DType::BF16 => "bf16",
            DType::F16 => "f16",
            DType::F32 => "f32",
        })
    }
}

/// Little-endian bytes of `dtype` to f32 (a trailing partial element is ignored).
pub fn to_f32(dtype: DType, bytes: &[u8]) -> Vec<f32> {
    match dtype {
        DType::BF16 => bytes
            .chunks_exact(2)
            .map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        DType::F16 => bytes
            .chunks_exact(2)
            .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        DType::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
    }
}

/// Little-endian bytes of `dtype` to f16 (through f32).
pub fn to_f16(dtype: DType, bytes: &[u8]) -> Vec<f16> {
    match dtype {
        DType::F16 => bytes
            .chunks_exact(2)
            .map(|b| f16::from_le_bytes([b[0], b[1]]))
            .collect(),
        _ => to_f32(dtype, bytes)
            .into_iter()
            .map(f16::from_f32)
            .collect(),
    }
}

/// f32 values to little-endian bytes of `dtype` (round to nearest even).
pub fn from_f32(dtype: DType, v: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() * dtype.size());
    for &x in v {
        match dtype {
            DType::BF16 => out.extend_from_slice(&bf16::from_f32(x).to_le_bytes()),
            DType::F16 => out.extend_from_slice(&f16::from_f32(x).to_le_bytes()),
            DType::F32 => out.extend_from_slice(&x.to_le_bytes()),
        }
    }
    out
}

pub fn f16_bytes(v: &[f16]) -> Vec<u8> {
    v.iter().flat_map(|h| h.to_le_bytes()).collect()
}

pub fn u32_bytes(v: &[u32]) -> Vec<u8> {
    v.iter().flat_map(|w| w.to_le_bytes()).collect()
}

pub fn bytes_u32(b: &[u8]) -> Vec<u32> {
    b.chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_round_trip() {
        let v = [0.0f32, 1.0, -2.5, 0.015625, 3.0e-3, 65504.0];
        for dt in [DType::BF16, DType::F16, DType::F32] {
            let back = to_f32(dt, &from_f32(dt, &v));
            for (a, b) in v.iter().zip(&back) {
                assert!((a - b).abs() <= a.abs() * 0.004, "{dt}: {a} vs {b}");
            }
        }
        // bf16 → f16 is exact for values in f16's normal range
        let b = from_f32(DType::BF16, &[1.5, -0.0078125, 0.3]);
        let h = to_f16(DType::BF16, &b);
        assert_eq!(h[0].to_f32(), 1.5);
        assert_eq!(h[1].to_f32(), -0.0078125);
        assert_eq!(h[2].to_f32(), bf16::from_f32(0.3).to_f32());
    }
}
