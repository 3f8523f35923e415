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

/// Whether the engine reads matrix `name` in row parts (the vocabulary tables, and the audio
/// head's FFN matrices, whose per-position blocks are copied out at load); every other matrix
/// stored in parts is joined into one buffer at load, so it must fit one storage binding
/// whole ([`joined`]).
pub fn read_in_parts(name: &str) -> bool {
    matches!(name, "model.embed_tokens.weight" | "lm_head.weight")
        || (name.starts_with("audio_head.transformer_layers.")
            && (name.ends_with(".linear1.weight") || name.ends_with(".linear2.weight")))
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

// ---------------------------------------------------------------------------------------------
// Validation shared by `bca check` (native) and the browser loader: everything that can be
// checked from the manifest text alone, before a single shard byte is read.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::config::OmniConfig;
use super::spec::{model_tensors, params_per_stage, web_format, Role, Stage, TensorSpec};
use super::WeightError;

/// The manifest's names for the vocoder: weight norm folded (`X.weight_g`/`X.weight_v` → `X.weight`).
pub fn hift_web_specs(h: &HiftConfig) -> Vec<TensorSpec> {
    h.tensors()
        .into_iter()
        .filter(|s| s.role != Role::WeightG)
        .map(|mut s| {
            if let Some(b) = s.name.strip_suffix(".weight_v") {
                s.name = format!("{b}.weight");
            }
            s.name = format!("{HIFT_PREFIX}{}", s.name);
            s
        })
        .collect()
}

/// Compares (name, shape) pairs with the expected list: missing, extra, wrong shape.
pub fn compare_tensors(
    got: &[(String, Vec<usize>)],
    want: &[TensorSpec],
) -> Result<(), WeightError> {
    let have: HashMap<&str, &Vec<usize>> = got.iter().map(|(n, s)| (n.as_str(), s)).collect();
    for w in want {
        match have.get(w.name.as_str()) {
            None => {
                return Err(WeightError::MissingTensor {
                    name: w.name.clone(),
                })
            }
            Some(s) if **s != w.shape => {
                return Err(WeightError::WrongShape {
                    name: w.name.clone(),
                    got: (*s).clone(),
                    want: w.shape.clone(),
                })
            }
            _ => {}
        }
    }
    let names: HashSet<&str> = want.iter().map(|w| w.name.as_str()).collect();
    if let Some((n, _)) = got.iter().find(|(n, _)| !names.contains(n.as_str())) {
        return Err(WeightError::ExtraTensor { name: n.clone() });
    }
    Ok(())
}

/// Parses `manifest.json` (named `file` in errors): empty file, JSON, a newer
/// `format_version` (reported before any other field is looked at), then the structure.
pub fn parse_manifest(bytes: &[u8], file: &str) -> Result<Manifest, WeightError> {
    if bytes.is_empty() {
        return Err(WeightError::EmptyFile { file: file.into() });
    }
    let v: Value = serde_json::from_slice(bytes).map_err(|e| WeightError::HeaderNotJson {
        file: file.into(),
        msg: e.to_string(),
    })?;
    match v.get("format_version").and_then(|x| x.as_u64()) {
        None => {
            return Err(WeightError::Manifest {
                file: file.into(),
                msg: "no format_version".into(),
            })
        }
        Some(n) if n > FORMAT_VERSION as u64 => {
            return Err(WeightError::NewerFormat {
                file: file.into(),
                found: n.min(u32::MAX as u64) as u32,
                supported: FORMAT_VERSION,
            })
        }
        _ => {}
    }
    serde_json::from_value(v).map_err(|e| WeightError::Manifest {
        file: file.into(),
        msg: e.to_string(),
    })
}

/// What a valid manifest implies.
#[derive(Debug)]
pub struct Validated {
    pub config: OmniConfig,
    pub quant: Quant,
    pub params: Vec<(Stage, usize)>,
    /// Bytes per stored format.
    pub bytes: BTreeMap<String, u64>,
}

/// Checks a parsed manifest against itself and its config: quant, every tensor's name, shape
/// and format, every part's rows, lengths, alignment and bounds, overlaps. Shard hashes are the
/// caller's job (they need the bytes).
pub fn validate_manifest(m: &Manifest, file: &str) -> Result<Validated, WeightError> {
    let mfile = file.to_string();
    let quant = parse_quant(&m.quant).ok_or_else(|| WeightError::Manifest {
        file: mfile.clone(),
        msg: format!("unknown quant {:?}", m.quant),
    })?;
    let config = OmniConfig::from_value(m.config.clone(), &format!("{mfile} (config)"))?;
    let mut want: Vec<TensorSpec> = model_tensors(&config)
        .into_iter()
        .filter(|s| s.role != Role::TrainingOnly)
        .collect();
    if let Some(why) = m.hift_config.inconsistency() {
        return Err(WeightError::Manifest {
            file: mfile,
            msg: format!("hift_config: {why}"),
        });
    }
    want.extend(hift_web_specs(&m.hift_config));
    let mut seen = HashSet::new();
    for t in &m.tensors {
        if !seen.insert(t.name.as_str()) {
            return Err(WeightError::DuplicateName {
                file: mfile,
                name: t.name.clone(),
            });
        }
        if parse_format(&t.format).is_none() {
            return Err(WeightError::UnknownFormat {
                name: t.name.clone(),
                format: t.format.clone(),
            });
        }
    }
    let got: Vec<_> = m
        .tensors
        .iter()
        .map(|t| (t.name.clone(), t.shape.clone()))
        .collect();
    compare_tensors(&got, &want)?;
    let by_name: HashMap<&str, &TensorSpec> = want.iter().map(|s| (s.name.as_str(), s)).collect();
    let mut spans: Vec<(usize, u64, u64, String)> = Vec::new();
    let mut bytes: BTreeMap<String, u64> = BTreeMap::new();
    for t in &m.tensors {
        let Some(spec) = by_name.get(t.name.as_str()) else {
            return Err(WeightError::ExtraTensor {
                name: t.name.clone(),
            });
        };
        let fmt = parse_format(&t.format).unwrap_or(Format::F32);
        let expect = web_format(spec, quant).unwrap_or(Format::F32);
        if fmt != expect {
            return Err(WeightError::WrongDtype {
                name: t.name.clone(),
                got: t.format.clone(),
                want: expect.name().into(),
            });
        }
        let rows = t.shape.first().copied().unwrap_or(1);
        let mut next = 0;
        for p in &t.parts {
            let bad = |msg: String| WeightError::BadEntry {
                file: mfile.clone(),
                name: t.name.clone(),
                msg,
            };
            if p.rows[0] != next || p.rows[1] <= p.rows[0] || p.rows[1] > rows {
                return Err(bad(format!(
                    "part rows {:?} do not continue at row {next}",
                    p.rows
                )));
            }
            next = p.rows[1];
            let (dl, sl) = part_lengths(fmt, &t.shape, p.rows[1] - p.rows[0]);
            let pairs = [(Some(p.data), Some(dl), "data"), (p.scales, sl, "scales")];
            for (span, len, what) in pairs {
                match (span, len) {
                    (None, None) => {}
                    (Some(s), Some(l)) => {
                        if s.length != l {
                            return Err(bad(format!("{what} is {} bytes, expected {l}", s.length)));
                        }
                        let shard = m.shards.get(s.shard).ok_or_else(|| {
                            bad(format!(
                                "{what} names shard {} of {}",
                                s.shard,
                                m.shards.len()
                            ))
                        })?;
                        if s.offset % ALIGN != 0 {
                            return Err(bad(format!(
                                "{what} offset {} is not {ALIGN}-byte aligned",
                                s.offset
                            )));
                        }
                        if s.offset
                            .checked_add(s.length)
                            .is_none_or(|e| e > shard.bytes)
                        {
                            return Err(WeightError::OutOfBounds {
                                file: shard.file.clone(),
                                name: t.name.clone(),
                                start: s.offset,
                                end: s.offset.saturating_add(s.length),
                                data_len: shard.bytes,
                            });
                        }
                        spans.push((s.shard, s.offset, s.offset + s.length, t.name.clone()));
                        *bytes.entry(t.format.clone()).or_default() += s.length;
                    }
                    _ => {
                        return Err(bad(format!(
                            "{what} present/absent unlike format {}",
                            t.format
                        )))
                    }
                }
            }
        }
        if next != rows {
            return Err(WeightError::BadEntry {
                file: mfile,
                name: t.name.clone(),
                msg: format!("parts cover rows 0..{next} of {rows}"),
            });
        }
    }
    spans.sort();
    for w in spans.windows(2) {
        if w[0].0 == w[1].0 && w[1].1 < w[0].2 {
            return Err(WeightError::Overlap {
                file: m.shards[w[0].0].file.clone(),
                a: w[0].3.clone(),
                b: w[1].3.clone(),
            });
        }
    }
    let mut params = params_per_stage(&want);
    params.sort();
    Ok(Validated {
        config,
        quant,
        params,
        bytes,
    })
}

/// Refuses a model whose parts cannot be bound on this adapter: every part (data and scales)
/// becomes one storage buffer, so each must fit `maxStorageBufferBindingSize` and
/// `maxBufferSize`; a matrix stored in row parts that the engine reads whole
/// ([`joined`]) must fit them whole. Run before downloading anything, so the user hears it at
/// once, with numbers.
pub fn check_limits(
    m: &Manifest,
    roles: &HashMap<String, Role>,
    max_binding: u64,
    max_buffer: u64,
) -> Result<(), WeightError> {
    let (limit, which) = binding_limit(max_binding, max_buffer);
    for t in &m.tensors {
        if joined(t, roles) {
            let need = joined_bytes(t);
            if need > limit {
                let rows = t.parts.last().map_or(0, |p| p.rows[1]);
                return Err(joined_too_big(&t.name, rows, need, limit, which));
            }
        }
        for p in &t.parts {
            for need in span_bytes(t, p) {
                if need > limit {
                    return Err(WeightError::TooBig {
                        name: t.name.clone(),
                        rows: p.rows,
                        bytes: need,
                        limit,
                        which: which.into(),
                    });
                }
            }
        }
    }
    Ok(())
}

/// What one GPU buffer may hold on a device with these limits, and the limit's name.
pub fn binding_limit(max_binding: u64, max_buffer: u64) -> (u64, &'static str) {
    if max_binding <= max_buffer {
        (max_binding, "maxStorageBufferBindingSize")
    } else {
        (max_buffer, "maxBufferSize")
    }
}

/// The error for a matrix of `rows` rows that the engine reads whole in one binding
/// ([`joined`]) and that needs `bytes`, over `limit` (named `which`).
pub fn joined_too_big(name: &str, rows: usize, bytes: u64, limit: u64, which: &str) -> WeightError {
    WeightError::TooBig {
        name: name.into(),
        rows: [0, rows],
        bytes,
        limit,
        which: format!(
            "{which}; the engine reads this matrix in one binding, and q8 or q4 take less"
        ),
    }
}

/// Bytes each span of part `p` (data, then scales) occupies on the GPU.
fn span_bytes<'a>(t: &'a TensorEntry, p: &'a Part) -> impl Iterator<Item = u64> + 'a {
    std::iter::once(&p.data)
        .chain(p.scales.iter())
        .map(move |s| gpu_bytes(t, p, s))
}

/// The largest GPU buffer the model needs and the tensor that needs it (a joined matrix
/// counts whole): what a GPU's `maxStorageBufferBindingSize` must allow (`bca convert` says it).
pub fn largest_binding(m: &Manifest, roles: &HashMap<String, Role>) -> Option<(String, u64)> {
    let mut best: Option<(String, u64)> = None;
    for t in &m.tensors {
        let need = if joined(t, roles) {
            joined_bytes(t)
        } else {
            t.parts
                .iter()
                .flat_map(|p| span_bytes(t, p))
                .max()
                .unwrap_or(0)
        };
        if best.as_ref().is_none_or(|(_, b)| need > *b) {
            best = Some((t.name.clone(), need));
        }
    }
    best
}

/// The larger of a joined matrix's whole data and scales on the GPU.
fn joined_bytes(t: &TensorEntry) -> u64 {
    let data: u64 = t.parts.iter().map(|p| gpu_bytes(t, p, &p.data)).sum();
    let scales: u64 = t
        .parts
        .iter()
        .filter_map(|p| p.scales)
        .map(|s| s.length)
        .sum();
    data.max(scales)
}

/// Whether the engine joins tensor `t`'s row parts into one buffer at load
/// (`Weights::matrix`): a GPU matrix in more than one part that is not [`read_in_parts`].
pub fn joined(t: &TensorEntry, roles: &HashMap<String, Role>) -> bool {
    t.parts.len() > 1
        && !read_in_parts(&t.name)
        && stored_as_matrix(
            roles,
            &t.name,
            parse_format(&t.format).unwrap_or(Format::F32),
        )
}

/// Bytes a span occupies on the GPU (f16 rows are padded to a multiple of 8 elements).
pub fn gpu_bytes(t: &TensorEntry, p: &Part, s: &Span) -> u64 {
    if t.format == "f16" && s == &p.data {
        let cols = row_elems(&t.shape) as u64;
        (p.rows[1].saturating_sub(p.rows[0]) as u64) * cols.div_ceil(8) * 8 * 2
    } else {
        s.length
    }
}

/// Whether the store keeps tensor `name` as GPU matrix parts (Linear/Embedding roles, and
/// anything quantised) rather than host f32. `roles` maps names to roles (`model_tensors`).
pub fn stored_as_matrix(roles: &HashMap<String, Role>, name: &str, fmt: Format) -> bool {
    roles
        .get(name)
        .is_some_and(|r| matches!(r, Role::Linear | Role::Embedding))
        || matches!(fmt, Format::Q8 | Format::Q4)
}

/// JSON equality with numbers compared by value (`1.0` equals `1`): a config re-serialised by
/// another tool is still the same config.
pub fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i == j,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_json(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

/// SHA-256 (hex) of a host tensor's f32 values, little-endian — what the store holds.
pub fn digest_f32(data: &[f32]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for v in data {
        h.update(v.to_le_bytes());
    }
    hex::encode(h.finalize())
}
