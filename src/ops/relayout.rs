//! Load-time relayout of raw weights on the GPU (see shaders/util/relayout.wgsl): a strided
//! gather from a checkpoint's layout (f16 or f32) into a kernel's layout (f16 pairs or f32),
//! so large non-matrix weights (conv kernels, the bridge's gated conv, RVQ codebooks) are laid
//! out where they live instead of passing through wasm memory.

use crate::gpu::{grid, Binding, KernelKey, Recorder};
use crate::tensor::RawDType;

use super::{check_len, shape_err, OpError};

// Mirrors shaders/util/relayout.wgsl: src, dst, params.
const BINDINGS: &[Binding] = &[Binding::Read, Binding::ReadWrite, Binding::Uniform];
const WG: u32 = 256;

/// A 3-D box `(x, y, z)` of the output: element (x, y, z) goes to
/// `dst[dbase + x·dx + y·dy + z]` and comes from `src[sbase + x·sx + y·sy + z·sz]`, or is 0
/// where `z ≥ zvalid`. Indices count elements, not bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Strided {
    pub x: usize,
    pub y: usize,
    pub z: usize,
    pub zvalid: usize,
    pub sbase: usize,
    pub sx: usize,
    pub sy: usize,
    pub sz: usize,
    pub dbase: usize,
    pub dx: usize,
    pub dy: usize,
}

impl Strided {
    /// A contiguous run: `z` elements from the start of both buffers, 0 from `zvalid` on.
    pub fn flat(z: usize, zvalid: usize) -> Strided {
        Strided {
            x: 1,
            y: 1,
            z,
            zvalid,
            sz: 1,
            ..Default::default()
        }
    }

    /// Highest source element read + 1 (0 for an empty box).
    pub fn src_end(&self) -> usize {
        if self.x == 0 || self.y == 0 || self.zvalid.min(self.z) == 0 {
            return 0;
        }
        self.sbase
            + (self.x - 1) * self.sx
            + (self.y - 1) * self.sy
            + (self.zvalid.min(self.z) - 1) * self.sz
            + 1
    }

    /// Highest output element written + 1 (0 for an empty box).
    pub fn dst_end(&self) -> usize {
        if self.x == 0 || self.y == 0 || self.z == 0 {
            return 0;
        }
        self.dbase + (self.x - 1) * self.dx + (self.y - 1) * self.dy + self.z
    }
}

/// Records the gather `s` from `src` (elements of `src_dtype`) into `dst` (`dst_dtype`).
pub fn relayout(
    rec: &mut Recorder,
    src: &wgpu::Buffer,
    src_dtype: RawDType,
    dst: &wgpu::Buffer,
    dst_dtype: RawDType,
    s: &Strided,
) -> Result<(), OpError> {
    const OP: &str = "relayout";
    let per = match dst_dtype {
        RawDType::F16 => 2,
        RawDType::F32 => 1,
    };
    if dst_dtype == RawDType::F16
        && [s.z, s.dbase, s.dx, s.dy]
            .iter()
            .any(|v| !v.is_multiple_of(2))
    {
        return Err(shape_err(
            OP,
            format!("f16 output needs even z, dbase, dx and dy: {s:?}"),
        ));
    }
    let threads = s.x * s.y * (s.z / per);
    if threads == 0 {
        return Ok(());
    }
    let elem = |d: RawDType| match d {
        RawDType::F16 => 2u64,
        RawDType::F32 => 4u64,
    };
    check_len(
        OP,
        "src",
        src,
        (s.src_end() as u64 * elem(src_dtype)).div_ceil(4) * 4,
    )?;
    check_len(OP, "dst", dst, s.dst_end() as u64 * elem(dst_dtype))?;
    let entry = match (src_dtype, dst_dtype) {
        (RawDType::F16, RawDType::F16) => "f16_to_f16",
        (RawDType::F32, RawDType::F16) => "f32_to_f16",
        (RawDType::F16, RawDType::F32) => "f16_to_f32",
        // f32 → f32 is a plain word copy
        (RawDType::F32, RawDType::F32) => "u32_to_u32",
    };
    dispatch(rec, OP, entry, src, dst, s, threads)
}

/// Binds and records one relayout kernel over `threads` threads (shapes already checked).
fn dispatch(
    rec: &mut Recorder,
    op: &'static str,
    entry: &'static str,
    src: &wgpu::Buffer,
    dst: &wgpu::Buffer,
    s: &Strided,
    threads: usize,
) -> Result<(), OpError> {
    let ctx = rec.ctx();
    let limit = u32::MAX as usize;
    if threads > limit || s.src_end() > limit || s.dst_end() > limit {
        return Err(shape_err(
            op,
            format!("box too large for 32-bit indices: {s:?}"),
        ));
    }
    let key = KernelKey {
        family: "relayout",
        entry,
        act: ctx.act(),
        subgroups: false,
        constants: vec![("WG", WG)],
    };
    let p = ctx.pipeline(&key, BINDINGS)?;
    let g = grid(
        (threads as u32).div_ceil(WG),
        ctx.limits.max_compute_workgroups_per_dimension,
    );
    let mut params = [
        s.x, s.y, s.z, s.zvalid, s.sbase, s.sx, s.sy, s.sz, s.dbase, s.dx, s.dy, 0,
    ]
    .map(|v| v as u32);
    params[11] = g[0];
    let u = rec.params(bytemuck::cast_slice(&params));
    let group = rec.bind(&p, &crate::binds![src, dst, &u]);
    rec.dispatch(&p, &group, g)?;
    Ok(())
}

/// Records the gather `s` over raw 32-bit words (bit-exact: quantised blocks, packed f16).
pub fn relayout_words(
    rec: &mut Recorder,
    src: &wgpu::Buffer,
    dst: &wgpu::Buffer,
    s: &Strided,
) -> Result<(), OpError> {
    const OP: &str = "relayout_words";
    let threads = s.x * s.y * s.z;
    if threads == 0 {
        return Ok(());
    }
    check_len(OP, "src", src, s.src_end() as u64 * 4)?;
    check_len(OP, "dst", dst, s.dst_end() as u64 * 4)?;
    dispatch(rec, OP, "u32_to_u32", src, dst, s, threads)
}

/// An f32 buffer of `shape` as an activation tensor: the same buffer where activations are
/// f32, else cast to f16 on the GPU (one dispatch).
pub fn f32_to_act(
    rec: &mut Recorder,
    src: &wgpu::Buffer,
    shape: &[usize],
) -> Result<crate::tensor::Tensor, OpError> {
    let ctx = rec.ctx();
    let n: usize = shape.iter().product();
    check_len("f32_to_act", "src", src, n as u64 * 4)?;
    let dtype = ctx.act();
    if dtype == crate::gpu::ActDType::F32 {
        return Ok(crate::tensor::Tensor {
            buf: src.clone(),
            shape: shape.to_vec(),
            dtype,
        });
    }
    let even = n.div_ceil(2) * 2;
    let dst = ctx.storage("f32_to_act", (even * 2) as u64);
    relayout(
        rec,
        src,
        RawDType::F32,
        &dst,
        RawDType::F16,
        &Strided::flat(even, n),
    )?;
    Ok(crate::tensor::Tensor {
        buf: dst,
        shape: shape.to_vec(),
        dtype,
    })
}

/// Whether a buffer of `bytes` can be created and bound whole on this device.
fn fits_one_binding(ctx: &crate::gpu::GpuContext, bytes: usize) -> bool {
    let (limit, _) = crate::weights::manifest::binding_limit(
        ctx.limits.max_storage_buffer_binding_size,
        ctx.limits.max_buffer_size,
    );
    bytes as u64 <= limit
}

/// Interleaves the rows of two matrices of one shape and format into one of twice the rows:
/// row `2i` is `a`'s row i, row `2i + 1` is `b`'s (the layout of a SwiGLU [`super::gemv`]:
/// gate and up in one product). Bit-exact word copies on the GPU. `None` where a row does not
/// end on a word boundary of the scales (q8 with an odd number of blocks per row), or where
/// the result would not fit one binding (the real gate/up at f16, 272 MB, on a GPU binding 256
/// MiB: the caller keeps two products).
pub fn interleave_rows(
    rec: &mut Recorder,
    a: &crate::tensor::Matrix,
    b: &crate::tensor::Matrix,
) -> Result<Option<crate::tensor::Matrix>, OpError> {
    use crate::tensor::Matrix;
    const OP: &str = "interleave_rows";
    let (rows, cols) = (a.rows(), a.cols());
    if b.rows() != rows || b.cols() != cols || a.weight_format() != b.weight_format() {
        return Err(shape_err(
            OP,
            format!(
                "{}×{} {} and {}×{} {} differ",
                rows,
                cols,
                a.format(),
                b.rows(),
                b.cols(),
                b.format()
            ),
        ));
    }
    let Some((dw, sw)) = a.row_words() else {
        return Ok(None);
    };
    let ctx = rec.ctx();
    if !fits_one_binding(ctx, 2 * rows * dw.max(sw) * 4) {
        return Ok(None);
    }
    let interleave = |rec: &mut Recorder,
                      w: usize,
                      pick: fn(&Matrix) -> Option<&wgpu::Buffer>|
     -> Result<Option<wgpu::Buffer>, OpError> {
        let (Some(sa), Some(sb)) = (pick(a), pick(b)) else {
            return Ok(None);
        };
        let dst = ctx.storage("interleaved", (2 * rows * w * 4) as u64);
        for (which, src) in [(0, sa), (1, sb)] {
            let s = Strided {
                x: rows,
                y: 1,
                z: w,
                zvalid: w,
                sbase: 0,
                sx: w,
                sy: 0,
                sz: 1,
                dbase: which * w,
                dx: 2 * w,
                dy: 0,
            };
            relayout_words(rec, src, &dst, &s)?;
        }
        Ok(Some(dst))
    };
    let data = interleave(rec, dw, |m| Some(m.data()))?;
    let scales = interleave(rec, sw, |m| m.scales())?;
    let Some(data) = data else {
        return Ok(None);
    };
    Ok(same_format(a, data, scales, 2 * rows, cols))
}

/// Stacks the rows of matrices of one format and width: `[a; b; …]` (a fused q/k/v
/// projection from three). Bit-exact word copies on the GPU. `None` where a row does not end on
/// a word boundary of the scales (q8 with an odd number of blocks per row), or where the result
/// would not fit one binding.
pub fn concat_rows(
    rec: &mut Recorder,
    parts: &[&crate::tensor::Matrix],
) -> Result<Option<crate::tensor::Matrix>, OpError> {
    use crate::tensor::Matrix;
    const OP: &str = "concat_rows";
    let Some(first) = parts.first() else {
        return Err(shape_err(OP, "no matrices"));
    };
    let cols = first.cols();
    if let Some(m) = parts
        .iter()
        .find(|m| m.cols() != cols || m.weight_format() != first.weight_format())
    {
        return Err(shape_err(
            OP,
            format!(
                "{}×{} {} and {}×{} {} differ",
                first.rows(),
                cols,
                first.format(),
                m.rows(),
                m.cols(),
                m.format()
            ),
        ));
    }
    let Some((dw, sw)) = first.row_words() else {
        return Ok(None);
    };
    let ctx = rec.ctx();
    let rows: usize = parts.iter().map(|m| m.rows()).sum();
    if !fits_one_binding(ctx, rows * dw.max(sw) * 4) {
        return Ok(None);
    }
    let stack = |rec: &mut Recorder,
                 w: usize,
                 pick: fn(&Matrix) -> Option<&wgpu::Buffer>|
     -> Result<Option<wgpu::Buffer>, OpError> {
        if w == 0 {
            return Ok(None);
        }
        let dst = ctx.storage("stacked", (rows * w * 4) as u64);
        let mut r0 = 0;
        for m in parts {
            let Some(src) = pick(m) else {
                return Ok(None);
            };
            let n = m.rows() * w;
            let s = Strided {
                dbase: r0 * w,
                ..Strided::flat(n, n)
            };
            relayout_words(rec, src, &dst, &s)?;
            r0 += m.rows();
        }
        Ok(Some(dst))
    };
    let Some(data) = stack(rec, dw, |m| Some(m.data()))? else {
        return Ok(None);
    };
    let scales = stack(rec, sw, |m| m.scales())?;
    Ok(same_format(first, data, scales, rows, cols))
}

/// A matrix of `template`'s format (and f16 row stride) over new buffers and shape; `None` for
/// a quantised format without scales.
fn same_format(
    template: &crate::tensor::Matrix,
    data: wgpu::Buffer,
    scales: Option<wgpu::Buffer>,
    rows: usize,
    cols: usize,
) -> Option<crate::tensor::Matrix> {
    use crate::tensor::Matrix;
    Some(match (template, scales) {
        (Matrix::F16 { stride, .. }, _) => Matrix::F16 {
            buf: data,
            rows,
            cols,
            stride: *stride,
        },
        (Matrix::Q8 { .. }, Some(scales)) => Matrix::Q8 {
            data,
            scales,
            rows,
            cols,
        },
        (Matrix::Q4 { .. }, Some(scales)) => Matrix::Q4 {
            data,
            scales,
            rows,
            cols,
        },
        _ => return None,
    })
}
