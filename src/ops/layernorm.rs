use crate::gpu::{grid, Binding, KernelKey, Recorder};
use crate::tensor::Tensor;

use super::{check_act, check_len, rows_cols, shape_err, OpError};

// Mirrors shaders/norm/layernorm.wgsl: x, w, b, y, params, add.
const BINDINGS: &[Binding] = &[
    Binding::Read,
    Binding::Read,
    Binding::Read,
    Binding::ReadWrite,
    Binding::Uniform,
    Binding::Read,
];

/// What follows the affine part of a [`layernorm_post`], in f32 before the one rounding.
#[derive(Clone, Copy, Default)]
pub enum LnPost<'a> {
    #[default]
    None,
    /// Mish.
    Mish,
    /// Mish, then this `(C)` row added to every row.
    MishAdd(&'a Tensor),
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    eps: f32,
    groups_x: u32,
}

/// `y = (x − mean) / sqrt(var + eps) · w + b` over the last dimension of `x` (R, C);
/// `w`, `b` are f32 (C). `y` must be a different buffer from `x`.
pub fn layernorm(
    rec: &mut Recorder,
    x: &Tensor,
    w: &wgpu::Buffer,
    b: &wgpu::Buffer,
    eps: f32,
    y: &Tensor,
) -> Result<(), OpError> {
    layernorm_post(rec, x, w, b, eps, y, LnPost::None)
}

/// [`layernorm`] followed by `post` in the same dispatch.
pub fn layernorm_post(
    rec: &mut Recorder,
    x: &Tensor,
    w: &wgpu::Buffer,
    b: &wgpu::Buffer,
    eps: f32,
    y: &Tensor,
    post: LnPost,
) -> Result<(), OpError> {
    const OP: &str = "layernorm";
    let ctx = rec.ctx();
    let (rows, cols) = rows_cols(OP, x, y)?;
    if x.buf == y.buf {
        return Err(shape_err(OP, "y aliases x (in-place is not supported)"));
    }
    check_act(OP, ctx, &[("x", x), ("y", y)])?;
    check_len(OP, "x", &x.buf, (x.numel() * x.dtype.size()) as u64)?;
    check_len(OP, "y", &y.buf, (y.numel() * y.dtype.size()) as u64)?;
    check_len(OP, "w", w, (cols * 4) as u64)?;
    check_len(OP, "b", b, (cols * 4) as u64)?;
    let (code, add) = match post {
        LnPost::None => (0, None),
        LnPost::Mish => (1, None),
        LnPost::MishAdd(a) => {
            if a.numel() != cols {
                return Err(shape_err(
                    OP,
                    format!("the added row is {:?}, rows have {cols} columns", a.shape),
                ));
            }
            check_act(OP, ctx, &[("add", a)])?;
            (2, Some(a))
        }
    };
    if add.is_some_and(|a| a.buf == y.buf) {
        return Err(shape_err(OP, "the added row aliases y"));
    }
    let key = KernelKey {
        family: "layernorm",
        entry: "layernorm",
        act: ctx.act(),
        subgroups: false,
        constants: vec![("WG", 256), ("POST", code)],
    };
    let p = ctx.pipeline(&key, BINDINGS)?;
    let g = grid(rows as u32, ctx.limits.max_compute_workgroups_per_dimension);
    let params = Params {
        rows: rows as u32,
        cols: cols as u32,
        eps,
        groups_x: g[0],
    };
    let ubuf = rec.params(bytemuck::bytes_of(&params));
    let add = add.map(|a| &a.buf).unwrap_or(&ctx.dummy);
    let group = rec.bind(&p, &crate::binds![&x.buf, w, b, &y.buf, &ubuf, add]);
    rec.dispatch(&p, &group, g)?;
    Ok(())
}
