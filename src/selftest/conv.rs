//! Conv cases. Weights are f16 (the reference sees the rounded values), bias f32.
//!
//! Tolerances: the f32 path sums Cin_g·K products in f32 (≈1e-6 relative) → atol 1e-4,
//! rtol 1e-4 as gemv; the f16 path rounds the output to f16 → atol 1e-3, rtol 2e-3.
//! AvgPool is a k-term f32 mean: f32 atol 1e-6, rtol 1e-5.

use super::{compare, tol, Comparison};
use crate::gpu::{GpuContext, Recorder};
use crate::ops::{self, Conv1dSpec, ConvTranspose1dSpec, ConvWeight, OpError};
use crate::reference;
use crate::tensor::{round_act, Tensor};
use crate::util::rng::Rng;

const F32_TOL: (f32, f32) = (1e-4, 1e-4);
const F16_TOL: (f32, f32) = (1e-3, 2e-3);

fn f16_round(v: &[f32]) -> Vec<f32> {
    v.iter().map(|x| half::f16::from_f32(*x).to_f32()).collect()
}

/// One Conv1d / ConvTranspose1d shape: `(tin, cin, cout, k, groups)` plus the hyper-parameters;
/// `batch` sequences of `tin` frames (Conv1d only; ConvTranspose1d takes 1).
#[derive(Clone, Copy, Debug)]
pub struct ConvShape {
    pub batch: usize,
    pub tin: usize,
    pub cin: usize,
    pub cout: usize,
    pub k: usize,
    pub groups: usize,
    pub bias: bool,
}

pub async fn conv1d_case(
    ctx: &GpuContext,
    s: ConvShape,
    spec: Conv1dSpec,
    seed: u64,
) -> Result<Comparison, OpError> {
    let mut rng = Rng::new(seed);
    let cin_g = s.cin / s.groups;
    let b = s.batch.max(1);
    let x = round_act(ctx.act(), &rng.normal_vec(b * s.tin * s.cin, 1.0));
    let w = f16_round(&rng.normal_vec(s.cout * cin_g * s.k, 1.0 / ((cin_g * s.k) as f32).sqrt()));
    let bv = rng.uniform_vec(s.cout, -0.5, 0.5);
    let bias = s.bias.then_some(&bv[..]);
    // each sequence on its own through the reference
    let want: Vec<f32> = x
        .chunks(s.tin * s.cin)
        .flat_map(|xs| {
            reference::conv::conv1d(
                xs,
                s.tin,
                s.cin,
                &w,
                s.cout,
                s.k,
                bias,
                spec.stride,
                spec.pad_left,
                spec.pad_right,
                spec.dilation,
                s.groups,
            )
        })
        .collect();
    let rows = want.len() / s.cout;
    let wt = ConvWeight::conv1d(ctx, "w", &w, s.cout, cin_g, s.k, s.groups)?;
    let xt = Tensor::from_f32(ctx, "x", &[b * s.tin, s.cin], &x);
    let yt = Tensor::empty(ctx, "y", &[rows, s.cout]);
    let mut rec = Recorder::new(ctx, "conv1d test");
    let bb = ops::ConvBias::upload(&mut rec, "b", &bv)?;
    ops::conv1d_batch(&mut rec, &xt, &wt, s.bias.then_some(&bb), spec, b, &yt)?;
    rec.submit()?;
    let got = yt.to_vec(ctx).await?;
    let (atol, rtol) = tol(ctx, F32_TOL, F16_TOL);
    Ok(compare(&got, &want, atol, rtol))
}

pub async fn conv_transpose1d_case(
    ctx: &GpuContext,
    s: ConvShape,
    spec: ConvTranspose1dSpec,
    seed: u64,
) -> Result<Comparison, OpError> {
    let mut rng = Rng::new(seed);
    let cout_g = s.cout / s.groups;
    let cin_g = s.cin / s.groups;
    let x = round_act(ctx.act(), &rng.normal_vec(s.tin * s.cin, 1.0));
    let w = f16_round(&rng.normal_vec(s.cin * cout_g * s.k, 1.0 / (cin_g as f32).sqrt()));
    let b = rng.uniform_vec(s.cout, -0.5, 0.5);
    let bias = s.bias.then_some(&b[..]);
    let want = reference::conv::conv_transpose1d(
        &x,
        s.tin,
        s.cin,
        &w,
        s.cout,
        s.k,
        bias,
        spec.stride,
        spec.padding,
        spec.output_padding,
        spec.dilation,
        s.groups,
    );
    let tout = want.len() / s.cout;
    let wt = ConvWeight::conv_transpose1d(ctx, "w", &w, s.cin, cout_g, s.k, s.groups)?;
    let xt = Tensor::from_f32(ctx, "x", &[s.tin, s.cin], &x);
    let yt = Tensor::empty(ctx, "y", &[tout, s.cout]);
    let mut rec = Recorder::new(ctx, "conv_transpose1d test");
    let bb = ops::ConvBias::upload(&mut rec, "b", &b)?;
    ops::conv_transpose1d(&mut rec, &xt, &wt, s.bias.then_some(&bb), spec, &yt)?;
    rec.submit()?;
    let got = yt.to_vec(ctx).await?;
    let (atol, rtol) = tol(ctx, F32_TOL, F16_TOL);
    Ok(compare(&got, &want, atol, rtol))
}

pub async fn avgpool1d_case(
    ctx: &GpuContext,
    t: usize,
    c: usize,
    k: usize,
    seed: u64,
) -> Result<Comparison, OpError> {
    let mut rng = Rng::new(seed);
    let x = round_act(ctx.act(), &rng.normal_vec(t * c, 2.0));
    let want = reference::conv::avgpool1d(&x, t, c, k);
    let xt = Tensor::from_f32(ctx, "x", &[t, c], &x);
    let yt = Tensor::empty(ctx, "y", &[t / k, c]);
    let mut rec = Recorder::new(ctx, "avgpool1d test");
    ops::avgpool1d(&mut rec, &xt, k, &yt)?;
    rec.submit()?;
    let got = yt.to_vec(ctx).await?;
    let (atol, rtol) = tol(ctx, (1e-6, 1e-5), (1e-3, 1e-3));
    Ok(compare(&got, &want, atol, rtol))
}
