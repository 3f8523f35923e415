use crate::gpu::{Binding, KernelKey, Recorder};
use crate::tensor::Tensor;

use super::{check_len, rows_cols, shape_err, OpError};

// Mirrors shaders/norm/rmsnorm.wgsl: x, w, y, params.
const BINDINGS: &[Binding] = &[
    Binding::Read,
    Binding::Read,
    Binding::ReadWrite,
    Binding::Uniform,
];

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    eps: f32,
    _pad: u32,
}

/// `y = x / sqrt(mean(x²) + eps) · w` over the last dimension of `x` (R, C); `w` is f32 (C).
pub fn rmsnorm(
    rec: &mut Recorder,
    x: &Tensor,
    w: &wgpu::Buffer,
    eps: f32,
    y: &Tensor,
) -> Result<(), OpError> {
    const OP: &str = "rmsnorm";
    let ctx = rec.ctx();
    let (rows, cols) = rows_cols(OP, x, y)?;
    check_len(OP, "w", w, (cols * 4) as u64)?;
    if rows as u32 > ctx.limits.max_compute_workgroups_per_dimension {
        return Err(shape_err(
            OP,
            format!("{rows} rows exceed the dispatch limit"),
        ));
    }
    let key = KernelKey {
        family: "rmsnorm",
        entry: "rmsnorm",
        act: ctx.act(),
        subgroups: false,
        constants: vec![("WG", 256)],
    };
    let p = ctx.pipeline(&key, BINDINGS)?;
    let params = Params {
        rows: rows as u32,
        cols: cols as u32,
        eps,
        _pad: 0,
    };
    let ubuf = rec.params(bytemuck::bytes_of(&params));
    let group = rec.bind(&p, &crate::binds![&x.buf, w, &y.buf, &ubuf]);
    rec.dispatch(&p, &group, [rows as u32, 1, 1])?;
    Ok(())
}
