//! Memory-mapped safetensors, single file or sharded through `model.safetensors.index.json`.
//!
//! Each file's header is checked here first so that every defect gets a precise typed error
//! (empty file, header length, UTF-8, JSON, duplicate names, dtype, shape × dtype vs offsets,
//! overlap, out of bounds, truncation); the `safetensors` crate then parses the same buffer and
//! its tensor views are what [`WeightSource::read_range`] serves.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Serialize;

use super::dtype::DType;
use super::{TensorInfo, WeightError, WeightSource};

/// Keys of a JSON object in file order, with their raw values (duplicates kept).
struct Entries(Vec<(String, serde_json::Value)>);

impl<'de> serde::Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Vis;
        impl<'de> Visitor<'de> for Vis {
            type Value = Entries;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Entries, A::Error> {
                let mut v = Vec::new();
                while let Some(k) = m.next_key::<String>()? {
                    v.push((k, m.next_value()?));
                }
                Ok(Entries(v))
            }
        }
        d.deserialize_map(Vis)
    }
}

/// One entry of a safetensors header.
#[derive(Clone, Debug)]
pub struct Entry {
    pub info: TensorInfo,
    /// Byte range within the data section.
    pub begin: usize,
    pub end: usize,
}

/// Parses and checks the header of a safetensors buffer; returns (data start, entries).
pub fn parse_header(buf: &[u8], file: &str) -> Result<(usize, Vec<Entry>), WeightError> {
    let f = || file.to_string();
    if buf.is_empty() {
        return Err(WeightError::EmptyFile { file: f() });
    }
    let n = match buf.get(..8) {
        Some(b) => u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
        None => {
            return Err(WeightError::HeaderLength {
                file: f(),
                len: 8,
                file_len: buf.len() as u64,
            })
        }
    };
    let hend =
        n.checked_add(8)
            .filter(|&e| e <= buf.len() as u64)
            .ok_or(WeightError::HeaderLength {
                file: f(),
                len: n,
                file_len: buf.len() as u64,
            })? as usize;
    let text =
        std::str::from_utf8(&buf[8..hend]).map_err(|_| WeightError::HeaderNotUtf8 { file: f() })?;
    let Entries(items) = serde_json::from_str(text).map_err(|e| WeightError::HeaderNotJson {
        file: f(),
        msg: e.to_string(),
    })?;
    let data_len = buf.len() - hend;
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for (name, v) in items {
        if name == "__metadata__" {
            continue;
        }
        if !seen.insert(name.clone()) {
            return Err(WeightError::DuplicateName { file: f(), name });
        }
        let bad = |msg: &str| WeightError::BadEntry {
            file: f(),
            name: name.clone(),
            msg: msg.into(),
        };
        let ds = v
            .get("dtype")
            .and_then(|d| d.as_str())
            .ok_or_else(|| bad("no dtype"))?;
        let dtype = DType::from_safetensors(ds).ok_or_else(|| WeightError::UnsupportedDtype {
            name: name.clone(),
            dtype: ds.into(),
        })?;
        let shape: Vec<usize> = v
            .get("shape")
            .and_then(|s| serde_json::from_value(s.clone()).ok())
            .ok_or_else(|| bad("no shape"))?;
        let off: [u64; 2] = v
            .get("data_offsets")
            .and_then(|s| serde_json::from_value(s.clone()).ok())
            .ok_or_else(|| bad("no data_offsets"))?;
        let want = shape
            .iter()
            .try_fold(dtype.size() as u64, |a, &d| a.checked_mul(d as u64))
            .ok_or_else(|| bad("shape overflows"))?;
        if off[1] < off[0] || off[1] - off[0] != want {
            return Err(bad(&format!(
                "offsets {}..{} hold {} bytes, shape {:?} × {} needs {}",
                off[0],
                off[1],
                off[1].saturating_sub(off[0]),
                shape,
                dtype,
                want
            )));
        }
        out.push(Entry {
            info: TensorInfo {
                name: name.clone(),
                shape,
                dtype,
            },
            begin: off[0] as usize,
            end: off[1] as usize,
        });
    }
    let mut order: Vec<&Entry> = out.iter().collect();
    order.sort_by_key(|e| (e.begin, e.end));
    for w in order.windows(2) {
        if w[1].begin < w[0].end {
            return Err(WeightError::Overlap {
                file: f(),
                a: w[0].info.name.clone(),
                b: w[1].info.name.clone(),
            });
        }
    }
    // contiguous layout that runs past the end → the file was cut short; otherwise the
    // entry's offsets point outside the data
    let contiguous = order.windows(2).all(|w| w[1].begin == w[0].end)
        && order.first().is_none_or(|e| e.begin == 0);
    let last_end = order.last().map_or(0, |e| e.end);
    if last_end > data_len {
        if contiguous {
            return Err(WeightError::Truncated {
                file: f(),
                got: data_len as u64,
                want: last_end as u64,
            });
        }
        if let Some(e) = order.iter().find(|e| e.end > data_len) {
            return Err(WeightError::OutOfBounds {
                file: f(),
                name: e.info.name.clone(),
                start: e.begin as u64,
                end: e.end as u64,
                data_len: data_len as u64,
            });
        }
    }
    // the crate's own validation (gaps, trailing bytes, …) on the same buffer
    safetensors::SafeTensors::read_metadata(buf).map_err(|e| WeightError::BadEntry {
        file: f(),
        name: "(layout)".into(),
        msg: format!("{e:?}"),
    })?;
    Ok((hend, out))
}

struct Shard {
    path: PathBuf,
    map: Mmap,
    data_start: usize,
}

/// A checkpoint folder's `model.safetensors.index.json` + shards (or one `model.safetensors`).
pub struct SafetensorsSource {
    shards: Vec<Shard>,
    /// name → (shard index, entry)
    index: HashMap<String, (usize, Entry)>,
    order: Vec<String>,
}

#[derive(serde::Deserialize)]
struct IndexFile {
    weight_map: Entries,
}

fn mmap(path: &Path) -> Result<Mmap, WeightError> {
    let f = File::open(path).map_err(|e| WeightError::io(path, e))?;
    let len = f.metadata().map_err(|e| WeightError::io(path, e))?.len();
    if len == 0 {
        return Err(WeightError::EmptyFile {
            file: path.display().to_string(),
        });
    }
    // SAFETY: the file is opened read-only; a concurrent writer could change the bytes under
    // us, which at worst yields wrong weights (every reader re-validates the header).
    unsafe { Mmap::map(&f) }.map_err(|e| WeightError::io(path, e))
}

impl SafetensorsSource {
    /// Opens `dir/model.safetensors.index.json` (or `dir/model.safetensors`).
    pub fn open_dir(dir: &Path) -> Result<Self, WeightError> {
        let idx_path = dir.join("model.safetensors.index.json");
        if !idx_path.exists() {
            return Self::open_files(&[dir.join("model.safetensors")], None);
        }
        let idx_file = idx_path.display().to_string();
        let text = std::fs::read(&idx_path).map_err(|e| WeightError::io(&idx_path, e))?;
        let idx: IndexFile =
            serde_json::from_slice(&text).map_err(|e| WeightError::HeaderNotJson {
                file: idx_file.clone(),
                msg: e.to_string(),
            })?;
        let mut files: Vec<String> = Vec::new();
        let mut map: BTreeMap<String, String> = BTreeMap::new();
        for (name, v) in idx.weight_map.0 {
            let shard = v.as_str().ok_or_else(|| WeightError::HeaderNotJson {
                file: idx_file.clone(),
                msg: format!("weight_map.{name} is not a file name"),
            })?;
            if map.insert(name.clone(), shard.to_string()).is_some() {
                return Err(WeightError::DuplicateName {
                    file: idx_file,
                    name,
                });
            }
            if !files.iter().any(|f| f == shard) {
                files.push(shard.to_string());
            }
        }
        let paths: Vec<PathBuf> = files.iter().map(|f| dir.join(f)).collect();
        Self::open_files(&paths, Some((&idx_file, &map, &files)))
    }

    fn open_files(
        paths: &[PathBuf],
        index: Option<(&str, &BTreeMap<String, String>, &[String])>,
    ) -> Result<Self, WeightError> {
        let mut shards = Vec::new();
        let mut by_name: HashMap<String, (usize, Entry)> = HashMap::new();
        let mut order = Vec::new();
        for (si, p) in paths.iter().enumerate() {
            let map = mmap(p)?;
            let file = p.display().to_string();
            let (data_start, entries) = parse_header(&map, &file)?;
            for e in entries {
                let name = e.info.name.clone();
                if by_name.contains_key(&name) {
                    return Err(WeightError::DuplicateName { file, name });
                }
                if let Some((idx_file, m, files)) = index {
                    if m.get(&name) != files.get(si) {
                        return Err(WeightError::Manifest {
                            file: idx_file.into(),
                            msg: format!("{name} is in {file}, the index says {:?}", m.get(&name)),
                        });
                    }
                }
                order.push(name.clone());
                by_name.insert(name, (si, e));
            }
            shards.push(Shard {
                path: p.clone(),
                map,
                data_start,
            });
        }
        if let Some((idx_file, m, _)) = index {
            if let Some(name) = m.keys().find(|n| !by_name.contains_key(*n)) {
                return Err(WeightError::Manifest {
                    file: idx_file.into(),
                    msg: format!("{name} is listed but in no shard"),
                });
            }
        }
        Ok(SafetensorsSource {
            shards,
            index: by_name,
            order,
        })
    }

    pub fn shard_paths(&self) -> Vec<&Path> {
        self.shards.iter().map(|s| s.path.as_path()).collect()
    }

    /// Borrowed bytes of a tensor (zero copy from the mmap).
    pub fn bytes(&self, name: &str) -> Result<&[u8], WeightError> {
        let (si, e) = self
            .index
            .get(name)
            .ok_or_else(|| WeightError::MissingTensor { name: name.into() })?;
        let s = &self.shards[*si];
        Ok(&s.map[s.data_start + e.begin..s.data_start + e.end])
    }
}

impl WeightSource for SafetensorsSource {
    fn tensors(&self) -> Vec<TensorInfo> {
        self.order
            .iter()
            .filter_map(|n| self.index.get(n).map(|(_, e)| e.info.clone()))
            .collect()
    }
    fn info(&self, name: &str) -> Option<TensorInfo> {
        self.index.get(name).map(|(_, e)| e.info.clone())
    }
    fn read_range(&self, name: &str, start: usize, len: usize) -> Result<Vec<u8>, WeightError> {
        let b = self.bytes(name)?;
        match start.checked_add(len).filter(|&e| e <= b.len()) {
            Some(end) => Ok(b[start..end].to_vec()),
            None => Err(WeightError::BadRange {
                name: name.into(),
                start,
                len,
                size: b.len(),
            }),
        }
    }
}

#[derive(Serialize)]
struct HeaderEntry<'a> {
    dtype: &'a str,
    shape: &'a [usize],
    data_offsets: [usize; 2],
}

/// Writes one safetensors file (header padded with spaces to a multiple of 8, as the reference
/// writer does). `tensors`: (info, bytes).
pub fn write_file(path: &Path, tensors: &[(TensorInfo, Vec<u8>)]) -> Result<(), WeightError> {
    let mut header = serde_json::Map::new();
    let mut meta = serde_json::Map::new();
    meta.insert("format".into(), "pt".into());
    header.insert("__metadata__".into(), serde_json::Value::Object(meta));
    let mut off = 0;
    for (info, bytes) in tensors {
        let e = HeaderEntry {
            dtype: info.dtype.safetensors_name(),
            shape: &info.shape,
            data_offsets: [off, off + bytes.len()],
        };
        off += bytes.len();
        let v = serde_json::to_value(e).map_err(|e| WeightError::Invalid(e.to_string()))?;
        header.insert(info.name.clone(), v);
    }
    let mut h = serde_json::to_vec(&header).map_err(|e| WeightError::Invalid(e.to_string()))?;
    while h.len() % 8 != 0 {
        h.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + h.len() + off);
    out.extend_from_slice(&(h.len() as u64).to_le_bytes());
    out.extend_from_slice(&h);
    for (_, b) in tensors {
        out.extend_from_slice(b);
    }
    std::fs::write(path, out).map_err(|e| WeightError::io(path, e))
}
