//! `bca check`: verifies a converted (manifest) or Hugging Face folder against its config —
//! every hash, size, shape, format and byte range — and summarises it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::config::OmniConfig;
use super::convert::hift_web_specs;
use super::hift::HiftConfig;
use super::manifest::*;
use super::safetensors::SafetensorsSource;
use super::spec::{model_tensors, params_per_stage, web_format, Format, Role, Stage, TensorSpec};
use super::torch::read_state_dict;
use super::{WeightError, WeightSource};

#[derive(Debug)]
pub struct Summary {
    pub kind: &'static str,
    pub config: OmniConfig,
    pub hift: Option<HiftConfig>,
    pub params: Vec<(Stage, usize)>,
    /// Bytes per stored format (`bf16`, `f16`, `q4`, …).
    pub bytes: BTreeMap<String, u64>,
    pub tensors: usize,
    pub manifest: Option<Manifest>,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} checkpoint: {} tensors, all checks passed",
            self.kind, self.tensors
        )?;
        let total: usize = self.params.iter().map(|p| p.1).sum();
        for (s, n) in &self.params {
            writeln!(f, "  {:<12} {:>14} params", s.name(), n)?;
        }
        writeln!(f, "  {:<12} {:>14} params", "total", total)?;
        for (k, b) in &self.bytes {
            writeln!(f, "  {:<12} {:>14} bytes", k, b)?;
        }
        Ok(())
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, WeightError> {
    let b = std::fs::read(path).map_err(|e| WeightError::io(path, e))?;
    if b.is_empty() {
        return Err(WeightError::EmptyFile {
            file: path.display().to_string(),
        });
    }
    Ok(b)
}

fn load_config(path: &Path) -> Result<OmniConfig, WeightError> {
    let b = read_file(path)?;
    let file = path.display().to_string();
    let text =
        String::from_utf8(b).map_err(|_| WeightError::HeaderNotUtf8 { file: file.clone() })?;
    Ok(OmniConfig::from_json(&text, &file)?)
}

/// Compares (name, shape) pairs with the expected list: missing, extra, wrong shape.
fn compare(got: &[(String, Vec<usize>)], want: &[TensorSpec]) -> Result<(), WeightError> {
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

/// Legacy spelling of a weight-norm name (`…parametrizations.weight.original0` → `…weight_g`).
fn legacy_name(n: &str) -> String {
    if let Some(b) = n.strip_suffix(".parametrizations.weight.original0") {
        format!("{b}.weight_g")
    } else if let Some(b) = n.strip_suffix(".parametrizations.weight.original1") {
        format!("{b}.weight_v")
    } else {
        n.to_string()
    }
}

/// Checks a Hugging Face folder: config, shards + index, every tensor, hift.pt.
pub fn check_hf(dir: &Path) -> Result<Summary, WeightError> {
    let config = load_config(&dir.join("config.json"))?;
    let src = SafetensorsSource::open_dir(dir)?;
    let infos = src.tensors();
    let specs = model_tensors(&config);
    let got: Vec<_> = infos
        .iter()
        .map(|t| (t.name.clone(), t.shape.clone()))
        .collect();
    compare(&got, &specs)?;
    let mut bytes: BTreeMap<String, u64> = BTreeMap::new();
    for t in &infos {
        *bytes.entry(t.dtype.to_string()).or_default() += t.byte_len() as u64;
    }
    let mut params = params_per_stage(&specs);
    let mut hift = None;
    let hp = dir.join("hift.pt");
    if hp.exists() {
        let ts = read_state_dict(&hp)?;
        let infos: Vec<_> = ts
            .iter()
            .map(|t| super::TensorInfo {
                name: t.name.clone(),
                shape: t.shape.clone(),
                dtype: t.dtype,
            })
            .collect();
        let h = HiftConfig::infer(&infos)?;
        let hs = h.tensors();
        let got: Vec<_> = ts
            .iter()
            .map(|t| (legacy_name(&t.name), t.shape.clone()))
            .collect();
        compare(&got, &hs)?;
        for t in &ts {
            *bytes.entry(format!("hift {}", t.dtype)).or_default() += t.data.len() as u64;
        }
        params.push((
            Stage::Hift,
            hs.iter().map(|s| s.shape.iter().product::<usize>()).sum(),
        ));
        hift = Some(h);
    }
    Ok(Summary {
        kind: "Hugging Face",
        config,
        hift,
        params,
        bytes,
        tensors: infos.len(),
        manifest: None,
    })
}

fn sha256_file(path: &Path) -> Result<(String, u64), WeightError> {
    let mut f = std::fs::File::open(path).map_err(|e| WeightError::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf).map_err(|e| WeightError::io(path, e))?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((hex::encode(h.finalize()), n))
}

/// Checks a converted folder: manifest version and structure, config agreement, shard sizes
/// and hashes, every tensor's name/shape/format and every part's byte range.
pub fn check_web(dir: &Path) -> Result<Summary, WeightError> {
    let mpath = dir.join("manifest.json");
    let mfile = mpath.display().to_string();
    let text = read_file(&mpath)?;
    let v: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| WeightError::HeaderNotJson {
            file: mfile.clone(),
            msg: e.to_string(),
        })?;
    match v.get("format_version").and_then(|x| x.as_u64()) {
        None => {
            return Err(WeightError::Manifest {
                file: mfile,
                msg: "no format_version".into(),
            })
        }
        Some(n) if n > FORMAT_VERSION as u64 => {
            return Err(WeightError::NewerFormat {
                file: mfile,
                found: n.min(u32::MAX as u64) as u32,
                supported: FORMAT_VERSION,
            })
        }
        _ => {}
    }
    let m: Manifest = serde_json::from_value(v).map_err(|e| WeightError::Manifest {
        file: mfile.clone(),
        msg: e.to_string(),
    })?;
    let config = OmniConfig::from_value(m.config.clone(), &format!("{mfile} (config)"))?;
    let cpath = dir.join("config.json");
    if cpath.exists() {
        let on_disk: serde_json::Value =
            serde_json::from_slice(&read_file(&cpath)?).map_err(|e| {
                WeightError::HeaderNotJson {
                    file: cpath.display().to_string(),
                    msg: e.to_string(),
                }
            })?;
        if on_disk != m.config {
            return Err(WeightError::ConfigMismatch {
                msg: "config.json differs from the manifest's config".into(),
            });
        }
    }
    let quant = parse_quant(&m.quant).ok_or_else(|| WeightError::Manifest {
        file: mfile.clone(),
        msg: format!("unknown quant {:?}", m.quant),
    })?;
    // shards
    for s in &m.shards {
        let p = dir.join(&s.file);
        let (hash, len) = sha256_file(&p)?;
        if len != s.bytes {
            return Err(WeightError::SizeMismatch {
                file: s.file.clone(),
                got: len,
                want: s.bytes,
            });
        }
        if hash != s.sha256 {
            return Err(WeightError::HashMismatch {
                file: s.file.clone(),
                got: hash,
                want: s.sha256.clone(),
            });
        }
    }
    // tensors
    let mut want: Vec<TensorSpec> = model_tensors(&config)
        .into_iter()
        .filter(|s| s.role != Role::TrainingOnly)
        .collect();
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
    compare(&got, &want)?;
    let by_name: HashMap<&str, &TensorSpec> = want.iter().map(|s| (s.name.as_str(), s)).collect();
    let mut spans: Vec<(usize, u64, u64, String)> = Vec::new();
    let mut bytes: BTreeMap<String, u64> = BTreeMap::new();
    for t in &m.tensors {
        let spec = by_name[t.name.as_str()];
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
    Ok(Summary {
        kind: "web (manifest)",
        config,
        hift: Some(m.hift_config.clone()),
        params,
        bytes,
        tensors: m.tensors.len(),
        manifest: Some(m),
    })
}

/// A converted folder if it has manifest.json, else a Hugging Face folder.
pub fn check_dir(dir: &Path) -> Result<Summary, WeightError> {
    if dir.join("manifest.json").exists() {
        check_web(dir)
    } else {
        check_hf(dir)
    }
}
