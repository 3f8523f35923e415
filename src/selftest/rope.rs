//! RoPE cases.
//!
//! Tolerances: the angle is the same f32 product on both sides; the GPU's range reduction
//! adds ≈3e-7 rad at positions ≈ 8000 and sin/cos their own f32 error, so the f32 path gets
//! atol 1e-5, rtol 1e-5. The f16 path rounds the output to f16 (2⁻¹¹ relative): atol 1e-3,
//! rtol 2e-3.

use super::{compare, tol, Comparison};
use crate::gpu::{GpuContext, Recorder};
use crate::ops::{self, OpError};
use crate::reference;
use crate::tensor::{round_act, Tensor};
use crate::util::rng::Rng;

/// RoPE on (t, h, d) at positions p0.., θ = `theta`; in place when `inplace`.
#[allow(clippy::too_many_arguments)]
pub async fn rope_case(
    ctx: &GpuContext,
    t: usize,
    h: usize,
    d: usize,
    theta: f64,
    p0: u32,
    inplace: bool,
    seed: u64,
) -> Result<Comparison, OpError> {
    let mut rng = Rng::new(seed);
    let x = round_act(ctx.act(), &rng.normal_vec(t * h * d, 1.5));
    let inv = ops::rope_inv_freq(theta, d);
    let want = reference::rope::rope(&x, t, h, d, &inv, p0 as usize);
    let xt = Tensor::from_f32(ctx, "x", &[t, h, d], &x);
    let ib = ctx.upload("inv_freq", bytemuck::cast_slice(&inv));
    let mut rec = Recorder::new(ctx, "rope test");
    let got = if inplace {
        ops::rope(&mut rec, &xt, &ib, p0, &xt)?;
        rec.submit()?;
        xt.to_vec(ctx).await?
    } else {
        let yt = Tensor::empty(ctx, "y", &[t, h, d]);
        ops::rope(&mut rec, &xt, &ib, p0, &yt)?;
        rec.submit()?;
        yt.to_vec(ctx).await?
    };
    let (atol, rtol) = tol(ctx, (1e-5, 1e-5), (1e-3, 2e-3));
    Ok(compare(&got, &want, atol, rtol))
}
