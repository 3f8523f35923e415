use crate::gpu::{grid, Binding, KernelKey, Recorder};
use crate::tensor::Tensor;

use super::{check_act, check_len, shape_err, OpError};

// Mirrors shaders/attention/rope.wgsl: x, y, inv_freq, params.
const BINDINGS: &[Binding] = &[
    Binding::Read,
    Binding::ReadWrite,
    Binding::Read,
    Binding::Uniform,
];

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    t: u32,
    h: u32,
    half: u32,
    p0: u32,
    groups_x: u32,
    _pad: [u32; 3],
}

const WG: u32 = 256;

/// HF `Qwen2RotaryEmbedding.inv_freq` in f32: `1 / θ^(2i/D)` for i < D/2 (upload once as f32).
pub fn rope_inv_freq(theta: f64, d: usize) -> Vec<f32> {
    (0..d / 2)
        .map(|i| 1.0 / (theta as f32).powf((2 * i) as f32 / d as f32))
        .collect()
}

/// Rotate-half RoPE on `x` (T, H, D) at positions `p0 + t`, written to `y` (T, H, D);
/// pass the same tensor as `x` and `y` to rotate in place. `inv_freq` is f32 (D/2), see
/// [`rope_inv_freq`].
pub fn rope(
    rec: &mut Recorder,
    x: &Tensor,
    inv_freq: &wgpu::Buffer,
    p0: u32,
    y: &Tensor,
) -> Result<(), OpError> {
    const OP: &str = "rope";
    let ctx = rec.ctx();
    let [t, h, d] = x.shape[..] else {
        return Err(shape_err(
            OP,
            format!("x must be (T, H, D), got {:?}", x.shape),
        ));
    };
    if d == 0 || !d.is_multiple_of(2) || t * h == 0 {
        return Err(shape_err(
            OP,
            format!("x {:?} needs T, H > 0 and an even head dim D", x.shape),
        ));
    }
    if y.shape != x.shape {
        return Err(shape_err(
            OP,
            format!("y is {:?}, x is {:?}", y.shape, x.shape),
        ));
    }
    check_act(OP, ctx, &[("x", x), ("y", y)])?;
    check_len(OP, "x", &x.buf, (x.numel() * x.dtype.size()) as u64)?;
    check_len(OP, "y", &y.buf, (y.numel() * y.dtype.size()) as u64)?;
    check_len(OP, "inv_freq", inv_freq, (d / 2 * 4) as u64)?;
    if (p0 as usize + t) as f64 >= (1u64 << 24) as f64 {
        return Err(shape_err(
            OP,
            format!(
                "positions up to {} exceed f32's exact integers",
                p0 as usize + t
            ),
        ));
    }
    let inplace = x.buf == y.buf;
    let key = KernelKey {
        family: "rope",
        entry: if inplace { "rope_inplace" } else { "rope" },
        act: ctx.act(),
        subgroups: false,
        constants: vec![("WG", WG)],
    };
    let p = ctx.pipeline(&key, BINDINGS)?;
    let pairs = t * h * d / 2;
    let g = grid(
        pairs.div_ceil(WG as usize) as u32,
        ctx.limits.max_compute_workgroups_per_dimension,
    );
    let params = Params {
        t: t as u32,
        h: h as u32,
        half: (d / 2) as u32,
        p0,
        groups_x: g[0],
        _pad: [0; 3],
    };
    let ubuf = rec.params(bytemuck::bytes_of(&params));
    // In place, binding 0 is unused: bind the dummy so y is not bound twice.
    let xb = if inplace { &ctx.dummy } else { &x.buf };
    let group = rec.bind(&p, &crate::binds![xb, &y.buf, inv_freq, &ubuf]);
    rec.dispatch(&p, &group, g)?;
    Ok(())
}
