//! `bca convert`: HF folder → web format, streaming one row-range part at a time from the mmap
//! (memory stays at a few parts, never a whole 545 M-parameter embedding), and [`WebSource`], the
//! native reader of a converted folder.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use half::f16;
use memmap2::Mmap;
use sha2::{Digest, Sha256};

use super::config::OmniConfig;
use super::dtype::{self, DType};
use super::hift::{fold_all, F32Tensor, HiftConfig};
use super::manifest::*;
use super::safetensors::SafetensorsSource;
use super::spec::{model_tensors, web_format, Format, Quant, Stage, TensorSpec};
use super::torch::read_state_dict;
use super::{WeightError, WeightSource};
use crate::tensor::quant::{dequantize_q4, dequantize_q8, quantize_q4, quantize_q8, QuantMatrix};

/// Files copied verbatim from the HF folder (when present).
pub const COPIED: [&str; 6] = [
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
];

pub struct ConvertOptions {
    pub quant: Quant,
    pub max_binding: u64,
    pub max_shard: u64,
    pub progress: bool,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        ConvertOptions {
            quant: Quant::Q4,
            max_binding: DEFAULT_MAX_BINDING,
            max_shard: DEFAULT_MAX_SHARD,
            progress: false,
        }
    }
}

struct ShardWriter {
    dir: PathBuf,
    max: u64,
    cur: Option<(BufWriter<File>, Sha256, u64, PathBuf)>,
    done: Vec<ShardInfo>,
}

impl ShardWriter {
    fn finish_current(&mut self) -> Result<(), WeightError> {
        if let Some((mut w, h, len, path)) = self.cur.take() {
            w.flush().map_err(|e| WeightError::io(&path, e))?;
            self.done.push(ShardInfo {
                file: path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                bytes: len,
                sha256: hex::encode(h.finalize()),
            });
        }
        Ok(())
    }

    /// Appends `bytes` at the next 256-aligned offset, opening a new shard when needed.
    fn put(&mut self, bytes: &[u8]) -> Result<Span, WeightError> {
        let n = bytes.len() as u64;
        if n > self.max {
            return Err(WeightError::Invalid(format!(
                "a {n}-byte part exceeds the {}-byte shard limit",
                self.max
            )));
        }
        let fits = self
            .cur
            .as_ref()
            .is_some_and(|(_, _, len, _)| len.next_multiple_of(ALIGN) + n <= self.max);
        if !fits {
            self.finish_current()?;
            let path = self.dir.join(format!("shard-{:05}.bin", self.done.len()));
            let f = File::create(&path).map_err(|e| WeightError::io(&path, e))?;
            self.cur = Some((BufWriter::new(f), Sha256::new(), 0, path));
        }
        let shard = self.done.len();
        let Some((w, h, len, path)) = self.cur.as_mut() else {
            return Err(WeightError::Invalid("no open shard".into()));
        };
        let pad = (len.next_multiple_of(ALIGN) - *len) as usize;
        let zeros = [0u8; ALIGN as usize];
        for chunk in [&zeros[..pad], bytes] {
            w.write_all(chunk).map_err(|e| WeightError::io(&*path, e))?;
            h.update(chunk);
        }
        let offset = *len + pad as u64;
        *len = offset + n;
        Ok(Span {
            shard,
            offset,
            length: n,
        })
    }
}

/// Encodes rows (f32) as `f`: (data bytes, scales bytes).
fn encode(f: Format, vals: &[f32], rows: usize, cols: usize) -> (Vec<u8>, Option<Vec<u8>>) {
    match f {
        Format::F32 => (dtype::from_f32(DType::F32, vals), None),
        Format::F16 => (dtype::from_f32(DType::F16, vals), None),
        Format::Q8 => {
            let q = quantize_q8(vals, rows, cols);
            (dtype::u32_bytes(&q.data), Some(dtype::u32_bytes(&q.scales)))
        }
        Format::Q4 => {
            let q = quantize_q4(vals, rows, cols);
            (dtype::u32_bytes(&q.data), Some(dtype::u32_bytes(&q.scales)))
        }
    }
}

/// Rows per part so that no span exceeds `max` bytes; an even number for q8 rows of an odd
/// block count (so every part but the last ends on a whole word of scales, and the loader can
/// join parts of a matrix it reads whole: `Weights::matrix`).
fn rows_per_part(f: Format, shape: &[usize], max: u64) -> usize {
    let (d, s) = part_lengths(f, shape, 1);
    let per_row = d.max(s.unwrap_or(0)).max(1);
    let n = ((max / per_row) as usize).max(1);
    let odd_q8 = f == Format::Q8 && row_elems(shape).div_ceil(32) % 2 == 1;
    if odd_q8 && n > 1 {
        n & !1
    } else {
        n
    }
}

/// Reads hift.pt (either weight-norm spelling), folds weight norm; names prefixed `hift.`.
pub fn load_hift(path: &Path) -> Result<(HiftConfig, Vec<F32Tensor>), WeightError> {
    let raw = read_state_dict(path)?;
    let infos: Vec<_> = raw
        .iter()
        .map(|t| super::TensorInfo {
            name: t.name.clone(),
            shape: t.shape.clone(),
            dtype: t.dtype,
        })
        .collect();
    let cfg = HiftConfig::infer(&infos)?;
    let folded = fold_all(
        raw.into_iter()
            .map(|t| F32Tensor {
                data: dtype::to_f32(t.dtype, &t.data),
                name: t.name,
                shape: t.shape,
            })
            .collect(),
    )?;
    Ok((
        cfg,
        folded
            .into_iter()
            .map(|mut t| {
                t.name = format!("{HIFT_PREFIX}{}", t.name);
                t
            })
            .collect(),
    ))
}

/// Converts `hf` into `out`; returns the manifest written.
pub fn convert(hf: &Path, out: &Path, o: &ConvertOptions) -> Result<Manifest, WeightError> {
    let summary = super::check::check_hf(hf)?; // refuse a bad source before writing anything
    let cfg = summary.config;
    let src = SafetensorsSource::open_dir(hf)?;
    let (hcfg, hift) = load_hift(&hf.join("hift.pt"))?;
    let max_part = o.max_binding.min(o.max_shard);
    std::fs::create_dir_all(out).map_err(|e| WeightError::io(out, e))?;
    for f in COPIED {
        let p = hf.join(f);
        if p.exists() {
            std::fs::copy(&p, out.join(f)).map_err(|e| WeightError::io(&p, e))?;
        }
    }
    let mut w = ShardWriter {
        dir: out.to_path_buf(),
        max: o.max_shard,
        cur: None,
        done: Vec::new(),
    };
    let specs = model_tensors(&cfg);
    let total: u64 = specs
        .iter()
        .map(|s| s.shape.iter().product::<usize>() as u64 * 2)
        .sum();
    let bar = if o.progress {
        let b = indicatif::ProgressBar::new(total);
        if let Ok(st) = indicatif::ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} {msg}",
        ) {
            b.set_style(st);
        }
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut entries = Vec::new();
    let mut write_tensor =
        |spec: &TensorSpec,
         fmt: Format,
         rows_of: &mut dyn FnMut(usize, usize) -> Result<Vec<f32>, WeightError>|
         -> Result<(), WeightError> {
            let rows = spec.shape.first().copied().unwrap_or(1);
            let re = row_elems(&spec.shape);
            let step = rows_per_part(fmt, &spec.shape, max_part);
            let mut parts = Vec::new();
            let mut r0 = 0;
            while r0 < rows {
                let r1 = (r0 + step).min(rows);
                let vals = rows_of(r0, r1)?;
                let (d, s) = encode(fmt, &vals, r1 - r0, re);
                let data = w.put(&d)?;
                let scales = s.map(|s| w.put(&s)).transpose()?;
                parts.push(Part {
                    rows: [r0, r1],
                    data,
                    scales,
                });
                r0 = r1;
            }
            entries.push(TensorEntry {
                name: spec.name.clone(),
                shape: spec.shape.clone(),
                format: fmt.name().into(),
                parts,
            });
            Ok(())
        };
    for spec in &specs {
        let Some(fmt) = web_format(spec, o.quant) else {
            bar.inc(spec.shape.iter().product::<usize>() as u64 * 2);
            continue;
        };
        let info = src
            .info(&spec.name)
            .ok_or_else(|| WeightError::MissingTensor {
                name: spec.name.clone(),
            })?;
        let es = info.dtype.size();
        let re = row_elems(&spec.shape);
        let mut rows_of = |r0: usize, r1: usize| -> Result<Vec<f32>, WeightError> {
            let b = src.bytes(&spec.name)?;
            let chunk = b
                .get(r0 * re * es..r1 * re * es)
                .ok_or_else(|| WeightError::BadRange {
                    name: spec.name.clone(),
                    start: r0 * re * es,
                    len: (r1 - r0) * re * es,
                    size: b.len(),
                })?;
            bar.inc(((r1 - r0) * re * 2) as u64);
            Ok(dtype::to_f32(info.dtype, chunk))
        };
        bar.set_message(spec.name.clone());
        write_tensor(spec, fmt, &mut rows_of)?;
    }
    let hspecs = hift_web_specs(&hcfg);
    for spec in &hspecs {
        let fmt = web_format(spec, o.quant).unwrap_or(Format::F32);
        let t = hift.iter().find(|t| t.name == spec.name).ok_or_else(|| {
            WeightError::MissingTensor {
                name: spec.name.clone(),
            }
        })?;
        let re = row_elems(&spec.shape);
        let mut rows_of = |r0: usize, r1: usize| -> Result<Vec<f32>, WeightError> {
            Ok(t.data[r0 * re..r1 * re].to_vec())
        };
        write_tensor(spec, fmt, &mut rows_of)?;
    }
    w.finish_current()?;
    bar.finish_and_clear();
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        model_type: "omni".into(),
        quant: quant_name(o.quant).into(),
        config: cfg.raw.clone(),
        hift_config: hcfg,
        shards: w.done,
        tensors: entries,
    };
    let p = out.join("manifest.json");
    let text =
        serde_json::to_string_pretty(&manifest).map_err(|e| WeightError::Invalid(e.to_string()))?;
    std::fs::write(&p, text).map_err(|e| WeightError::io(&p, e))?;
    Ok(manifest)
}

/// A converted folder, memory-mapped (checked by [`super::check::check_web`] before use).
pub struct WebSource {
    pub dir: PathBuf,
    pub manifest: Manifest,
    maps: Vec<Mmap>,
}

impl WebSource {
    pub fn open(dir: &Path) -> Result<Self, WeightError> {
        let summary = super::check::check_web(dir)?;
        let manifest = summary
            .manifest
            .ok_or_else(|| WeightError::Invalid("no manifest".into()))?;
        let mut maps = Vec::new();
        for s in &manifest.shards {
            let p = dir.join(&s.file);
            let f = File::open(&p).map_err(|e| WeightError::io(&p, e))?;
            // SAFETY: read-only map of a file whose hash was just verified.
            maps.push(unsafe { Mmap::map(&f) }.map_err(|e| WeightError::io(&p, e))?);
        }
        Ok(WebSource {
            dir: dir.to_path_buf(),
            manifest,
            maps,
        })
    }

    pub fn entry(&self, name: &str) -> Option<&TensorEntry> {
        self.manifest.tensors.iter().find(|t| t.name == name)
    }

    /// The bytes of one span.
    pub fn span(&self, s: &Span) -> &[u8] {
        self.maps
            .get(s.shard)
            .and_then(|m| m.get(s.offset as usize..(s.offset + s.length) as usize))
            .unwrap_or(&[])
    }

    /// The concatenated data bytes of all parts (f16/f32 tensors: the raw row-major tensor).
    pub fn raw(&self, name: &str) -> Result<Vec<u8>, WeightError> {
        let e = self
            .entry(name)
            .ok_or_else(|| WeightError::MissingTensor { name: name.into() })?;
        Ok(e.parts
            .iter()
            .flat_map(|p| self.span(&p.data).to_vec())
            .collect())
    }

    /// Each part of a quantised tensor as the `QuantMatrix` it was written from.
    pub fn quant_parts(&self, name: &str) -> Result<Vec<QuantMatrix>, WeightError> {
        let e = self
            .entry(name)
            .ok_or_else(|| WeightError::MissingTensor { name: name.into() })?;
        let cols = row_elems(&e.shape);
        e.parts
            .iter()
            .map(|p| {
                let s = p.scales.as_ref().ok_or_else(|| WeightError::Manifest {
                    file: "manifest.json".into(),
                    msg: format!("{name}: quantised part without scales"),
                })?;
                Ok(QuantMatrix {
                    rows: p.rows[1] - p.rows[0],
                    cols,
                    data: dtype::bytes_u32(self.span(&p.data)),
                    scales: dtype::bytes_u32(self.span(s)),
                })
            })
            .collect()
    }

    /// Any tensor as f32 (quantised ones dequantised with `tensor::quant`).
    pub fn read_f32(&self, name: &str) -> Result<Vec<f32>, WeightError> {
        let e = self
            .entry(name)
            .ok_or_else(|| WeightError::MissingTensor { name: name.into() })?;
        match parse_format(&e.format) {
            Some(Format::F32) => Ok(dtype::to_f32(DType::F32, &self.raw(name)?)),
            Some(Format::F16) => Ok(dtype::to_f32(DType::F16, &self.raw(name)?)),
            Some(Format::Q8) => Ok(self
                .quant_parts(name)?
                .iter()
                .flat_map(dequantize_q8)
                .collect()),
            Some(Format::Q4) => Ok(self
                .quant_parts(name)?
                .iter()
                .flat_map(dequantize_q4)
                .collect()),
            None => Err(WeightError::UnknownFormat {
                name: name.into(),
                format: e.format.clone(),
            }),
        }
    }

    /// f16 tensor as f16 values.
    pub fn read_f16(&self, name: &str) -> Result<Vec<f16>, WeightError> {
        Ok(dtype::to_f16(DType::F16, &self.raw(name)?))
    }
}

/// Stage of a manifest tensor name (for summaries).
pub fn stage_of(name: &str, specs: &[TensorSpec]) -> Option<Stage> {
    specs.iter().find(|s| s.name == name).map(|s| s.stage)
}

/// Config of a converted folder.
pub fn manifest_config(m: &Manifest) -> Result<OmniConfig, WeightError> {
    Ok(OmniConfig::from_value(m.config.clone(), "manifest.json")?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// q8 parts of rows with an odd block count hold an even number of rows (scale words
    /// whole), one row only where two do not fit; other layouts keep every row that fits.
    #[test]
    fn q8_parts_of_odd_block_rows_hold_even_rows() {
        // 96 columns: 3 blocks, 96 data bytes and 8 bytes of scales per row
        for max in [192u64, 288, 480, 1000, 4096] {
            let n = rows_per_part(Format::Q8, &[1000, 96], max);
            assert!(
                n.is_multiple_of(2) && n as u64 * 96 <= max && (n + 2) as u64 * 96 > max,
                "{max}: {n}"
            );
        }
        assert_eq!(rows_per_part(Format::Q8, &[1000, 96], 100), 1);
        assert_eq!(rows_per_part(Format::Q8, &[1000, 64], 64 * 3), 3);
        assert_eq!(rows_per_part(Format::Q4, &[1000, 96], 48 * 3), 3);
        assert_eq!(rows_per_part(Format::F16, &[1000, 96], 192 * 3), 3);
    }
}
