//! Attention self-test cases: GPU kernels against the dense f64 reference with explicit masks.
//!
//! Inputs: q ~ N(0, 2²), k, v ~ N(0, 1), scale 1/√D, so scores have a spread of about 2 and
//! softmax weights are far from uniform. Cache positions the op must not read hold NaN: any
//! leak past the visible range turns the output into NaN and fails the comparison.
//!
//! Tolerances (|got − want| ≤ atol + rtol·|want|):
//! - f32 path (1e-5, 1e-5): everything is f32; errors are f32 rounding of dot products, exp and
//!   sums over ≤ a few thousand terms (≈ 1e-6 absolute on outputs bounded by max |v| ≈ 4).
//! - f16 path (2e-5, 1e-3): inputs are rounded to f16 before the reference sees them, so the
//!   only extra error is the f16 rounding of the output (≤ 2⁻¹¹ ≈ 4.9e-4 relative); rtol 1e-3
//!   is twice that, atol covers the f32 arithmetic on small outputs.
//! - kv_append is a copy: exact (0, 0) on both paths.

use crate::gpu::{GpuContext, Recorder};
use crate::ops::{self, KvCache, OpError};
use crate::reference::attention as refa;
use crate::tensor::{act_bytes, round_act, Tensor};
use crate::util::rng::Rng;

use super::{compare, tol, Comparison};

const F32_TOL: (f32, f32) = (1e-5, 1e-5);
const F16_TOL: (f32, f32) = (2e-5, 1e-3);
/// Head dim 64 on tensor cores (`attn_coop`): the softmax weights P go into the P·V product as
/// f16, so an output can be off by about 2⁻¹¹·max|v| (|v| ≲ 5 here) on top of the f16 path's
/// own rounding.
const COOP_TOL: (f32, f32) = (3e-3, 1e-3);

/// The tolerance of the prefill/varlen/chunk kernels for head dim `d` on this context.
fn attn_tol(ctx: &GpuContext, d: usize) -> (f32, f32) {
    if ctx.caps.coop && d == 64 {
        COOP_TOL
    } else {
        tol(ctx, F32_TOL, F16_TOL)
    }
}

/// q, k, v `(t, hd)` as one fused projection `(t, 3·hd)`: row `[q | k | v]`.
fn fused_qkv(ctx: &GpuContext, [q, k, v]: [&[f32]; 3], t: usize, hd: usize) -> Tensor {
    let mut qkv = Vec::with_capacity(3 * t * hd);
    for r in 0..t {
        for m in [q, k, v] {
            qkv.extend_from_slice(&m[r * hd..(r + 1) * hd]);
        }
    }
    Tensor::from_f32(ctx, "qkv", &[t, 3 * hd], &qkv)
}

fn rand_act(ctx: &GpuContext, rng: &mut Rng, n: usize, scale: f32) -> Vec<f32> {
    round_act(ctx.act(), &rng.normal_vec(n, scale))
}

/// A cache whose first `t` positions hold `k`, `v (t, h, d)` and the rest NaN.
fn cache_with(
    ctx: &GpuContext,
    k: &[f32],
    v: &[f32],
    (t, h, d): (usize, usize, usize),
    tmax: usize,
) -> Result<KvCache, OpError> {
    let cache = KvCache::new(ctx, "cache", h, tmax, d)?;
    let host = refa::cache_layout(k, v, (t, h, d), tmax, f32::NAN);
    ctx.queue
        .write_buffer(&cache.buf, 0, &act_bytes(ctx.act(), &host));
    Ok(cache)
}

/// Appends `t` tokens at `p0` to a cache pre-filled with random values; the whole cache must
/// match (new rows written, all others untouched).
pub async fn kv_append_case(
    ctx: &GpuContext,
    (h, d): (usize, usize),
    tmax: usize,
    t: usize,
    p0: usize,
    seed: u64,
) -> Result<Comparison, OpError> {
    let mut rng = Rng::new(seed);
    let cache = KvCache::new(ctx, "cache", h, tmax, d)?;
    let mut want = rand_act(ctx, &mut rng, cache.numel(), 1.0);
    ctx.queue
        .write_buffer(&cache.buf, 0, &act_bytes(ctx.act(), &want));
    let k = rand_act(ctx, &mut rng, t * h * d, 1.0);
    let v = rand_act(ctx, &mut rng, t * h * d, 1.0);
    refa::kv_append(&mut want, &k, &v, (t, h, d), tmax, p0);
    let kt = Tensor::from_f32(ctx, "k", &[t, h, d], &k);
    let vt = Tensor::from_f32(ctx, "v", &[t, h, d], &v);
    let mut rec = Recorder::new(ctx, "kv_append test");
    ops::kv_append(&mut rec, &cache, &kt, &vt, p0)?;
    rec.submit()?;
    let got = ctx.read_act(&cache.buf, cache.numel()).await?;
    Ok(compare(&got, &want, 0.0, 0.0))
}

/// A decode case's inputs: `len` random cache positions (NaN in the few spare ones after), one
/// query token, the output tensor, scratch, and the reference output.
struct DecodeInputs {
    cache: KvCache,
    q: Tensor,
    out: Tensor,
    scratch: wgpu::Buffer,
    scale: f32,
    want: Vec<f32>,
}

fn decode_inputs(
    ctx: &GpuContext,
    heads: (usize, usize, usize),
    len: usize,
    seed: u64,
) -> Result<DecodeInputs, OpError> {
    decode_inputs_tail(ctx, heads, len, seed, (len, 1.0))
}

/// [`decode_inputs`] with the keys from position `from` on scaled by `gain`.
fn decode_inputs_tail(
    ctx: &GpuContext,
    (hq, hkv, d): (usize, usize, usize),
    len: usize,
    seed: u64,
    (from, gain): (usize, f32),
) -> Result<DecodeInputs, OpError> {
    let mut rng = Rng::new(seed);
    let tmax = len + 3;
    let mut k = rand_act(ctx, &mut rng, len * hkv * d, 1.0);
    if from < len {
        for x in &mut k[from * hkv * d..] {
            *x *= gain;
        }
        k = round_act(ctx.act(), &k);
    }
    let v = rand_act(ctx, &mut rng, len * hkv * d, 1.0);
    let q = rand_act(ctx, &mut rng, hq * d, 2.0);
    let scale = 1.0 / (d as f32).sqrt();
    Ok(DecodeInputs {
        want: refa::attention(&q, &k, &v, (1, len), (hq, hkv, d), scale, |_, _| true),
        cache: cache_with(ctx, &k, &v, (len, hkv, d), tmax)?,
        q: Tensor::from_f32(ctx, "q", &[hq, d], &q),
        out: Tensor::empty(ctx, "out", &[hq, d]),
        scratch: ctx.storage("scratch", ops::decode_scratch_bytes(hq, d, tmax)),
        scale,
    })
}

/// One query token over cache positions [0, len) of a cache with a few spare (NaN) positions.
pub async fn attn_decode_case(
    ctx: &GpuContext,
    heads: (usize, usize, usize),
    len: usize,
    seed: u64,
) -> Result<Comparison, OpError> {
    decode_against_reference(ctx, decode_inputs(ctx, heads, len, seed)?, len).await
}

/// [`ops::attn_decode`] over `t`'s cache, compared with its reference.
async fn decode_against_reference(
    ctx: &GpuContext,
    t: DecodeInputs,
    len: usize,
) -> Result<Comparison, OpError> {
    let mut rec = Recorder::new(ctx, "attn_decode test");
    ops::attn_decode(&mut rec, &t.q, &t.cache, len, t.scale, &t.scratch, &t.out)?;
    rec.submit()?;
    let got = t.out.to_vec(ctx).await?;
    let (atol, rtol) = tol(ctx, F32_TOL, F16_TOL);
    Ok(compare(&got, &t.want, atol, rtol))
}

/// [`attn_decode_case`] over more splits than the combine pass stages at once (1024): the
/// keys of the second pass are scaled by 2.5, so its max exceeds the first pass's and the
/// combine must rescale what it summed before.
pub async fn attn_decode_long_case(
    ctx: &GpuContext,
    heads: (usize, usize, usize),
    len: usize,
    seed: u64,
) -> Result<Comparison, OpError> {
    let t = decode_inputs_tail(ctx, heads, len, seed, (64 * 1024 + 100, 2.5))?;
    decode_against_reference(ctx, t, len).await
}

/// [`ops::attn_decode_xq`]: the output as by [`attn_decode_case`], and its int8 form fed to a
/// q4 product (`o_proj`'s place) must give exactly the product of the output quantised by the
/// product itself (`gemv_xq`): same values, same quantisation code (`xq_block.wgsl`), so equal
/// to the bit. One split (the head's depth steps: the GQA pass writes it) and several (the
/// combine pass writes it). Needs int8 activations (q4 on a context without `no_int8`).
pub async fn attn_decode_xq_case(
    ctx: &GpuContext,
    (hq, hkv, d): (usize, usize, usize),
    len: usize,
    seed: u64,
) -> Result<Comparison, OpError> {
    let t = decode_inputs(ctx, (hq, hkv, d), len, seed)?;
    let flat = t.out.view(&[hq * d]).ok_or_else(|| OpError::Shape {
        op: "attn_decode_xq test",
        detail: "out view".into(),
    })?;
    let nb = (hq * d / 32) as u64;
    let (xq, xd) = (ctx.storage("xq", nb * 32), ctx.storage("xd", nb * 8));
    let m = 72;
    let mut rec = Recorder::new(ctx, "attn_decode_xq test");
    let w = crate::tensor::Matrix::random(&mut rec, m, hq * d, crate::tensor::WeightFormat::Q4, 9)?;
    let (y_own, y_pre) = (
        Tensor::empty(ctx, "y1", &[m]),
        Tensor::empty(ctx, "y2", &[m]),
    );
    ops::attn_decode_xq(
        &mut rec,
        &t.q,
        &t.cache,
        len,
        t.scale,
        &t.scratch,
        &t.out,
        Some((&xq, &xd)),
    )?;
    ops::gemv(&mut rec, &w, &flat, &y_own, ops::Epilogue::default())?;
    let epi = ops::Epilogue {
        prequantised: Some((&xq, &xd)),
        ..Default::default()
    };
    ops::gemv(&mut rec, &w, &flat, &y_pre, epi)?;
    rec.submit()?;
    let got = t.out.to_vec(ctx).await?;
    let (atol, rtol) = tol(ctx, F32_TOL, F16_TOL);
    let c = compare(&got, &t.want, atol, rtol);
    if !c.ok() {
        return Ok(c);
    }
    let mut c = compare(
        &y_pre.to_vec(ctx).await?,
        &y_own.to_vec(ctx).await?,
        0.0,
        0.0,
    );
    c.note = Some("product of the attention's int8 x vs of its own quantisation".into());
    Ok(c)
}

/// Chunked prefill: `tq` queries at positions p0.. against a cache holding p0 + tq positions
/// (and NaN after them).
pub async fn attn_prefill_case(
    ctx: &GpuContext,
    (hq, hkv, d): (usize, usize, usize),
    p0: usize,
    tq: usize,
    seed: u64,
) -> Result<Comparison, OpError> {
    let mut rng = Rng::new(seed);
    let tk = p0 + tq;
    let k = rand_act(ctx, &mut rng, tk * hkv * d, 1.0);
    let v = rand_act(ctx, &mut rng, tk * hkv * d, 1.0);
    let q = rand_act(ctx, &mut rng, tq * hq * d, 2.0);
    let scale = 1.0 / (d as f32).sqrt();
    let want = refa::attention(&q, &k, &v, (tq, tk), (hq, hkv, d), scale, |i, j| {
        j <= p0 + i
    });

    let cache = cache_with(ctx, &k, &v, (tk, hkv, d), tk + 5)?;
    let qt = Tensor::from_f32(ctx, "q", &[tq, hq, d], &q);
    let out = Tensor::empty(ctx, "out", &[tq, hq, d]);
    let mut rec = Recorder::new(ctx, "attn_prefill test");
    ops::attn_prefill(&mut rec, &qt, &cache, p0, scale, &out)?;
    rec.submit()?;
    let got = out.to_vec(ctx).await?;
    let (atol, rtol) = attn_tol(ctx, d);
    Ok(compare(&got, &want, atol, rtol))
}

/// Packed sequences of the given lengths, each attending only within itself.
pub async fn attn_varlen_case(
    ctx: &GpuContext,
    heads: (usize, usize, usize),
    lens: &[usize],
    seed: u64,
) -> Result<Comparison, OpError> {
    varlen_case(ctx, heads, lens, seed, false).await
}

/// [`attn_varlen_case`] through [`ops::attn_varlen_qkv`]: q, k, v interleaved per row as one
/// fused projection `(T, 3·H·D)` (the audio encoder's layout). `h` query and key heads.
pub async fn attn_varlen_qkv_case(
    ctx: &GpuContext,
    (h, d): (usize, usize),
    lens: &[usize],
    seed: u64,
) -> Result<Comparison, OpError> {
    varlen_case(ctx, (h, h, d), lens, seed, true).await
}

async fn varlen_case(
    ctx: &GpuContext,
    (hq, hkv, d): (usize, usize, usize),
    lens: &[usize],
    seed: u64,
    fused: bool,
) -> Result<Comparison, OpError> {
    let mut rng = Rng::new(seed);
    let t: usize = lens.iter().sum();
    let mut cu = vec![0u32];
    let mut seq_of = Vec::with_capacity(t);
    for (s, &n) in lens.iter().enumerate() {
        cu.push(cu[s] + n as u32);
        seq_of.extend(std::iter::repeat_n(s, n));
    }
    let q = rand_act(ctx, &mut rng, t * hq * d, 2.0);
    let k = rand_act(ctx, &mut rng, t * hkv * d, 1.0);
    let v = rand_act(ctx, &mut rng, t * hkv * d, 1.0);
    let scale = 1.0 / (d as f32).sqrt();
    let want = refa::attention(&q, &k, &v, (t, t), (hq, hkv, d), scale, |i, j| {
        seq_of[i] == seq_of[j]
    });
    let out = Tensor::empty(ctx, "out", &[t, hq, d]);
    let mut rec = Recorder::new(ctx, "attn_varlen test");
    if fused {
        let qkvt = fused_qkv(ctx, [&q, &k, &v], t, hq * d);
        ops::attn_varlen_qkv(&mut rec, &qkvt, hq, &cu, scale, &out)?;
    } else {
        let qt = Tensor::from_f32(ctx, "q", &[t, hq, d], &q);
        let kt = Tensor::from_f32(ctx, "k", &[t, hkv, d], &k);
        let vt = Tensor::from_f32(ctx, "v", &[t, hkv, d], &v);
        ops::attn_varlen(&mut rec, &qt, &kt, &vt, &cu, scale, &out)?;
    }
    rec.submit()?;
    let got = out.to_vec(ctx).await?;
    let (atol, rtol) = attn_tol(ctx, d);
    Ok(compare(&got, &want, atol, rtol))
}

/// Seeded q, k, v (rounded to the activation dtype) and the CPU reference for `batch`
/// sequences of `t` rows under the chunk-causal mask with chunk `c`.
struct ChunkCase {
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    scale: f32,
    want: Vec<f32>,
}

fn chunk_causal_inputs(
    ctx: &GpuContext,
    (hq, hkv, d): (usize, usize, usize),
    (batch, t): (usize, usize),
    c: usize,
    seed: u64,
) -> ChunkCase {
    let mut rng = Rng::new(seed);
    let n = batch * t;
    let q = rand_act(ctx, &mut rng, n * hq * d, 2.0);
    let k = rand_act(ctx, &mut rng, n * hkv * d, 1.0);
    let v = rand_act(ctx, &mut rng, n * hkv * d, 1.0);
    let scale = 1.0 / (d as f32).sqrt();
    let want = refa::attention(&q, &k, &v, (n, n), (hq, hkv, d), scale, |i, j| {
        i / t == j / t && j % t < ((i % t) / c + 1) * c
    });
    ChunkCase {
        q,
        k,
        v,
        scale,
        want,
    }
}

/// `batch` sequences of `t` tokens each under the chunk-causal mask with chunk `c` (1 =
/// causal), packed one after another; each attends only within itself.
pub async fn attn_chunk_causal_case(
    ctx: &GpuContext,
    (hq, hkv, d): (usize, usize, usize),
    (batch, t): (usize, usize),
    c: usize,
    seed: u64,
) -> Result<Comparison, OpError> {
    let n = batch * t;
    let ChunkCase {
        q,
        k,
        v,
        scale,
        want,
    } = chunk_causal_inputs(ctx, (hq, hkv, d), (batch, t), c, seed);
    let qt = Tensor::from_f32(ctx, "q", &[n, hq, d], &q);
    let kt = Tensor::from_f32(ctx, "k", &[n, hkv, d], &k);
    let vt = Tensor::from_f32(ctx, "v", &[n, hkv, d], &v);
    let out = Tensor::empty(ctx, "out", &[n, hq, d]);
    let mut rec = Recorder::new(ctx, "attn_chunk_causal test");
    ops::attn_chunk_causal_batch(&mut rec, &qt, &kt, &vt, batch, c, scale, &out)?;
    rec.submit()?;
    let got = out.to_vec(ctx).await?;
    let (atol, rtol) = attn_tol(ctx, d);
    Ok(compare(&got, &want, atol, rtol))
}

/// [`attn_chunk_causal_case`] through the fused-projection entry: q, k, v interleaved per row as
/// `[q | k | v]` in one `(B·T, 3·H·D)` tensor (H query = key heads).
pub async fn attn_chunk_causal_qkv_case(
    ctx: &GpuContext,
    (h, d): (usize, usize),
    (batch, t): (usize, usize),
    c: usize,
    seed: u64,
) -> Result<Comparison, OpError> {
    let n = batch * t;
    let ChunkCase {
        q,
        k,
        v,
        scale,
        want,
    } = chunk_causal_inputs(ctx, (h, h, d), (batch, t), c, seed);
    let qkvt = fused_qkv(ctx, [&q, &k, &v], n, h * d);
    let out = Tensor::empty(ctx, "out", &[n, h, d]);
    let mut rec = Recorder::new(ctx, "attn_chunk_causal_qkv test");
    ops::attn_chunk_causal_qkv(&mut rec, &qkvt, h, batch, c, scale, &out)?;
    rec.submit()?;
    let got = out.to_vec(ctx).await?;
    let (atol, rtol) = attn_tol(ctx, d);
    Ok(compare(&got, &want, atol, rtol))
}
