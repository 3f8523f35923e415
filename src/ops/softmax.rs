use crate::gpu::{Binding, KernelKey, Recorder};
use crate::tensor::Tensor;

use super::{rows_cols, shape_err, OpError};

// Mirrors shaders/reduce/softmax.wgsl: x, y, params.
const BINDINGS: &[Binding] = &[Binding::Read, Binding::ReadWrite, Binding::Uniform];

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    _pad: [u32; 2],
}

/// Row-wise softmax over the last dimension of `x`.
pub fn softmax(rec: &mut Recorder, x: &Tensor, y: &Tensor) -> Result<(), OpError> {
    const OP: &str = "softmax";
    let ctx = rec.ctx();
    let (rows, cols) = rows_cols(OP, x, y)?;
    if rows as u32 > ctx.limits.max_compute_workgroups_per_dimension {
        return Err(shape_err(
            OP,
            format!("{rows} rows exceed the dispatch limit"),
        ));
    }
    let key = KernelKey {
        family: "softmax",
        entry: "softmax",
        act: ctx.act(),
        subgroups: false,
        constants: vec![("WG", 256)],
    };
    let p = ctx.pipeline(&key, BINDINGS)?;
    let params = Params {
        rows: rows as u32,
        cols: cols as u32,
        _pad: [0; 2],
    };
    let ubuf = rec.params(bytemuck::bytes_of(&params));
    let group = rec.bind(&p, &crate::binds![&x.buf, &y.buf, &ubuf]);
    rec.dispatch(&p, &group, [rows as u32, 1, 1])?;
    Ok(())
}
