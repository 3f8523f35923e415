//! Kernel self-tests: seeded random inputs, the GPU result against the CPU reference.
//!
//! The same cases run under `cargo test` (native, lavapipe), in `bca selftest`, and in the web
//! page (headless Chromium's WebGPU), so "works in the browser" means the same comparisons.

pub mod attention;
pub mod conv;
pub mod elementwise;
pub mod embedding;
pub mod norm;
pub mod relayout;
pub mod rope;
pub mod rvq;
pub mod sampling;

use serde::Serialize;

use crate::gpu::{GpuContext, Recorder};
use crate::ops::{self, Activation, Epilogue, OpError, GEMV_MAX_N};
use crate::reference;
use crate::tensor::{round_act, Matrix, Tensor, WeightFormat};
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
    /// Extra facts worth reporting (e.g. a quantised product's error against f16).
    pub note: Option<String>,
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
        )?;
        if let Some(n) = &self.note {
            write!(f, "; {n}")?;
        }
        Ok(())
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
        note: None,
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

/// [`compare`] with a per-element allowance on top of atol + rtol·|want| (outputs whose
/// reference is ambiguous by a known amount, e.g. int8 rounding ties).
pub fn compare_slack(got: &[f32], want: &[f32], slack: &[f32], atol: f32, rtol: f32) -> Comparison {
    let mut c = compare(got, want, atol, rtol);
    if got.len() == want.len() && slack.len() == want.len() {
        c.bad = got
            .iter()
            .zip(want)
            .zip(slack)
            .filter(|((g, w), s)| {
                let e = (*g - *w).abs();
                e.is_nan() || e > atol + rtol * w.abs() + *s
            })
            .count();
        let used = slack.iter().filter(|s| **s > 0.0).count();
        if used > 0 {
            c.note = Some(format!("{used} outputs allowed int8 tie slack"));
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

fn silu32(v: f32) -> f32 {
    reference::elementwise::silu(v as f64) as f32
}

fn gelu32(v: f32) -> f32 {
    reference::elementwise::gelu(v as f64) as f32
}

/// One product case: which format, how many vectors, which epilogue.
#[derive(Clone, Copy, Debug)]
pub struct GemvCase {
    pub format: WeightFormat,
    pub n: usize,
    pub m: usize,
    pub k: usize,
    pub bias: bool,
    pub residual: bool,
    pub act: Activation,
    /// Fuse an RMSNorm (random weights, eps 1e-6) of x into the product.
    pub norm: bool,
    /// Also write the normalised x out ([`Epilogue::norm_out`]; needs `norm` and the int8 path)
    /// and compare it with the reference RMSNorm.
    pub norm_out: bool,
}

impl GemvCase {
    pub fn new(format: WeightFormat, m: usize, k: usize) -> Self {
        GemvCase {
            format,
            n: 1,
            m,
            k,
            bias: false,
            residual: false,
            act: Activation::None,
            norm: false,
            norm_out: false,
        }
    }
}

impl std::fmt::Display for GemvCase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "gemv {} {}x{}", self.format.name(), self.m, self.k)?;
        if self.n > 1 {
            write!(f, " n={}", self.n)?;
        }
        if self.bias {
            write!(f, " +bias")?;
        }
        if self.act != Activation::None {
            write!(f, " {:?}", self.act)?;
        }
        if self.residual {
            write!(f, " +res")?;
        }
        if self.norm {
            write!(f, " +rmsnorm")?;
        }
        if self.norm_out {
            write!(f, " (normed x out)")?;
        }
        Ok(())
    }
}

/// `y = act(W x + b) + r` with W ~ N(0, 0.02²), x ~ N(0, 1), b, r ~ U(−1, 1), compared with the
/// CPU product over the values the GPU multiplies by (f16-rounded or dequantised weights).
/// For q8/q4 the note reports the error of the quantised product against the f16 product.
pub async fn gemv_case(ctx: &GpuContext, c: GemvCase, seed: u64) -> Result<Comparison, OpError> {
    let GemvCase { n, m, k, .. } = c;
    let mut rng = Rng::new(seed);
    let w: Vec<f32> = rng.normal_vec(m * k, 0.02);
    let x = round_act(ctx.act(), &rng.normal_vec(n * k, 1.0));
    let b = round_act(ctx.act(), &rng.uniform_vec(m, -1.0, 1.0));
    let m_out = if c.act == Activation::SwiGlu {
        m / 2
    } else {
        m
    };
    let r = round_act(ctx.act(), &rng.uniform_vec(n * m_out, -1.0, 1.0));
    let g = rng.uniform_vec(k, 0.5, 1.5);
    let eps = 1e-6;
    // x of vector i as the product sees it (RMS-normalised when the epilogue fuses the norm)
    let xn_of = |i: usize| -> Vec<f32> {
        let xi = &x[i * k..(i + 1) * k];
        if c.norm {
            reference::rmsnorm(xi, k, &g, eps)
        } else {
            xi.to_vec()
        }
    };
    // the epilogue after the product (+ bias): activation, then the residual of vector i
    let finish = |i: usize, y: Vec<f32>| -> Vec<f32> {
        let y: Vec<f32> = match c.act {
            Activation::None => y,
            Activation::Silu => y.into_iter().map(silu32).collect(),
            Activation::Gelu => y.into_iter().map(gelu32).collect(),
            Activation::SwiGlu => y.chunks(2).map(|p| silu32(p[0]) * p[1]).collect(),
        };
        y.into_iter()
            .enumerate()
            .map(|(j, v)| if c.residual { v + r[i * m_out + j] } else { v })
            .collect()
    };
    let epi_ref = |wv: &[f32]| -> Vec<f32> {
        (0..n)
            .flat_map(|i| {
                finish(
                    i,
                    reference::gemv(wv, m, k, &xn_of(i), c.bias.then_some(&b[..])),
                )
            })
            .collect()
    };
    // q4/q8 decode products run with int8 activations (gemv_i8.wgsl): the reference quantises
    // x the same way; the tiled path (many vectors) dequantises W and keeps x as it is.
    let int8 = ctx.int8 && c.format != WeightFormat::F16 && !(n >= ops::GEMM_MIN_N && k % 4 == 0);
    let mut slack = vec![0f32; n * m_out];
    let want = if int8 {
        let q = match c.format {
            WeightFormat::Q4 => crate::tensor::quant::quantize_q4(&w, m, k),
            _ => crate::tensor::quant::quantize_q8(&w, m, k),
        };
        let q4 = c.format == WeightFormat::Q4;
        let mut out = Vec::with_capacity(n * m_out);
        for i in 0..n {
            let (mut y, sl) = reference::gemv_i8(&q, q4, &xn_of(i));
            if c.bias {
                y.iter_mut().zip(&b).for_each(|(v, bb)| *v += bb);
            }
            // SiLU and GELU have slopes ≤ 1.13; SwiGLU's slack is the product rule's
            let sl: Vec<f32> = match c.act {
                Activation::SwiGlu => y
                    .chunks(2)
                    .zip(sl.chunks(2))
                    .map(|(p, e)| 1.13 * e[0] * p[1].abs() + silu32(p[0]).abs() * e[1])
                    .collect(),
                Activation::None => sl,
                _ => sl.iter().map(|e| 1.13 * e).collect(),
            };
            slack[i * m_out..(i + 1) * m_out].copy_from_slice(&sl);
            out.extend(finish(i, y));
        }
        out
    } else {
        epi_ref(&Matrix::reference_values(m, k, &w, c.format))
    };

    let wm = Matrix::from_f32(ctx, "W", m, k, &w, c.format);
    let xt = Tensor::from_f32(ctx, "x", &[n, k], &x);
    let bt = Tensor::from_f32(ctx, "b", &[m], &b);
    let rt = Tensor::from_f32(ctx, "r", &[n, m_out], &r);
    let yt = Tensor::empty(ctx, "y", &[n, m_out]);
    let gb = ctx.upload("g", bytemuck::cast_slice(&g));
    let mut rec = Recorder::new(ctx, "gemv test");
    let xo = Tensor::empty(ctx, "xn", &[n, k]);
    let epi = Epilogue {
        bias: c.bias.then_some(&bt),
        residual: c.residual.then_some(&rt),
        act: c.act,
        norm: c.norm.then_some((&gb, eps)),
        norm_out: c.norm_out.then_some(&xo),
        prequantised: None,
        rope: None,
        layernorm: None,
        xq_out: None,
        xq_out_norm: None,
        deferred_norm: None,
        residual_norm: None,
        ln_in: None,
    };
    ops::gemv(&mut rec, &wm, &xt, &yt, epi)?;
    rec.submit()?;
    let mut got = yt.to_vec(ctx).await?;
    let (atol, rtol) = tol(ctx, (1e-4, 1e-4), (1e-3, 1e-3));
    let mut want = want;
    if c.norm_out {
        // the normalised x follows y in the comparison (its slack: zero)
        got.extend(xo.to_vec(ctx).await?);
        want.extend((0..n).flat_map(xn_of));
        slack.resize(want.len(), 0.0);
    }
    let mut cmp = compare_slack(&got, &want, &slack, atol, rtol);
    if c.format != WeightFormat::F16 {
        let f16_ref = epi_ref(&Matrix::reference_values(m, k, &w, WeightFormat::F16));
        let num: f64 = got
            .iter()
            .zip(&f16_ref)
            .map(|(a, b)| ((a - b) as f64).powi(2))
            .sum();
        let den: f64 = f16_ref.iter().map(|b| (*b as f64).powi(2)).sum();
        let q = format!(
            "{} vs f16 product: rel RMS {:.2e}{}",
            c.format.name(),
            (num / den.max(1e-30)).sqrt(),
            if int8 { " (int8 x)" } else { "" }
        );
        cmp.note = Some(match cmp.note.take() {
            Some(n) => format!("{q}; {n}"),
            None => q,
        });
    }
    Ok(cmp)
}

/// The W_pack product with RoPE and the cache append in its epilogue ([`ops::RopeOut`]):
/// `(Hq + 2·Hkv)·D` rows of `format` over K, with or without a bias, at position `pos` of a cache of
/// `tmax` filled with random values. Compared with the product followed by `rope_kv`: q and
/// the whole cache (so nothing else was written), within one rounding of the activation dtype
/// (values in the rotation's range are rounded alike, but a GPU compiler may contract its
/// multiply-adds differently in the two kernels: an H100 differs by one f16 step in ~0.2 % of
/// rotated values; lavapipe gives the same bits). With `want_fused` the product must have done
/// it itself (one dispatch fewer); the note says which ran.
#[allow(clippy::too_many_arguments)]
pub async fn gemv_rope_case(
    ctx: &GpuContext,
    format: WeightFormat,
    (hq, hkv, d): (usize, usize, usize),
    k: usize,
    (pos, tmax): (usize, usize),
    (theta, bias): (f64, bool),
    want_fused: bool,
    seed: u64,
) -> Result<Comparison, OpError> {
    let mut rng = Rng::new(seed);
    let m = (hq + 2 * hkv) * d;
    let w = rng.normal_vec(m * k, 0.02);
    let x = round_act(ctx.act(), &rng.normal_vec(k, 1.0));
    let b = round_act(ctx.act(), &rng.uniform_vec(m, -1.0, 1.0));
    let fill = round_act(ctx.act(), &rng.uniform_vec(2 * hkv * tmax * d, -1.0, 1.0));
    let wm = Matrix::from_f32(ctx, "W", m, k, &w, format);
    let xt = Tensor::from_f32(ctx, "x", &[k], &x);
    let bt = Tensor::from_f32(ctx, "b", &[m], &b);
    // θ = ∞: zero frequencies (the audio head's identity rotation)
    let freqs = if theta.is_finite() {
        ops::rope_inv_freq(theta, d)
    } else {
        vec![0.0; d / 2]
    };
    let inv = ctx.upload("inv_freq", bytemuck::cast_slice(&freqs));
    let mut caches = Vec::new();
    for _ in 0..2 {
        let c = ops::KvCache::new(ctx, "cache", hkv, tmax, d)?;
        let t = Tensor::from_f32(ctx, "fill", &[fill.len()], &fill);
        let mut rec = Recorder::new(ctx, "cache fill");
        rec.encoder()?
            .copy_buffer_to_buffer(&t.buf, 0, &c.buf, 0, t.buf.size());
        rec.submit()?;
        caches.push(c);
    }
    let qs: Vec<Tensor> = (0..2).map(|_| Tensor::empty(ctx, "q", &[hq, d])).collect();
    let y = Tensor::empty(ctx, "qkv", &[m]);
    let mut rec = Recorder::new(ctx, "gemv rope test");
    let epi = Epilogue {
        bias: bias.then_some(&bt),
        ..Default::default()
    };
    ops::gemv(&mut rec, &wm, &xt, &y, epi)?;
    ops::rope_kv(&mut rec, &y, &inv, pos, &qs[0], &caches[0])?;
    let separate = rec.dispatches();
    let r = ops::RopeOut {
        inv_freq: &inv,
        pos,
        q: &qs[1],
        cache: &caches[1],
    };
    ops::gemv(
        &mut rec,
        &wm,
        &xt,
        &y,
        Epilogue {
            rope: Some(r),
            ..epi
        },
    )?;
    let together = rec.dispatches() - separate;
    rec.submit()?;
    let mut want = qs[0].to_vec(ctx).await?;
    let mut got = qs[1].to_vec(ctx).await?;
    let n = 2 * hkv * tmax * d;
    want.extend(ctx.read_act(&caches[0].buf, n).await?);
    got.extend(ctx.read_act(&caches[1].buf, n).await?);
    let (atol, rtol) = tol(ctx, (1e-6, 1e-6), (1e-3, 1e-3));
    let mut c = compare(&got, &want, atol, rtol);
    note_fusion(&mut c, "rope_kv", (together, separate), want_fused);
    Ok(c)
}

/// A one-vector product that also writes its output as the next product's int8 x
/// ([`Epilogue::xq_out`]): `y = act(W·x + bias)` (`act` SwiGLU over row pairs, GELU or none) of
/// `m_out` outputs over `k`. Checked against the product then `quantise_vector` of its y: y
/// within one rounding step (the fused kernel sums a row in another order), and the int8 x
/// against `quantise_vector` of the fused kernel's own y: the same bits on lavapipe, int8 values
/// within one step and scales within f32 rounding where a compiler treats the two kernels'
/// quantisation differently (an H100); the note counts what differs. With `want_fused` the product
/// must have quantised y itself (one dispatch fewer); the note says which ran.
pub async fn gemv_xqo_case(
    ctx: &GpuContext,
    format: WeightFormat,
    (m_out, k): (usize, usize),
    (act, bias): (Activation, bool),
    want_fused: bool,
    seed: u64,
) -> Result<Comparison, OpError> {
    let mut rng = Rng::new(seed);
    let m = if act == Activation::SwiGlu {
        2 * m_out
    } else {
        m_out
    };
    let w = rng.normal_vec(m * k, 0.05);
    let x = round_act(ctx.act(), &rng.normal_vec(k, 1.0));
    let b = round_act(ctx.act(), &rng.uniform_vec(m, -1.0, 1.0));
    let wm = Matrix::from_f32(ctx, "W", m, k, &w, format);
    let xt = Tensor::from_f32(ctx, "x", &[k], &x);
    let bt = Tensor::from_f32(ctx, "b", &[m], &b);
    let (lq, ld) = ops::xq_buffers_len(m_out);
    let bufs = |name: &str| (ctx.storage(name, lq), ctx.storage(name, ld));
    let (sep, fused, check) = (bufs("sep"), bufs("fused"), bufs("check"));
    let y1 = Tensor::empty(ctx, "y1", &[m_out]);
    let y2 = Tensor::empty(ctx, "y2", &[m_out]);
    let epi = Epilogue {
        bias: bias.then_some(&bt),
        act,
        ..Default::default()
    };
    let mut rec = Recorder::new(ctx, "gemv xq_out test");
    ops::gemv(&mut rec, &wm, &xt, &y1, epi)?;
    ops::quantise_vector(&mut rec, &y1, (&sep.0, &sep.1))?;
    let separate = rec.dispatches();
    ops::gemv(
        &mut rec,
        &wm,
        &xt,
        &y2,
        Epilogue {
            xq_out: Some((&fused.0, &fused.1)),
            ..epi
        },
    )?;
    let together = rec.dispatches() - separate;
    ops::quantise_vector(&mut rec, &y2, (&check.0, &check.1))?;
    rec.submit()?;
    let want = y1.to_vec(ctx).await?;
    let got = y2.to_vec(ctx).await?;
    let (atol, rtol) = tol(ctx, (1e-5, 1e-5), (2e-3, 2e-3));
    let mut c = compare(&got, &want, atol, rtol);
    // the int8 x and its (scale, Σ) against quantising the fused kernel's own y: the same bits
    // where the compiler treats the two kernels' quantisation alike (lavapipe); an H100's
    // compiler differs in the last bit of a few (int8 values one step apart, scales and sums
    // within f32 rounding), which is all this allows
    let bytes = |b: &wgpu::Buffer, len: u64| {
        let b = b.clone();
        async move { crate::gpu::read_buffer(ctx, &b, 0, len).await }
    };
    let (qa, qb) = (bytes(&fused.0, lq).await?, bytes(&check.0, lq).await?);
    let (da, db) = (bytes(&fused.1, ld).await?, bytes(&check.1, ld).await?);
    let (da, db): (Vec<f32>, Vec<f32>) = (
        bytemuck::pod_collect_to_vec(&da),
        bytemuck::pod_collect_to_vec(&db),
    );
    let q_diff = qa.iter().zip(&qb).filter(|(p, q)| p != q).count();
    let q_far = qa
        .iter()
        .zip(&qb)
        .filter(|(p, q)| (**p as i8 as i32 - **q as i8 as i32).abs() > 1)
        .count();
    let d_diff = da.iter().zip(&db).filter(|(p, q)| p != q).count();
    let d_far = da
        .iter()
        .zip(&db)
        .filter(|(p, q)| (*p - *q).abs() > 1e-6 * (1.0 + q.abs()))
        .count();
    note_fusion(&mut c, "gemv_xq", (together, separate), want_fused);
    c.bad += q_far + d_far;
    if q_diff + d_diff > 0 {
        c.note = Some(format!(
            "{}; against quantising the y written: {q_diff} of {} int8 values differ ({q_far} by more than one step), {d_diff} of {} scales and sums ({d_far} beyond 1e-6)",
            c.note.take().unwrap_or_default(),
            qa.len(),
            da.len()
        ));
    }
    Ok(c)
}

/// The product after a deferred RMSNorm in [`gemv_defer_case`].
#[derive(Clone, Copy, Debug)]
pub enum DeferNext {
    /// A plain product with a bias (the LM head, a classifier).
    Plain,
    /// Gate/up with SwiGLU, itself writing its output as int8 x (`_xqo_defer`).
    SwiGluXq,
    /// W_pack with RoPE and the cache append, `(Hq, Hkv, D)` (`_rope_defer`).
    Rope(usize, usize, usize),
}

/// An RMSNorm deferred across two products ([`Epilogue::xq_out_norm`] →
/// [`Epilogue::deferred_norm`]): `h = W1·x + r` (`m_mid` outputs over `k`: the LLM's down or
/// o_proj) writes h·g as int8 x with its block sums of squares, and the next product (`next`,
/// `m2` outputs) scales by the norm it computes from them. Against the same two products with
/// the norm in its own quantisation dispatch: h within a rounding step, the next product's
/// output within the int8 quantisation's difference (x·g quantised instead of RMSNorm(x)·g:
/// the same up to rounding, so a value one step apart here and there). Where
/// [`ops::norm_defers`] says the device cannot, both sides keep the norm's dispatch.
/// `want_fused`: one dispatch fewer (the norm's quantisation).
pub async fn gemv_defer_case(
    ctx: &GpuContext,
    format: WeightFormat,
    (m_mid, k, m2): (usize, usize, usize),
    next: DeferNext,
    want_fused: bool,
    seed: u64,
) -> Result<Comparison, OpError> {
    let mut rng = Rng::new(seed);
    let eps = 1e-6;
    let m2_rows = match next {
        DeferNext::SwiGluXq => 2 * m2,
        DeferNext::Rope(hq, hkv, d) => (hq + 2 * hkv) * d,
        DeferNext::Plain => m2,
    };
    let w1 = Matrix::from_f32(
        ctx,
        "W1",
        m_mid,
        k,
        &rng.normal_vec(m_mid * k, 0.05),
        format,
    );
    let w2 = Matrix::from_f32(
        ctx,
        "W2",
        m2_rows,
        m_mid,
        &rng.normal_vec(m2_rows * m_mid, 0.05),
        format,
    );
    let xt = Tensor::from_f32(
        ctx,
        "x",
        &[k],
        &round_act(ctx.act(), &rng.normal_vec(k, 1.0)),
    );
    let rt = Tensor::from_f32(
        ctx,
        "r",
        &[m_mid],
        &round_act(ctx.act(), &rng.normal_vec(m_mid, 1.0)),
    );
    let b2 = Tensor::from_f32(
        ctx,
        "b2",
        &[m2_rows],
        &round_act(ctx.act(), &rng.uniform_vec(m2_rows, -1.0, 1.0)),
    );
    let g = ctx.upload("g", bytemuck::cast_slice(&rng.uniform_vec(m_mid, 0.5, 1.5)));
    let (lq, ld) = ops::xq_buffers_len(m_mid);
    let hq_bufs = (ctx.storage("hq", lq), ctx.storage("hd", ld));
    let ss = ctx.storage("ss", ld / 2);
    let m2_out = match next {
        DeferNext::Rope(hq, _, d) => hq * d,
        _ => m2,
    };
    let (lq2, ld2) = ops::xq_buffers_len(m2);
    let yq_bufs = (ctx.storage("yq", lq2), ctx.storage("yd", ld2));
    let h = [0, 1].map(|_| Tensor::empty(ctx, "h", &[m_mid]));
    let hn = Tensor::empty(ctx, "hn", &[m_mid]);
    let y_shape = match next {
        DeferNext::Rope(hq, _, d) => vec![hq, d],
        _ => vec![m2_out],
    };
    let y = [0, 1].map(|_| Tensor::empty(ctx, "y", &y_shape));
    let caches = match next {
        DeferNext::Rope(_, hkv, d) => {
            let mut v = Vec::new();
            for _ in 0..2 {
                v.push(ops::KvCache::new(ctx, "cache", hkv, 4, d)?);
            }
            v
        }
        _ => Vec::new(),
    };
    let dh = match next {
        DeferNext::Rope(_, _, d) => d,
        _ => 2,
    };
    let inv = ctx.upload("inv", bytemuck::cast_slice(&ops::rope_inv_freq(1e4, dh)));
    let mut rec = Recorder::new(ctx, "deferred norm test");
    let record = |rec: &mut Recorder, i: usize, fused: bool| -> Result<usize, OpError> {
        let start = rec.dispatches();
        let p_epi = Epilogue {
            residual: Some(&rt),
            xq_out: fused.then_some((&hq_bufs.0, &hq_bufs.1)),
            xq_out_norm: fused.then_some((&g, &ss)),
            ..Default::default()
        };
        ops::gemv(rec, &w1, &xt, &h[i], p_epi)?;
        let mut n_epi = Epilogue {
            prequantised: fused.then_some((&hq_bufs.0, &hq_bufs.1)),
            deferred_norm: fused.then_some((&ss, eps)),
            ..Default::default()
        };
        match next {
            DeferNext::Plain => n_epi.bias = Some(&b2),
            DeferNext::SwiGluXq => {
                n_epi.act = Activation::SwiGlu;
                n_epi.xq_out = Some((&yq_bufs.0, &yq_bufs.1));
            }
            DeferNext::Rope(..) => {
                n_epi.bias = Some(&b2);
                n_epi.rope = Some(ops::RopeOut {
                    inv_freq: &inv,
                    pos: 2,
                    q: &y[i],
                    cache: &caches[i],
                });
            }
        }
        // the rope epilogue writes q, not y: give it a scratch y of the full width
        let ybig = Tensor::empty(ctx, "qkv", &[m2_rows]);
        let yout = match next {
            DeferNext::Rope(..) => &ybig,
            _ => &y[i],
        };
        if fused {
            ops::gemv(rec, &w2, &h[i], yout, n_epi)?;
        } else {
            ops::gemv_rmsnorm(rec, &w2, &h[i], (&g, eps), &hn, false, yout, n_epi)?;
        }
        Ok(rec.dispatches() - start)
    };
    let separate = record(&mut rec, 0, false)?;
    // where the device cannot defer it, the norm keeps its dispatch on both sides
    let together = record(&mut rec, 1, ops::norm_defers(ctx, &w1, &w2))?;
    rec.submit()?;
    let mut want = h[0].to_vec(ctx).await?;
    let mut got = h[1].to_vec(ctx).await?;
    want.extend(y[0].to_vec(ctx).await?);
    got.extend(y[1].to_vec(ctx).await?);
    if let DeferNext::Rope(_, hkv, d) = next {
        let n = 2 * hkv * 4 * d;
        want.extend(ctx.read_act(&caches[0].buf, n).await?);
        got.extend(ctx.read_act(&caches[1].buf, n).await?);
    }
    let (atol, rtol) = tol(ctx, (1e-2, 1e-2), (1e-2, 1e-2));
    let mut c = compare(&got, &want, atol, rtol);
    let fused = together + 1 == separate;
    c.note = Some(format!(
        "{} (dispatches {together} / {separate})",
        if fused {
            "norm deferred"
        } else {
            "norm in its own dispatch"
        }
    ));
    if want_fused && !fused {
        c.bad += 1;
    }
    Ok(c)
}

/// A product adding a normalised residual ([`Epilogue::residual_norm`], the audio head's
/// linear2): `h = W1·x1 + r1` (`m` outputs over `k1`) writes h·g with its block sums of squares
/// ([`Epilogue::xq_out_norm`]), then `z = W2·x2 + RMSNorm(h)·g` (`m` outputs over `k2`, itself
/// writing z·g2) normalises h in its epilogue from those sums. Against the same with
/// RMSNorm(h)·g computed by `rmsnorm` and added as a plain residual: z within the f16 rounding
/// of the normalised residual (the fused one is not rounded to f16 first). Where
/// [`ops::norm_defers`] says the device cannot, both sides take the plain residual.
pub async fn gemv_rn_case(
    ctx: &GpuContext,
    format: WeightFormat,
    (m, k1, k2): (usize, usize, usize),
    seed: u64,
) -> Result<Comparison, OpError> {
    let mut rng = Rng::new(seed);
    let eps = 1e-6;
    let w1 = Matrix::from_f32(ctx, "W1", m, k1, &rng.normal_vec(m * k1, 0.05), format);
    let w2 = Matrix::from_f32(ctx, "W2", m, k2, &rng.normal_vec(m * k2, 0.05), format);
    let t = |rng: &mut Rng, name: &str, n: usize| {
        Tensor::from_f32(
            ctx,
            name,
            &[n],
            &round_act(ctx.act(), &rng.normal_vec(n, 1.0)),
        )
    };
    let (x1, r1, x2) = (
        t(&mut rng, "x1", k1),
        t(&mut rng, "r1", m),
        t(&mut rng, "x2", k2),
    );
    let g = ctx.upload("g", bytemuck::cast_slice(&rng.uniform_vec(m, 0.5, 1.5)));
    let g2 = ctx.upload("g2", bytemuck::cast_slice(&rng.uniform_vec(m, 0.5, 1.5)));
    let (lq, ld) = ops::xq_buffers_len(m);
    let bufs = |name: &str| {
        (
            ctx.storage(name, lq),
            ctx.storage(name, ld),
            ctx.storage(name, ld / 2),
        )
    };
    let (hb, zb) = (bufs("h"), bufs("z"));
    let h = Tensor::empty(ctx, "h", &[m]);
    let hn = Tensor::empty(ctx, "hn", &[m]);
    let z = [0, 1].map(|_| Tensor::empty(ctx, "z", &[m]));
    let fused = ops::norm_defers(ctx, &w1, &w2);
    let mut rec = Recorder::new(ctx, "normalised residual test");
    ops::gemv(
        &mut rec,
        &w1,
        &x1,
        &h,
        Epilogue {
            residual: Some(&r1),
            xq_out: fused.then_some((&hb.0, &hb.1)),
            xq_out_norm: fused.then_some((&g, &hb.2)),
            ..Default::default()
        },
    )?;
    ops::rmsnorm(&mut rec, &h, &g, eps, &hn)?;
    let z_epi = Epilogue {
        xq_out: fused.then_some((&zb.0, &zb.1)),
        xq_out_norm: fused.then_some((&g2, &zb.2)),
        ..Default::default()
    };
    let plain = Epilogue {
        residual: Some(&hn),
        ..z_epi
    };
    ops::gemv(&mut rec, &w2, &x2, &z[0], plain)?;
    let normed = Epilogue {
        residual: Some(if fused { &h } else { &hn }),
        residual_norm: fused.then_some((&g, &hb.2, eps)),
        ..z_epi
    };
    ops::gemv(&mut rec, &w2, &x2, &z[1], normed)?;
    rec.submit()?;
    let want = z[0].to_vec(ctx).await?;
    let got = z[1].to_vec(ctx).await?;
    let (atol, rtol) = tol(ctx, (1e-5, 1e-5), (4e-3, 4e-3));
    let mut c = compare(&got, &want, atol, rtol);
    c.note = Some(
        if fused {
            "residual normalised in the epilogue"
        } else {
            "plain residual (the device cannot defer norms)"
        }
        .into(),
    );
    Ok(c)
}

/// Notes on `c` whether a product did `op` in its own epilogue (`together`, one dispatch fewer
/// than the product then `op`, `separate`) or left it to `op` after it; with `want_fused`, the
/// latter is a failure.
fn note_fusion(
    c: &mut Comparison,
    op: &str,
    (together, separate): (usize, usize),
    want_fused: bool,
) {
    let fused = together + 1 == separate;
    let how = if fused {
        "fused".to_string()
    } else {
        format!("{op} after the product")
    };
    c.note = Some(format!(
        "{how} vs the product then {op} (dispatches {together} / {separate})"
    ));
    if want_fused && !fused {
        c.bad += 1;
    }
}

/// A many-row product followed by a LayerNorm ([`ops::LnOut`]): `y = x·Wᵀ + b + r` over
/// `rows` rows, then LayerNorm(y). Compared to the bit with the product and a separate
/// `layernorm`, y and the normalised rows; with `want_fused` the norm must have gone into the
/// split-K reduce (one dispatch fewer). The note says which ran. Also checked against the CPU
/// LayerNorm of the GPU's y (f16/f32 tolerances).
pub async fn gemm_ln_case(
    ctx: &GpuContext,
    format: WeightFormat,
    (rows, m, k): (usize, usize, usize),
    want_fused: bool,
    seed: u64,
) -> Result<Comparison, OpError> {
    let mut rng = Rng::new(seed);
    let w = rng.normal_vec(m * k, 0.05);
    let x = round_act(ctx.act(), &rng.normal_vec(rows * k, 1.0));
    let b = round_act(ctx.act(), &rng.uniform_vec(m, -1.0, 1.0));
    let r = round_act(ctx.act(), &rng.uniform_vec(rows * m, -1.0, 1.0));
    let g = rng.uniform_vec(m, 0.5, 1.5);
    let beta = rng.uniform_vec(m, -0.5, 0.5);
    let eps = 1e-5;
    let wm = Matrix::from_f32(ctx, "W", m, k, &w, format);
    let xt = Tensor::from_f32(ctx, "x", &[rows, k], &x);
    let bt = Tensor::from_f32(ctx, "b", &[m], &b);
    let rt = Tensor::from_f32(ctx, "r", &[rows, m], &r);
    let gb = ctx.upload("ln.w", bytemuck::cast_slice(&g));
    let bb = ctx.upload("ln.b", bytemuck::cast_slice(&beta));
    let t = |name: &str| Tensor::empty(ctx, name, &[rows, m]);
    let (y1, o1, y2, o2) = (t("y1"), t("o1"), t("y2"), t("o2"));
    let epi = Epilogue {
        bias: Some(&bt),
        residual: Some(&rt),
        ..Default::default()
    };
    let mut rec = Recorder::new(ctx, "gemm + layernorm test");
    ops::gemv(&mut rec, &wm, &xt, &y1, epi)?;
    ops::layernorm(&mut rec, &y1, &gb, &bb, eps, &o1)?;
    let separate = rec.dispatches();
    let ln = ops::LnOut {
        w: &gb,
        b: &bb,
        eps,
        out: &o2,
    };
    let epi = Epilogue {
        layernorm: Some(ln),
        ..epi
    };
    ops::gemv(&mut rec, &wm, &xt, &y2, epi)?;
    let together = rec.dispatches() - separate;
    rec.submit()?;
    let (y1v, o1v) = (y1.to_vec(ctx).await?, o1.to_vec(ctx).await?);
    let (y2v, o2v) = (y2.to_vec(ctx).await?, o2.to_vec(ctx).await?);
    // the CPU LayerNorm of the GPU's y
    let want_norm = reference::norm::layernorm(&y1v, m, &g, &beta, eps);
    let (atol, rtol) = tol(ctx, (1e-5, 1e-4), (4e-3, 4e-3));
    let cpu = compare(&o1v, &want_norm, atol, rtol);
    if !cpu.ok() {
        return Ok(cpu);
    }
    let mut got = y2v;
    got.extend(o2v);
    let mut want = y1v;
    want.extend(o1v);
    let mut c = compare(&got, &want, 0.0, 0.0);
    note_fusion(&mut c, "layernorm", (together, separate), want_fused);
    Ok(c)
}

/// `act(LayerNorm(x)·Wᵀ + b)` with the LayerNorm in the product ([`Epilogue::ln_in`]: folded
/// into the chunked tensor-core kernel's workgroups where it takes the product, else a
/// LayerNorm dispatch first) against the CPU LayerNorm, rounded to the activation dtype as the
/// LayerNorm's output is, then the CPU product. x has a per-row offset (mean ≠ 0) so a missing
/// centring shows; f16 weights (the U-Net's).
pub async fn gemm_ln_in_case(
    ctx: &GpuContext,
    (rows, m, k): (usize, usize, usize),
    act: Activation,
    seed: u64,
) -> Result<Comparison, OpError> {
    let mut rng = Rng::new(seed);
    let w: Vec<f32> = rng.normal_vec(m * k, 0.05);
    let w16: Vec<f32> = round_act(crate::gpu::ActDType::F16, &w);
    let x: Vec<f32> = (0..rows * k)
        .map(|i| rng.normal() * 2.0 + (i / k) as f32 * 0.1 - 3.0)
        .collect();
    let x = round_act(ctx.act(), &x);
    let b = round_act(ctx.act(), &rng.uniform_vec(m, -0.5, 0.5));
    let g = rng.uniform_vec(k, 0.5, 1.5);
    let beta = rng.uniform_vec(k, -0.5, 0.5);
    let eps = 1e-5;
    let xn = round_act(
        ctx.act(),
        &reference::norm::layernorm(&x, k, &g, &beta, eps),
    );
    let mut want = Vec::with_capacity(rows * m);
    for i in 0..rows {
        let xi = &xn[i * k..(i + 1) * k];
        for j in 0..m {
            let v = xi
                .iter()
                .zip(&w16[j * k..(j + 1) * k])
                .map(|(a, b)| (*a as f64) * (*b as f64))
                .sum::<f64>() as f32
                + b[j];
            want.push(match act {
                Activation::Gelu => gelu32(v),
                Activation::Silu => silu32(v),
                _ => v,
            });
        }
    }
    let wm = Matrix::from_f32(ctx, "W", m, k, &w, WeightFormat::F16);
    let xt = Tensor::from_f32(ctx, "x", &[rows, k], &x);
    let bt = Tensor::from_f32(ctx, "b", &[m], &b);
    let gb = ctx.upload("ln.w", bytemuck::cast_slice(&g));
    let bb = ctx.upload("ln.b", bytemuck::cast_slice(&beta));
    let yt = Tensor::empty(ctx, "y", &[rows, m]);
    let epi = Epilogue {
        bias: Some(&bt),
        act,
        ln_in: Some(ops::LnIn {
            w: &gb,
            b: &bb,
            eps,
        }),
        ..Default::default()
    };
    let folds = ops::ln_folds(ctx, &wm, rows);
    let mut rec = Recorder::new(ctx, "layernorm-in product test");
    ops::gemv(&mut rec, &wm, &xt, &yt, epi)?;
    let dispatches = rec.dispatches();
    rec.submit()?;
    let got = yt.to_vec(ctx).await?;
    // the LayerNorm's output rounds to f16 on that path: an element may round the other way
    // than the CPU's (statistics summed in another order), 2⁻¹¹ relative on one term
    let (atol, rtol) = tol(ctx, (1e-4, 1e-4), (6e-3, 6e-3));
    let mut c = compare(&got, &want, atol, rtol);
    c.note = Some(format!(
        "{dispatches} dispatch(es), LayerNorm {}",
        if folds { "folded" } else { "separate" }
    ));
    if folds != (dispatches == 1) {
        c.bad = c.bad.max(1);
    }
    Ok(c)
}

/// GPU quantisation (f16 → q8/q4) against the CPU quantiser of the same f16 values. Codes
/// may differ by one step at ties (f32 division on the GPU is not correctly rounded): the case
/// passes when every differing code is one step away and its value before rounding lies within
/// 10⁻³ of a tie, and every scale matches. (It allowed 0.1 % of codes to differ; on an H100
/// 4 of a 5×70 matrix's 350 differed at no tie, from a compiler folding the scale's f16
/// rounding away, since fixed in `quantize.wgsl`.)
pub async fn quantize_case(
    ctx: &GpuContext,
    format: WeightFormat,
    rows: usize,
    cols: usize,
    seed: u64,
) -> Result<Comparison, OpError> {
    use crate::tensor::quant::{self, QuantMatrix};
    let mut rng = Rng::new(seed);
    let w: Vec<f32> = rng.normal_vec(rows * cols, 0.02);
    let h: Vec<half::f16> = w.iter().map(|v| half::f16::from_f32(*v)).collect();
    let w16: Vec<f32> = h.iter().map(|v| v.to_f32()).collect();
    let src = ctx.upload("src", bytemuck::cast_slice(&h));
    let mut rec = Recorder::new(ctx, "quantize test");
    let m = ops::quantize(&mut rec, &src, rows, cols, format)?;
    rec.submit()?;
    let scales_buf = m.scales().ok_or_else(|| ops::OpError::Shape {
        op: "quantize",
        detail: "no scales".into(),
    })?;
    let data = crate::gpu::read_buffer(ctx, m.data(), 0, m.data_bytes()).await?;
    let scales = crate::gpu::read_buffer(ctx, scales_buf, 0, m.scale_bytes()).await?;
    let got = QuantMatrix {
        rows,
        cols,
        data: bytemuck::pod_collect_to_vec(&data),
        scales: bytemuck::pod_collect_to_vec(&scales),
    };
    let (want, got_v, want_v) = match format {
        WeightFormat::Q8 => {
            let q = quant::quantize_q8(&w16, rows, cols);
            let (a, b) = (quant::dequantize_q8(&got), quant::dequantize_q8(&q));
            (q, a, b)
        }
        _ => {
            let q = quant::quantize_q4(&w16, rows, cols);
            let (a, b) = (quant::dequantize_q4(&got), quant::dequantize_q4(&q));
            (q, a, b)
        }
    };
    let mut c = compare(&got_v, &want_v, 0.0, 0.0);
    // the block of element i, and its step (the f16 scale)
    let block = |i: usize| -> usize {
        let nb = cols.div_ceil(quant::QBLOCK);
        (i / cols) * nb + (i % cols) / quant::QBLOCK
    };
    let step = |i: usize| -> f32 {
        let b = block(i);
        let bits = match format {
            WeightFormat::Q8 => (want.scales[b / 2] >> (16 * (b % 2))) as u16,
            _ => want.scales[b] as u16,
        };
        half::f16::from_bits(bits).to_f32()
    };
    let too_far = got_v
        .iter()
        .zip(&want_v)
        .enumerate()
        .filter(|(i, (g, w))| (*g - *w).abs() > step(*i) * 1.0001)
        .count();
    // the code before rounding, exactly (f64): a differing code is explained where it lies
    // within 10⁻³ of a tie (the GPU's 1/scale is not correctly rounded, and its multiply may be
    // fused with the offset's subtraction)
    let near_tie = |i: usize| -> bool {
        let (sf, mf) = match format {
            WeightFormat::Q8 => (step(i) as f64, 0.0),
            _ => {
                let m = half::f16::from_bits((want.scales[block(i)] >> 16) as u16).to_f32();
                (step(i) as f64, m as f64)
            }
        };
        if sf <= 0.0 {
            return false;
        }
        let t = (w16[i] as f64 - mf) / sf;
        ((t - t.floor()) - 0.5).abs() < 1e-3
    };
    let unexplained = got_v
        .iter()
        .zip(&want_v)
        .enumerate()
        .filter(|(i, (g, w))| g != w && !near_tie(*i))
        .count();
    let scales_ok = got.scales == want.scales;
    c.note = Some(format!(
        "{} codes differ, {unexplained} not within 10⁻³ of a tie, {too_far} by more than one \
         step, scales {}",
        c.bad,
        if scales_ok { "equal" } else { "DIFFER" }
    ));
    if unexplained == 0 && too_far == 0 && scales_ok {
        c.bad = 0;
    }
    Ok(c)
}

/// `rope_kv` against reference RoPE on q and k plus a reference append of k and v into a
/// cache that already holds other (random) positions, which must stay untouched.
pub async fn rope_kv_case(
    ctx: &GpuContext,
    (hq, hkv, d): (usize, usize, usize),
    tmax: usize,
    pos: usize,
    seed: u64,
) -> Result<Comparison, OpError> {
    let mut rng = Rng::new(seed);
    let qkv = round_act(ctx.act(), &rng.normal_vec((hq + 2 * hkv) * d, 1.0));
    let cache0 = round_act(ctx.act(), &rng.normal_vec(2 * hkv * tmax * d, 1.0));
    let inv = ops::rope_inv_freq(1e6, d);
    let qr = reference::rope::rope(&qkv[..hq * d], 1, hq, d, &inv, pos);
    let kr = reference::rope::rope(&qkv[hq * d..(hq + hkv) * d], 1, hkv, d, &inv, pos);
    let mut want_cache = cache0.clone();
    reference::attention::kv_append(
        &mut want_cache,
        &kr,
        &qkv[(hq + hkv) * d..],
        (1, hkv, d),
        tmax,
        pos,
    );
    let mut want = round_act(ctx.act(), &qr);
    want.extend(round_act(ctx.act(), &want_cache));

    let qkv_t = Tensor::from_f32(ctx, "qkv", &[qkv.len()], &qkv);
    let q_t = Tensor::empty(ctx, "q", &[hq, d]);
    let cache = ops::KvCache::new(ctx, "cache", hkv, tmax, d)?;
    ctx.queue
        .write_buffer(&cache.buf, 0, &crate::tensor::act_bytes(ctx.act(), &cache0));
    let invb = ctx.upload("inv_freq", bytemuck::cast_slice(&inv));
    let mut rec = Recorder::new(ctx, "rope_kv test");
    ops::rope_kv(&mut rec, &qkv_t, &invb, pos, &q_t, &cache)?;
    rec.submit()?;
    let mut got = q_t.to_vec(ctx).await?;
    got.extend(ctx.read_act(&cache.buf, cache0.len()).await?);
    let (atol, rtol) = tol(ctx, (1e-5, 1e-5), (2e-3, 2e-3));
    Ok(compare(&got, &want, atol, rtol))
}

/// `rope_kv` over a chunk of `tokens` tokens (prefill): every token's q rotated at `pos + t`,
/// k and v appended at `pos .. pos + tokens`; the rest of the cache stays untouched.
pub async fn rope_kv_chunk_case(
    ctx: &GpuContext,
    (hq, hkv, d): (usize, usize, usize),
    tokens: usize,
    tmax: usize,
    pos: usize,
    seed: u64,
) -> Result<Comparison, OpError> {
    let mut rng = Rng::new(seed);
    let row = (hq + 2 * hkv) * d;
    let qkv = round_act(ctx.act(), &rng.normal_vec(tokens * row, 1.0));
    let cache0 = round_act(ctx.act(), &rng.normal_vec(2 * hkv * tmax * d, 1.0));
    let inv = ops::rope_inv_freq(1e6, d);
    let (mut q, mut k, mut v) = (Vec::new(), Vec::new(), Vec::new());
    for t in 0..tokens {
        let r = &qkv[t * row..(t + 1) * row];
        q.extend_from_slice(&r[..hq * d]);
        k.extend_from_slice(&r[hq * d..(hq + hkv) * d]);
        v.extend_from_slice(&r[(hq + hkv) * d..]);
    }
    let qr = reference::rope::rope(&q, tokens, hq, d, &inv, pos);
    let kr = reference::rope::rope(&k, tokens, hkv, d, &inv, pos);
    let mut want_cache = cache0.clone();
    reference::attention::kv_append(&mut want_cache, &kr, &v, (tokens, hkv, d), tmax, pos);
    let mut want = round_act(ctx.act(), &qr);
    want.extend(round_act(ctx.act(), &want_cache));

    let qkv_t = Tensor::from_f32(ctx, "qkv", &[tokens, row], &qkv);
    let q_t = Tensor::empty(ctx, "q", &[tokens, hq, d]);
    let cache = ops::KvCache::new(ctx, "cache", hkv, tmax, d)?;
    ctx.queue
        .write_buffer(&cache.buf, 0, &crate::tensor::act_bytes(ctx.act(), &cache0));
    let invb = ctx.upload("inv_freq", bytemuck::cast_slice(&inv));
    let mut rec = Recorder::new(ctx, "rope_kv chunk test");
    ops::rope_kv(&mut rec, &qkv_t, &invb, pos, &q_t, &cache)?;
    rec.submit()?;
    let mut got = q_t.to_vec(ctx).await?;
    got.extend(ctx.read_act(&cache.buf, cache0.len()).await?);
    let (atol, rtol) = tol(ctx, (1e-5, 1e-5), (2e-3, 2e-3));
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
        let format = [WeightFormat::F16, WeightFormat::Q8, WeightFormat::Q4][i % 3];
        let mut c = GemvCase::new(format, m, k);
        c.bias = i % 2 == 1;
        c.act = [Activation::None, Activation::Silu, Activation::Gelu][i % 3];
        c.norm = i % 2 == 0;
        c.residual = i % 4 == 3;
        c.n = if k % 4 == 0 { 1 + i % GEMV_MAX_N } else { 1 };
        out.push(CaseResult::from(
            format!("{c} [{act}]"),
            gemv_case(ctx, c, 100 + i as u64).await,
        ));
    }
    // the tiled matrix-matrix path (many vectors), ragged in every dimension
    for (i, format) in [WeightFormat::F16, WeightFormat::Q8, WeightFormat::Q4]
        .into_iter()
        .enumerate()
    {
        let c = GemvCase {
            format,
            n: [67, 67, 150][i],
            m: 130,
            k: 36,
            bias: i != 1,
            residual: i == 1,
            act: [Activation::Gelu, Activation::SwiGlu, Activation::Silu][i],
            norm: i == 2,
            norm_out: false,
        };
        out.push(CaseResult::from(
            format!("{c} (gemm) [{act}]"),
            gemv_case(ctx, c, 700 + i as u64).await,
        ));
    }
    // few vectors with K a multiple of 8: the one-pass chunked tensor-core kernel where the
    // adapter has tensor cores (gemm_coops.wgsl: one chunk and a ragged tail, two chunks and a
    // tail, two whole chunks; SwiGLU; 4, 2 and 1 subgroups per workgroup by grid size)
    for (i, (n, m, k, a, bias, residual)) in [
        (200, 1536, 264, Activation::Gelu, true, false),
        (200, 1024, 520, Activation::SwiGlu, false, true),
        (200, 200, 512, Activation::None, true, true),
    ]
    .into_iter()
    .enumerate()
    {
        let c = GemvCase {
            format: WeightFormat::F16,
            n,
            m,
            k,
            bias,
            residual,
            act: a,
            norm: false,
            norm_out: false,
        };
        out.push(CaseResult::from(
            format!("{c} (gemm, few rows) [{act}]"),
            gemv_case(ctx, c, 710 + i as u64).await,
        ));
    }
    // a LayerNorm of x folded into the product (the U-Net's norm1 → q/k/v, norm3 → ff)
    for (i, (shape, a)) in [
        ((200, 1536, 256), Activation::None),
        ((37, 1024, 256), Activation::Gelu),
        ((20, 96, 104), Activation::None),
    ]
    .into_iter()
    .enumerate()
    {
        out.push(CaseResult::from(
            format!("gemm f16 LayerNorm(x) {shape:?} {a:?} [{act}]"),
            gemm_ln_in_case(ctx, shape, a, 720 + i as u64).await,
        ));
    }
    // the W_pack product with RoPE and the cache append in its epilogue (where it can)
    for (i, (format, heads, pos)) in [
        (WeightFormat::Q4, (28, 4, 128), 700),
        (WeightFormat::Q8, (2, 1, 32), 6),
    ]
    .into_iter()
    .enumerate()
    {
        out.push(CaseResult::from(
            format!(
                "gemv + rope_kv {} heads {heads:?} pos={pos} [{act}]",
                format.name()
            ),
            gemv_rope_case(
                ctx,
                format,
                heads,
                256,
                (pos, pos + 3),
                (1e6, i == 0),
                false,
                740 + i as u64,
            )
            .await,
        ));
    }
    // products that write their output as the next product's int8 x (the LLM's gate/up with
    // SwiGLU, the audio head's linear1 with GELU). The browser runs this suite in the page, and
    // a wasm heap never shrinks: every case's CPU-side weights stay small (the loader suite
    // checks the heap stays under 256 MiB)
    for (i, (format, shape, a)) in [
        (WeightFormat::Q4, (4736, 512), Activation::SwiGlu),
        (WeightFormat::Q8, (7168 + 13, 512), Activation::Gelu),
    ]
    .into_iter()
    .enumerate()
    {
        out.push(CaseResult::from(
            format!("gemv + int8 y {} {shape:?} {a:?} [{act}]", format.name()),
            gemv_xqo_case(ctx, format, shape, (a, i == 1), false, 770 + i as u64).await,
        ));
    }
    // an RMSNorm deferred from the product before it into the one after (down → W_pack with
    // RoPE, o_proj → gate/up with SwiGLU)
    for (i, (format, shape, next)) in [
        (WeightFormat::Q4, (3584, 512, 0), DeferNext::Rope(4, 2, 128)),
        (WeightFormat::Q8, (512, 3584, 1024), DeferNext::SwiGluXq),
    ]
    .into_iter()
    .enumerate()
    {
        out.push(CaseResult::from(
            format!(
                "gemv → deferred rmsnorm → gemv {} {shape:?} {next:?} [{act}]",
                format.name()
            ),
            gemv_defer_case(ctx, format, shape, next, false, 780 + i as u64).await,
        ));
    }
    out.push(CaseResult::from(
        format!("gemv + normalised residual q4 (512, 256, 2048) [{act}]"),
        gemv_rn_case(ctx, WeightFormat::Q4, (512, 256, 2048), 790).await,
    ));
    out.push(CaseResult::from(
        format!("gemm + layernorm f16 200x256x512 [{act}]"),
        gemm_ln_case(ctx, WeightFormat::F16, (200, 256, 512), false, 760).await,
    ));
    for (i, (format, r, c)) in [(WeightFormat::Q8, 5, 70), (WeightFormat::Q4, 9, 33)]
        .into_iter()
        .enumerate()
    {
        out.push(CaseResult::from(
            format!("quantize {} {r}x{c} [{act}]", format.name()),
            quantize_case(ctx, format, r, c, 400 + i as u64).await,
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
    out.push(CaseResult::from(
        format!("rope_kv (28, 4, 128) pos=77 [{act}]"),
        rope_kv_case(ctx, (28, 4, 128), 100, 77, 430).await,
    ));
    attention_cases(ctx, &mut out).await;
    for (i, &(n, k, levels)) in [(1000usize, 5usize, None), (5003, 64, Some(4u32))]
        .iter()
        .enumerate()
    {
        let seed = 400 + i as u64;
        out.push(CaseResult::from(
            format!("argmax[{act}] n={n}"),
            sampling::argmax_case(ctx, n, levels, seed).await,
        ));
        out.push(CaseResult::from(
            format!("topk[{act}] n={n} k={k}"),
            sampling::topk_case(ctx, n, k, levels, seed).await,
        ));
    }
    out.push(CaseResult::from(
        format!("repetition_penalty[{act}] V=1000 ids=300"),
        sampling::repetition_penalty_case(ctx, 1000, 300, 1.3, 410).await,
    ));
    out.push(CaseResult::from(
        format!("penalty + topk + draw over parts[{act}] n=5000 parts of 1999 k=20"),
        sampling::topk_parts_case(ctx, 5000, 20, 1999, None, 411).await,
    ));
    let sizes = &rvq::SMALL_SIZES;
    out.push(CaseResult::from(
        "rvq_encode[f32] T=7 Dq=40".into(),
        rvq::rvq_encode_case(ctx, 7, 40, sizes, 420).await,
    ));
    out.push(CaseResult::from(
        "rvq_encode known codes[f32] T=5 Dq=16".into(),
        rvq::rvq_known_codes_case(ctx, 5, 16, sizes, 421).await,
    ));
    out.push(CaseResult::from(
        "rvq_decode[f32] T=7 Dq=130".into(),
        rvq::rvq_decode_case(ctx, 7, 130, sizes, 422).await,
    ));
    out
}

/// A small representative subset of the attention cases (fast on a CPU adapter).
async fn attention_cases(ctx: &GpuContext, out: &mut Vec<CaseResult>) {
    let act = ctx.act().name();
    out.push(CaseResult::from(
        format!("kv_append[{act}] 4x128 t=7 p0=3"),
        attention::kv_append_case(ctx, (4, 128), 50, 7, 3, 500).await,
    ));
    for (hs, len) in [((28, 4, 128), 300), ((20, 20, 64), 7)] {
        out.push(CaseResult::from(
            format!("attn_decode[{act}] {hs:?} L={len}"),
            attention::attn_decode_case(ctx, hs, len, 501).await,
        ));
    }
    out.push(CaseResult::from(
        format!("attn_prefill[{act}] (28, 4, 128) p0=37 tq=5"),
        attention::attn_prefill_case(ctx, (28, 4, 128), 37, 5, 502).await,
    ));
    out.push(CaseResult::from(
        format!("attn_varlen[{act}] (20, 20, 64) [3, 50, 1]"),
        attention::attn_varlen_case(ctx, (20, 20, 64), &[3, 50, 1], 503).await,
    ));
    for (b, t, c) in [(1, 101, 100), (1, 37, 1), (2, 130, 100)] {
        out.push(CaseResult::from(
            format!("attn_chunk_causal[{act}] (8, 8, 64) B={b} T={t} C={c}"),
            attention::attn_chunk_causal_case(ctx, (8, 8, 64), (b, t), c, 504).await,
        ));
    }
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
        "layernorm + mish 3x256".into(),
        norm::layernorm_post_case(ctx, 3, 256, false, 405).await,
    );
    push(
        "layernorm + mish + row 5x77".into(),
        norm::layernorm_post_case(ctx, 5, 77, true, 406).await,
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
        "embedding in parts of 3: V10 C7 T9".into(),
        embedding::embedding_parts_case(ctx, 10, 7, 9, 3, 425).await,
    );
    push(
        "audio_embed C13 T7".into(),
        embedding::audio_embed_case(ctx, [33, 17, 9, 5, 9, 17, 33, 65], 13, 7, 424).await,
    );
    let s = conv::ConvShape {
        batch: 2,
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
        "conv1d 2x13x16→24 k3 s2".into(),
        conv::conv1d_case(ctx, s, spec, 425).await,
    );
    // convolutions the tensor-core product reads as im2col rows (Cin a multiple of 8): the
    // flow U-Net's causal k3 over the CFG pair, and a strided, dilated, ragged one
    for (i, (s, spec)) in [
        (
            conv::ConvShape {
                batch: 2,
                tin: 100,
                cin: 80,
                cout: 256,
                k: 3,
                groups: 1,
                bias: true,
            },
            Conv1dSpec {
                stride: 1,
                pad_left: 2,
                pad_right: 0,
                dilation: 1,
            },
        ),
        (
            conv::ConvShape {
                batch: 3,
                tin: 37,
                cin: 96,
                cout: 40,
                k: 5,
                groups: 1,
                bias: false,
            },
            Conv1dSpec {
                stride: 2,
                pad_left: 3,
                pad_right: 1,
                dilation: 2,
            },
        ),
    ]
    .into_iter()
    .enumerate()
    {
        push(
            format!(
                "conv1d {}x{}x{}→{} k{} s{} d{}",
                s.batch, s.tin, s.cin, s.cout, s.k, spec.stride, spec.dilation
            ),
            conv::conv1d_case(ctx, s, spec, 428 + i as u64).await,
        );
    }
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
    // HiFT's upsampling shapes (padding (K − s)/2; tensor cores take them as one product per
    // output phase), one with output padding
    for (i, (tin, cin, cout, k, stride, padding, output_padding)) in [
        (13, 64, 40, 16, 8, 4, 0),
        (40, 32, 16, 11, 5, 3, 0),
        (21, 16, 24, 7, 3, 2, 1),
    ]
    .into_iter()
    .enumerate()
    {
        let s = conv::ConvShape {
            batch: 1,
            tin,
            cin,
            cout,
            k,
            groups: 1,
            bias: i != 1,
        };
        let spec = ConvTranspose1dSpec {
            stride,
            padding,
            output_padding,
            dilation: 1,
        };
        push(
            format!(
                "conv_transpose1d {tin}x{cin}→{cout} k{k} s{stride} p{padding}+{output_padding}"
            ),
            conv::conv_transpose1d_case(ctx, s, spec, 431 + i as u64).await,
        );
    }
    push(
        "avgpool1d 9x7 k4".into(),
        conv::avgpool1d_case(ctx, 9, 7, 4, 427).await,
    );
    for (name, r) in relayout::subset(ctx).await {
        push(name, r);
    }
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
