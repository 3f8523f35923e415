//! LayerNorm / GroupNorm cases.
//!
//! Tolerances: the f32 path differs from the f64 reference only by f32 rounding of the
//! statistics (≈1e-6 relative) → atol 1e-5, rtol 1e-4. The f16 path rounds the output to f16
//! (half an ulp = 2⁻¹¹ relative, ≈2e-3 absolute for |y| ≈ 4) → atol 2e-3, rtol 2e-3.

use super::{compare, tol, Comparison};
use crate::gpu::{GpuContext, Recorder};
use crate::ops::{self, OpError};
use crate::reference;
use crate::tensor::{round_act, Tensor};
use crate::util::rng::Rng;

const F32_TOL: (f32, f32) = (1e-5, 1e-4);
const F16_TOL: (f32, f32) = (2e-3, 2e-3);

/// LayerNorm of (rows, cols) with an offset mean (x ~ 3·N(0,1) + 2) so centring matters.
pub async fn layernorm_case(
    ctx: &GpuContext,
    rows: usize,
    cols: usize,
    seed: u64,
) -> Result<Comparison, OpError> {
    let mut rng = Rng::new(seed);
    let x: Vec<f32> = (0..rows * cols).map(|_| rng.normal() * 3.0 + 2.0).collect();
    let x = round_act(ctx.act(), &x);
    let w = rng.uniform_vec(cols, 0.5, 1.5);
    let b = rng.uniform_vec(cols, -0.5, 0.5);
    let eps = 1e-5;
    let want = reference::norm::layernorm(&x, cols, &w, &b, eps);
    let xt = Tensor::from_f32(ctx, "x", &[rows, cols], &x);
    let wb = ctx.upload("w", bytemuck::cast_slice(&w));
    let bb = ctx.upload("b", bytemuck::cast_slice(&b));
    let yt = Tensor::empty(ctx, "y", &[rows, cols]);
    let mut rec = Recorder::new(ctx, "layernorm test");
    ops::layernorm(&mut rec, &xt, &wb, &bb, eps, &yt)?;
    rec.submit()?;
    let got = yt.to_vec(ctx).await?;
    let (atol, rtol) = tol(ctx, F32_TOL, F16_TOL);
    Ok(compare(&got, &want, atol, rtol))
}

/// LayerNorm → Mish (→ + a row of `cols`) in one dispatch (`ops::layernorm_post`: the flow
/// U-Net's CausalBlock1D), against the reference LayerNorm, then Mish in f64, then the row.
pub async fn layernorm_post_case(
    ctx: &GpuContext,
    rows: usize,
    cols: usize,
    add: bool,
    seed: u64,
) -> Result<Comparison, OpError> {
    let mut rng = Rng::new(seed);
    let x: Vec<f32> = (0..rows * cols).map(|_| rng.normal() * 3.0 + 2.0).collect();
    let x = round_act(ctx.act(), &x);
    // w spread wide enough that Mish sees its negative tail and its linear range
    let w = rng.uniform_vec(cols, 0.5, 4.0);
    let b = rng.uniform_vec(cols, -1.5, 1.5);
    let a = round_act(ctx.act(), &rng.uniform_vec(cols, -1.0, 1.0));
    let eps = 1e-5;
    let want: Vec<f32> = reference::norm::layernorm(&x, cols, &w, &b, eps)
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let m = reference::elementwise::mish(v as f64) as f32;
            if add {
                m + a[i % cols]
            } else {
                m
            }
        })
        .collect();
    let xt = Tensor::from_f32(ctx, "x", &[rows, cols], &x);
    let at = Tensor::from_f32(ctx, "add", &[cols], &a);
    let wb = ctx.upload("w", bytemuck::cast_slice(&w));
    let bb = ctx.upload("b", bytemuck::cast_slice(&b));
    let yt = Tensor::empty(ctx, "y", &[rows, cols]);
    let post = if add {
        ops::LnPost::MishAdd(&at)
    } else {
        ops::LnPost::Mish
    };
    let mut rec = Recorder::new(ctx, "layernorm + mish test");
    ops::layernorm_post(&mut rec, &xt, &wb, &bb, eps, &yt, post)?;
    rec.submit()?;
    let got = yt.to_vec(ctx).await?;
    let (atol, rtol) = tol(ctx, F32_TOL, F16_TOL);
    Ok(compare(&got, &want, atol, rtol))
}

/// GroupNorm(groups, c) over a (t, c) tensor whose channels have different offsets and scales
/// (so a per-channel instead of per-group statistic would fail).
pub async fn groupnorm_case(
    ctx: &GpuContext,
    t: usize,
    c: usize,
    groups: usize,
    seed: u64,
) -> Result<Comparison, OpError> {
    let mut rng = Rng::new(seed);
    let off = rng.uniform_vec(c, -3.0, 3.0);
    let scale = rng.uniform_vec(c, 0.5, 2.0);
    let x: Vec<f32> = (0..t * c)
        .map(|i| rng.normal() * scale[i % c] + off[i % c])
        .collect();
    let x = round_act(ctx.act(), &x);
    let w = rng.uniform_vec(c, 0.5, 1.5);
    let b = rng.uniform_vec(c, -0.5, 0.5);
    let eps = 1e-5;
    let want = reference::norm::groupnorm(&x, t, c, groups, &w, &b, eps);
    let xt = Tensor::from_f32(ctx, "x", &[t, c], &x);
    let wb = ctx.upload("w", bytemuck::cast_slice(&w));
    let bb = ctx.upload("b", bytemuck::cast_slice(&b));
    let yt = Tensor::empty(ctx, "y", &[t, c]);
    let mut rec = Recorder::new(ctx, "groupnorm test");
    ops::groupnorm(&mut rec, &xt, groups, &wb, &bb, eps, &yt)?;
    rec.submit()?;
    let got = yt.to_vec(ctx).await?;
    let (atol, rtol) = tol(ctx, F32_TOL, F16_TOL);
    Ok(compare(&got, &want, atol, rtol))
}
