//! The web format: `manifest.json` + `shard-NNNNN.bin` files (≤ 128 MiB each, SHA-256 in the
//! manifest). Every tensor is stored as one or more *parts*, each a range of rows (dim 0) small
//! enough for one storage binding; every part's bytes start at a multiple of [`ALIGN`]. A
//! quantised part has two spans, `data` and `scales`, in exactly the GPU layout of
//! `tensor::quant` (a part is a standalone `QuantMatrix` of its rows).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::hift::HiftConfig;
use super::spec::{Format, Quant};

pub const FORMAT_VERSION: u32 = 1;
/// Alignment of every part in a shard (WebGPU's `minStorageBufferOffsetAlignment` is ≤ 256).
pub const ALIGN: u64 = 256;
pub const DEFAULT_MAX_SHARD: u64 = 128 << 20;
pub const DEFAULT_MAX_BINDING: u64 = 128 << 20;
/// Prefix of the vocoder's tensors in the manifest (weight norm already folded).
pub const HIFT_PREFIX: &str = "hift.";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub model_type: String,
    /// `f16`, `q8` or `q4`: what `bca convert --quant` was given.
    pub quant: String,
    /// The HF config.json, verbatim.
    pub config: Value,
    pub hift_config: HiftConfig,
    pub shards: Vec<ShardInfo>,
    pub tensors: Vec<TensorEntry>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShardInfo {
    pub file: String,
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TensorEntry {
    pub name: String,
    pub shape: Vec<usize>,
    /// `f32`, `f16`, `q8` or `q4` (kept as text so an unknown one is reported, not rejected
    /// by the JSON parser).
    pub format: String,
    pub parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Part {
    /// Rows `[start, end)` of dim 0.
    pub rows: [usize; 2],
    pub data: Span,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scales: Option<Span>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    pub shard: usize,
    pub offset: u64,
    pub length: u64,
}

pub fn parse_format(s: &str) -> Option<Format> {
    match s {
        "f32" => Some(Format::F32),
        "f16" => Some(Format::F16),
        "q8" => Some(Format::Q8),
        "q4" => Some(Format::Q4),
        _ => None,
    }
}

pub fn quant_name(q: Quant) -> &'static str {
    match q {
        Quant::F16 => "f16",
        Quant::Q8 => "q8",
        Quant::Q4 => "q4",
    }
}

pub fn parse_quant(s: &str) -> Option<Quant> {
    match s {
        "f16" => Some(Quant::F16),
        "q8" => Some(Quant::Q8),
        "q4" => Some(Quant::Q4),
        _ => None,
    }
}

/// Elements per row: the product of all dims but the first (1 for a vector).
pub fn row_elems(shape: &[usize]) -> usize {
    shape.iter().skip(1).product()
}

/// Byte lengths (data, scales) of `rows` rows of a tensor of `shape` stored as `f`.
pub fn part_lengths(f: Format, shape: &[usize], rows: usize) -> (u64, Option<u64>) {
    let re = row_elems(shape) as u64;
    let r = rows as u64;
    let nb = re.div_ceil(32);
    match f {
        Format::F32 => (r * re * 4, None),
        Format::F16 => (r * re * 2, None),
        Format::Q8 => (r * nb * 32, Some((r * nb).div_ceil(2) * 4)),
        Format::Q4 => (r * nb * 16, Some(r * nb * 4)),
    }
}
