//! `bca check`: verifies a converted (manifest) or Hugging Face folder against its config —
//! every hash, size, shape, format and byte range — and summarises it.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::config::OmniConfig;
use super::hift::HiftConfig;
use super::manifest::*;
use super::safetensors::SafetensorsSource;
use super::spec::{model_tensors, params_per_stage, Role, Stage};
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
    compare_tensors(&got, &specs)?;
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
        compare_tensors(&got, &hs)?;
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
    let m = parse_manifest(&text, &mfile)?;
    let cpath = dir.join("config.json");
    if cpath.exists() {
        let on_disk: serde_json::Value =
            serde_json::from_slice(&read_file(&cpath)?).map_err(|e| {
                WeightError::HeaderNotJson {
                    file: cpath.display().to_string(),
                    msg: e.to_string(),
                }
            })?;
        if !same_json(&on_disk, &m.config) {
            return Err(WeightError::ConfigMismatch {
                msg: "config.json differs from the manifest's config".into(),
            });
        }
    }
    let v = validate_manifest(&m, &mfile)?;
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
    Ok(Summary {
        kind: "web (manifest)",
        config: v.config,
        hift: Some(m.hift_config.clone()),
        params: v.params,
        bytes: v.bytes,
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

/// Per-tensor SHA-256 (hex) of what the weight store holds once a converted folder is loaded —
/// the reference the browser loader's read-back (`Engine.tensorDigest`) is compared with.
/// Matrices (Linear/Embedding roles, anything quantised): `data ‖ scales` of every part, in
/// order, exactly as stored; host tensors: their f32 values, little-endian.
pub fn digests(dir: &Path) -> Result<BTreeMap<String, String>, WeightError> {
    let web = super::convert::WebSource::open(dir)?;
    let cfg = super::convert::manifest_config(&web.manifest)?;
    let roles: HashMap<String, Role> = model_tensors(&cfg)
        .into_iter()
        .map(|s| (s.name, s.role))
        .collect();
    let mut out = BTreeMap::new();
    for t in &web.manifest.tensors {
        let fmt = parse_format(&t.format).ok_or_else(|| WeightError::UnknownFormat {
            name: t.name.clone(),
            format: t.format.clone(),
        })?;
        let d = if stored_as_matrix(&roles, &t.name, fmt) {
            let mut h = Sha256::new();
            for p in &t.parts {
                h.update(web.span(&p.data));
                if let Some(s) = &p.scales {
                    h.update(web.span(s));
                }
            }
            hex::encode(h.finalize())
        } else {
            digest_f32(&web.read_f32(&t.name)?)
        };
        out.insert(t.name.clone(), d);
    }
    Ok(out)
}
