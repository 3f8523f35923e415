use crate::gpu::{grid, Binding, KernelKey, Recorder};
use crate::tensor::{Matrix, Tensor};

use super::{check_len, shape_err, OpError};

// Mirrors shaders/matmul/gemv.wgsl: w, x, bias, y, params.
const BINDINGS: &[Binding] = &[
    Binding::Read,
    Binding::Read,
    Binding::Read,
    Binding::ReadWrite,
    Binding::Uniform,
];

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    m: u32,
    k: u32,
    kp8: u32,
    flags: u32,
    groups_x: u32,
    _pad: [u32; 3],
}

const WG: u32 = 256;
const TPR: u32 = 32;

/// `y (M) = W (M, K) · x (K) [+ bias (M)]`.
pub fn gemv(
    rec: &mut Recorder,
    w: &Matrix,
    x: &Tensor,
    bias: Option<&Tensor>,
    y: &Tensor,
) -> Result<(), OpError> {
    const OP: &str = "gemv";
    let ctx = rec.ctx();
    let (m, k) = (w.rows(), w.cols());
    if x.numel() != k {
        return Err(shape_err(
            OP,
            format!("x has {} elements, W is {m}×{k}", x.numel()),
        ));
    }
    if y.numel() != m {
        return Err(shape_err(
            OP,
            format!("y has {} elements, W is {m}×{k}", y.numel()),
        ));
    }
    if let Some(b) = bias {
        if b.numel() != m {
            return Err(shape_err(
                OP,
                format!("bias has {} elements, W has {m} rows", b.numel()),
            ));
        }
    }
    let act = ctx.act();
    for (name, t) in [("x", Some(x)), ("y", Some(y)), ("bias", bias)] {
        if let Some(t) = t {
            if t.dtype != act {
                return Err(shape_err(
                    OP,
                    format!(
                        "{name} is {}, the device computes in {}",
                        t.dtype.name(),
                        act.name()
                    ),
                ));
            }
        }
    }
    check_len(OP, "x", &x.buf, (k.div_ceil(4) * 4 * act.size()) as u64)?;
    check_len(OP, "y", &y.buf, (m * act.size()) as u64)?;
    let Matrix::F16 {
        buf: wbuf, stride, ..
    } = w;
    if m * stride * 2 > ctx.limits.max_storage_buffer_binding_size as usize {
        return Err(shape_err(
            OP,
            format!(
                "W is {} bytes, over the device's {}-byte binding limit (split it)",
                m * stride * 2,
                ctx.limits.max_storage_buffer_binding_size
            ),
        ));
    }
    check_len(OP, "W", wbuf, (m * stride * 2) as u64)?;

    // Subgroup variant: one row per subgroup, when the adapter's subgroup size is fixed.
    let sg = ctx.caps.subgroup_size;
    let use_sg = ctx.caps.subgroups && sg >= 4 && WG.is_multiple_of(sg);
    let tpr = if use_sg { sg } else { TPR };
    let key = KernelKey {
        family: "gemv",
        entry: if use_sg { "gemv_sg" } else { "gemv" },
        act,
        subgroups: use_sg,
        constants: vec![("WG", WG), ("TPR", tpr)],
    };
    let p = ctx.pipeline(&key, BINDINGS)?;
    let rows_per_wg = WG / tpr;
    let groups = (m as u32).div_ceil(rows_per_wg);
    let g = grid(groups, ctx.limits.max_compute_workgroups_per_dimension);
    let params = Params {
        m: m as u32,
        k: k as u32,
        kp8: (stride / 8) as u32,
        flags: bias.is_some() as u32,
        groups_x: g[0],
        _pad: [0; 3],
    };
    let ubuf = ctx.uniform("gemv.params", bytemuck::bytes_of(&params));
    let bias_buf = bias.map(|b| &b.buf).unwrap_or(&ctx.dummy);
    let group = ctx.bind(&p, &[wbuf, &x.buf, bias_buf, &y.buf, &ubuf]);
    rec.dispatch(&p.pipeline, &group, g)?;
    Ok(())
}
