use crate::gpu::{grid, Binding, CoopF16, KernelKey, Recorder};
use crate::tensor::{Matrix, Tensor};

use super::{check_act, check_len, shape_err, OpError};

// Mirrors shaders/matmul/gemv.wgsl: w, s, x, bias, res, y, params, g.
const BINDINGS: &[Binding] = &[
    Binding::Read,
    Binding::Read,
    Binding::Read,
    Binding::Read,
    Binding::Read,
    Binding::ReadWrite,
    Binding::Uniform,
    Binding::Read,
];

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    m: u32,
    k: u32,
    nb: u32,
    flags: u32,
    groups_x: u32,
    xs: u32,
    n: u32,
    n0: u32,
    eps: f32,
    _pad: [u32; 3],
}

const WG: u32 = 256;
const TPR: u32 = 32;
/// Input vectors per dispatch (the weight rows are read once for all of them).
pub const GEMV_MAX_N: usize = 4;

/// From this many input vectors on, [`gemv`] runs the tiled matrix-matrix kernel
/// (`shaders/matmul/gemm.wgsl`): W is read once per 64 vectors instead of once per 4.
pub const GEMM_MIN_N: usize = 9;

/// From this many vectors on, the tiled kernel uses 128×128 tiles (`gemm_big`).
pub const GEMM_BIG_N: usize = 128;
/// … and only when there are at least this many 128×128 tiles.
pub const GEMM_BIG_MIN_TILES: usize = 256;

/// Split-K (`shaders/matmul/gemm_splitk.wgsl`): with fewer 64×64 tiles than
/// [`GEMM_SPLIT_MAX_TILES`], K is cut into slices of at least [`GEMM_SPLIT_MIN_STEPS`] steps of
/// 32 until tiles × slices reaches this. A tile's time is its chain of K steps (each waits on
/// its loads), so few tiles leave the GPU idle: the flow U-Net's products have 16–64 tiles.
pub const GEMM_SPLIT_TARGET: usize = 256;
/// Products with at least this many tiles are not split (the LLM's prefill, 224 tiles at 256
/// tokens, ran 2× slower split in two on an H100: the partials' traffic outweighs the gain).
pub const GEMM_SPLIT_MAX_TILES: usize = 128;
/// Fewest K steps (of 32) per slice.
pub const GEMM_SPLIT_MIN_STEPS: usize = 2;

/// Split-K of the tensor-core product (`gemm_coop_split.wgsl`): below this many 64×64 tiles
/// (two per SM of an H100), K is cut into slices of at least [`COOP_SPLIT_MIN_STEPS`] steps
/// until tiles × slices reaches [`COOP_SPLIT_TARGET`]. With tensor cores a tile's time is its
/// chain of K steps, each waiting on its loads: the encoder's 1280-row products at 10 s of
/// audio have 160 tiles of 20–80 steps.
pub const COOP_SPLIT_MAX_TILES: usize = 264;
pub const COOP_SPLIT_TARGET: usize = 528;
pub const COOP_SPLIT_MIN_STEPS: usize = 4;

/// The direct tensor-core product (`gemm_coopd.wgsl`, f16 weights, fragments loaded straight
/// from the buffers): below this many subgroups, K is cut into slices (`gemm_coopd_split.wgsl`)
/// of at least [`COOPD_SPLIT_MIN_STEPS`] steps of 16 until subgroups × slices reaches it
/// (16 per SM of an H100; measured on encode 10 s: 528 / 1056 / 2112 → 29.9 / 28.2 / 26.7 ms).
pub const COOPD_SPLIT_TARGET: usize = 2112;
pub const COOPD_SPLIT_MIN_STEPS: usize = 8;
/// The 128 × 128 double-buffered tensor-core product (`gemm_coopb.wgsl`, f16 weights, the
/// default): below this many subgroups (8 per tile) K is split into slices of at least
/// [`COOPB_SPLIT_MIN_STEPS`] steps of 32 (`gemm_coopb_split.wgsl`). Measured on encode 10 s /
/// 30 s: 1584 → 20.7 / 64.0 ms, 2112 → 19.3–20.7 / 52.9–58.1, 3168 → 20.1 / 56.3, 4224 →
/// 21.5 / 59.5.
pub const COOPB_SPLIT_TARGET: usize = 2112;
/// Fewest K steps (of 32) per slice of the 128 × 128 tensor-core tile.
pub const COOPB_SPLIT_MIN_STEPS: usize = 4;

/// Which kernel writes split-K partials.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PartKernel {
    /// gemm_splitk.wgsl's 64 × 64 FMA tile (K steps of 32).
    Fma,
    /// gemm_coop_split.wgsl's staged tensor-core tile (K steps of `tk`).
    Coop(u32),
    /// gemm_coopd_split.wgsl's direct tensor-core tiles (K steps of 16), shape (FN, GN, GM).
    Direct([u32; 3]),
    /// gemm_coopb_split.wgsl's 128 × 128 double-buffered tile (K steps of 32).
    Big,
}

impl PartKernel {
    /// The K step, and one workgroup's tile: (W rows, x rows).
    fn tile(self) -> (usize, u32, u32) {
        match self {
            PartKernel::Fma => (32, 64, 64),
            PartKernel::Coop(tk) => (tk as usize, 64, 64),
            PartKernel::Direct([f, gn, gm]) => (16, 64 * gm, 16 * f * gn),
            PartKernel::Big => (32, 128, 128),
        }
    }
}

/// K slices for a product of `units` work units (tiles or subgroups) over `steps` K steps: a
/// forced count clamped to the steps; else, below `below` units, enough slices of at least
/// `min_steps` steps to bring the units to `target`; else one.
fn k_splits(
    forced: Option<usize>,
    units: usize,
    (below, target): (usize, usize),
    steps: usize,
    min_steps: usize,
) -> usize {
    match forced {
        Some(s) => s.clamp(1, steps.max(1)),
        None if units < below => target.div_ceil(units).min(steps / min_steps).max(1),
        None => 1,
    }
}

/// Activation fused after the bias.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Activation {
    #[default]
    None,
    Silu,
    Gelu,
    /// Rows `2i`, `2i+1` of W are (gate_i, up_i); `y[i] = SiLU(gate_i)·up_i` (M/2 outputs).
    SwiGlu,
}

impl Activation {
    /// The kernels' `ACT` override: 0 none, 1 SiLU, 2 GELU (erf), 3 SwiGLU.
    fn code(self) -> u32 {
        match self {
            Activation::None => 0,
            Activation::Silu => 1,
            Activation::Gelu => 2,
            Activation::SwiGlu => 3,
        }
    }
}

/// What happens around the product: `y = act(W·rmsnorm(x) + bias) + residual`.
#[derive(Clone, Copy, Default)]
pub struct Epilogue<'a> {
    pub bias: Option<&'a Tensor>,
    pub residual: Option<&'a Tensor>,
    pub act: Activation,
    /// Fused RMSNorm of x: (weight (K) f32, eps).
    pub norm: Option<(&'a wgpu::Buffer, f32)>,
    /// Also write the normalised x here ((N, K), the activation dtype): for a norm whose output
    /// is needed again (the audio head's RMSNorm2 is its FFN's residual). Only where the norm
    /// folds into the quantisation of x ([`norm_folds`]); elsewhere an error.
    pub norm_out: Option<&'a Tensor>,
    /// x already quantised to int8 by the kernel that wrote it (`(xq, xd)`, the layout of
    /// `gemv_xq.wgsl`; e.g. [`attn_decode_xq`](super::attn_decode_xq)): a q4/q8 product with
    /// int8 activations reads them and skips its quantisation dispatch. One vector only, no
    /// norm. Other paths (f16 weights, `--no-int8`) read x as usual, which must hold the same
    /// values.
    pub prequantised: Option<(&'a wgpu::Buffer, &'a wgpu::Buffer)>,
    /// y is a W_pack output `[q | k | v]`: RoPE it and append k, v to the cache
    /// ([`super::rope_kv`]'s work). A one-vector q4/q8 product with int8 activations does it in
    /// its own epilogue (no `rope_kv` dispatch, and y is left unwritten); elsewhere `rope_kv`
    /// runs after the product. No activation or residual with it; `q` must hold as many
    /// tokens as x has vectors.
    pub rope: Option<RopeOut<'a>>,
    /// Also write the LayerNorm of y (each row; weight, bias f32 (M), eps) to `out` ((N, M),
    /// not y). The split-K product does it in its reduce pass (`gemm_reduce_ln.wgsl`: one
    /// dispatch fewer); elsewhere a `layernorm` dispatch follows. The same values either way.
    /// No activation with it.
    pub layernorm: Option<LnOut<'a>>,
    /// Also write y as the next product's int8 x, `(xq, xd)` in `gemv_xq.wgsl`'s layout (what
    /// [`Self::prequantised`] takes; [`xq_buffers_len`] bytes each). One vector only, no RoPE
    /// or LayerNorm with it. A one-vector q4/q8 product with int8 activations writes it in its
    /// own epilogue (`gemv_i8_xqo.wgsl`: workgroups own whole 32-output blocks); elsewhere a
    /// `gemv_xq` dispatch quantises y after the product. Either way they are the bits that
    /// quantising the y written gives.
    pub xq_out: Option<(&'a wgpu::Buffer, &'a wgpu::Buffer)>,
    /// With [`Self::xq_out`]: y is the input of an RMSNorm of weight `g` (f32, M_out) that the
    /// next product defers ([`Self::deferred_norm`]). `xq_out` then holds y·g as int8 x, and
    /// `ss` (⌈M_out/32⌉ f32) Σ y² per 32-value block. Only where the fused epilogue runs (the
    /// caller asks [`norm_defers`]); elsewhere an error, before anything is recorded.
    pub xq_out_norm: Option<(&'a wgpu::Buffer, &'a wgpu::Buffer)>,
    /// x's RMSNorm deferred to this product: x comes [`Self::prequantised`] from a product with
    /// [`Self::xq_out_norm`] (int8 x·g), `(ss, eps)` its block sums of squares and the norm's
    /// epsilon; the product scales its sums by 1/√(Σ x²/K + ε) (`defer_norm.wgsl`). Only where
    /// [`norm_defers`] says so; elsewhere an error, before anything is recorded.
    pub deferred_norm: Option<(&'a wgpu::Buffer, f32)>,
    /// `(g, ss, eps)`: add RMSNorm([`Self::residual`])·g instead of the residual, normalised
    /// in the epilogue from `ss`, its block sums of squares (what the [`Self::xq_out_norm`]
    /// product that wrote it left): the audio head's FFN adds its normalised input, whose norm
    /// the products around it defer. Only with `xq_out_norm` on the fused path (the callers
    /// ask [`norm_defers`]); elsewhere an error, before anything is recorded.
    pub residual_norm: Option<(&'a wgpu::Buffer, &'a wgpu::Buffer, f32)>,
    /// The product is of LayerNorm(x) (weight, bias f32 (K), eps) instead of x: where the
    /// chunked tensor-core kernel takes the product and K ≤ 256 ([`ln_folds`]), its workgroups
    /// normalise their staged rows before multiplying (no LayerNorm dispatch); elsewhere a
    /// `layernorm` dispatch into a pooled buffer comes first. The same values either way, up
    /// to the order of the statistics' sums. Not with `norm`, `prequantised`, RoPE or int8 out.
    pub ln_in: Option<LnIn<'a>>,
}

/// [`Epilogue::ln_in`]: a LayerNorm's weight and bias (f32, K) and epsilon.
#[derive(Clone, Copy)]
pub struct LnIn<'a> {
    pub w: &'a wgpu::Buffer,
    pub b: &'a wgpu::Buffer,
    pub eps: f32,
}

/// Whether a product of `n` vectors with W folds a LayerNorm of x into its workgroups
/// ([`Epilogue::ln_in`]): the chunked tensor-core kernel takes it, and K ≤ 256 (one chunk).
pub fn ln_folds(ctx: &crate::gpu::GpuContext, w: &Matrix, n: usize) -> bool {
    n >= GEMM_MIN_N && w.cols() <= 256 && coops_fits(ctx, w, n)
}

/// Whether the product `producer` (no SwiGLU) can feed the RMSNorm before `next` deferred
/// ([`Epilogue::xq_out_norm`] → [`Epilogue::deferred_norm`]): both take int8 x, the
/// producer's fused epilogue reduces by subgroups, the device binds 13 storage buffers (14
/// where params live in one: the `_norm_rn` entries), and no knob turns a piece of it off.
pub fn norm_defers(ctx: &crate::gpu::GpuContext, producer: &Matrix, next: &Matrix) -> bool {
    let sg = ctx.caps.subgroup_size;
    let use_sg = ctx.caps.subgroups && sg >= 4 && WG.is_multiple_of(sg);
    let producer_m_out = producer.rows();
    norm_folds(ctx, producer, 1)
        && norm_folds(ctx, next, 1)
        && use_sg
        && sg < 128
        && !ctx.no_defer_norm
        && !ctx.no_fused_xqo
        && ctx.gemv_tpr.is_none()
        && ctx.gemv_rows.is_none()
        && binds_storage(ctx, 13)
        && xqo_shape(ctx, use_sg, false, producer_m_out).is_some_and(|s| s.sgx)
}

/// Whether the device binds `n` storage buffers to a kernel, and its params too where they
/// live in a storage buffer (`Caps::params_in_storage`: CPU adapters).
fn binds_storage(ctx: &crate::gpu::GpuContext, n: u32) -> bool {
    ctx.limits.max_storage_buffers_per_shader_stage >= n + ctx.caps.params_in_storage as u32
}

/// Whether a one-vector product that feeds `next` should write its output as `next`'s int8 x
/// ([`Epilogue::xq_out`]): `next` takes int8 x ([`norm_folds`]) and
/// `GpuOptions::no_fused_xqo` is off.
pub fn feeds_int8(ctx: &crate::gpu::GpuContext, next: &Matrix) -> bool {
    norm_folds(ctx, next, 1) && !ctx.no_fused_xqo
}

/// Bytes of the `(xq, xd)` buffers holding a vector of `k` values as int8 x.
pub fn xq_buffers_len(k: usize) -> (u64, u64) {
    let nbq = k.div_ceil(32) as u64;
    (nbq * 32, nbq * 8)
}

/// See [`Epilogue::layernorm`].
#[derive(Clone, Copy)]
pub struct LnOut<'a> {
    pub w: &'a wgpu::Buffer,
    pub b: &'a wgpu::Buffer,
    pub eps: f32,
    pub out: &'a Tensor,
}

/// See [`Epilogue::rope`]: `q` is `(Hq, D)` (or `(T, Hq, D)` for T vectors), position `pos`.
#[derive(Clone, Copy)]
pub struct RopeOut<'a> {
    pub inv_freq: &'a wgpu::Buffer,
    pub pos: usize,
    pub q: &'a Tensor,
    pub cache: &'a super::KvCache,
}

/// The `gemv_i8_xqo` kernels' bindings: [`BINDINGS`], then the int8 y and its block scales.
const XQO_BINDINGS: &[Binding] = &[
    Binding::Read,
    Binding::Read,
    Binding::Read,
    Binding::Read,
    Binding::Read,
    Binding::ReadWrite,
    Binding::Uniform,
    Binding::Read,
    Binding::ReadWrite,
    Binding::ReadWrite,
];

/// The `_rope` kernels' bindings: [`BINDINGS`], then the KV cache and the RoPE frequencies.
const ROPE_BINDINGS: &[Binding] = &[
    Binding::Read,
    Binding::Read,
    Binding::Read,
    Binding::Read,
    Binding::Read,
    Binding::ReadWrite,
    Binding::Uniform,
    Binding::Read,
    Binding::ReadWrite,
    Binding::Read,
];

/// Whether [`Epilogue::norm`] costs no dispatch of its own for this product: q4/q8 weights with
/// int8 activations (fewer than [`GEMM_MIN_N`] vectors) normalise x in the dispatch that
/// quantises it. Elsewhere every workgroup of the product would recompute the norm, which
/// measured slower than a separate RMSNorm (BENCHMARKS.md, 2026-11-25), so callers fold a norm
/// only where this holds.
pub fn norm_folds(ctx: &crate::gpu::GpuContext, w: &Matrix, n: usize) -> bool {
    n < GEMM_MIN_N && ctx.int8 && !matches!(w, Matrix::F16 { .. })
}

/// [`gemv`] of the RMSNorm (weight `g`, `eps`) of x: the norm folds into the product's
/// quantisation of x where that is free ([`norm_folds`]), else an RMSNorm dispatch writes it to
/// `xn` (x's shape) first. With `keep`, `xn` holds the normalised x afterwards either way (a
/// folded norm writes it out, [`Epilogue::norm_out`]); without, it may be left untouched.
/// `epi.norm` and `epi.norm_out` are this function's to set.
#[allow(clippy::too_many_arguments)]
pub fn gemv_rmsnorm(
    rec: &mut Recorder,
    w: &Matrix,
    x: &Tensor,
    (g, eps): (&wgpu::Buffer, f32),
    xn: &Tensor,
    keep: bool,
    y: &Tensor,
    epi: Epilogue,
) -> Result<(), OpError> {
    let n = x.numel() / w.cols().max(1);
    if norm_folds(rec.ctx(), w, n) {
        let epi = Epilogue {
            norm: Some((g, eps)),
            norm_out: keep.then_some(xn),
            ..epi
        };
        gemv(rec, w, x, y, epi)
    } else {
        super::rmsnorm(rec, x, g, eps, xn)?;
        gemv(rec, w, xn, y, epi)
    }
}

/// `y (N, M) = act(x (N, K) · Wᵀ + bias) + residual`, W (M, K) in any [`Matrix`] format.
/// Vectors go through in groups of [`GEMV_MAX_N`] per dispatch. For N > 1, K must be a
/// multiple of 4 (rows of x are read as vec4).
pub fn gemv(
    rec: &mut Recorder,
    w: &Matrix,
    x: &Tensor,
    y: &Tensor,
    epi: Epilogue,
) -> Result<(), OpError> {
    if let Some(r) = &epi.rope {
        if epi.act != Activation::None || epi.residual.is_some() {
            return Err(shape_err(
                "gemv",
                "RoPE after the product takes no activation or residual",
            ));
        }
        let (tokens, _, _) =
            super::rope_kv::rope_kv_check(rec.ctx(), y, r.inv_freq, r.pos, r.q, r.cache)?;
        let n = x.numel() / w.cols().max(1);
        if tokens != n {
            return Err(shape_err(
                "gemv",
                format!(
                    "RoPE of {tokens} tokens (q {:?}) after a product of {n} vectors",
                    r.q.shape
                ),
            ));
        }
    }
    if let Some(l) = epi.ln_in {
        let k = w.cols();
        if epi.norm.is_some()
            || epi.prequantised.is_some()
            || epi.rope.is_some()
            || epi.xq_out.is_some()
            || epi.deferred_norm.is_some()
        {
            return Err(shape_err(
                "gemv",
                "a LayerNorm of x takes no RMSNorm, prequantised x, RoPE or int8 output",
            ));
        }
        check_len("gemv", "x LayerNorm weight", l.w, (k * 4) as u64)?;
        check_len("gemv", "x LayerNorm bias", l.b, (k * 4) as u64)?;
        let n = x.numel() / k.max(1);
        if !ln_folds(rec.ctx(), w, n) {
            // a LayerNorm dispatch into a pooled buffer, then the product on it
            let ctx = rec.ctx();
            let pooled = ctx.acquire((x.numel() * x.dtype.size()) as u64);
            let rows = |buf: &wgpu::Buffer| Tensor {
                buf: buf.clone(),
                shape: vec![n, k],
                dtype: x.dtype,
            };
            let xn = rows(&pooled.buffer);
            let r = super::layernorm(rec, &rows(&x.buf), l.w, l.b, l.eps, &xn)
                .and_then(|_| gemv(rec, w, &xn, y, Epilogue { ln_in: None, ..epi }));
            ctx.release(pooled);
            return r;
        }
    }
    if let Some(l) = &epi.layernorm {
        if epi.act != Activation::None || epi.rope.is_some() {
            return Err(shape_err(
                "gemv",
                "a LayerNorm after the product takes no activation or RoPE",
            ));
        }
        let cols = (w.rows() * 4) as u64;
        check_len("gemv", "LayerNorm weight", l.w, cols)?;
        check_len("gemv", "LayerNorm bias", l.b, cols)?;
        if l.out.buf == y.buf || l.out.shape.iter().product::<usize>() != y.numel() {
            return Err(shape_err(
                "gemv",
                format!(
                    "the LayerNorm's output {:?} must be y's shape {:?} in another buffer",
                    l.out.shape, y.shape
                ),
            ));
        }
    }
    if let Some((xq, xd)) = epi.xq_out {
        let n = x.numel() / w.cols().max(1);
        if n != 1 || epi.rope.is_some() || epi.layernorm.is_some() {
            return Err(shape_err(
                "gemv",
                format!(
                    "y as int8 x is for one vector without RoPE or LayerNorm (x is {:?})",
                    x.shape
                ),
            ));
        }
        let m_out = if epi.act == Activation::SwiGlu {
            w.rows() / 2
        } else {
            w.rows()
        };
        let (lq, ld) = xq_buffers_len(m_out);
        check_len("gemv", "int8 y", xq, lq)?;
        check_len("gemv", "int8 y scales", xd, ld)?;
        if let Some((g, ss)) = epi.xq_out_norm {
            check_len("gemv", "next norm weight", g, m_out as u64 * 4)?;
            check_len("gemv", "int8 y sums of squares", ss, ld / 2)?;
        }
    } else if epi.xq_out_norm.is_some() {
        return Err(shape_err("gemv", "xq_out_norm without xq_out"));
    }
    if let Some((g, ss, _)) = epi.residual_norm {
        let m_out = match (epi.residual, epi.xq_out_norm) {
            (Some(r), Some(_)) => r.numel(),
            _ => {
                return Err(shape_err(
                    "gemv",
                    "a normalised residual needs the residual and xq_out_norm",
                ))
            }
        };
        check_len("gemv", "residual norm weight", g, m_out as u64 * 4)?;
        check_len(
            "gemv",
            "residual sums of squares",
            ss,
            m_out.div_ceil(32) as u64 * 4,
        )?;
    }
    if let Some((ss, _)) = epi.deferred_norm {
        if epi.prequantised.is_none() || epi.norm.is_some() {
            return Err(shape_err(
                "gemv",
                "a deferred norm takes its x prequantised, without a norm of its own",
            ));
        }
        check_len(
            "gemv",
            "x sums of squares",
            ss,
            w.cols().div_ceil(32) as u64 * 4,
        )?;
    }
    let done = gemv_inner(rec, w, x, y, epi)?;
    if !done.xq {
        if let Some((xq, xd)) = epi.xq_out {
            let m_out = y.numel();
            let yv = Tensor {
                buf: y.buf.clone(),
                shape: vec![m_out],
                dtype: y.dtype,
            };
            quantise_vector(rec, &yv, (xq, xd))?;
        }
    }
    if !done.rope {
        if let Some(r) = epi.rope {
            super::rope_kv(rec, y, r.inv_freq, r.pos, r.q, r.cache)?;
        }
    }
    if !done.ln {
        if let Some(l) = epi.layernorm {
            let rows = y.numel() / w.rows().max(1);
            let yv = Tensor {
                buf: y.buf.clone(),
                shape: vec![rows, w.rows()],
                dtype: y.dtype,
            };
            let ov = Tensor {
                buf: l.out.buf.clone(),
                shape: vec![rows, w.rows()],
                dtype: l.out.dtype,
            };
            super::layernorm(rec, &yv, l.w, l.b, l.eps, &ov)?;
        }
    }
    Ok(())
}

/// Which of [`Epilogue::rope`], [`Epilogue::layernorm`] and [`Epilogue::xq_out`] the product
/// did itself.
#[derive(Default)]
struct Done {
    rope: bool,
    ln: bool,
    xq: bool,
}

/// [`gemv`] but for a RoPE or LayerNorm it cannot fuse; says which it did.
fn gemv_inner(
    rec: &mut Recorder,
    w: &Matrix,
    x: &Tensor,
    y: &Tensor,
    epi: Epilogue,
) -> Result<Done, OpError> {
    const OP: &str = "gemv";
    let ctx = rec.ctx();
    let (m, k) = (w.rows(), w.cols());
    let (n, xk) = match x.shape.as_slice() {
        [k] => (1, *k),
        [n, k] => (*n, *k),
        s => return Err(shape_err(OP, format!("x must be (K) or (N, K), got {s:?}"))),
    };
    if xk != k {
        return Err(shape_err(OP, format!("x is {:?}, W is {m}×{k}", x.shape)));
    }
    if n == 0 {
        return Err(shape_err(OP, "x has no vectors"));
    }
    if n > 1 && k % 4 != 0 {
        return Err(shape_err(
            OP,
            format!("batched x {:?} needs K a multiple of 4", x.shape),
        ));
    }
    let swiglu = epi.act == Activation::SwiGlu;
    if swiglu && (m % 2 != 0 || epi.bias.is_some()) {
        return Err(shape_err(
            OP,
            format!("SwiGLU needs an even row count and no bias, W is {m}×{k}"),
        ));
    }
    let m_out = if swiglu { m / 2 } else { m };
    if y.numel() != n * m_out {
        return Err(shape_err(
            OP,
            format!(
                "y is {:?}, expected ({n}, {m_out}) for x {:?} and W {m}×{k}",
                y.shape, x.shape
            ),
        ));
    }
    if let Some((g, _)) = epi.norm {
        check_len(OP, "norm weight", g, k.div_ceil(4) as u64 * 16)?;
    }
    if let Some(o) = epi.norm_out {
        if epi.norm.is_none() || !norm_folds(ctx, w, n) {
            return Err(shape_err(
                OP,
                format!(
                    "the normalised x can be written out only by a folded norm (q4/q8 weights, int8 activations, fewer than {GEMM_MIN_N} vectors); W is {} {m}×{k}, {n} vectors",
                    w.format()
                ),
            ));
        }
        if o.numel() != n * k {
            return Err(shape_err(
                OP,
                format!("norm_out is {:?}, x is {:?}", o.shape, x.shape),
            ));
        }
    }
    if let Some(b) = epi.bias {
        if b.numel() != m {
            return Err(shape_err(
                OP,
                format!("bias is {:?}, W has {m} rows", b.shape),
            ));
        }
    }
    if let Some(r) = epi.residual {
        if r.numel() != n * m_out {
            return Err(shape_err(
                OP,
                format!("residual is {:?}, y is {:?}", r.shape, y.shape),
            ));
        }
    }
    let act = ctx.act();
    let present: Vec<(&str, &Tensor)> = [
        ("x", Some(x)),
        ("y", Some(y)),
        ("bias", epi.bias),
        ("residual", epi.residual),
        ("norm_out", epi.norm_out),
    ]
    .into_iter()
    .filter_map(|(name, t)| t.map(|t| (name, t)))
    .collect();
    check_act(OP, ctx, &present)?;
    let limit = ctx.limits.max_storage_buffer_binding_size;
    let wbytes = w.data_bytes();
    if wbytes > limit {
        return Err(shape_err(
            OP,
            format!(
                "W ({m}×{k} {}) is {wbytes} bytes, over the device's {limit}-byte binding limit (split it by rows)",
                w.format()
            ),
        ));
    }
    check_len(OP, "W", w.data(), wbytes)?;
    if let Some(sb) = w.scales() {
        check_len(OP, "W scales", sb, w.scale_bytes())?;
    }
    let xs = k.div_ceil(4);
    check_len(
        OP,
        "x",
        &x.buf,
        ((n - 1) * xs * 4 + k) as u64 * act.size() as u64,
    )?;
    check_len(OP, "y", &y.buf, (n * m_out * act.size()) as u64)?;

    if n >= GEMM_MIN_N && k % 4 == 0 {
        let ln = gemm(rec, w, x, y, epi, n)?;
        return Ok(Done {
            ln,
            ..Done::default()
        });
    }

    let sg = ctx.caps.subgroup_size;
    let use_sg = ctx.caps.subgroups && sg >= 4 && WG.is_multiple_of(sg);
    // q4/q8 with int8 activations: x is quantised (and normalised) once by gemv_xq.
    let int8 = ctx.int8 && !matches!(w, Matrix::F16 { .. });
    let base_tpr = if use_sg { sg } else { TPR };
    // the int8 kernels may spread a row over several subgroups (`gemv_*_i8_sgk`)
    let tpr = if int8 {
        gemv_tpr(ctx.gemv_tpr, base_tpr, use_sg, m, k)
    } else {
        base_tpr
    };
    let (family, entry): (&'static str, &'static str) = match (w, int8, use_sg) {
        (Matrix::Q8 { .. }, true, true) if tpr > sg => ("gemv_i8", "gemv_q8_i8_sgk"),
        (Matrix::Q4 { .. }, true, true) if tpr > sg => ("gemv_i8", "gemv_q4_i8_sgk"),
        (Matrix::F16 { .. }, _, false) => ("gemv", "gemv_f16"),
        (Matrix::F16 { .. }, _, true) => ("gemv", "gemv_f16_sg"),
        (Matrix::Q8 { .. }, false, false) => ("gemv", "gemv_q8"),
        (Matrix::Q8 { .. }, false, true) => ("gemv", "gemv_q8_sg"),
        (Matrix::Q4 { .. }, false, false) => ("gemv", "gemv_q4"),
        (Matrix::Q4 { .. }, false, true) => ("gemv", "gemv_q4_sg"),
        (Matrix::Q8 { .. }, true, false) => ("gemv_i8", "gemv_q8_i8"),
        (Matrix::Q8 { .. }, true, true) => ("gemv_i8", "gemv_q8_i8_sg"),
        (Matrix::Q4 { .. }, true, false) => ("gemv_i8", "gemv_q4_i8"),
        (Matrix::Q4 { .. }, true, true) => ("gemv_i8", "gemv_q4_i8_sg"),
    };
    let act_code = epi.act.code();
    // Vectors per dispatch and rows per lane group: R·NB ≤ 4; SwiGLU needs R even.
    let max_n = if swiglu { 2 } else { GEMV_MAX_N };
    let nb_vec = n.min(max_n) as u32;
    // Rows per lane group (R): more rows share each x chunk but leave fewer threads in flight.
    let rows_per_group: u32 = match ctx.gemv_rows {
        // a tuning override must still satisfy R·NB ≤ 4 and, for SwiGLU, R even
        Some(r) if r >= 1 && r * nb_vec <= 4 && (!swiglu || r % 2 == 0) => r,
        _ if swiglu => 2,
        // very tall matrices (the LM head) gain from sharing x across 4 rows; everything else
        // loses (fewer threads in flight): measured on an H200, see BENCHMARKS.md
        _ if m >= 65536 && nb_vec == 1 => 4,
        _ => 1,
    };
    // RoPE and the cache append in the epilogue (`_rope`): workgroups of at least two lane
    // groups (the rotate-half pair), one row each, and a device that binds 9 storage buffers
    let rope = epi.rope.filter(|r| {
        let d = r.cache.dim;
        int8 && n == 1
            && !ctx.no_fused_rope
            && rows_per_group == 1
            && (2..=8).contains(&(WG / tpr))
            && binds_storage(ctx, 9)
            && m.is_multiple_of(d)
            && matches!(
                entry,
                "gemv_q4_i8" | "gemv_q8_i8" | "gemv_q4_i8_sgk" | "gemv_q8_i8_sgk"
            )
    });
    let entry = match (rope.is_some(), entry) {
        (true, "gemv_q4_i8") => "gemv_q4_i8_rope",
        (true, "gemv_q8_i8") => "gemv_q8_i8_rope",
        (true, "gemv_q4_i8_sgk") => "gemv_q4_i8_sgk_rope",
        (true, "gemv_q8_i8_sgk") => "gemv_q8_i8_sgk_rope",
        (_, e) => e,
    };
    // y as the next product's int8 x in the epilogue (`gemv_i8_xqo`): a workgroup owns a
    // block of 32 outputs (see [`xqo_shape`])
    let xqo = epi
        .xq_out
        .filter(|_| int8 && n == 1 && rope.is_none() && !ctx.no_fused_xqo && binds_storage(ctx, 9))
        .and_then(|bufs| xqo_shape(ctx, use_sg, swiglu, m_out).map(|shape| (bufs, shape)));
    let (family, entry, wg, tpr, rows_per_group) = match &xqo {
        Some((_, x)) => (
            "gemv_i8_xqo",
            if x.sgx {
                "gemv_i8_sgx_xqo"
            } else {
                "gemv_i8_xqo"
            },
            x.wg,
            x.tpr,
            x.rows,
        ),
        None => (family, entry, WG, tpr, rows_per_group),
    };
    // the deferred-norm variants: x's norm into this product (`_defer`), or y·g for the next
    // one's (`_norm`); only these entries have them (`norm_defers` is the callers' check)
    let defer = epi.deferred_norm.filter(|_| int8);
    let norm_mode = epi.xq_out_norm.filter(|_| xqo.is_some());
    if epi.xq_out_norm.is_some() && norm_mode.is_none() {
        return Err(shape_err(
            OP,
            format!(
                "y·g for a deferred norm needs the fused int8 epilogue, which this product ({} {m}×{k}) does not take here (callers ask ops::norm_defers)",
                w.format()
            ),
        ));
    }
    if epi.deferred_norm.is_some() && defer.is_none() {
        return Err(shape_err(
            OP,
            "a deferred norm needs q4/q8 weights with int8 activations (callers ask ops::norm_defers)",
        ));
    }
    let rn = epi.residual_norm.filter(|_| norm_mode.is_some());
    if epi.residual_norm.is_some() && (rn.is_none() || defer.is_some()) {
        return Err(shape_err(
            OP,
            "a normalised residual needs the fused y·g epilogue and no deferred norm of x (callers ask ops::norm_defers)",
        ));
    }
    let entry = match (defer.is_some(), norm_mode.is_some(), entry) {
        (false, true, "gemv_i8_sgx_xqo") if rn.is_some() => "gemv_i8_sgx_xqo_norm_rn",
        (false, false, e) => e,
        (true, false, "gemv_q4_i8_sgk" | "gemv_q8_i8_sgk") => "gemv_i8_sgk_defer",
        (true, false, "gemv_q4_i8_sgk_rope" | "gemv_q8_i8_sgk_rope") => "gemv_i8_sgk_rope_defer",
        (true, false, "gemv_i8_sgx_xqo") => "gemv_i8_sgx_xqo_defer",
        (false, true, "gemv_i8_sgx_xqo") => "gemv_i8_sgx_xqo_norm",
        (d, _, e) => {
            return Err(shape_err(
                OP,
                format!(
                    "{} has no {} variant (callers ask ops::norm_defers)",
                    e,
                    if d { "deferred-norm" } else { "y·g" }
                ),
            ))
        }
    };
    let mut constants = vec![
        ("WG", wg),
        ("TPR", tpr),
        ("NB", nb_vec),
        ("R", rows_per_group),
        ("ACT", act_code),
    ];
    if !int8 {
        constants.push(("NORM", epi.norm.is_some() as u32));
    }
    if let Some(r) = &rope {
        constants.push(("D", r.cache.dim as u32));
    }
    // the entries that serve both weight formats
    if xqo.is_some() || defer.is_some() {
        constants.push(("Q8", matches!(w, Matrix::Q8 { .. }) as u32));
    }
    // (a normalised residual is added by the `_rn` epilogue itself, not as a plain one)
    let flags = epi.bias.is_some() as u32 | ((epi.residual.is_some() && rn.is_none()) as u32) << 1;
    if xqo.is_some() {
        // blocks in flight per lane (`XU`) by the blocks a lane has of a row, measured per
        // product in a decode step on an H100 (BENCHMARKS.md, eleventh and thirteenth
        // sessions): three where it has 3 (o_proj: q4 208 → 200 µs per token, q8 257 → 252),
        // two from 4 (gate/up with 7: q4 944 → 938; four lost 60 µs there); from 8 (down, 18)
        // two for q4 (541–545 → 537–538) and four for q8 (826–833 against 844–845 with two)
        let per_lane = w.blocks_per_row() as u32 / tpr.max(1);
        let q8 = matches!(w, Matrix::Q8 { .. });
        let xu = match ctx.xqo_xu {
            Some(u @ 1..=4) => u,
            _ if per_lane >= 8 && q8 => 4,
            _ if per_lane >= 4 => 2,
            _ if per_lane == 3 => 3,
            _ => 1,
        };
        constants.push(("XU", xu));
        // the epilogue operands its lane groups load before the product (bias, residual):
        // only those it has, as the registers they hold cost more than the load saves where
        // the product needs none of them (`gemv_tail.wgsl`'s `epi_load`)
        constants.push(("PF", flags));
    }
    let groups = (m as u32).div_ceil(wg / tpr * rows_per_group);
    let g = grid(groups, ctx.limits.max_compute_workgroups_per_dimension);
    // the eps the kernel reads with a prequantised x: its deferred norm's (x's, or the
    // normalised residual's); a kernel that quantises x itself folds the norm there
    let given_eps = defer
        .map(|(_, e)| e)
        .or(rn.map(|(_, _, e)| e))
        .unwrap_or(0.0);
    if int8 && n == 1 {
        // one vector (every decode step's products): the shape, flags and eps as pipeline
        // constants, so that no workgroup waits on the params before its first weight loads
        // (`gemv_tail.wgsl`'s `pm()` …; the params still carry them for the other entries)
        let eps = if epi.prequantised.is_some() {
            given_eps
        } else {
            0.0
        };
        let fields = [
            ("SM", m as u32),
            ("SK", k as u32),
            ("SNB", w.blocks_per_row() as u32),
            ("SGX", g[0]),
            ("SFL", flags),
            ("SEPS", eps.to_bits()),
            ("ONE", 1),
        ];
        // SwiGLU (gate/up) fixes fewer: with all of them the H100's compiler made it slower
        // (q4 932 → 957 µs per token with all, 974 with the row length alone; q8 1527 →
        // 1547–1550 with all, 1508 with the row length and the grid), so q4 fixes the grid and
        // q8 the grid and the row length (BENCHMARKS.md, fifteenth session)
        let q8 = matches!(w, Matrix::Q8 { .. });
        constants.extend(
            fields
                .into_iter()
                .filter(|(name, _)| !swiglu || *name == "SGX" || (q8 && *name == "SNB")),
        );
        if let Some(r) = &rope {
            constants.extend([
                ("SQH", (r.q.numel() / r.cache.dim) as u32),
                ("STM", r.cache.tmax as u32),
            ]);
        }
    }
    let key = KernelKey {
        family,
        entry,
        act,
        subgroups: use_sg,
        constants,
    };
    let mut bindings = if rope.is_some() {
        ROPE_BINDINGS
    } else if xqo.is_some() {
        XQO_BINDINGS
    } else {
        BINDINGS
    }
    .to_vec();
    if defer.is_some() {
        // the plain product's bindings 8 and 9 unused (dummies) before the deferred norm's 10
        if bindings.len() == 8 {
            bindings.extend([Binding::Read, Binding::Read]);
        }
        bindings.push(Binding::Read);
    }
    if norm_mode.is_some() {
        bindings.extend([Binding::Read, Binding::ReadWrite]);
    }
    if rn.is_some() {
        bindings.extend([Binding::Read, Binding::Read]);
    }
    let p = ctx.pipeline(&key, &bindings)?;
    let scales = w.scales().unwrap_or(&ctx.dummy);
    let bias = epi.bias.map(|b| &b.buf).unwrap_or(&ctx.dummy);
    let res = epi.residual.map(|b| &b.buf).unwrap_or(&ctx.dummy);
    // Groups of up to NB vectors, each its own dispatch (params carry the first vector).
    let given = match epi.prequantised {
        Some((xq, xd)) if int8 => {
            if n != 1 || epi.norm.is_some() {
                return Err(shape_err(
                    OP,
                    format!(
                        "a prequantised x is one vector without a norm (x is {:?})",
                        x.shape
                    ),
                ));
            }
            let nbq = k.div_ceil(32) as u64;
            check_len(OP, "xq", xq, nbq * 32)?;
            check_len(OP, "xd", xd, nbq * 8)?;
            Some((xq, xd))
        }
        _ => None,
    };
    let quantised = if int8 && given.is_none() {
        Some(quantise_x(rec, x, n, k, epi.norm, epi.norm_out)?)
    } else {
        None
    };
    let (xbuf, gbuf, eps, x_stride) = match (&quantised, given) {
        // binding 7 carries the per-block x scales instead of the norm weight
        (Some((xq, xd)), _) => (&xq.buffer, &xd.buffer, 0.0, k.div_ceil(32) as u32),
        (None, Some((xq, xd))) => (xq, xd, given_eps, k.div_ceil(32) as u32),
        (None, None) => {
            let (g, eps) = epi.norm.unwrap_or((&ctx.dummy, 0.0));
            (&x.buf, g, eps, xs as u32)
        }
    };
    let group_buffers = [w.data(), scales, xbuf, bias, res, &y.buf];
    let mut start = 0;
    while start < n {
        let cnt = (n - start).min(nb_vec as usize);
        let params = Params {
            m: m as u32,
            k: k as u32,
            nb: w.blocks_per_row() as u32,
            flags,
            groups_x: g[0],
            xs: x_stride,
            n: cnt as u32,
            n0: start as u32,
            eps,
            _pad: match &rope {
                Some(r) => [
                    (r.q.numel() / r.cache.dim) as u32,
                    r.pos as u32,
                    r.cache.tmax as u32,
                ],
                None => [0; 3],
            },
        };
        let ubuf = rec.params(bytemuck::bytes_of(&params));
        let [b0, b1, b2, b3, b4, b5] = group_buffers;
        let mut list: Vec<crate::gpu::Bind> = match (&rope, &xqo) {
            (_, Some(((oq, od), _))) => {
                crate::binds![b0, b1, b2, b3, b4, b5, &ubuf, gbuf, *oq, *od].to_vec()
            }
            // q takes y's place
            (Some(r), None) => crate::binds![
                b0,
                b1,
                b2,
                b3,
                b4,
                &r.q.buf,
                &ubuf,
                gbuf,
                &r.cache.buf,
                r.inv_freq
            ]
            .to_vec(),
            (None, None) => crate::binds![b0, b1, b2, b3, b4, b5, &ubuf, gbuf].to_vec(),
        };
        if let Some((ss, _)) = defer {
            if list.len() == 8 {
                list.extend(crate::binds![&ctx.dummy, &ctx.dummy]);
            }
            list.push(ss.into());
        }
        if let Some((gn, oss)) = norm_mode {
            list.extend(crate::binds![gn, oss]);
        }
        if let Some((rg, rss, _)) = rn {
            list.extend(crate::binds![rg, rss]);
        }
        let group = rec.bind(&p, &list);
        rec.dispatch(&p, &group, g)?;
        start += cnt;
    }
    if let Some((xq, xd)) = quantised {
        ctx.release(xq);
        ctx.release(xd);
    }
    Ok(Done {
        rope: rope.is_some(),
        ln: false,
        xq: xqo.is_some(),
    })
}

/// The launch shape of a `gemv_i8_xqo` kernel: 32 / `outs` lane groups of `tpr` invocations,
/// each `outs` outputs (`rows` rows: twice that with SwiGLU), so that a workgroup owns a block.
struct XqoShape {
    wg: u32,
    tpr: u32,
    rows: u32,
    /// Lane groups reduce by subgroup shuffles (`_sgx_`: each within one subgroup, any
    /// workgroup size), else through workgroup memory (at most 256 invocations).
    sgx: bool,
}

/// The knobs' shape where the device allows it; else with subgroups 1024 invocations for up
/// to 4096 outputs and 512 above, without 256; one output per lane group. None where nothing
/// fits the device.
fn xqo_shape(
    ctx: &crate::gpu::GpuContext,
    use_sg: bool,
    swiglu: bool,
    m_out: usize,
) -> Option<XqoShape> {
    let l = &ctx.limits;
    let max = l
        .max_compute_invocations_per_workgroup
        .min(l.max_compute_workgroup_size_x);
    let sg = ctx.caps.subgroup_size;
    let shape = |wg: u32, outs: u32| {
        let tpr = wg * outs / 32;
        let sgx = use_sg && tpr <= sg && sg.is_multiple_of(tpr);
        (wg <= max && tpr >= 1 && (sgx || wg <= 256)).then_some(XqoShape {
            wg,
            tpr,
            rows: outs * if swiglu { 2 } else { 1 },
            sgx,
        })
    };
    // few blocks (3584 outputs: o_proj, down, the head's linear2) spread best over workgroups
    // of 1024; the taller products over 512 (H100, `bench kernels --xq-out`)
    let wg = match ctx.xqo_wg {
        Some(w @ (256 | 512 | 1024)) => w,
        _ if use_sg && m_out <= 4096 => 1024,
        _ if use_sg => 512,
        _ => 256,
    };
    let outs = ctx.xqo_outs.filter(|o| matches!(o, 1 | 2)).unwrap_or(1);
    shape(wg, outs)
        .or_else(|| shape(256, 1))
        .or_else(|| shape(128, 1))
}

/// Invocations per row of the int8 kernels: the knob where it is a power of two from the
/// subgroup (or portable lane group) size up to the workgroup; else 128 with subgroups (four
/// subgroups per row: +2–4 % on every q4/q8 decode product on an H100). Without subgroups
/// (browsers) 64 for long rows or tall matrices (K > 4096 or M ≥ 16384: down 23.9 → 21.8 µs,
/// gate/up 24.2 → 23.1, lm_head 126.9 → 121.6 on an H100 with `--no-subgroups`) and 32 for
/// the rest, which lose with more (BENCHMARKS.md, ninth session).
fn gemv_tpr(knob: Option<u32>, base: u32, subgroups: bool, m: usize, k: usize) -> u32 {
    match knob {
        Some(t) if t.is_power_of_two() && t >= base && t <= WG => t,
        _ if subgroups && base <= 128 => 128,
        _ if !subgroups && base <= 64 && (k > 4096 || m >= 16384) => 64,
        _ => base,
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct XqParams {
    k: u32,
    xs: u32,
    nbq: u32,
    eps: f32,
}

const XQ_BINDINGS: &[Binding] = &[
    Binding::Read,
    Binding::Read,
    Binding::ReadWrite,
    Binding::ReadWrite,
    Binding::Uniform,
];

/// `gemv_xq_out`: the same plus the normalised x written out.
const XQ_OUT_BINDINGS: &[Binding] = &[
    Binding::Read,
    Binding::Read,
    Binding::ReadWrite,
    Binding::ReadWrite,
    Binding::Uniform,
    Binding::ReadWrite,
];

/// Quantises the N vectors of x (RMS-normalised first when `norm` is given, and that written
/// to `norm_out` when given) to int8 blocks of 32: returns pooled (xq, xd) buffers for
/// gemv_i8.wgsl (layout in gemv_xq.wgsl).
fn quantise_x(
    rec: &mut Recorder,
    x: &Tensor,
    n: usize,
    k: usize,
    norm: Option<(&wgpu::Buffer, f32)>,
    norm_out: Option<&Tensor>,
) -> Result<(crate::gpu::PooledBuffer, crate::gpu::PooledBuffer), OpError> {
    let ctx = rec.ctx();
    let nbq = k.div_ceil(32);
    let xq = ctx.acquire((n * nbq * 32) as u64);
    let xd = ctx.acquire((n * nbq * 8) as u64);
    quantise_into(rec, x, n, k, norm, norm_out, (&xq.buffer, &xd.buffer))?;
    Ok((xq, xd))
}

/// Quantises the vector `x` (K values) to int8 x for a q4/q8 product with int8 activations,
/// into `(xq, xd)` ([`xq_buffers_len`] bytes; the layout of `gemv_xq.wgsl`, what
/// [`Epilogue::prequantised`] takes): one `gemv_xq1` dispatch.
pub fn quantise_vector(
    rec: &mut Recorder,
    x: &Tensor,
    (xq, xd): (&wgpu::Buffer, &wgpu::Buffer),
) -> Result<(), OpError> {
    let k = x.numel();
    if k == 0 {
        return Err(shape_err("quantise_vector", "x is empty"));
    }
    check_act("quantise_vector", rec.ctx(), &[("x", x)])?;
    check_len(
        "quantise_vector",
        "x",
        &x.buf,
        (k * rec.ctx().act().size()) as u64,
    )?;
    let (lq, ld) = xq_buffers_len(k);
    check_len("quantise_vector", "xq", xq, lq)?;
    check_len("quantise_vector", "xd", xd, ld)?;
    quantise_into(rec, x, 1, k, None, None, (xq, xd))
}

/// [`quantise_x`] into the given `(xq, xd)` buffers.
fn quantise_into(
    rec: &mut Recorder,
    x: &Tensor,
    n: usize,
    k: usize,
    norm: Option<(&wgpu::Buffer, f32)>,
    norm_out: Option<&Tensor>,
    (xq, xd): (&wgpu::Buffer, &wgpu::Buffer),
) -> Result<(), OpError> {
    let ctx = rec.ctx();
    let nbq = k.div_ceil(32);
    // One block per invocation (`gemv_xq1`) unless a norm needs more blocks than one
    // workgroup holds; then the looping kernel. A norm takes one workgroup of the smallest
    // power of two ≥ the blocks, else workgroups of 64 spread the blocks over the GPU.
    let one = !ctx.xq_loop && (norm.is_none() || nbq <= WG as usize);
    let (wg, groups) = match (one, norm.is_some()) {
        (false, _) => (WG, 1),
        (true, true) => ((nbq as u32).next_power_of_two().clamp(64, WG), 1),
        (true, false) => (64, nbq.div_ceil(64) as u32),
    };
    let key = KernelKey {
        family: "gemv_xq",
        entry: if one { "gemv_xq1" } else { "gemv_xq" },
        act: ctx.act(),
        subgroups: false,
        constants: vec![("WG", wg), ("NORM", norm.is_some() as u32)],
    };
    let (key, bindings) = match norm_out {
        Some(_) => (
            KernelKey {
                entry: if one { "gemv_xq1_out" } else { "gemv_xq_out" },
                ..key
            },
            XQ_OUT_BINDINGS,
        ),
        None => (key, XQ_BINDINGS),
    };
    let p = ctx.pipeline(&key, bindings)?;
    let (g, eps) = norm.unwrap_or((&ctx.dummy, 0.0));
    let params = XqParams {
        k: k as u32,
        xs: k.div_ceil(4) as u32,
        nbq: nbq as u32,
        eps,
    };
    let ubuf = rec.params(bytemuck::bytes_of(&params));
    let group = match norm_out {
        Some(o) => rec.bind(&p, &crate::binds![&x.buf, g, xq, xd, &ubuf, &o.buf]),
        None => rec.bind(&p, &crate::binds![&x.buf, g, xq, xd, &ubuf]),
    };
    let grid = if one {
        [groups, n as u32, 1]
    } else {
        [n as u32, 1, 1]
    };
    rec.dispatch(&p, &group, grid)?;
    Ok(())
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct GemmParams {
    m: u32,
    k: u32,
    nb: u32,
    flags: u32,
    n: u32,
    _pad: [u32; 3],
}

const GEMM_BINDINGS: &[Binding] = &[
    Binding::Read,
    Binding::Read,
    Binding::Read,
    Binding::Read,
    Binding::Read,
    Binding::ReadWrite,
    Binding::Uniform,
];

/// Builds the tensor-core product's default pipeline (f16 weights, no activation): the
/// context's check that cooperative matrices the adapter advertises actually work.
pub(crate) fn probe_coop(ctx: &crate::gpu::GpuContext) -> Result<(), OpError> {
    ctx.pipeline(&gemm_key(ctx, true, false, 0, 0).0, GEMM_BINDINGS)?;
    Ok(())
}

/// The one-pass tiled product's kernel (tensor cores, 128×128 or 64×64 FMA tiles) and its tile.
fn gemm_key(
    ctx: &crate::gpu::GpuContext,
    coop: bool,
    big: bool,
    act_code: u32,
    fmt: u32,
) -> (KernelKey, u32) {
    let (family, entry, tile) = if coop {
        ("gemm_coop", "gemm_coop", 64u32)
    } else if big {
        ("gemm", "gemm_big", 128)
    } else {
        ("gemm", "gemm", 64)
    };
    let mut constants = vec![("ACT", act_code), ("FMT", fmt)];
    if coop {
        constants.push(("TK", ctx.coop_k_step));
    }
    let key = KernelKey {
        family,
        entry,
        act: ctx.act(),
        subgroups: false,
        constants,
    };
    (key, tile)
}

/// The tiled path of [`gemv`] (shapes already checked there). A fused RMSNorm runs as its own
/// dispatch into a pooled buffer first: over many vectors it is a small cost next to the product.
fn gemm(
    rec: &mut Recorder,
    w: &Matrix,
    x: &Tensor,
    y: &Tensor,
    epi: Epilogue,
    n: usize,
) -> Result<bool, OpError> {
    let ctx = rec.ctx();
    match epi.norm {
        Some((g, eps)) => {
            // the normed copy goes back to the pool only once the product is recorded, so
            // no scratch buffer of the product (split-K partials) can be this one
            let pooled = ctx.acquire((n * w.cols() * ctx.act().size()) as u64);
            let normed = Tensor {
                buf: pooled.buffer.clone(),
                shape: vec![n, w.cols()],
                dtype: ctx.act(),
            };
            let r = super::rmsnorm(rec, x, g, eps, &normed)
                .and_then(|_| gemm_tiled(rec, w, &normed, y, epi, n));
            ctx.release(pooled);
            r
        }
        None => gemm_tiled(rec, w, x, y, epi, n),
    }
}

/// [`gemm`] on an already normalised `xin`.
fn gemm_tiled(
    rec: &mut Recorder,
    w: &Matrix,
    xin: &Tensor,
    y: &Tensor,
    epi: Epilogue,
    n: usize,
) -> Result<bool, OpError> {
    let ctx = rec.ctx();
    let (m, k) = (w.rows(), w.cols());
    let fmt: u32 = match w {
        Matrix::F16 { .. } => 0,
        Matrix::Q8 { .. } => 1,
        Matrix::Q4 { .. } => 2,
    };
    let act_code = epi.act.code();
    // Tensor cores where the adapter has them, unless a knob forces an FMA tile.
    let coop = ctx.caps.coop && ctx.gemm_tile.is_none();
    // few vectors (the flow U-Net): one pass, K in chunks of 256 loaded at once
    if coops_fits(ctx, w, n) {
        return gemm_coops(rec, w, &xin.buf, y, epi, (n, m, k), None);
    }
    // f16 weights on tensor cores: fragments loaded straight from the buffers where the
    // clamped direct tile fits inside the matrices, or the 128 × 128 double-buffered tile
    if coop && matches!(w, Matrix::F16 { .. }) && k % 4 == 0 {
        let big_fits =
            ctx.limits.max_compute_workgroup_storage_size >= crate::gpu::COOPB_WG_STORAGE;
        match ctx.coop_f16 {
            CoopF16::Big if big_fits => {
                let big = PartKernel::Big;
                return gemm_f16_coop(rec, w, xin, y, epi, (n, m, k), act_code, big);
            }
            CoopF16::Direct | CoopF16::Big
                if k % 16 == 0 && n >= 16 * ctx.coopd_shape[0] as usize && m >= 64 =>
            {
                let direct = PartKernel::Direct(ctx.coopd_shape);
                return gemm_f16_coop(rec, w, xin, y, epi, (n, m, k), act_code, direct);
            }
            _ => {}
        }
    }
    // 128×128 tiles once there are enough of them to fill the GPU twice over (measured on an
    // H200: for the encoder's 1280-row products at N = 512 the 64×64 tiles are 1.7× faster).
    let big_tiles = m.div_ceil(128) * n.div_ceil(128);
    let big = match ctx.gemm_tile {
        Some(t) => t >= 128,
        None => n >= GEMM_BIG_N && big_tiles >= GEMM_BIG_MIN_TILES,
    };
    let tiles = m.div_ceil(64) * n.div_ceil(64);
    let tk = if coop { ctx.coop_k_step as usize } else { 32 };
    let steps = k.div_ceil(tk);
    let (max_tiles, target, min_steps) = if coop {
        (
            COOP_SPLIT_MAX_TILES,
            COOP_SPLIT_TARGET,
            COOP_SPLIT_MIN_STEPS,
        )
    } else {
        (
            GEMM_SPLIT_MAX_TILES,
            GEMM_SPLIT_TARGET,
            GEMM_SPLIT_MIN_STEPS,
        )
    };
    let splits = if big && !coop {
        1
    } else {
        k_splits(ctx.gemm_split, tiles, (max_tiles, target), steps, min_steps)
    };
    if splits > 1 {
        let part = if coop {
            PartKernel::Coop(tk as u32)
        } else {
            PartKernel::Fma
        };
        return gemm_split(
            rec,
            w,
            xin,
            y,
            epi,
            (n, m, k),
            (fmt, act_code),
            splits,
            part,
        );
    }
    let (key, tile) = gemm_key(ctx, coop, big, act_code, fmt);
    let grid = [(m as u32).div_ceil(tile), (n as u32).div_ceil(tile)];
    gemm_one_pass(rec, &key, w, xin, y, epi, n, grid)
}

/// Records a one-pass product (any kernel with gemm.wgsl's bindings and params) over a grid
/// of `[W-row tiles, x-row tiles]` workgroups.
#[allow(clippy::too_many_arguments)]
fn gemm_one_pass(
    rec: &mut Recorder,
    key: &KernelKey,
    w: &Matrix,
    xin: &Tensor,
    y: &Tensor,
    epi: Epilogue,
    n: usize,
    [gx, gy]: [u32; 2],
) -> Result<bool, OpError> {
    let ctx = rec.ctx();
    let (m, k) = (w.rows(), w.cols());
    let p = ctx.pipeline(key, GEMM_BINDINGS)?;
    let lim = ctx.limits.max_compute_workgroups_per_dimension;
    if gx > lim || gy > lim {
        return Err(shape_err(
            "gemv",
            format!("{n}×{m} output needs {gx}×{gy} workgroups, over the limit {lim}"),
        ));
    }
    let params = GemmParams {
        m: m as u32,
        k: k as u32,
        nb: w.blocks_per_row() as u32,
        flags: epi.bias.is_some() as u32 | (epi.residual.is_some() as u32) << 1,
        n: n as u32,
        _pad: [0; 3],
    };
    let ubuf = rec.params(bytemuck::bytes_of(&params));
    let scales = w.scales().unwrap_or(&ctx.dummy);
    let bias = epi.bias.map(|b| &b.buf).unwrap_or(&ctx.dummy);
    let res = epi.residual.map(|b| &b.buf).unwrap_or(&ctx.dummy);
    let group = rec.bind(
        &p,
        &crate::binds![w.data(), scales, &xin.buf, bias, res, &y.buf, &ubuf],
    );
    rec.dispatch(&p, &group, [gx, gy, 1])?;
    Ok(false)
}

/// The tensor-core products of f16 weights with their own tiles (the caller checked what
/// each needs): `PartKernel::Direct` is `gemm_coopd.wgsl` (N ≥ 16·FN, M ≥ 64, K % 16 == 0;
/// GN × GM subgroups per workgroup, each a clamped (16·FN) × 64 tile), `PartKernel::Big` is
/// `gemm_coopb.wgsl` (K % 4 == 0; 128 × 128 tiles of 8 subgroups). Split-K below
/// [`COOPD_SPLIT_TARGET`] / [`COOPB_SPLIT_TARGET`] subgroups, M a multiple of 4 (the
/// partials are written as vec4s).
#[allow(clippy::too_many_arguments)]
fn gemm_f16_coop(
    rec: &mut Recorder,
    w: &Matrix,
    xin: &Tensor,
    y: &Tensor,
    epi: Epilogue,
    (n, m, k): (usize, usize, usize),
    act_code: u32,
    kernel: PartKernel,
) -> Result<bool, OpError> {
    let ctx = rec.ctx();
    let (tk, cols, rows) = kernel.tile();
    let gx = (m as u32).div_ceil(cols);
    let gy = (n as u32).div_ceil(rows);
    let (family, per_group, min_steps, target, mut constants) = match kernel {
        PartKernel::Direct([f, gn, gm]) => (
            "gemm_coopd",
            gn * gm,
            COOPD_SPLIT_MIN_STEPS,
            COOPD_SPLIT_TARGET,
            vec![("FN", f), ("GN", gn), ("GM", gm)],
        ),
        _ => (
            "gemm_coopb",
            8,
            COOPB_SPLIT_MIN_STEPS,
            COOPB_SPLIT_TARGET,
            Vec::new(),
        ),
    };
    let target = ctx.coop_split_target.unwrap_or(target);
    let subgroups = (gx * gy * per_group) as usize;
    let splits = if m % 4 != 0 {
        1
    } else {
        k_splits(
            ctx.gemm_split,
            subgroups,
            (target, target),
            k.div_ceil(tk),
            min_steps,
        )
    };
    if splits > 1 {
        return gemm_split(
            rec,
            w,
            xin,
            y,
            epi,
            (n, m, k),
            (0, act_code),
            splits,
            kernel,
        );
    }
    constants.insert(0, ("ACT", act_code));
    let key = KernelKey {
        family,
        entry: family,
        act: ctx.act(),
        subgroups: false,
        constants,
    };
    gemm_one_pass(rec, &key, w, xin, y, epi, n, [gx, gy])
}

/// Workgroup memory of `gemm_coops.wgsl` (x and W chunks staged, the results).
const COOPS_WG_BYTES: u32 = (1056 + 4224) * 8 + 256 * 16 + 128 * 4;

/// A convolution's geometry for [`gemm_coops`]'s implicit im2col: x is the input
/// `(B·tin, cin)`, the product's rows are the `B·tout` output frames, its K = taps·cin.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConvGeom {
    pub cin: u32,
    pub tin: u32,
    pub tout: u32,
    pub stride: u32,
    pub pad: u32,
    pub dil: u32,
    /// A transposed convolution of this stride (0: not), one sequence, no dilation: the
    /// product is one per output phase (W read as its taps `r + s·m`), N is `tout`, K is
    /// ⌈taps/s⌉·cin.
    pub tr: u32,
    /// The transposed convolution's taps (W's row stride is `tr_k·cin`).
    pub tr_k: u32,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct CoopsParams {
    m: u32,
    k: u32,
    nb: u32,
    flags: u32,
    n: u32,
    cin: u32,
    tin: u32,
    tout: u32,
    stride: u32,
    pad: u32,
    dil: u32,
    tr: u32,
    tr_k: u32,
    ln_eps: f32,
    _pad: u32,
}

/// Whether `gemm_coops.wgsl` takes a product of `n` vectors with W: tensor cores, f16
/// weights, K a multiple of 8 (its 16-byte loads), at most [`GpuContext::coops_max_n`]
/// vectors, and its workgroup memory.
pub(crate) fn coops_fits(ctx: &crate::gpu::GpuContext, w: &Matrix, n: usize) -> bool {
    coops_fits_upto(ctx, w, n, ctx.coops_max_n)
}

/// [`coops_fits`] with another bound on N (convolutions: [`GpuContext::coops_conv_max_n`]).
pub(crate) fn coops_fits_upto(
    ctx: &crate::gpu::GpuContext,
    w: &Matrix,
    n: usize,
    max_n: usize,
) -> bool {
    (1..=max_n).contains(&n) && coops_takes(ctx, w)
}

/// Whether `gemm_coops.wgsl` can take W at all, whatever N: tensor cores, f16 weights, K a
/// multiple of 8, and its workgroup memory (transposed convolutions take it at any length).
pub(crate) fn coops_takes(ctx: &crate::gpu::GpuContext, w: &Matrix) -> bool {
    ctx.caps.coop
        && ctx.gemm_tile.is_none()
        && matches!(w, Matrix::F16 { .. })
        && w.cols().is_multiple_of(8)
        && ctx.limits.max_compute_workgroup_storage_size >= COOPS_WG_BYTES
}

/// `gemm_coops`'s (W-row blocks, K shares) per workgroup (a knob, else [`COOPS_SHAPE`]).
fn coops_shape(ctx: &crate::gpu::GpuContext) -> (u32, u32) {
    ctx.coops_shape.unwrap_or(COOPS_SHAPE)
}

/// The default of [`coops_shape`], measured on the flow U-Net at 2 s on an H100 (BENCHMARKS.md,
/// twelfth session).
const COOPS_SHAPE: (u32, u32) = (4, 1);

/// The one-pass chunked tensor-core product (`gemm_coops.wgsl`, the caller checked
/// [`coops_fits`]): `x` (N, K), or with `conv` a convolution's input read as its im2col rows.
/// A LayerNorm in the epilogue is left to the caller (returns false).
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_coops(
    rec: &mut Recorder,
    w: &Matrix,
    x: &wgpu::Buffer,
    y: &Tensor,
    epi: Epilogue,
    (n, m, k): (usize, usize, usize),
    conv: Option<ConvGeom>,
) -> Result<bool, OpError> {
    let ctx = rec.ctx();
    let act_code = epi.act.code();
    let (sg, ks) = coops_shape(ctx);
    let gx = m.div_ceil(16 * sg as usize) as u32;
    // a transposed convolution: one product per output phase (z), ≤ ⌈N/s⌉ + 1 rows each
    let (gy, gz) = match conv {
        Some(c) if c.tr > 0 => ((n.div_ceil(c.tr as usize) + 1).div_ceil(16) as u32, c.tr),
        _ => (n.div_ceil(16) as u32, 1),
    };
    let lim = ctx.limits.max_compute_workgroups_per_dimension;
    if gx > lim || gy > lim || gz > lim {
        return Err(shape_err(
            "gemv",
            format!("{n}×{m} output needs {gx}×{gy} workgroups, over the limit {lim}"),
        ));
    }
    let c = conv.unwrap_or(ConvGeom {
        cin: 0,
        tin: 0,
        tout: 1,
        stride: 0,
        pad: 0,
        dil: 0,
        tr: 0,
        tr_k: 0,
    });
    let params = CoopsParams {
        m: m as u32,
        k: k as u32,
        nb: w.blocks_per_row() as u32,
        flags: epi.bias.is_some() as u32 | (epi.residual.is_some() as u32) << 1,
        n: n as u32,
        cin: c.cin,
        tin: c.tin,
        tout: c.tout.max(1),
        stride: c.stride,
        pad: c.pad,
        dil: c.dil,
        tr: c.tr,
        tr_k: c.tr_k,
        ln_eps: epi.ln_in.map(|l| l.eps).unwrap_or(0.0),
        _pad: 0,
    };
    let key = KernelKey {
        family: "gemm_coops",
        entry: "gemm_coops",
        act: ctx.act(),
        subgroups: false,
        constants: vec![
            ("ACT", act_code),
            ("SG", sg),
            ("KS", ks),
            ("TR", (c.tr > 0) as u32),
            ("LNX", epi.ln_in.is_some() as u32),
        ],
    };
    if epi.ln_in.is_some() && (k > 256 || conv.is_some()) {
        return Err(shape_err(
            "gemv",
            format!("the chunked kernel folds a LayerNorm of x only for K ≤ 256 (K = {k})"),
        ));
    }
    // gemv.wgsl's layout: gemm_coops.wgsl binds w, ln_w, x, bias, res, y, params, ln_b
    let p = ctx.pipeline(&key, BINDINGS)?;
    let ubuf = rec.params(bytemuck::bytes_of(&params));
    let bias = epi.bias.map(|b| &b.buf).unwrap_or(&ctx.dummy);
    let res = epi.residual.map(|b| &b.buf).unwrap_or(&ctx.dummy);
    let (lw, lb) = epi
        .ln_in
        .map(|l| (l.w, l.b))
        .unwrap_or((&ctx.dummy, &ctx.dummy));
    let group = rec.bind(
        &p,
        &crate::binds![w.data(), lw, x, bias, res, &y.buf, &ubuf, lb],
    );
    rec.dispatch(&p, &group, [gx, gy, gz])?;
    Ok(false)
}

// Mirrors shaders/matmul/gemm_splitk.wgsl: w, s, x, part, params, bias, res, y.
const SPLIT_BINDINGS: &[Binding] = &[
    Binding::Read,
    Binding::Read,
    Binding::Read,
    Binding::ReadWrite,
    Binding::Uniform,
    Binding::Read,
    Binding::Read,
    Binding::ReadWrite,
];

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct SplitParams {
    m: u32,
    k: u32,
    nb: u32,
    flags: u32,
    n: u32,
    kslice: u32,
    splits: u32,
    groups_x: u32,
}

/// The 64-tile product with K cut into `splits` slices of whole steps (of 32, or of `coop_tk`
/// on tensor cores): f32 partials per slice, then one pass that sums them in slice order and
/// applies the epilogue.
#[allow(clippy::too_many_arguments)]
fn gemm_split(
    rec: &mut Recorder,
    w: &Matrix,
    x: &Tensor,
    y: &Tensor,
    epi: Epilogue,
    (n, m, k): (usize, usize, usize),
    (fmt, act_code): (u32, u32),
    splits: usize,
    kernel: PartKernel,
) -> Result<bool, OpError> {
    let ctx = rec.ctx();
    // K step, and the workgroup's (W rows, x rows)
    let (tk, cols, rows) = kernel.tile();
    let kslice = k.div_ceil(tk).div_ceil(splits) * tk;
    let splits = k.div_ceil(kslice);
    let part = ctx.acquire((splits * n * m * 4) as u64);
    let lim = ctx.limits.max_compute_workgroups_per_dimension;
    let (gx, gy) = ((m as u32).div_ceil(cols), (n as u32).div_ceil(rows));
    if gx > lim || gy > lim || splits as u32 > lim {
        return Err(shape_err(
            "gemv",
            format!("{n}×{m} output in {splits} slices is over the workgroup limit {lim}"),
        ));
    }
    // the reduce: one thread per 4 outputs of a row (the epilogue's unit)
    let rg = grid((n * m.div_ceil(4)).div_ceil(256) as u32, lim);
    let params = SplitParams {
        m: m as u32,
        k: k as u32,
        nb: w.blocks_per_row() as u32,
        flags: epi.bias.is_some() as u32 | (epi.residual.is_some() as u32) << 1,
        n: n as u32,
        kslice: kslice as u32,
        splits: splits as u32,
        groups_x: rg[0],
    };
    let ubuf = rec.params(bytemuck::bytes_of(&params));
    let key = |entry| KernelKey {
        family: "gemm_splitk",
        entry,
        act: ctx.act(),
        subgroups: false,
        constants: vec![("ACT", act_code), ("FMT", fmt)],
    };
    let pp = match kernel {
        PartKernel::Coop(tk) => ctx.pipeline(
            &KernelKey {
                family: "gemm_coop_split",
                entry: "gemm_coop_part",
                act: ctx.act(),
                subgroups: false,
                constants: vec![("FMT", fmt), ("TK", tk)],
            },
            SPLIT_BINDINGS,
        )?,
        PartKernel::Direct([f, gn, gm]) => ctx.pipeline(
            &KernelKey {
                family: "gemm_coopd_split",
                entry: "gemm_coopd_part",
                act: ctx.act(),
                subgroups: false,
                constants: vec![("FN", f), ("GN", gn), ("GM", gm)],
            },
            SPLIT_BINDINGS,
        )?,
        PartKernel::Big => ctx.pipeline(
            &KernelKey {
                family: "gemm_coopb_split",
                entry: "gemm_coopb_part",
                act: ctx.act(),
                subgroups: false,
                constants: vec![],
            },
            SPLIT_BINDINGS,
        )?,
        PartKernel::Fma => ctx.pipeline(&key("gemm_part"), SPLIT_BINDINGS)?,
    };
    let scales = w.scales().unwrap_or(&ctx.dummy);
    let d = &ctx.dummy;
    let group = rec.bind(
        &pp,
        &crate::binds![
            w.data(),
            scales,
            &x.buf,
            &part.buffer,
            &ubuf,
            d,
            d,
            &ctx.dummy_rw
        ],
    );
    rec.dispatch(&pp, &group, [gx, gy, splits as u32])?;
    let bias = epi.bias.map(|b| &b.buf).unwrap_or(d);
    let res = epi.residual.map(|b| &b.buf).unwrap_or(d);
    // with a LayerNorm after the product (no activation): one workgroup per row sums the
    // partials, stores y, and normalises the row (gemm_reduce_ln.wgsl)
    let ln = epi.layernorm.filter(|_| act_code == 0 && !ctx.no_fused_ln);
    if let Some(l) = ln {
        let g = grid(n as u32, lim);
        let params = ReduceLnParams {
            m: m as u32,
            n: n as u32,
            flags: epi.bias.is_some() as u32 | (epi.residual.is_some() as u32) << 1,
            splits: splits as u32,
            eps: l.eps,
            groups_x: g[0],
            _pad: [0; 2],
        };
        let lbuf = rec.params(bytemuck::bytes_of(&params));
        let key = KernelKey {
            family: "gemm_reduce_ln",
            entry: "gemm_reduce_ln",
            act: ctx.act(),
            subgroups: false,
            constants: vec![],
        };
        let pr = ctx.pipeline(&key, REDUCE_LN_BINDINGS)?;
        let group = rec.bind(
            &pr,
            &crate::binds![&part.buffer, &lbuf, bias, res, &y.buf, l.w, l.b, &l.out.buf],
        );
        rec.dispatch(&pr, &group, g)?;
    } else {
        let pr = ctx.pipeline(&key("gemm_reduce"), SPLIT_BINDINGS)?;
        let group = rec.bind(
            &pr,
            &crate::binds![d, d, d, &part.buffer, &ubuf, bias, res, &y.buf],
        );
        rec.dispatch(&pr, &group, rg)?;
    }
    ctx.release(part);
    Ok(ln.is_some())
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ReduceLnParams {
    m: u32,
    n: u32,
    flags: u32,
    splits: u32,
    eps: f32,
    groups_x: u32,
    _pad: [u32; 2],
}

// Mirrors shaders/matmul/gemm_reduce_ln.wgsl: part, params, bias, res, y, w, b, out.
const REDUCE_LN_BINDINGS: &[Binding] = &[
    Binding::Read,
    Binding::Uniform,
    Binding::Read,
    Binding::Read,
    Binding::ReadWrite,
    Binding::Read,
    Binding::Read,
    Binding::ReadWrite,
];
