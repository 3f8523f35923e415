//! The audio head (spec §6): a causal depth transformer over the 8 codebook positions of one
//! 80 ms frame, run incrementally — step i computes only depth position i against a small
//! per-frame depth KV cache (mathematically the reference's full 8-position recompute, §6).
//!
//! Per step and layer: RMSNorm1 → in_proj (+bias) → split (+ depth-cache append: `rope_kv`'s
//! work with zero frequencies = identity rotation, in in_proj's epilogue where it can) →
//! attention over positions 0..=i → out_proj (+bias, + S residual) → RMSNorm2 (the residual stream is replaced by its norm) →
//! per-position FFN `r + W2_i·GELU(W1_i·r)` (linear biases unused). Then headnorm and the
//! classifier of codebook i. The per-position FFN blocks are column slices of `linear1`/
//! `linear2`; they are re-laid out once at load into 8 matrices each (row-wise copies of whole
//! f16 rows or quantisation blocks), and the originals are evicted from the store.

use crate::gpu::{BindCache, GpuContext, Recorder};
use crate::ops::{self, Activation, Epilogue, KvCache, CODEBOOKS};
use crate::tensor::{Matrix, Tensor};

use super::sample::{GpuSampler, SamplingParams};
use super::{Llm, NO_ID};
use crate::model::weights::MatrixPart;
use crate::model::{ModelError, Weights};
use crate::util::rng::Rng;

struct DepthLayer {
    in_proj: Matrix,
    in_bias: Tensor,
    out_proj: Matrix,
    out_bias: Tensor,
    ln1: wgpu::Buffer,
    ln2: wgpu::Buffer,
    w1: Vec<Matrix>,
    w2: Vec<Matrix>,
}

pub struct AudioHead {
    layers: Vec<DepthLayer>,
    headnorm: wgpu::Buffer,
    heads: Vec<(Matrix, Tensor)>,
    zero_freq: wgpu::Buffer,
    pub hidden: usize,
    pub nheads: usize,
    pub head_dim: usize,
    eps: f32,
}

/// Columns `[c0, c0 + n)` of the matrix stored in row `parts` (one part, or several of one
/// format and width from row 0 on) as a new matrix (c0, n multiples of the format's block).
pub fn column_block(
    ctx: &GpuContext,
    name: &str,
    parts: &[MatrixPart],
    c0: usize,
    n: usize,
) -> Result<Matrix, ModelError> {
    let bad = |why: &str| {
        ModelError::input(format!(
            "{name}: cannot slice columns {c0}..{} ({why})",
            c0 + n
        ))
    };
    // a matrix in row parts (a converted checkpoint's 128 MiB bindings split the real q8 and
    // f16 FFN matrices): each part's rows go to its rows of the block
    let Some(m) = parts.first().map(|p| &p.matrix) else {
        return Err(bad("no parts"));
    };
    let mut rows = 0;
    for p in parts {
        let same = p.matrix.format() == m.format() && p.matrix.cols() == m.cols();
        if p.row_start != rows || !same {
            return Err(bad("its row parts are not contiguous parts of one matrix"));
        }
        rows += p.matrix.rows();
    }
    let mut rec = Recorder::new(ctx, "audio_head.relayout");
    let out = match m {
        Matrix::F16 { .. } => {
            if !c0.is_multiple_of(2) || !n.is_multiple_of(8) {
                return Err(bad("f16 needs n a multiple of 8"));
            }
            let dst = ctx.storage(name, (rows * n * 2) as u64);
            let enc = rec.encoder()?;
            for p in parts {
                let Matrix::F16 { buf, stride, .. } = &p.matrix else {
                    return Err(bad("its parts differ in format"));
                };
                for r in 0..p.matrix.rows() {
                    enc.copy_buffer_to_buffer(
                        buf,
                        ((r * stride + c0) * 2) as u64,
                        &dst,
                        ((p.row_start + r) * n * 2) as u64,
                        (n * 2) as u64,
                    );
                }
            }
            Matrix::F16 {
                buf: dst,
                rows,
                cols: n,
                stride: n,
            }
        }
        Matrix::Q8 { .. } | Matrix::Q4 { .. } => {
            let q8 = matches!(m, Matrix::Q8 { .. });
            let qb = crate::tensor::quant::QBLOCK;
            let nb = m.blocks_per_row();
            if !c0.is_multiple_of(qb) || !n.is_multiple_of(qb) {
                return Err(bad("not whole quantisation blocks"));
            }
            let (b0, bn) = (c0 / qb, n / qb);
            if q8 && (!nb.is_multiple_of(2) || !b0.is_multiple_of(2) || !bn.is_multiple_of(2)) {
                return Err(bad("q8 scales pair blocks"));
            }
            let dbytes = if q8 { 32 } else { 16 };
            // q8: one f16 scale per block; q4: one u32 (scale, min) per block
            let sbytes = if q8 { 2 } else { 4 };
            let dd = ctx.storage(name, (rows * bn * dbytes) as u64);
            let ds = ctx.storage(name, ((rows * bn * sbytes) as u64).next_multiple_of(4));
            let enc = rec.encoder()?;
            for p in parts {
                let (Matrix::Q8 { data, scales, .. } | Matrix::Q4 { data, scales, .. }) = &p.matrix
                else {
                    return Err(bad("its parts differ in format"));
                };
                for r in 0..p.matrix.rows() {
                    let d = p.row_start + r;
                    // the row's blocks b0.. and their scales
                    for (src, dst, w) in [(data, &dd, dbytes), (scales, &ds, sbytes)] {
                        let (from, to) = ((r * nb + b0) * w, d * bn * w);
                        enc.copy_buffer_to_buffer(
                            src,
                            from as u64,
                            dst,
                            to as u64,
                            (bn * w) as u64,
                        );
                    }
                }
            }
            if q8 {
                Matrix::Q8 {
                    data: dd,
                    scales: ds,
                    rows,
                    cols: n,
                }
            } else {
                Matrix::Q4 {
                    data: dd,
                    scales: ds,
                    rows,
                    cols: n,
                }
            }
        }
    };
    rec.submit()?;
    Ok(out)
}

impl AudioHead {
    pub fn load(ctx: &GpuContext, w: &Weights, llm: &Llm) -> Result<AudioHead, ModelError> {
        let h = llm.dims.hidden;
        // nn.MultiheadAttention(H, H / 128) in the reference; 128 is the LLM's head dim, so the
        // tiny checkpoints use H / head_dim (= their LLM head count).
        let head_dim = llm.dims.head_dim;
        if !h.is_multiple_of(head_dim) {
            return Err(ModelError::input("hidden size not a multiple of head_dim"));
        }
        let nheads = h / head_dim;
        let nl = w.config.audio.audio_head_transformer_layers;
        let mut layers = Vec::with_capacity(nl);
        for l in 0..nl {
            let p = format!("audio_head.transformer_layers.{l}");
            let n1 = format!("{p}.linear1.weight");
            let n2 = format!("{p}.linear2.weight");
            // the per-position blocks are kept in the store (the sources are evicted), so a
            // later load of the head (a new conversation) finds them
            let key = |n: &str, i: usize| format!("{n}#position{i}");
            let cached: Option<Vec<(Matrix, Matrix)>> = (0..CODEBOOKS)
                .map(|i| Some((w.derived(&key(&n1, i))?, w.derived(&key(&n2, i))?)))
                .collect();
            let (w1, w2): (Vec<Matrix>, Vec<Matrix>) = match cached {
                Some(c) => c.into_iter().unzip(),
                None => {
                    let lin1 = w.matrix_parts(ctx, &n1)?;
                    let lin2 = w.matrix_parts(ctx, &n2)?;
                    let mut w1 = Vec::with_capacity(CODEBOOKS);
                    let mut w2 = Vec::with_capacity(CODEBOOKS);
                    for i in 0..CODEBOOKS {
                        let b1 = column_block(ctx, &n1, &lin1, i * h, h)?;
                        let b2 = column_block(ctx, &n2, &lin2, i * 2 * h, 2 * h)?;
                        w.insert_derived(&key(&n1, i), b1.clone());
                        w.insert_derived(&key(&n2, i), b2.clone());
                        w1.push(b1);
                        w2.push(b2);
                    }
                    w.evict(&n1);
                    w.evict(&n2);
                    (w1, w2)
                }
            };
            layers.push(DepthLayer {
                in_proj: w.matrix(ctx, &format!("{p}.self_attention.in_proj_weight"))?,
                in_bias: w.tensor(ctx, &format!("{p}.self_attention.in_proj_bias"))?,
                out_proj: w.matrix(ctx, &format!("{p}.self_attention.out_proj.weight"))?,
                out_bias: w.tensor(ctx, &format!("{p}.self_attention.out_proj.bias"))?,
                ln1: w.f32_buffer(ctx, &format!("{p}.layernorm1.weight"))?,
                ln2: w.f32_buffer(ctx, &format!("{p}.layernorm2.weight"))?,
                w1,
                w2,
            });
        }
        let mut heads = Vec::with_capacity(CODEBOOKS);
        for i in 0..CODEBOOKS {
            heads.push((
                w.matrix(ctx, &format!("audio_head.heads.{i}.weight"))?,
                w.tensor(ctx, &format!("audio_head.heads.{i}.bias"))?,
            ));
        }
        Ok(AudioHead {
            layers,
            headnorm: w.f32_buffer(ctx, "audio_head.headnorm.weight")?,
            heads,
            zero_freq: ctx.upload(
                "audio_head.zero_freq",
                bytemuck::cast_slice(&vec![0f32; head_dim / 2]),
            ),
            hidden: h,
            nheads,
            head_dim,
            eps: llm.dims.eps,
        })
    }
}

/// Per-session buffers of the audio head (depth KV caches, activations, logits).
pub struct HeadState {
    caches: Vec<KvCache>,
    s: Tensor,
    n: Tensor,
    qkv: Tensor,
    q: Tensor,
    a: Tensor,
    s2: Tensor,
    r: Tensor,
    y: Tensor,
    codes: wgpu::Buffer,
    scratch: wgpu::Buffer,
    /// The depth attention's output as int8 x for `out_proj` (`ops::attn_decode_xq`).
    a_xq: (wgpu::Buffer, wgpu::Buffer),
    /// linear1's output as int8 x for linear2, written by linear1 (`Epilogue::xq_out`).
    y_xq: (wgpu::Buffer, wgpu::Buffer),
    /// s before the next RMSNorm (the next layer's RMSNorm1, or the head norm) as int8 x·g with
    /// its block sums of squares, written by linear2 for the product after the norm
    /// (`Epilogue::xq_out_norm` → `Epilogue::deferred_norm`).
    s_xq: (wgpu::Buffer, wgpu::Buffer, wgpu::Buffer),
    /// s2 (after the attention) the same way for RMSNorm2, written by out_proj: linear1 defers
    /// the norm, and linear2 adds the normalised s2 as its residual from these block sums.
    s2_xq: (wgpu::Buffer, wgpu::Buffer, wgpu::Buffer),
    /// Logits of codebook i after step i (cb_i + 1 values; the last is "audio end").
    pub logits: Vec<Tensor>,
    binds: BindCache,
}

impl HeadState {
    pub fn new(ctx: &GpuContext, head: &AudioHead) -> Result<HeadState, ModelError> {
        let h = head.hidden;
        let mut caches = Vec::new();
        for l in 0..head.layers.len() {
            caches.push(KvCache::new(
                ctx,
                &format!("audio_head.kv.{l}"),
                head.nheads,
                CODEBOOKS,
                head.head_dim,
            )?);
        }
        let t = |name: &str, shape: &[usize]| Tensor::empty(ctx, name, shape);
        Ok(HeadState {
            binds: BindCache::default(),
            caches,
            s: t("head.s", &[1, h]),
            n: t("head.n", &[h]),
            qkv: t("head.qkv", &[3 * h]),
            q: t("head.q", &[head.nheads, head.head_dim]),
            a: t("head.a", &[h]),
            s2: t("head.s2", &[h]),
            r: t("head.r", &[h]),
            y: t("head.y", &[2 * h]),
            codes: ctx.storage("head.codes", (CODEBOOKS * 4) as u64),
            scratch: ctx.storage(
                "head.scratch",
                ops::decode_scratch_bytes(head.nheads, head.head_dim, CODEBOOKS),
            ),
            a_xq: super::xq_buffers(ctx, "head.a", h),
            y_xq: super::xq_buffers(ctx, "head.y", 2 * h),
            s_xq: super::xq_norm_buffers(ctx, "head.s", h),
            s2_xq: super::xq_norm_buffers(ctx, "head.s2", h),
            logits: head
                .heads
                .iter()
                .map(|(m, _)| t("head.logits", &[m.rows()]))
                .collect(),
        })
    }

    /// Step `i` of a frame: depth position i's input is `hidden` (i = 0, the LLM's final-norm
    /// last hidden state) or Σ_{j<i} table_j[codes[j]]; leaves codebook i's logits in
    /// `logits[i]`. Steps must run in order 0..8 for each frame.
    pub fn step(
        &mut self,
        ctx: &GpuContext,
        head: &AudioHead,
        llm: &Llm,
        hidden: &Tensor,
        codes: &[u32],
        i: usize,
    ) -> Result<(), ModelError> {
        if i >= CODEBOOKS || codes.len() < i {
            return Err(ModelError::input(format!(
                "audio head step {i} with {} codes",
                codes.len()
            )));
        }
        if i > 0 {
            let mut c = [NO_ID; CODEBOOKS];
            for (j, slot) in c.iter_mut().enumerate().take(i) {
                if codes[j] as usize > llm.dims.codebooks[j] {
                    return Err(ModelError::input(format!(
                        "audio code {} of codebook {j} is outside 0..={}",
                        codes[j], llm.dims.codebooks[j]
                    )));
                }
                *slot = codes[j];
            }
            ctx.queue
                .write_buffer(&self.codes, 0, bytemuck::cast_slice(&c));
        }
        let mut rec = Recorder::new(ctx, "audio_head.step").with_cache(&self.binds);
        self.record(&mut rec, head, llm, hidden, i)?;
        rec.submit()?;
        Ok(())
    }

    /// The code buffer step `i` embeds from: codes `0..i` of the frame (u32, `NO_ID` after).
    /// [`ops::sample_draw`] can write each sampled code into it, so that a whole frame of
    /// eight steps records into one submission ([`Self::record`]).
    pub fn codes(&self) -> &wgpu::Buffer {
        &self.codes
    }

    /// Records step `i` into `rec`, reading codes `0..i` from [`Self::codes`] as they are on
    /// the GPU when the step runs.
    pub fn record(
        &self,
        rec: &mut Recorder,
        head: &AudioHead,
        llm: &Llm,
        hidden: &Tensor,
        i: usize,
    ) -> Result<(), ModelError> {
        if i >= CODEBOOKS {
            return Err(ModelError::input(format!("audio head step {i}")));
        }
        let ctx = rec.ctx();
        let h = head.hidden;
        let s_vec = Tensor {
            buf: self.s.buf.clone(),
            shape: vec![h],
            dtype: self.s.dtype,
        };
        if i == 0 {
            let bytes = (h * ctx.act().size()) as u64;
            rec.encoder()?
                .copy_buffer_to_buffer(&hidden.buf, 0, &self.s.buf, 0, bytes);
        } else {
            ops::audio_embed(
                rec,
                &llm.audio.stacked,
                &llm.audio.rows,
                &self.codes,
                &self.s,
            )?;
        }
        let scale = 1.0 / (head.head_dim as f32).sqrt();
        let a_flat = &self.a;
        let a_heads = Tensor {
            buf: self.a.buf.clone(),
            shape: vec![head.nheads, head.head_dim],
            dtype: self.a.dtype,
        };
        let (m_cls, b_cls) = &head.heads[i];
        // whether s arrives as the previous linear2 wrote it for this norm (deferred into the
        // product after the norm where the device can)
        let mut s_deferred = false;
        let (sq, sd, sss) = &self.s_xq;
        for (li, (l, cache)) in head.layers.iter().zip(&self.caches).enumerate() {
            let in_epi = Epilogue {
                bias: Some(&l.in_bias),
                // the split and the depth-cache append (zero frequencies: no rotation) in the
                // product's epilogue where it can, else a rope_kv dispatch after it
                rope: Some(ops::RopeOut {
                    inv_freq: &head.zero_freq,
                    pos: i,
                    q: &self.q,
                    cache,
                }),
                ..Default::default()
            };
            if s_deferred {
                let epi = Epilogue {
                    prequantised: Some((sq, sd)),
                    deferred_norm: Some((sss, head.eps)),
                    ..in_epi
                };
                ops::gemv(rec, &l.in_proj, &s_vec, &self.qkv, epi)?;
            } else {
                // RMSNorm1 only feeds in_proj: folded into its quantisation of x where free
                ops::gemv_rmsnorm(
                    rec,
                    &l.in_proj,
                    &s_vec,
                    (&l.ln1, head.eps),
                    &self.n,
                    false,
                    &self.qkv,
                    in_epi,
                )?;
            }
            // into an int8 out_proj the attention writes its output as int8 x too
            let xq = ops::attn_feeds_int8(ctx, &l.out_proj, head.head_dim)
                .then_some((&self.a_xq.0, &self.a_xq.1));
            let s = &self.scratch;
            ops::attn_decode_xq(rec, &self.q, cache, i + 1, scale, s, &a_heads, xq)?;
            // linear2 writes s·g of the norm after it (the next layer's RMSNorm1, else the
            // head norm) for the product after that norm, where the device can defer it
            let (next_g, next_m) = match head.layers.get(li + 1) {
                Some(nx) => (&nx.ln1, &nx.in_proj),
                None => (&head.headnorm, m_cls),
            };
            let deferred = ops::norm_defers(ctx, &l.w2[i], next_m);
            // linear1 writes linear2's int8 x itself
            let yxq = ops::feeds_int8(ctx, &l.w2[i]).then_some((&self.y_xq.0, &self.y_xq.1));
            // RMSNorm2 deferred too where it can be: out_proj writes s2·g, linear1 scales by
            // the norm, and linear2 adds the normalised s2 (the FFN's residual) itself
            let ffn_deferred =
                deferred && yxq.is_some() && ops::norm_defers(ctx, &l.out_proj, &l.w1[i]);
            let (s2q, s2d, s2ss) = &self.s2_xq;
            ops::gemv(
                rec,
                &l.out_proj,
                a_flat,
                &self.s2,
                Epilogue {
                    bias: Some(&l.out_bias),
                    residual: Some(&s_vec),
                    prequantised: xq,
                    xq_out: ffn_deferred.then_some((s2q, s2d)),
                    xq_out_norm: ffn_deferred.then_some((&l.ln2, s2ss)),
                    ..Default::default()
                },
            )?;
            let w1_epi = Epilogue {
                act: Activation::Gelu,
                xq_out: yxq,
                ..Default::default()
            };
            if ffn_deferred {
                let epi = Epilogue {
                    prequantised: Some((s2q, s2d)),
                    deferred_norm: Some((s2ss, head.eps)),
                    ..w1_epi
                };
                ops::gemv(rec, &l.w1[i], &self.s2, &self.y, epi)?;
            } else {
                // RMSNorm2 folded into linear1's quantisation of x; its output r is also the
                // FFN's residual below, so it is kept
                ops::gemv_rmsnorm(
                    rec,
                    &l.w1[i],
                    &self.s2,
                    (&l.ln2, head.eps),
                    &self.r,
                    true,
                    &self.y,
                    w1_epi,
                )?;
            }
            ops::gemv(
                rec,
                &l.w2[i],
                &self.y,
                &s_vec,
                Epilogue {
                    residual: Some(if ffn_deferred { &self.s2 } else { &self.r }),
                    residual_norm: ffn_deferred.then_some((&l.ln2, s2ss, head.eps)),
                    prequantised: yxq,
                    xq_out: deferred.then_some((sq, sd)),
                    xq_out_norm: deferred.then_some((next_g, sss)),
                    ..Default::default()
                },
            )?;
            s_deferred = deferred;
        }
        let cls_epi = Epilogue {
            bias: Some(b_cls),
            ..Default::default()
        };
        if s_deferred {
            let epi = Epilogue {
                prequantised: Some((sq, sd)),
                deferred_norm: Some((sss, head.eps)),
                ..cls_epi
            };
            ops::gemv(rec, m_cls, &s_vec, &self.logits[i], epi)?;
        } else {
            ops::gemv_rmsnorm(
                rec,
                m_cls,
                &s_vec,
                (&head.headnorm, head.eps),
                &self.n,
                false,
                &self.logits[i],
                cls_epi,
            )?;
        }
        Ok(())
    }
}

/// Samples whole audio frames on the GPU: the eight head steps of a frame, each followed by
/// its codebook's penalty, top-k and draw ([`GpuSampler::record_draw`]), which writes the code
/// where the next step's embedding reads it. One submission and one read-back per frame
/// instead of sixteen submissions and eight read-backs. The uniforms are drawn from the RNG in
/// the order [`GpuSampler::sample`] would draw them, and an audio-end code in codebook 0 gives
/// back the seven it did not need, so the RNG stream matches the step-by-step path.
///
/// A frame's whole state lives on the GPU: its code slots are reset inside its own command
/// buffer, each drawn code is appended to its codebook's penalty history there, and the codes
/// are copied to one of two read-back buffers. So the next frame can be recorded and submitted
/// before this one is read ([`Self::submit`], [`Self::read`]): the generator feeds a frame's
/// codes to the LLM straight from [`HeadState::codes`] ([`super::Session::step_codes`]) and
/// starts the next frame while the CPU waits for this one (issue 7's pipelined loop).
pub struct FrameSampler {
    /// Per-codebook penalty histories.
    hist: Vec<wgpu::Buffer>,
    cap: usize,
    /// `NO_ID` × 8: what a frame's code slots start from.
    no_ids: wgpu::Buffer,
    /// Read-back buffers, one per frame in flight.
    staging: [wgpu::Buffer; 2],
    binds: BindCache,
}

/// What reading a recorded frame back needs: the RNG before its draws, and whether codebook
/// 0's draw used a uniform.
#[derive(Clone)]
pub struct FrameDraws {
    before: Rng,
    uses0: bool,
}

/// A frame submitted and not read back yet ([`FrameSampler::submit`]).
pub struct FrameInFlight {
    slot: usize,
    index: wgpu::SubmissionIndex,
    draws: FrameDraws,
}

impl FrameInFlight {
    /// The RNG as it was before this frame's draws (to drop a frame that will not be read).
    pub fn rng_before(&self) -> &Rng {
        &self.draws.before
    }
}

impl FrameSampler {
    /// For penalty histories of up to `cap` codes per codebook.
    pub fn new(ctx: &GpuContext, cap: usize) -> FrameSampler {
        let staging = || {
            ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("frame.codes.read"),
                size: (CODEBOOKS * 4) as u64,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        };
        FrameSampler {
            hist: (0..CODEBOOKS)
                .map(|_| ctx.storage("frame.hist", (cap.max(1) * 4) as u64))
                .collect(),
            cap: cap.max(1),
            no_ids: ctx.upload("frame.no_ids", bytemuck::cast_slice(&[NO_ID; CODEBOOKS])),
            staging: [staging(), staging()],
            binds: BindCache::default(),
        }
    }

    /// Whether a frame after `n_hist` codes of history can be sampled here (else the
    /// step-by-step path: `p` needs the CPU processors, or the history outgrows the buffers).
    pub fn gpu_ok(&self, p: &SamplingParams, n_hist: usize) -> bool {
        p.gpu_k().is_some() && n_hist < self.cap
    }

    /// Writes the penalty histories (one list per codebook, as long as each other) from the
    /// CPU; later frames append on the GPU.
    pub fn load_history(&self, ctx: &GpuContext, history: &[Vec<u32>]) -> Result<(), ModelError> {
        let n = history.first().map_or(0, Vec::len);
        if history.len() > CODEBOOKS || history.iter().any(|h| h.len() != n) || n > self.cap {
            return Err(ModelError::input(format!(
                "frame histories of lengths {:?} (at most {} each, all equal)",
                history.iter().map(Vec::len).collect::<Vec<_>>(),
                self.cap
            )));
        }
        for (i, h) in history.iter().enumerate() {
            if !h.is_empty() {
                ctx.queue
                    .write_buffer(&self.hist[i], 0, bytemuck::cast_slice(h));
            }
        }
        Ok(())
    }

    /// Records and submits one frame on the hidden state `hidden`, with `n_hist` codes of
    /// penalty history per codebook on the GPU ([`Self::load_history`] or earlier frames),
    /// read back through buffer `slot` (0 or 1; two frames in flight take different slots).
    #[allow(clippy::too_many_arguments)]
    pub fn submit(
        &self,
        ctx: &GpuContext,
        hs: &HeadState,
        head: &AudioHead,
        llm: &Llm,
        hidden: &Tensor,
        sampler: &GpuSampler,
        n_hist: usize,
        p: &SamplingParams,
        rng: &mut Rng,
        slot: usize,
    ) -> Result<FrameInFlight, ModelError> {
        let k = p.gpu_k_or_err()?;
        if n_hist >= self.cap || slot >= self.staging.len() {
            return Err(ModelError::input(format!(
                "frame after {n_hist} codes (history buffers hold {}), read-back slot {slot}",
                self.cap
            )));
        }
        let cbs = llm.dims.codebooks;
        let rows = |i: usize| if i == 0 { cbs[0] + 1 } else { cbs[i] };
        let before = rng.clone();
        let mut uses = [false; CODEBOOKS];
        let mut us = [0f64; CODEBOOKS];
        for (i, (used, u)) in uses.iter_mut().zip(us.iter_mut()).enumerate() {
            *used = p.takes_uniform(k, rows(i));
            if *used {
                *u = rng.f64();
            }
        }
        let words = (CODEBOOKS * 4) as u64;
        let mut rec = Recorder::new(ctx, "audio_frame").with_cache(&self.binds);
        rec.encoder()?
            .copy_buffer_to_buffer(&self.no_ids, 0, hs.codes(), 0, words);
        for (i, &u) in us.iter().enumerate() {
            hs.record(&mut rec, head, llm, hidden, i)?;
            let t = &hs.logits[i];
            let view = Tensor {
                buf: t.buf.clone(),
                shape: vec![rows(i)],
                dtype: t.dtype,
            };
            sampler.record_draw(
                &mut rec,
                &[(0, &view)],
                &self.hist[i],
                n_hist,
                p,
                u,
                hs.codes(),
                i,
            )?;
        }
        let enc = rec.encoder()?;
        for (i, h) in self.hist.iter().enumerate() {
            enc.copy_buffer_to_buffer(hs.codes(), 4 * i as u64, h, 4 * n_hist as u64, 4);
        }
        enc.copy_buffer_to_buffer(hs.codes(), 0, &self.staging[slot], 0, words);
        let index = rec.submit_index()?;
        Ok(FrameInFlight {
            slot,
            index,
            draws: FrameDraws {
                before,
                uses0: uses[0],
            },
        })
    }

    /// Waits for a submitted frame (only for it: frames submitted after it keep running) and
    /// reads its codes. Codebook 0 may be the audio-end class `codebooks[0]`, after which the
    /// other seven are meaningless; then `rng` goes back to what the step-by-step path leaves
    /// (one uniform past the frame's start), dropping the draws of any later frame.
    pub async fn read(
        &self,
        ctx: &GpuContext,
        f: FrameInFlight,
        llm: &Llm,
        rng: &mut Rng,
    ) -> Result<[u32; CODEBOOKS], ModelError> {
        let bytes =
            crate::gpu::map_read(ctx, &self.staging[f.slot], f.index, (CODEBOOKS * 4) as u64)
                .await?;
        let mut codes = [0u32; CODEBOOKS];
        codes.copy_from_slice(&bytemuck::pod_collect_to_vec::<u8, u32>(&bytes));
        if codes[0] as usize == llm.dims.codebooks[0] {
            // audio end: the step-by-step path stops after codebook 0's draw
            *rng = f.draws.before;
            if f.draws.uses0 {
                rng.f64();
            }
        }
        Ok(codes)
    }

    /// One frame, submitted and read at once: codes for codebooks 0..8 (codebook 0 may be the
    /// audio-end class). `history` is the segment's codes so far, one list per codebook.
    /// `None` where `p` needs the CPU sampling path or a history outgrows the buffers (use
    /// [`HeadState::step`] then).
    #[allow(clippy::too_many_arguments)]
    pub async fn frame(
        &self,
        ctx: &GpuContext,
        hs: &HeadState,
        head: &AudioHead,
        llm: &Llm,
        hidden: &Tensor,
        sampler: &GpuSampler,
        history: &[Vec<u32>],
        p: &SamplingParams,
        rng: &mut Rng,
    ) -> Result<Option<[u32; CODEBOOKS]>, ModelError> {
        let n = history.first().map_or(0, Vec::len);
        if !self.gpu_ok(p, n) {
            return Ok(None);
        }
        self.load_history(ctx, history)?;
        let f = self.submit(ctx, hs, head, llm, hidden, sampler, n, p, rng, 0)?;
        Ok(Some(self.read(ctx, f, llm, rng).await?))
    }
}
