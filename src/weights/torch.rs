//! The subset of PyTorch's `torch.save` format that a state dict of tensors uses: a zip archive
//! (`<root>/data.pkl`, `<root>/data/<key>` raw storages, `<root>/version`) whose pickle (protocol 2)
//! is a dict/OrderedDict of `torch._utils._rebuild_tensor_v2(storage, offset, shape, stride, …)`
//! with storages as persistent ids `("storage", torch.FloatStorage, key, location, numel)`.
//!
//! [`read_state_dict`] understands exactly that (plus the harmless opcodes torch emits around it)
//! and refuses anything else with a typed error; [`write_state_dict`] writes the same layout
//! (stored, uncompressed) for `bca tiny` and tests. No Python is involved.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::Path;

use super::dtype::DType;
use super::WeightError;

/// One tensor of a state dict, contiguous little-endian bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct TorchTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub dtype: DType,
    pub data: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq)]
enum V {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Tuple(Vec<V>),
    List(Vec<V>),
    Dict(Vec<(V, V)>),
    Global(String, String),
    Storage {
        dtype: DType,
        key: String,
    },
    Tensor {
        dtype: DType,
        key: String,
        offset: usize,
        shape: Vec<usize>,
        stride: Vec<usize>,
    },
    Reduced,
    Mark,
}

/// Nodes in `v`, counting up to `limit` (a memo GET copies its value; this bounds the copies).
fn nodes(v: &V, limit: usize) -> usize {
    let mut n = 1;
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        if n > limit {
            break;
        }
        match v {
            V::Tuple(xs) | V::List(xs) => {
                n += xs.len();
                stack.extend(xs.iter());
            }
            V::Dict(kv) => {
                n += 2 * kv.len();
                for (k, x) in kv {
                    stack.push(k);
                    stack.push(x);
                }
            }
            _ => {}
        }
    }
    n
}

/// Most value nodes memo GETs may copy in one pickle (a real hift.pt needs a few thousand).
const MEMO_COPY_BUDGET: usize = 1 << 22;

struct Pickle<'a> {
    b: &'a [u8],
    pos: usize,
    file: &'a str,
}

impl<'a> Pickle<'a> {
    fn err(&self, msg: impl Into<String>) -> WeightError {
        WeightError::Pickle {
            file: self.file.into(),
            msg: format!("{} (at byte {})", msg.into(), self.pos),
        }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], WeightError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.b.len());
        match end {
            Some(e) => {
                let s = &self.b[self.pos..e];
                self.pos = e;
                Ok(s)
            }
            None => Err(self.err("unexpected end of pickle")),
        }
    }
    fn u8(&mut self) -> Result<u8, WeightError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, WeightError> {
        let s = self.take(2)?;
        Ok(u16::from_le_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Result<u32, WeightError> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn line(&mut self) -> Result<String, WeightError> {
        let start = self.pos;
        while self.pos < self.b.len() && self.b[self.pos] != b'\n' {
            self.pos += 1;
        }
        let s = std::str::from_utf8(&self.b[start..self.pos])
            .map_err(|_| self.err("GLOBAL name is not UTF-8"))?
            .to_string();
        self.take(1)?;
        Ok(s)
    }
    fn string(&mut self, n: usize) -> Result<String, WeightError> {
        let s = self.take(n)?;
        String::from_utf8(s.to_vec()).map_err(|_| self.err("string is not UTF-8"))
    }
}

fn storage_dtype(name: &str) -> Option<DType> {
    match name {
        "FloatStorage" => Some(DType::F32),
        "HalfStorage" => Some(DType::F16),
        "BFloat16Storage" => Some(DType::BF16),
        _ => None,
    }
}

fn as_usizes(v: &V) -> Option<Vec<usize>> {
    match v {
        V::Tuple(xs) | V::List(xs) => xs
            .iter()
            .map(|x| match x {
                V::Int(i) if *i >= 0 => Some(*i as usize),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

/// Runs the pickle and returns its top-level value.
fn unpickle(b: &[u8], file: &str) -> Result<V, WeightError> {
    let mut p = Pickle { b, pos: 0, file };
    let mut stack: Vec<V> = Vec::new();
    let mut memo: HashMap<u32, V> = HashMap::new();
    let mut copied = 0usize;
    macro_rules! pop {
        () => {
            stack.pop().ok_or_else(|| p.err("stack underflow"))?
        };
    }
    let pop_mark = |stack: &mut Vec<V>, p: &Pickle| -> Result<Vec<V>, WeightError> {
        let at = stack
            .iter()
            .rposition(|v| *v == V::Mark)
            .ok_or_else(|| p.err("no MARK on the stack"))?;
        let items = stack.split_off(at + 1);
        stack.pop();
        Ok(items)
    };
    loop {
        let op = p.u8()?;
        match op {
            0x80 => {
                let proto = p.u8()?;
                if proto > 4 {
                    return Err(p.err(format!("pickle protocol {proto} not supported")));
                }
            }
            0x95 => {
                p.take(8)?; // FRAME (protocol 4): length only
            }
            b'.' => return stack.pop().ok_or_else(|| p.err("empty stack at STOP")),
            b'(' => stack.push(V::Mark),
            b')' => stack.push(V::Tuple(vec![])),
            b'}' => stack.push(V::Dict(vec![])),
            b']' => stack.push(V::List(vec![])),
            b'N' => stack.push(V::None),
            0x88 => stack.push(V::Bool(true)),
            0x89 => stack.push(V::Bool(false)),
            b'K' => {
                let v = p.u8()?;
                stack.push(V::Int(v as i64))
            }
            b'M' => {
                let v = p.u16()?;
                stack.push(V::Int(v as i64))
            }
            b'J' => {
                let v = p.u32()? as i32;
                stack.push(V::Int(v as i64))
            }
            0x8a => {
                let n = p.u8()? as usize;
                let s = p.take(n)?;
                if n > 8 {
                    return Err(p.err("LONG1 wider than 64 bits"));
                }
                let mut buf = if s.last().is_some_and(|b| b & 0x80 != 0) {
                    [0xffu8; 8]
                } else {
                    [0u8; 8]
                };
                buf[..n].copy_from_slice(s);
                stack.push(V::Int(i64::from_le_bytes(buf)))
            }
            b'G' => {
                let s = p.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(s);
                stack.push(V::Float(f64::from_be_bytes(a)))
            }
            b'X' => {
                let n = p.u32()? as usize;
                let s = p.string(n)?;
                stack.push(V::Str(s))
            }
            0x8c => {
                let n = p.u8()? as usize;
                let s = p.string(n)?;
                stack.push(V::Str(s))
            }
            b'c' => {
                let module = p.line()?;
                let name = p.line()?;
                stack.push(V::Global(module, name))
            }
            b'q' => {
                let k = p.u8()? as u32;
                let top = stack
                    .last()
                    .cloned()
                    .ok_or_else(|| p.err("BINPUT on empty stack"))?;
                memo.insert(k, top);
            }
            b'r' => {
                let k = p.u32()?;
                let top = stack
                    .last()
                    .cloned()
                    .ok_or_else(|| p.err("LONG_BINPUT on empty stack"))?;
                memo.insert(k, top);
            }
            0x94 => {
                let k = memo.len() as u32;
                let top = stack
                    .last()
                    .cloned()
                    .ok_or_else(|| p.err("MEMOIZE on empty stack"))?;
                memo.insert(k, top);
            }
            b'h' | b'j' => {
                let k = if op == b'h' { p.u8()? as u32 } else { p.u32()? };
                let v = memo
                    .get(&k)
                    .ok_or_else(|| p.err(format!("memo {k} unset")))?;
                copied += nodes(v, MEMO_COPY_BUDGET);
                if copied > MEMO_COPY_BUDGET {
                    return Err(p.err("memo copies exceed the size of any state dict"));
                }
                stack.push(v.clone())
            }
            b't' => {
                let items = pop_mark(&mut stack, &p)?;
                stack.push(V::Tuple(items))
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                if stack.len() < n {
                    return Err(p.err("stack underflow"));
                }
                let items = stack.split_off(stack.len() - n);
                stack.push(V::Tuple(items))
            }
            b'Q' => {
                let pid = pop!();
                let V::Tuple(t) = pid else {
                    return Err(p.err("persistent id is not a tuple"));
                };
                match (t.first(), t.get(1), t.get(2)) {
                    (Some(V::Str(kind)), Some(V::Global(m, n)), Some(V::Str(key)))
                        if kind == "storage" && m == "torch" =>
                    {
                        let dtype = storage_dtype(n)
                            .ok_or_else(|| p.err(format!("unsupported storage torch.{n}")))?;
                        stack.push(V::Storage {
                            dtype,
                            key: key.clone(),
                        })
                    }
                    _ => return Err(p.err("persistent id is not a torch storage")),
                }
            }
            b'R' => {
                let args = pop!();
                let f = pop!();
                let out = match (&f, &args) {
                    (V::Global(m, n), _) if m == "collections" && n == "OrderedDict" => {
                        V::Dict(vec![])
                    }
                    (V::Global(m, n), V::Tuple(a))
                        if m == "torch._utils" && n == "_rebuild_tensor_v2" =>
                    {
                        let (
                            Some(V::Storage { dtype, key }),
                            Some(V::Int(off)),
                            Some(sh),
                            Some(st),
                        ) = (
                            a.first(),
                            a.get(1),
                            a.get(2).and_then(as_usizes),
                            a.get(3).and_then(as_usizes),
                        )
                        else {
                            return Err(p.err("malformed _rebuild_tensor_v2 arguments"));
                        };
                        if sh.len() != st.len() || *off < 0 {
                            return Err(p.err("shape and stride ranks differ"));
                        }
                        V::Tensor {
                            dtype: *dtype,
                            key: key.clone(),
                            offset: *off as usize,
                            shape: sh,
                            stride: st,
                        }
                    }
                    _ => V::Reduced,
                };
                stack.push(out)
            }
            b's' => {
                let v = pop!();
                let k = pop!();
                match stack.last_mut() {
                    Some(V::Dict(d)) => d.push((k, v)),
                    _ => return Err(p.err("SETITEM on a non-dict")),
                }
            }
            b'u' => {
                let items = pop_mark(&mut stack, &p)?;
                if items.len() % 2 != 0 {
                    return Err(p.err("SETITEMS with an odd number of items"));
                }
                let Some(V::Dict(d)) = stack.last_mut() else {
                    return Err(p.err("SETITEMS on a non-dict"));
                };
                let mut it = items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    d.push((k, v));
                }
            }
            b'a' => {
                let v = pop!();
                match stack.last_mut() {
                    Some(V::List(l)) => l.push(v),
                    _ => return Err(p.err("APPEND on a non-list")),
                }
            }
            b'e' => {
                let items = pop_mark(&mut stack, &p)?;
                match stack.last_mut() {
                    Some(V::List(l)) => l.extend(items),
                    _ => return Err(p.err("APPENDS on a non-list")),
                }
            }
            b'b' => {
                // BUILD: state for the object below (OrderedDict `_metadata`); ignored
                pop!();
            }
            other => return Err(p.err(format!("unsupported opcode 0x{other:02x}"))),
        }
    }
}

fn archive_err(file: &str, e: impl std::fmt::Display) -> WeightError {
    WeightError::Archive {
        file: file.into(),
        msg: e.to_string(),
    }
}

/// Reads a `torch.save` state dict of float tensors (f32/f16/bf16 storages).
pub fn read_state_dict(path: &Path) -> Result<Vec<TorchTensor>, WeightError> {
    let bytes = std::fs::read(path).map_err(|e| WeightError::io(path, e))?;
    read_state_dict_bytes(&bytes, &path.display().to_string())
}

pub fn read_state_dict_bytes(bytes: &[u8], file: &str) -> Result<Vec<TorchTensor>, WeightError> {
    if bytes.is_empty() {
        return Err(WeightError::EmptyFile { file: file.into() });
    }
    let mut zip =
        zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| archive_err(file, e))?;
    let pkl_name = zip
        .file_names()
        .find(|n| n.ends_with("/data.pkl") && n.matches('/').count() == 1)
        .map(str::to_string)
        .ok_or_else(|| archive_err(file, "no <root>/data.pkl entry"))?;
    let root = pkl_name.trim_end_matches("data.pkl").to_string();
    let mut read_entry = |name: &str| -> Result<Vec<u8>, WeightError> {
        let mut f = zip
            .by_name(name)
            .map_err(|e| archive_err(file, format!("{name}: {e}")))?;
        let mut v = Vec::new();
        f.read_to_end(&mut v)
            .map_err(|e| archive_err(file, format!("{name}: {e}")))?;
        Ok(v)
    };
    let pkl = read_entry(&pkl_name)?;
    state_dict_from_pickle(&pkl, file, &mut |key| {
        read_entry(&format!("{root}data/{key}"))
    })
}

/// The tensors of a state-dict pickle (`data.pkl`); `storage(key)` returns the bytes of
/// storage `key` (`<root>/data/<key>` in the archive). Every index is bounds-checked with
/// overflow-checked arithmetic: a pickle claiming 2^60 elements is an error, not an allocation.
pub fn state_dict_from_pickle(
    pkl: &[u8],
    file: &str,
    storage: &mut dyn FnMut(&str) -> Result<Vec<u8>, WeightError>,
) -> Result<Vec<TorchTensor>, WeightError> {
    let top = unpickle(pkl, file)?;
    let V::Dict(items) = top else {
        return Err(WeightError::Pickle {
            file: file.into(),
            msg: "top-level object is not a dict of tensors".into(),
        });
    };
    let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
    let mut out = Vec::with_capacity(items.len());
    for (k, v) in items {
        let V::Str(name) = k else {
            return Err(WeightError::Pickle {
                file: file.into(),
                msg: "a state-dict key is not a string".into(),
            });
        };
        let V::Tensor {
            dtype,
            key,
            offset,
            shape,
            stride,
        } = v
        else {
            return Err(WeightError::Pickle {
                file: file.into(),
                msg: format!("{name} is not a tensor"),
            });
        };
        if !storages.contains_key(&key) {
            let data = storage(&key)?;
            storages.insert(key.clone(), data);
        }
        let st = storages.get(&key).map(Vec::as_slice).unwrap_or(&[]);
        let es = dtype.size();
        let bad = |msg: &str| WeightError::Pickle {
            file: file.into(),
            msg: format!("{name}: {msg}"),
        };
        if shape.len() != stride.len() {
            return Err(bad("shape and stride differ in rank"));
        }
        let numel = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| bad("shape overflows"))?;
        // the furthest element any index can reach
        let max_el = shape
            .iter()
            .zip(&stride)
            .try_fold(offset, |a, (d, s)| {
                d.saturating_sub(1).checked_mul(*s)?.checked_add(a)
            })
            .ok_or_else(|| bad("strides overflow"))?;
        let end = max_el
            .checked_add(1)
            .and_then(|e| e.checked_mul(es))
            .ok_or_else(|| bad("strides overflow"))?;
        if numel > 0 && end > st.len() {
            return Err(WeightError::OutOfBounds {
                file: file.into(),
                name,
                start: offset.saturating_mul(es) as u64,
                end: end as u64,
                data_len: st.len() as u64,
            });
        }
        if numel.saturating_mul(es) > st.len() {
            return Err(bad("more elements than its storage holds"));
        }
        let mut data = Vec::with_capacity(numel * es);
        let mut idx = vec![0usize; shape.len()];
        for _ in 0..numel {
            let el = offset + idx.iter().zip(&stride).map(|(i, s)| i * s).sum::<usize>();
            data.extend_from_slice(&st[el * es..(el + 1) * es]);
            for d in (0..shape.len()).rev() {
                idx[d] += 1;
                if idx[d] < shape[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
        out.push(TorchTensor {
            name,
            shape,
            dtype,
            data,
        });
    }
    Ok(out)
}

fn put_str(o: &mut Vec<u8>, s: &str) {
    o.push(b'X');
    o.extend_from_slice(&(s.len() as u32).to_le_bytes());
    o.extend_from_slice(s.as_bytes());
}

fn put_int(o: &mut Vec<u8>, v: usize) {
    if v < 256 {
        o.extend_from_slice(&[b'K', v as u8]);
    } else if v < 65536 {
        o.push(b'M');
        o.extend_from_slice(&(v as u16).to_le_bytes());
    } else {
        o.push(b'J');
        o.extend_from_slice(&(v as i32).to_le_bytes());
    }
}

fn put_tuple(o: &mut Vec<u8>, xs: &[usize]) {
    o.push(b'(');
    for &x in xs {
        put_int(o, x);
    }
    o.push(b't');
}

/// The pickle torch.save (protocol 2) writes for an OrderedDict of contiguous tensors, storage
/// `i` holding tensor `i`.
pub fn pickle_state_dict(tensors: &[TorchTensor]) -> Vec<u8> {
    let mut o = vec![0x80, 2];
    o.extend_from_slice(b"ccollections\nOrderedDict\n");
    o.extend_from_slice(b")R(");
    for (i, t) in tensors.iter().enumerate() {
        put_str(&mut o, &t.name);
        o.extend_from_slice(b"ctorch._utils\n_rebuild_tensor_v2\n(");
        o.push(b'(');
        put_str(&mut o, "storage");
        let st = match t.dtype {
            DType::F32 => "FloatStorage",
            DType::F16 => "HalfStorage",
            DType::BF16 => "BFloat16Storage",
        };
        o.extend_from_slice(format!("ctorch\n{st}\n").as_bytes());
        put_str(&mut o, &i.to_string());
        put_str(&mut o, "cpu");
        put_int(&mut o, t.shape.iter().product());
        o.extend_from_slice(b"tQ");
        put_int(&mut o, 0);
        put_tuple(&mut o, &t.shape);
        let mut stride = vec![1usize; t.shape.len()];
        for d in (0..t.shape.len().saturating_sub(1)).rev() {
            stride[d] = stride[d + 1] * t.shape[d + 1];
        }
        put_tuple(&mut o, &stride);
        o.push(0x89);
        o.extend_from_slice(b"ccollections\nOrderedDict\n)R");
        o.extend_from_slice(b"tR");
    }
    o.extend_from_slice(b"u.");
    o
}

/// Writes `tensors` as torch.save does (root folder `archive`, stored entries).
pub fn write_state_dict(path: &Path, tensors: &[TorchTensor]) -> Result<(), WeightError> {
    let file = std::fs::File::create(path).map_err(|e| WeightError::io(path, e))?;
    let fname = path.display().to_string();
    let mut z = zip::ZipWriter::new(std::io::BufWriter::new(file));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(false);
    let entry = |z: &mut zip::ZipWriter<_>, name: &str, data: &[u8]| {
        z.start_file(name, opts)
            .map_err(|e| archive_err(&fname, e))?;
        z.write_all(data).map_err(|e| WeightError::io(path, e))
    };
    entry(&mut z, "archive/data.pkl", &pickle_state_dict(tensors))?;
    entry(&mut z, "archive/byteorder", b"little")?;
    for (i, t) in tensors.iter().enumerate() {
        entry(&mut z, &format!("archive/data/{i}"), &t.data)?;
    }
    entry(&mut z, "archive/version", b"3\n")?;
    z.finish().map_err(|e| archive_err(&fname, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::rng::Rng;

    #[test]
    fn round_trip_all_dtypes() {
        let mut rng = Rng::new(3);
        let ts: Vec<TorchTensor> = [
            (DType::F32, vec![3, 2, 5]),
            (DType::F16, vec![4]),
            (DType::BF16, vec![2, 300]),
        ]
        .into_iter()
        .enumerate()
        .map(|(i, (dt, sh))| {
            let n: usize = sh.iter().product();
            TorchTensor {
                name: format!("layer.{i}.weight"),
                data: crate::weights::dtype::from_f32(dt, &rng.normal_vec(n, 1.0)),
                shape: sh,
                dtype: dt,
            }
        })
        .collect();
        let dir = std::env::temp_dir().join(format!("bca-torch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("x.pt");
        write_state_dict(&p, &ts).unwrap();
        assert_eq!(read_state_dict(&p).unwrap(), ts);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn strided_view_is_gathered() {
        // a transposed 2×3 view of a 3×2 storage: stride (1, 2)
        let storage: Vec<f32> = (0..6).map(|x| x as f32).collect();
        let mut pk = vec![0x80, 2];
        pk.extend_from_slice(b"}(");
        put_str(&mut pk, "t");
        pk.extend_from_slice(b"ctorch._utils\n_rebuild_tensor_v2\n((");
        put_str(&mut pk, "storage");
        pk.extend_from_slice(b"ctorch\nFloatStorage\n");
        put_str(&mut pk, "0");
        put_str(&mut pk, "cpu");
        put_int(&mut pk, 6);
        pk.extend_from_slice(b"tQ");
        put_int(&mut pk, 0);
        put_tuple(&mut pk, &[2, 3]);
        put_tuple(&mut pk, &[1, 2]);
        pk.extend_from_slice(b"\x89NtRu.");
        let mut buf = std::io::Cursor::new(Vec::new());
        {
            let mut z = zip::ZipWriter::new(&mut buf);
            let o = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Stored);
            z.start_file("m/data.pkl", o).unwrap();
            z.write_all(&pk).unwrap();
            z.start_file("m/data/0", o).unwrap();
            z.write_all(&crate::weights::dtype::from_f32(DType::F32, &storage))
                .unwrap();
            z.finish().unwrap();
        }
        let t = read_state_dict_bytes(buf.get_ref(), "m.pt").unwrap();
        let v = crate::weights::dtype::to_f32(DType::F32, &t[0].data);
        assert_eq!(v, vec![0.0, 2.0, 4.0, 1.0, 3.0, 5.0]);
    }
}
