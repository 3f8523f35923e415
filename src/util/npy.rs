//! NumPy `.npy` (format 1.0/2.0) reading and writing for the CLI's array files: float32 and
//! int32, little-endian, C order. Anything else is rejected with a message naming the problem.

/// A dense array read from or written to `.npy`.
#[derive(Clone, Debug, PartialEq)]
pub enum NpyArray {
    F32 { shape: Vec<usize>, data: Vec<f32> },
    I32 { shape: Vec<usize>, data: Vec<i32> },
}

impl NpyArray {
    pub fn shape(&self) -> &[usize] {
        match self {
            NpyArray::F32 { shape, .. } | NpyArray::I32 { shape, .. } => shape,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NpyError {
    #[error("not a .npy file (bad magic)")]
    Magic,
    #[error(".npy header: {0}")]
    Header(String),
    #[error(".npy dtype {0} not supported (want <f4 or <i4, C order)")]
    Dtype(String),
    #[error(".npy data is {got} bytes, shape {shape:?} needs {want}")]
    Length {
        got: usize,
        want: usize,
        shape: Vec<usize>,
    },
}

fn header(descr: &str, shape: &[usize]) -> Vec<u8> {
    let dims = match shape {
        [one] => format!("({one},)"),
        s => format!(
            "({})",
            s.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut h = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {dims}, }}");
    // magic(6) + version(2) + len(2) + header + '\n' aligned to 64.
    let total = 10 + h.len() + 1;
    h.push_str(&" ".repeat(total.div_ceil(64) * 64 - total));
    h.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(h.len() as u16).to_le_bytes());
    out.extend_from_slice(h.as_bytes());
    out
}

/// Serialises a float32 array.
pub fn write_f32(shape: &[usize], data: &[f32]) -> Vec<u8> {
    let mut out = header("<f4", shape);
    out.extend_from_slice(bytemuck::cast_slice(data));
    out
}

/// Serialises an int32 array.
pub fn write_i32(shape: &[usize], data: &[i32]) -> Vec<u8> {
    let mut out = header("<i4", shape);
    out.extend_from_slice(bytemuck::cast_slice(data));
    out
}

fn field<'a>(h: &'a str, key: &str) -> Result<&'a str, NpyError> {
    let k = format!("'{key}':");
    let i = h
        .find(&k)
        .ok_or_else(|| NpyError::Header(format!("no '{key}' key")))?;
    Ok(h[i + k.len()..].trim_start())
}

/// Parses a `.npy` file of `<f4` or `<i4` in C order.
pub fn read(bytes: &[u8]) -> Result<NpyArray, NpyError> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(NpyError::Magic);
    }
    let (hlen, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(NpyError::Header(format!("version {v} not supported"))),
    };
    let h = bytes
        .get(start..start + hlen)
        .ok_or_else(|| NpyError::Header("header past end of file".into()))?;
    let h = std::str::from_utf8(h).map_err(|_| NpyError::Header("header not UTF-8".into()))?;
    let descr = field(h, "descr")?;
    let descr = descr
        .trim_start_matches('\'')
        .split('\'')
        .next()
        .unwrap_or("");
    if descr != "<f4" && descr != "<i4" {
        return Err(NpyError::Dtype(descr.to_string()));
    }
    if !field(h, "fortran_order")?.starts_with("False") {
        return Err(NpyError::Dtype(format!("{descr} in Fortran order")));
    }
    let s = field(h, "shape")?;
    let s = s
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| NpyError::Header("shape is not a tuple".into()))?;
    let shape = s
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| {
            d.parse::<usize>()
                .map_err(|_| NpyError::Header(format!("bad dimension {d:?}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let n = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| NpyError::Header("shape overflows".into()))?;
    let data = &bytes[start + hlen..];
    let want = n.saturating_mul(4);
    if data.len() != want {
        return Err(NpyError::Length {
            got: data.len(),
            want,
            shape,
        });
    }
    let words = data.chunks_exact(4).map(|c| [c[0], c[1], c[2], c[3]]);
    match descr {
        "<f4" => Ok(NpyArray::F32 {
            shape,
            data: words.map(f32::from_le_bytes).collect(),
        }),
        "<i4" => Ok(NpyArray::I32 {
            shape,
            data: words.map(i32::from_le_bytes).collect(),
        }),
        d => Err(NpyError::Dtype(d.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        let a = write_f32(&[2, 3], &[1.5, -2.0, 3.25, 0.1, 7.0, -0.5]);
        assert_eq!((a.len() - 24) % 64, 0, "data starts 64-aligned");
        match read(&a).unwrap() {
            NpyArray::F32 { shape, data } => {
                assert_eq!(shape, vec![2, 3]);
                assert_eq!(data, vec![1.5, -2.0, 3.25, 0.1, 7.0, -0.5]);
            }
            other => panic!("{other:?}"),
        }
        let b = write_i32(&[5], &[3, -1, 8191, 0, 42]);
        assert_eq!(
            read(&b).unwrap(),
            NpyArray::I32 {
                shape: vec![5],
                data: vec![3, -1, 8191, 0, 42]
            }
        );
        assert!(matches!(read(b"hello world!"), Err(NpyError::Magic)));
        assert!(matches!(
            read(&b[..b.len() - 2]),
            Err(NpyError::Length {
                got: 18,
                want: 20,
                ..
            })
        ));
        let mut f8 = b.clone();
        let at = f8.windows(3).position(|w| w == b"<i4").unwrap();
        f8[at + 2] = b'8';
        assert!(matches!(read(&f8), Err(NpyError::Dtype(d)) if d == "<i8"));
    }
}
