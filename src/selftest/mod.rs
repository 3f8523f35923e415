//! Kernel self-tests: seeded random inputs, the GPU result against the CPU reference.
//!
//! The same cases run under `cargo test` (native, lavapipe), in `bca selftest`, and in the web
//! page (headless Chromium's WebGPU), so "works in the browser" means the same comparisons.

pub mod conv;
pub mod elementwise;
pub mod embedding;
pub mod norm;
pub mod rope;

use serde::Serialize;

use crate::gpu::{GpuContext, Recorder};
use crate::ops::{self, OpError};
use crate::reference;
use crate::tensor::{round_act, Matrix, Tensor};
use crate::util::rng::Rng;

/// How a GPU result compares with its reference: `|got − want| ≤ atol + rtol·|want|`.
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    pub n: usize,
    pub bad: usize,
    pub max_abs_err: f32,
    pub worst_index: usize,
    pub atol: f32,
    pub rtol: f32,
}

impl Comparison {
    pub fn ok(&self) -> bool {
        self.bad == 0 && self.n > 0
    }
}

impl std::fmt::Display for Comparison {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} of {} outside atol {:.0e} + rtol {:.0e}; max abs err {:.3e} at index {}",
            self.bad, self.n, self.atol, self.rtol, self.max_abs_err, self.worst_index
        )
    }
}

pub fn compare(got: &[f32], want: &[f32], atol: f32, rtol: f32) -> Comparison {
    let mut c = Comparison {
        n: want.len(),
        bad: 0,
        max_abs_err: 0.0,
        worst_index: 0,
        atol,
        rtol,
    };
    if got.len() != want.len() {
        c.bad = want.len().max(got.len());
        c.max_abs_err = f32::INFINITY;
        return c;
    }
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let e = (g - w).abs();
        let e = if e.is_nan() { f32::INFINITY } else { e };
        if e > c.max_abs_err || (i == 0 && e == 0.0) {
            c.max_abs_err = e;
            c.worst_index = i;
        }
        if e > atol + rtol * w.abs() {
            c.bad += 1;
        }
    }
    c
}

#[derive(Clone, Debug, Serialize)]
pub struct CaseResult {
    pub name: String,
    pub passed: bool,
    pub detail: String,
}

impl CaseResult {
    fn from(name: String, r: Result<Comparison, OpError>) -> Self {
        match r {
            Ok(c) => CaseResult {
                passed: c.ok(),
                detail: c.to_string(),
                name,
            },
            Err(e) => CaseResult {
                name,
                passed: false,
                detail: format!("error: {e}"),
            },
        }
    }
}

/// (tolerance for the f32 path, for the f16 path) as (atol, rtol).
fn tol(ctx: &GpuContext, f32_tol: (f32, f32), f16_tol: (f32, f32)) -> (f32, f32) {
    if ctx.caps.f16 {
        f16_tol
    } else {
        f32_tol
    }
}

/// GEMV shapes: tiny, ragged (not multiples of 8, 32 or 256), and model-like.
pub const GEMV_SHAPES: &[(usize, usize)] = &[
    (1, 8),
    (7, 13),
    (64, 256),
    (257, 1000),
    (300, 3584),
    (1031, 129),
    (33, 5123),
];
pub const ROW_SHAPES: &[(usize, usize)] =
    &[(1, 1), (3, 7), (5, 64), (2, 1000), (4, 3584), (1, 5003)];

/// `y = W x + b` with W ~ N(0, 0.02²)·(1 + ...), x ~ N(0, 1), b ~ U(−1, 1).
pub async fn gemv_case(
    ctx: &GpuContext,
    m: usize,
    k: usize,
    with_bias: bool,
    seed: u64,
) -> Result<Comparison, OpError> {
    let mut rng = Rng::new(seed);
    let w: Vec<f32> = rng.normal_vec(m * k, 0.02);
    let x = round_act(ctx.act(), &rng.normal_vec(k, 1.0));
    let b = round_act(ctx.act(), &rng.uniform_vec(m, -1.0, 1.0));
    let w16: Vec<f32> = w.iter().map(|v| half::f16::from_f32(*v).to_f32()).collect();
    let want = reference::gemv(&w16, m, k, &x, with_bias.then_some(&b[..]));

    let wm = Matrix::f16_from_f32(ctx, "W", m, k, &w);
    let xt = Tensor::from_f32(ctx, "x", &[k], &x);
    let bt = Tensor::from_f32(ctx, "b", &[m], &b);
    let yt = Tensor::empty(ctx, "y", &[m]);
    let mut rec = Recorder::new(ctx, "gemv test");
    ops::gemv(&mut rec, &wm, &xt, with_bias.then_some(&bt), &yt)?;
    rec.submit()?;
    let got = yt.to_vec(ctx).await?;
    let (atol, rtol) = tol(ctx, (1e-4, 1e-4), (1e-3, 1e-3));
    Ok(compare(&got, &want, atol, rtol))
}

pub async fn rmsnorm_case(
    ctx: &GpuContext,
    rows: usize,
    cols: usize,
    seed: u64,
) -> Result<Comparison, OpError> {
    let mut rng = Rng::new(seed);
    let x: Vec<f32> = (0..rows * cols).map(|_| rng.normal() * 3.0 + 0.5).collect();
    let x = round_act(ctx.act(), &x);
    let w = rng.uniform_vec(cols, 0.5, 1.5);
    let eps = 1e-6;
    let want = reference::rmsnorm(&x, cols, &w, eps);
    let xt = Tensor::from_f32(ctx, "x", &[rows, cols], &x);
    let wb = ctx.upload("w", bytemuck::cast_slice(&w));
    let yt = Tensor::empty(ctx, "y", &[rows, cols]);
    let mut rec = Recorder::new(ctx, "rmsnorm test");
    ops::rmsnorm(&mut rec, &xt, &wb, eps, &yt)?;
    rec.submit()?;
    let got = yt.to_vec(ctx).await?;
    let (atol, rtol) = tol(ctx, (1e-5, 1e-4), (1e-3, 2e-3));
    Ok(compare(&got, &want, atol, rtol))
}

pub async fn softmax_case(
    ctx: &GpuContext,
    rows: usize,
    cols: usize,
    seed: u64,
) -> Result<Comparison, OpError> {
    let mut rng = Rng::new(seed);
    let x = round_act(ctx.act(), &rng.normal_vec(rows * cols, 4.0));
    let want = reference::softmax(&x, cols);
    let xt = Tensor::from_f32(ctx, "x", &[rows, cols], &x);
    let yt = Tensor::empty(ctx, "y", &[rows, cols]);
    let mut rec = Recorder::new(ctx, "softmax test");
    ops::softmax(&mut rec, &xt, &yt)?;
    rec.submit()?;
    let got = yt.to_vec(ctx).await?;
    let (atol, rtol) = tol(ctx, (1e-7, 1e-4), (1e-6, 2e-3));
    Ok(compare(&got, &want, atol, rtol))
}

/// Every case, in a fixed order. Used by the web page and `bca selftest`.
pub async fn run_all(ctx: &GpuContext) -> Vec<CaseResult> {
    let mut out = Vec::new();
    let act = ctx.act().name();
    for (i, &(m, k)) in GEMV_SHAPES.iter().enumerate() {
        let bias = i % 2 == 1;
        let name = format!("gemv[{act}] {m}x{k}{}", if bias { "+bias" } else { "" });
        out.push(CaseResult::from(
            name,
            gemv_case(ctx, m, k, bias, 100 + i as u64).await,
        ));
    }
    for (i, &(r, c)) in ROW_SHAPES.iter().enumerate() {
        out.push(CaseResult::from(
            format!("rmsnorm[{act}] {r}x{c}"),
            rmsnorm_case(ctx, r, c, 200 + i as u64).await,
        ));
        out.push(CaseResult::from(
            format!("softmax[{act}] {r}x{c}"),
            softmax_case(ctx, r, c, 300 + i as u64).await,
        ));
    }
    run_elem(ctx, &mut out).await;
    out
}

/// A small representative subset of the norm / RoPE / elementwise / embedding / conv cases.
async fn run_elem(ctx: &GpuContext, out: &mut Vec<CaseResult>) {
    use crate::ops::{Binary, Conv1dSpec, ConvTranspose1dSpec, Unary};
    let act = ctx.act().name();
    let mut push = |name: String, r| out.push(CaseResult::from(format!("{name}[{act}]"), r));
    push(
        "layernorm 3x1000".into(),
        norm::layernorm_case(ctx, 3, 1000, 400).await,
    );
    push(
        "groupnorm 33x64 G8".into(),
        norm::groupnorm_case(ctx, 33, 64, 8, 401).await,
    );
    push(
        "groupnorm 301x80 G1".into(),
        norm::groupnorm_case(ctx, 301, 80, 1, 402).await,
    );
    push(
        "rope 3x4x128 p0=8000".into(),
        rope::rope_case(ctx, 3, 4, 128, 1e6, 8000, false, 403).await,
    );
    push(
        "rope 5x3x6 in place".into(),
        rope::rope_case(ctx, 5, 3, 6, 1e4, 2, true, 404).await,
    );
    for (i, f) in [
        Unary::Gelu,
        Unary::Silu,
        Unary::Tanh,
        Unary::Mish,
        Unary::Elu,
        Unary::LeakyRelu(0.1),
    ]
    .into_iter()
    .enumerate()
    {
        push(
            format!("{f:?} 3x77"),
            elementwise::unary_case(ctx, f, 3, 77, i % 2 == 1, 410 + i as u64).await,
        );
    }
    push(
        "add (T,C)+(C) 5x33".into(),
        elementwise::binary_case(ctx, Binary::Add, 5, 33, true, false, 420).await,
    );
    push(
        "snake 7x64".into(),
        elementwise::snake_case(ctx, 7, 64, 421).await,
    );
    push(
        "swiglu fused 3x37".into(),
        elementwise::swiglu_case(ctx, 3, 37, true, 422).await,
    );
    push(
        "embedding V10 C7 T5".into(),
        embedding::embedding_case(ctx, 10, 7, 5, 423).await,
    );
    push(
        "audio_embed C13 T7".into(),
        embedding::audio_embed_case(ctx, [33, 17, 9, 5, 9, 17, 33, 65], 13, 7, 424).await,
    );
    let s = conv::ConvShape {
        tin: 13,
        cin: 16,
        cout: 24,
        k: 3,
        groups: 1,
        bias: true,
    };
    let spec = Conv1dSpec {
        stride: 2,
        pad_left: 1,
        pad_right: 1,
        dilation: 1,
    };
    push(
        "conv1d 13x16→24 k3 s2".into(),
        conv::conv1d_case(ctx, s, spec, 425).await,
    );
    let spec = ConvTranspose1dSpec {
        stride: 4,
        padding: 0,
        output_padding: 0,
        dilation: 1,
    };
    push(
        "conv_transpose1d 13x16→24 k3 s4".into(),
        conv::conv_transpose1d_case(ctx, s, spec, 426).await,
    );
    push(
        "avgpool1d 9x7 k4".into(),
        conv::avgpool1d_case(ctx, 9, 7, 4, 427).await,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_counts_and_locates() {
        let c = compare(&[1.0, 2.0, 3.5, f32::NAN], &[1.0, 2.0, 3.0, 0.0], 0.1, 0.0);
        assert_eq!(c.bad, 2);
        assert_eq!(c.worst_index, 3);
        assert!(!c.ok());
        let c = compare(&[1.0, 2.05], &[1.0, 2.0], 0.0, 0.03);
        assert!(c.ok(), "{c}");
        assert!(
            !compare(&[], &[], 1.0, 1.0).ok(),
            "an empty comparison proves nothing"
        );
        assert!(!compare(&[1.0], &[1.0, 2.0], 1.0, 1.0).ok());
    }
}
