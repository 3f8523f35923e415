//! Checkpoints: configuration, the tensor list a configuration implies, reading weights through
//! a [`WeightSource`], and (natively) the tools that make, convert and check checkpoint folders.
//!
//! - [`config`]: `config.json` of the Hugging Face folder (`model_type: omni`), validated.
//! - [`spec`]: every tensor name and shape the config implies (spec §3–§9), with the role that
//!   decides its storage format in the web format ([`spec::Role`], [`spec::web_format`]).
//! - [`dtype`]: bf16/f16/f32 conversions.
//! - [`manifest`]: the web format (`manifest.json` + `shard-NNNNN.bin`).
//! - native only: [`safetensors`] (memory-mapped, sharded), [`torch`] (the `hift.pt` zip/pickle
//!   subset), [`tiny`] (a miniature checkpoint), [`convert`] (HF → web), [`check`].

pub mod config;
pub mod dtype;
pub mod hift;
pub mod manifest;
pub mod spec;

#[cfg(not(target_arch = "wasm32"))]
pub mod check;
#[cfg(not(target_arch = "wasm32"))]
pub mod convert;
#[cfg(not(target_arch = "wasm32"))]
pub mod safetensors;
#[cfg(not(target_arch = "wasm32"))]
pub mod tiny;
#[cfg(not(target_arch = "wasm32"))]
pub mod torch;

use std::path::PathBuf;

pub use config::{ConfigError, OmniConfig};
pub use dtype::DType;

/// Name, shape and stored dtype of one tensor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    pub shape: Vec<usize>,
    pub dtype: DType,
}

impl TensorInfo {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn byte_len(&self) -> usize {
        self.numel() * self.dtype.size()
    }
}

/// Where weights come from: a memory-mapped checkpoint natively, a streamed download in the
/// browser, a fixture in tests. Byte ranges let a loader move a large tensor in pieces.
pub trait WeightSource {
    /// Every tensor this source holds, in a stable order.
    fn tensors(&self) -> Vec<TensorInfo>;
    /// One tensor's description, if present.
    fn info(&self, name: &str) -> Option<TensorInfo>;
    /// `len` bytes of tensor `name` starting at byte `start` (little-endian, row-major).
    fn read_range(&self, name: &str, start: usize, len: usize) -> Result<Vec<u8>, WeightError>;
    /// All bytes of tensor `name`.
    fn read(&self, name: &str) -> Result<Vec<u8>, WeightError> {
        let info = self
            .info(name)
            .ok_or_else(|| WeightError::MissingTensor { name: name.into() })?;
        self.read_range(name, 0, info.byte_len())
    }
    /// Tensor `name` converted to f32.
    fn read_f32(&self, name: &str) -> Result<Vec<f32>, WeightError> {
        let info = self
            .info(name)
            .ok_or_else(|| WeightError::MissingTensor { name: name.into() })?;
        Ok(dtype::to_f32(info.dtype, &self.read(name)?))
    }
}

/// Everything that can be wrong with a checkpoint, each naming the file and/or tensor.
#[derive(Debug, thiserror::Error)]
pub enum WeightError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{file}: empty file")]
    EmptyFile { file: String },
    #[error("{file}: header length {len} exceeds the file size {file_len}")]
    HeaderLength {
        file: String,
        len: u64,
        file_len: u64,
    },
    #[error("{file}: header is not valid UTF-8")]
    HeaderNotUtf8 { file: String },
    #[error("{file}: header is not valid JSON: {msg}")]
    HeaderNotJson { file: String, msg: String },
    #[error("{file}: duplicate tensor name {name}")]
    DuplicateName { file: String, name: String },
    #[error("{file}: tensor {name}: {msg}")]
    BadEntry {
        file: String,
        name: String,
        msg: String,
    },
    #[error("{file}: tensor {name}: bytes {start}..{end} lie outside the {data_len}-byte data")]
    OutOfBounds {
        file: String,
        name: String,
        start: u64,
        end: u64,
        data_len: u64,
    },
    #[error("{file}: tensors {a} and {b} overlap")]
    Overlap { file: String, a: String, b: String },
    #[error("{file}: truncated: {got} bytes of data, {want} expected")]
    Truncated { file: String, got: u64, want: u64 },
    #[error("tensor {name}: unsupported dtype {dtype}")]
    UnsupportedDtype { name: String, dtype: String },
    #[error("missing tensor {name}")]
    MissingTensor { name: String },
    #[error("unexpected tensor {name}")]
    ExtraTensor { name: String },
    #[error("tensor {name}: shape {got:?}, the config implies {want:?}")]
    WrongShape {
        name: String,
        got: Vec<usize>,
        want: Vec<usize>,
    },
    #[error("tensor {name}: format {got}, expected {want}")]
    WrongDtype {
        name: String,
        got: String,
        want: String,
    },
    #[error("{file}: sha256 {got} does not match the manifest's {want}")]
    HashMismatch {
        file: String,
        got: String,
        want: String,
    },
    #[error("{file}: size {got} does not match the manifest's {want}")]
    SizeMismatch { file: String, got: u64, want: u64 },
    #[error("{file}: format_version {found} is newer than this build supports ({supported})")]
    NewerFormat {
        file: String,
        found: u32,
        supported: u32,
    },
    #[error("tensor {name}: unknown format {format}")]
    UnknownFormat { name: String, format: String },
    #[error("{file}: {msg}")]
    Manifest { file: String, msg: String },
    #[error("config mismatch: {msg}")]
    ConfigMismatch { msg: String },
    #[error("{file}: pickle: {msg}")]
    Pickle { file: String, msg: String },
    #[error("{file}: archive: {msg}")]
    Archive { file: String, msg: String },
    #[error("tensor {name}: range {start}+{len} outside its {size} bytes")]
    BadRange {
        name: String,
        start: usize,
        len: usize,
        size: usize,
    },
    #[error("model too big for this GPU: tensor {name} rows {}..{} needs a {bytes}-byte buffer, the adapter allows {limit} ({which})", rows[0], rows[1])]
    TooBig {
        name: String,
        rows: [usize; 2],
        bytes: u64,
        limit: u64,
        which: String,
    },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("{0}")]
    Invalid(String),
}

impl WeightError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        WeightError::Io {
            path: path.into(),
            source,
        }
    }
}
