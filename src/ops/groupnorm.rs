use crate::gpu::{grid, Binding, KernelKey, Recorder};
use crate::tensor::Tensor;

use super::{check_act, check_len, shape_err, OpError};

// Mirrors shaders/norm/groupnorm.wgsl: x, w, b, y, stats, params.
const BINDINGS: &[Binding] = &[
    Binding::Read,
    Binding::Read,
    Binding::Read,
    Binding::ReadWrite,
    Binding::ReadWrite,
    Binding::Uniform,
];

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    t: u32,
    c: u32,
    g: u32,
    chunks: u32,
    frames: u32,
    eps: f32,
    groups_x: u32,
    _pad: u32,
}

const WG: u32 = 256;
/// Elements one partial-statistics workgroup reduces (about 32 per thread).
const CHUNK_ELEMS: usize = 8192;

/// GroupNorm(`groups`, C) over a time-major `x` (T, C): statistics per group of C/groups
/// channels over all T frames, then `y = (x − mean) / sqrt(var + eps) · w[c] + b[c]`
/// (`w`, `b` f32 (C)). Three dispatches (partial stats, merge, apply); `y` must not alias `x`.
pub fn groupnorm(
    rec: &mut Recorder,
    x: &Tensor,
    groups: usize,
    w: &wgpu::Buffer,
    b: &wgpu::Buffer,
    eps: f32,
    y: &Tensor,
) -> Result<(), OpError> {
    const OP: &str = "groupnorm";
    let ctx = rec.ctx();
    let [t, c] = x.shape[..] else {
        return Err(shape_err(
            OP,
            format!("x must be (T, C), got {:?}", x.shape),
        ));
    };
    if t == 0 || c == 0 {
        return Err(shape_err(OP, format!("empty input {:?}", x.shape)));
    }
    if groups == 0 || !c.is_multiple_of(groups) {
        return Err(shape_err(
            OP,
            format!(
                "{groups} groups do not divide the {c} channels of x {:?}",
                x.shape
            ),
        ));
    }
    if y.shape != x.shape {
        return Err(shape_err(
            OP,
            format!("y is {:?}, x is {:?}", y.shape, x.shape),
        ));
    }
    if x.buf == y.buf {
        return Err(shape_err(OP, "y aliases x (in-place is not supported)"));
    }
    check_act(OP, ctx, &[("x", x), ("y", y)])?;
    check_len(OP, "x", &x.buf, (t * c * x.dtype.size()) as u64)?;
    check_len(OP, "y", &y.buf, (t * c * y.dtype.size()) as u64)?;
    check_len(OP, "w", w, (c * 4) as u64)?;
    check_len(OP, "b", b, (c * 4) as u64)?;
    let max_dim = ctx.limits.max_compute_workgroups_per_dimension as usize;
    if groups > max_dim {
        return Err(shape_err(
            OP,
            format!("{groups} groups exceed the dispatch limit"),
        ));
    }

    // Frames per partial chunk: about CHUNK_ELEMS elements of one group per workgroup.
    let cg = c / groups;
    let frames = (CHUNK_ELEMS / cg).clamp(1, t);
    let chunks = t.div_ceil(frames);
    if chunks > max_dim {
        return Err(shape_err(
            OP,
            format!("{t} frames exceed the dispatch limit"),
        ));
    }
    let stats = ctx.storage("groupnorm.stats", ((groups * chunks + groups) * 16) as u64);
    let apply = grid((t * c).div_ceil(WG as usize) as u32, max_dim as u32);
    let params = Params {
        t: t as u32,
        c: c as u32,
        g: groups as u32,
        chunks: chunks as u32,
        frames: frames as u32,
        eps,
        groups_x: apply[0],
        _pad: 0,
    };
    let ubuf = rec.params(bytemuck::bytes_of(&params));
    let dispatches = [
        ("groupnorm_partial", [chunks as u32, groups as u32, 1]),
        ("groupnorm_finalize", [groups as u32, 1, 1]),
        ("groupnorm_apply", apply),
    ];
    for (entry, wgs) in dispatches {
        let key = KernelKey {
            family: "groupnorm",
            entry,
            act: ctx.act(),
            subgroups: false,
            constants: vec![("WG", WG)],
        };
        let p = ctx.pipeline(&key, BINDINGS)?;
        let group = rec.bind(&p, &crate::binds![&x.buf, w, b, &y.buf, &stats, &ubuf]);
        rec.dispatch(&p, &group, wgs)?;
    }
    Ok(())
}
