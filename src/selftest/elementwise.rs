//! Activation / arithmetic cases.
//!
//! Tolerances: the f32 path's error is the activation's f32 evaluation (erfc fit 1.2e-7
//! relative, exp/tanh a few ulp) → atol 1e-6, rtol 1e-5; Snake divides sin² by α (α ≥ 0.1
//! here), amplifying sin's absolute error ≈10× → atol 1e-5. The f16 path rounds the output to
//! f16 (2⁻¹¹ relative) → atol 1e-3, rtol 1e-3 (values below 1e-3 are tails of GELU/SiLU/Mish).

use super::{compare, tol, Comparison};
use crate::gpu::{GpuContext, Recorder};
use crate::ops::{self, Binary, OpError, Unary};
use crate::reference::elementwise as r;
use crate::tensor::{round_act, Tensor};
use crate::util::rng::Rng;

const F16_TOL: (f32, f32) = (1e-3, 1e-3);

/// Inputs covering the interesting ranges: mostly N(0, 3²), plus ±large values that overflow
/// naive exp/tanh (±20 … ±90).
fn inputs(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| match i % 16 {
            7 => rng.uniform(20.0, 90.0),
            11 => -rng.uniform(20.0, 90.0),
            _ => rng.normal() * 3.0,
        })
        .collect()
}

/// `f` on (rows, cols); in place when `inplace`.
pub async fn unary_case(
    ctx: &GpuContext,
    f: Unary,
    rows: usize,
    cols: usize,
    inplace: bool,
    seed: u64,
) -> Result<Comparison, OpError> {
    let mut rng = Rng::new(seed);
    let x = round_act(ctx.act(), &inputs(&mut rng, rows * cols));
    let want: Vec<f32> = x
        .iter()
        .map(|v| {
            let v = *v as f64;
            (match f {
                Unary::Gelu => r::gelu(v),
                Unary::Silu => r::silu(v),
                Unary::Tanh => v.tanh(),
                Unary::Mish => r::mish(v),
                Unary::Elu => r::elu(v),
                Unary::LeakyRelu(s) => r::leaky_relu(v, s as f64),
                Unary::Scale(s) => v * s as f64,
            }) as f32
        })
        .collect();
    let xt = Tensor::from_f32(ctx, "x", &[rows, cols], &x);
    let mut rec = Recorder::new(ctx, "unary test");
    let got = if inplace {
        ops::unary(&mut rec, f, &xt, &xt)?;
        rec.submit()?;
        xt.to_vec(ctx).await?
    } else {
        let yt = Tensor::empty(ctx, "y", &[rows, cols]);
        ops::unary(&mut rec, f, &xt, &yt)?;
        rec.submit()?;
        yt.to_vec(ctx).await?
    };
    let (atol, rtol) = tol(ctx, (1e-6, 1e-5), F16_TOL);
    Ok(compare(&got, &want, atol, rtol))
}

/// `a ∘ b` on (rows, cols), `b` of the same shape or one (cols) row when `broadcast`;
/// in place (y = a) when `inplace`.
pub async fn binary_case(
    ctx: &GpuContext,
    f: Binary,
    rows: usize,
    cols: usize,
    broadcast: bool,
    inplace: bool,
    seed: u64,
) -> Result<Comparison, OpError> {
    let mut rng = Rng::new(seed);
    let a = round_act(ctx.act(), &rng.normal_vec(rows * cols, 2.0));
    let bn = if broadcast { cols } else { rows * cols };
    let b = round_act(ctx.act(), &rng.normal_vec(bn, 2.0));
    let want: Vec<f32> = a
        .iter()
        .enumerate()
        .map(|(i, u)| {
            let (u, v) = (*u as f64, b[i % bn] as f64);
            (match f {
                Binary::Add => u + v,
                Binary::Mul => u * v,
            }) as f32
        })
        .collect();
    let at = Tensor::from_f32(ctx, "a", &[rows, cols], &a);
    let bshape: &[usize] = if broadcast { &[cols] } else { &[rows, cols] };
    let bt = Tensor::from_f32(ctx, "b", bshape, &b);
    let mut rec = Recorder::new(ctx, "binary test");
    let got = if inplace {
        ops::binary(&mut rec, f, &at, &bt, &at)?;
        rec.submit()?;
        at.to_vec(ctx).await?
    } else {
        let yt = Tensor::empty(ctx, "y", &[rows, cols]);
        ops::binary(&mut rec, f, &at, &bt, &yt)?;
        rec.submit()?;
        yt.to_vec(ctx).await?
    };
    // exact in f32 up to one rounding
    let (atol, rtol) = tol(ctx, (1e-6, 1e-6), F16_TOL);
    Ok(compare(&got, &want, atol, rtol))
}

/// Snake on (t, c) with α ∈ [0.1, 3] per channel.
pub async fn snake_case(
    ctx: &GpuContext,
    t: usize,
    c: usize,
    seed: u64,
) -> Result<Comparison, OpError> {
    let mut rng = Rng::new(seed);
    let x = round_act(ctx.act(), &rng.normal_vec(t * c, 3.0));
    let alpha = rng.uniform_vec(c, 0.1, 3.0);
    let want = r::snake(&x, &alpha);
    let xt = Tensor::from_f32(ctx, "x", &[t, c], &x);
    let ab = ctx.upload("alpha", bytemuck::cast_slice(&alpha));
    let yt = Tensor::empty(ctx, "y", &[t, c]);
    let mut rec = Recorder::new(ctx, "snake test");
    ops::snake(&mut rec, &xt, &ab, &yt)?;
    rec.submit()?;
    let got = yt.to_vec(ctx).await?;
    let (atol, rtol) = tol(ctx, (1e-5, 1e-5), F16_TOL);
    Ok(compare(&got, &want, atol, rtol))
}

/// SwiGLU on (t, i): from two tensors, or from one fused (t, 2i) `[gate | up]` when `fused`.
pub async fn swiglu_case(
    ctx: &GpuContext,
    t: usize,
    i: usize,
    fused: bool,
    seed: u64,
) -> Result<Comparison, OpError> {
    let mut rng = Rng::new(seed);
    let gate = round_act(ctx.act(), &inputs(&mut rng, t * i));
    let up = round_act(ctx.act(), &rng.normal_vec(t * i, 2.0));
    let want = r::swiglu(&gate, &up);
    let yt = Tensor::empty(ctx, "y", &[t, i]);
    let mut rec = Recorder::new(ctx, "swiglu test");
    if fused {
        let gu: Vec<f32> = (0..t)
            .flat_map(|f| {
                gate[f * i..(f + 1) * i]
                    .iter()
                    .chain(&up[f * i..(f + 1) * i])
                    .copied()
                    .collect::<Vec<_>>()
            })
            .collect();
        let gut = Tensor::from_f32(ctx, "gate_up", &[t, 2 * i], &gu);
        ops::swiglu_fused(&mut rec, &gut, &yt)?;
    } else {
        let gt = Tensor::from_f32(ctx, "gate", &[t, i], &gate);
        let ut = Tensor::from_f32(ctx, "up", &[t, i], &up);
        ops::swiglu(&mut rec, &gt, &ut, &yt)?;
    }
    rec.submit()?;
    let got = yt.to_vec(ctx).await?;
    let (atol, rtol) = tol(ctx, (1e-6, 1e-5), F16_TOL);
    Ok(compare(&got, &want, atol, rtol))
}
