//! The audio LLM (spec §5): Qwen2-shaped decoder with fused `W_pack` QKV (+bias), RoPE,
//! GQA, SwiGLU MLP, RMSNorm, untied LM head, and audio frames entering as the sum of the 8
//! codebook embeddings at `<audio_pad_baichuan>` positions (§5.1).
//!
//! A [`Session`] owns the KV cache (one `(2, Hkv, Tmax, D)` buffer per layer, allocated once)
//! and every activation buffer: prefill runs in chunks of up to `chunk` tokens (products over
//! N vectors, RoPE + KV append for the whole chunk in one dispatch, tiled causal attention over
//! the cache), decoding runs one token per submission (rope_kv + split-K attention). The LM
//! head may be stored in row parts (the real one is); logits stay per part on the GPU and only
//! the top-k of each part (or all logits, for tools) is read back.

#[cfg(not(target_arch = "wasm32"))]
pub mod bench;
pub mod generate;
pub mod head;
pub mod sample;

use std::rc::Rc;

use crate::gpu::{BindCache, GpuContext, Recorder};
use crate::ops::{self, Binary, Epilogue, KvCache, CODEBOOKS};
use crate::tensor::{Matrix, Tensor};

use super::weights::MatrixPart;
use super::{ModelError, Weights};

/// Ids never found in a table: the gathers write zeros (text) or add nothing (audio).
const NO_ID: u32 = u32::MAX;

/// One frame of audio codes (one code per codebook).
pub type Frame = [u32; CODEBOOKS];

/// Sizes of the decoder (from `config.json`).
#[derive(Clone, Debug)]
pub struct Dims {
    pub hidden: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub inter: usize,
    pub vocab: usize,
    pub layers: usize,
    pub eps: f32,
    pub max_positions: usize,
    /// Codebook sizes; table i (and head i) has `codebooks[i] + 1` rows.
    pub codebooks: [usize; CODEBOOKS],
    pub audio_pad: u32,
}

struct Layer {
    w_pack: Matrix,
    b_pack: Tensor,
    o: Matrix,
    mlp: Mlp,
    down: Matrix,
    ln1: wgpu::Buffer,
    ln2: wgpu::Buffer,
}

/// gate/up of a layer's MLP: one matrix with interleaved rows (a SwiGLU product: one dispatch,
/// no intermediate), or two products and a SwiGLU where the format cannot be interleaved.
enum Mlp {
    Fused(Matrix),
    Split { gate: Matrix, up: Matrix },
}

impl Mlp {
    /// The store keeps the interleaved matrix under this name and drops gate/up, so the
    /// weights exist once on the GPU and a second `Llm::load` reuses it.
    pub(crate) fn fused_name(p: &str) -> String {
        format!("{p}.mlp.gate_up.interleaved")
    }

    fn load(ctx: &GpuContext, w: &Weights, p: &str) -> Result<Mlp, ModelError> {
        let name = Self::fused_name(p);
        if let Ok(m) = w.matrix(ctx, &name) {
            return Ok(Mlp::Fused(m));
        }
        let (gn, un) = (
            format!("{p}.mlp.gate_proj.weight"),
            format!("{p}.mlp.up_proj.weight"),
        );
        let (gate, up) = (w.matrix(ctx, &gn)?, w.matrix(ctx, &un)?);
        if ctx.no_fused_mlp {
            return Ok(Mlp::Split { gate, up });
        }
        let mut rec = Recorder::new(ctx, "llm.gate_up");
        let Some(m) = ops::interleave_rows(&mut rec, &gate, &up)? else {
            return Ok(Mlp::Split { gate, up });
        };
        rec.submit()?;
        w.insert_matrix(
            &name,
            vec![MatrixPart {
                row_start: 0,
                matrix: m.clone(),
            }],
        );
        w.evict(&gn);
        w.evict(&un);
        Ok(Mlp::Fused(m))
    }
}

/// The 8 audio-code embedding tables stacked into one f16 matrix (what `audio_embed` reads).
pub struct AudioTables {
    pub stacked: Matrix,
    pub rows: [usize; CODEBOOKS],
}

/// The decoder's GPU weights.
pub struct Llm {
    pub dims: Dims,
    layers: Vec<Layer>,
    embed: Rc<Vec<MatrixPart>>,
    pub audio: AudioTables,
    norm: wgpu::Buffer,
    lm_head: Rc<Vec<MatrixPart>>,
    inv_freq: wgpu::Buffer,
}

fn f16_parts(name: &str, m: &Matrix) -> Result<(wgpu::Buffer, usize, usize), ModelError> {
    match m {
        Matrix::F16 {
            buf, rows, stride, ..
        } => Ok((buf.clone(), *rows, *stride)),
        _ => Err(ModelError::input(format!(
            "{name} is {}, embedding tables must be f16",
            m.format()
        ))),
    }
}

impl Llm {
    pub fn dims_of(w: &Weights) -> Result<Dims, ModelError> {
        let c = &w.config.llm;
        let a = &w.config.audio;
        let cbs = &a.vq_config.codebook_sizes;
        let codebooks: [usize; CODEBOOKS] = cbs.as_slice().try_into().map_err(|_| {
            ModelError::input(format!(
                "config has {} codebooks, the model needs {CODEBOOKS}",
                cbs.len()
            ))
        })?;
        if c.tie_word_embeddings {
            return Err(ModelError::input(
                "tie_word_embeddings = true is not supported (spec §5: untied head)",
            ));
        }
        if !c.attention_qkv_pack || !c.attention_qkv_bias {
            return Err(ModelError::input(
                "only the packed, biased QKV layout (W_pack) is supported",
            ));
        }
        Ok(Dims {
            hidden: c.hidden_size,
            heads: c.num_attention_heads,
            kv_heads: c.num_key_value_heads,
            head_dim: c.head_dim,
            inter: c.intermediate_size,
            vocab: c.vocab_size,
            layers: c.num_hidden_layers,
            eps: c.rms_norm_eps as f32,
            max_positions: c.max_position_embeddings,
            codebooks,
            audio_pad: a.audio_pad_token_id,
        })
    }

    /// Takes the decoder's weights from the store (uploads what is not on the GPU yet).
    pub fn load(ctx: &GpuContext, w: &Weights) -> Result<Llm, ModelError> {
        let dims = Self::dims_of(w)?;
        if w.config.llm.use_norm_head {
            // NormHead would L2-normalise the head rows at use time; no checkpoint of this
            // family sets it (spec §5), so it is refused rather than silently ignored.
            return Err(ModelError::input(
                "use_norm_head = true is not supported (spec §5)",
            ));
        }
        let mut layers = Vec::with_capacity(dims.layers);
        for i in 0..dims.layers {
            let p = format!("model.layers.{i}");
            layers.push(Layer {
                w_pack: w.matrix(ctx, &format!("{p}.self_attn.W_pack.weight"))?,
                b_pack: w.tensor(ctx, &format!("{p}.self_attn.W_pack.bias"))?,
                o: w.matrix(ctx, &format!("{p}.self_attn.o_proj.weight"))?,
                mlp: Mlp::load(ctx, w, &p)?,
                down: w.matrix(ctx, &format!("{p}.mlp.down_proj.weight"))?,
                ln1: w.f32_buffer(ctx, &format!("{p}.input_layernorm.weight"))?,
                ln2: w.f32_buffer(ctx, &format!("{p}.post_attention_layernorm.weight"))?,
            });
        }
        let embed = w.matrix_parts(ctx, "model.embed_tokens.weight")?;
        let lm_head = w.matrix_parts(ctx, "lm_head.weight")?;
        let audio = Self::stack_audio_tables(ctx, w, &dims)?;
        let inv_freq = ctx.upload(
            "llm.inv_freq",
            bytemuck::cast_slice(&ops::rope_inv_freq(w.config.llm.rope_theta, dims.head_dim)),
        );
        Ok(Llm {
            norm: w.f32_buffer(ctx, "model.norm.weight")?,
            dims,
            layers,
            embed,
            audio,
            lm_head,
            inv_freq,
        })
    }

    fn stack_audio_tables(
        ctx: &GpuContext,
        w: &Weights,
        dims: &Dims,
    ) -> Result<AudioTables, ModelError> {
        let mut parts = Vec::new();
        let mut rows = [0usize; CODEBOOKS];
        let mut stride = 0;
        for (i, r) in rows.iter_mut().enumerate() {
            let name = format!("model.audio_embed_layers.{i}.weight");
            let m = w.matrix(ctx, &name)?;
            let (buf, n, s) = f16_parts(&name, &m)?;
            if n != dims.codebooks[i] + 1 || m.cols() != dims.hidden {
                return Err(ModelError::input(format!(
                    "{name} is {n}×{}, expected {}×{}",
                    m.cols(),
                    dims.codebooks[i] + 1,
                    dims.hidden
                )));
            }
            *r = n;
            stride = s;
            parts.push(buf);
        }
        let total: usize = rows.iter().sum();
        let bytes = (total * stride * 2) as u64;
        let buf = ctx.storage("llm.audio_tables", bytes.next_multiple_of(4));
        let mut rec = Recorder::new(ctx, "stack audio tables");
        let enc = rec.encoder()?;
        let mut off = 0u64;
        for (b, r) in parts.iter().zip(rows) {
            let len = (r * stride * 2) as u64;
            if !len.is_multiple_of(4) || !off.is_multiple_of(4) {
                return Err(ModelError::input(
                    "audio embedding tables with an odd number of f16 values are not supported",
                ));
            }
            enc.copy_buffer_to_buffer(b, 0, &buf, off, len);
            off += len;
        }
        rec.submit()?;
        Ok(AudioTables {
            stacked: Matrix::F16 {
                buf,
                rows: total,
                cols: dims.hidden,
                stride,
            },
            rows,
        })
    }

    /// How many row parts the embedding table and the LM head are stored in.
    pub fn table_parts(&self) -> (usize, usize) {
        (self.embed.len(), self.lm_head.len())
    }

    /// Row parts of the LM head: (first row, rows).
    pub fn head_parts(&self) -> Vec<(usize, usize)> {
        self.lm_head
            .iter()
            .map(|p| (p.row_start, p.matrix.rows()))
            .collect()
    }

    /// Layers whose gate and up are one interleaved matrix (a SwiGLU product); the others run
    /// two products and a SwiGLU.
    pub fn fused_mlp_layers(&self) -> usize {
        self.layers
            .iter()
            .filter(|l| matches!(l.mlp, Mlp::Fused(_)))
            .count()
    }
}

/// A tensor over the first `shape` elements of `t`'s buffer.
fn sub(t: &Tensor, shape: &[usize]) -> Tensor {
    Tensor {
        buf: t.buf.clone(),
        shape: shape.to_vec(),
        dtype: t.dtype,
    }
}

/// One input position: a text token or an audio frame (an `<audio_pad_baichuan>` slot).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    Text(u32),
    Audio(Frame),
}

/// Buffers for a vector of `k` values as int8 x (`gemv_xq.wgsl`'s layout): (xq, xd).
pub(crate) fn xq_buffers(ctx: &GpuContext, name: &str, k: usize) -> (wgpu::Buffer, wgpu::Buffer) {
    let nb = k.div_ceil(32) as u64;
    (
        ctx.storage(&format!("{name}.xq"), nb * 32),
        ctx.storage(&format!("{name}.xd"), nb * 8),
    )
}

/// [`xq_buffers`] and the block sums of squares of a deferred RMSNorm's input.
pub(crate) fn xq_norm_buffers(
    ctx: &GpuContext,
    name: &str,
    k: usize,
) -> (wgpu::Buffer, wgpu::Buffer, wgpu::Buffer) {
    let (q, d) = xq_buffers(ctx, name, k);
    let ss = ctx.storage(&format!("{name}.ss"), k.div_ceil(32) as u64 * 4);
    (q, d, ss)
}

/// Per-session state: KV cache, activations, logits. Decoding allocates no buffers (the ops'
/// small uniform blocks aside).
pub struct Session {
    pub tmax: usize,
    pub chunk: usize,
    /// Positions in the cache.
    pub len: usize,
    caches: Vec<KvCache>,
    // chunk-sized activations (decode uses their first row)
    x: Tensor,
    h2: Tensor,
    xn: Tensor,
    qkv: Tensor,
    q: Tensor,
    attn: Tensor,
    gate: Tensor,
    up: Tensor,
    /// The interleaved gate|up product of a prefill chunk (n, 2·inter) before its SwiGLU.
    gate_up: Tensor,
    mlp: Tensor,
    tmp: Tensor,
    ids: wgpu::Buffer,
    codes: wgpu::Buffer,
    scratch: wgpu::Buffer,
    /// The decode attention's output as int8 x for `o_proj` (`ops::attn_decode_xq`).
    attn_xq: (wgpu::Buffer, wgpu::Buffer),
    /// The MLP's SwiGLU output as int8 x for `down`, written by gate/up (`Epilogue::xq_out`).
    mlp_xq: (wgpu::Buffer, wgpu::Buffer),
    /// A decode step's residual stream before each RMSNorm as int8 x·g with its block sums of
    /// squares, written by the product before the norm for the product after it
    /// (`Epilogue::xq_out_norm` → `Epilogue::deferred_norm`): after o_proj (for gate/up) and
    /// after down (for the next layer's W_pack).
    h2_xq: (wgpu::Buffer, wgpu::Buffer, wgpu::Buffer),
    x_xq: (wgpu::Buffer, wgpu::Buffer, wgpu::Buffer),
    /// Final-norm hidden state of the last position (`audios_emb_for_infer`), (H).
    pub hidden: Tensor,
    /// Logits of the last position, one tensor per LM-head part.
    pub logits: Vec<Tensor>,
    /// Where a step on an id still on the GPU ([`Self::step_id`]) writes its logits and final
    /// hidden state, so that `logits`/`hidden` keep the fed positions' values until the id is
    /// read and kept ([`Self::keep_step`]).
    spare: (Vec<Tensor>, Tensor),
    /// Bind groups of the prefill and decode steps (their buffers live as long as this).
    binds: BindCache,
}

impl Session {
    /// Allocates a session for up to `tmax` positions (≤ max_position_embeddings), prefilling
    /// `chunk` tokens per pass.
    pub fn new(ctx: &GpuContext, llm: &Llm, tmax: usize, chunk: usize) -> Result<Self, ModelError> {
        let d = &llm.dims;
        if tmax == 0 || tmax > d.max_positions {
            return Err(ModelError::input(format!(
                "context length {tmax} must be in 1..={} (max_position_embeddings)",
                d.max_positions
            )));
        }
        let chunk = chunk.clamp(1, tmax);
        let qkv_rows = (d.heads + 2 * d.kv_heads) * d.head_dim;
        let mut caches = Vec::with_capacity(d.layers);
        for i in 0..d.layers {
            caches.push(KvCache::new(
                ctx,
                &format!("llm.kv.{i}"),
                d.kv_heads,
                tmax,
                d.head_dim,
            )?);
        }
        let t = |name: &str, shape: &[usize]| Tensor::empty(ctx, name, shape);
        Ok(Session {
            tmax,
            chunk,
            len: 0,
            caches,
            x: t("llm.x", &[chunk, d.hidden]),
            h2: t("llm.h2", &[chunk, d.hidden]),
            xn: t("llm.xn", &[chunk, d.hidden]),
            qkv: t("llm.qkv", &[chunk, qkv_rows]),
            q: t("llm.q", &[chunk, d.heads, d.head_dim]),
            attn: t("llm.attn", &[chunk, d.heads, d.head_dim]),
            gate: t("llm.gate", &[chunk, d.inter]),
            up: t("llm.up", &[chunk, d.inter]),
            gate_up: t("llm.gate_up", &[chunk, 2 * d.inter]),
            mlp: t("llm.mlp", &[chunk, d.inter]),
            tmp: t("llm.tmp", &[chunk, d.hidden]),
            ids: ctx.storage("llm.ids", (chunk * 4) as u64),
            codes: ctx.storage("llm.codes", (chunk * CODEBOOKS * 4) as u64),
            scratch: ctx.storage(
                "llm.attn_scratch",
                ops::decode_scratch_bytes(d.heads, d.head_dim, tmax),
            ),
            attn_xq: xq_buffers(ctx, "llm.attn", d.heads * d.head_dim),
            mlp_xq: xq_buffers(ctx, "llm.mlp", d.inter),
            h2_xq: xq_norm_buffers(ctx, "llm.h2", d.hidden),
            x_xq: xq_norm_buffers(ctx, "llm.x", d.hidden),
            hidden: t("llm.hidden", &[d.hidden]),
            binds: BindCache::default(),
            logits: llm
                .lm_head
                .iter()
                .map(|p| t("llm.logits", &[p.matrix.rows()]))
                .collect(),
            spare: (
                llm.lm_head
                    .iter()
                    .map(|p| t("llm.logits.spare", &[p.matrix.rows()]))
                    .collect(),
                t("llm.hidden.spare", &[d.hidden]),
            ),
        })
    }

    /// Forgets positions `≥ len` (keeps the cache of the first `len`: an unchanged history).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    fn check_inputs(&self, llm: &Llm, inputs: &[Input]) -> Result<(), ModelError> {
        if inputs.is_empty() {
            return Err(ModelError::input("no input positions"));
        }
        if self.len + inputs.len() > self.tmax {
            return Err(ModelError::input(format!(
                "{} positions after the {} in the cache exceed the context length {}",
                inputs.len(),
                self.len,
                self.tmax
            )));
        }
        let d = &llm.dims;
        for inp in inputs {
            match inp {
                Input::Text(id) if *id as usize >= d.vocab => {
                    return Err(ModelError::input(format!(
                        "token id {id} is outside the vocabulary of {}",
                        d.vocab
                    )))
                }
                Input::Text(id) if *id == d.audio_pad => {
                    return Err(ModelError::input(
                        "an <audio_pad_baichuan> token needs its audio codes (Input::Audio)",
                    ))
                }
                Input::Audio(f) => {
                    for (i, c) in f.iter().enumerate() {
                        if *c as usize > d.codebooks[i] {
                            return Err(ModelError::input(format!(
                                "audio code {c} of codebook {i} is outside 0..={}",
                                d.codebooks[i]
                            )));
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Records the input embeddings of `inputs` (n ≤ chunk) into `x`.
    fn record_embed(
        &self,
        ctx: &GpuContext,
        rec: &mut Recorder,
        llm: &Llm,
        inputs: &[Input],
    ) -> Result<(), ModelError> {
        let n = inputs.len();
        let h = llm.dims.hidden;
        let x = sub(&self.x, &[n, h]);
        let tmp = sub(&self.tmp, &[n, h]);
        let has_audio = inputs.iter().any(|i| matches!(i, Input::Audio(_)));
        let has_text = inputs.iter().any(|i| matches!(i, Input::Text(_)));
        let mut written = false;
        if has_audio {
            let mut codes = Vec::with_capacity(n * CODEBOOKS);
            for inp in inputs {
                match inp {
                    Input::Audio(f) => codes.extend_from_slice(f),
                    Input::Text(_) => codes.extend_from_slice(&[NO_ID; CODEBOOKS]),
                }
            }
            ctx.queue
                .write_buffer(&self.codes, 0, bytemuck::cast_slice(&codes));
            ops::audio_embed(rec, &llm.audio.stacked, &llm.audio.rows, &self.codes, &x)?;
            written = true;
        }
        if has_text {
            // one gather per LM-table part that holds one of the ids (ids outside → zero rows)
            let parts: Vec<&MatrixPart> = llm
                .embed
                .iter()
                .filter(|p| {
                    inputs.iter().any(|i| {
                        matches!(i, Input::Text(id) if (*id as usize) >= p.row_start
                            && (*id as usize) < p.row_start + p.matrix.rows())
                    })
                })
                .collect();
            // ids buffer holds one part's shifted ids at a time: several parts need several
            // submissions, so each part after the first gets its own small buffer.
            for p in parts {
                let ids: Vec<u32> = inputs
                    .iter()
                    .map(|i| match i {
                        Input::Text(id)
                            if (*id as usize) >= p.row_start
                                && (*id as usize) < p.row_start + p.matrix.rows() =>
                        {
                            id - p.row_start as u32
                        }
                        _ => NO_ID,
                    })
                    .collect();
                let buf = if written {
                    ctx.upload("llm.ids.part", bytemuck::cast_slice(&ids))
                } else {
                    ctx.queue
                        .write_buffer(&self.ids, 0, bytemuck::cast_slice(&ids));
                    self.ids.clone()
                };
                if written {
                    ops::embedding(rec, &p.matrix, &buf, &tmp)?;
                    ops::binary(rec, Binary::Add, &x, &tmp, &x)?;
                } else {
                    ops::embedding(rec, &p.matrix, &buf, &x)?;
                    written = true;
                }
            }
        }
        Ok(())
    }

    /// Records all layers over `n` tokens at positions `len..len+n` (x → x), then the final
    /// norm of all `n` rows into `xn`.
    fn record_layers(&self, rec: &mut Recorder, llm: &Llm, n: usize) -> Result<(), ModelError> {
        let d = &llm.dims;
        let (h, hd) = (d.hidden, d.head_dim);
        let scale = 1.0 / (hd as f32).sqrt();
        let qkv_rows = (d.heads + 2 * d.kv_heads) * hd;
        let x = sub(&self.x, &[n, h]);
        let h2 = sub(&self.h2, &[n, h]);
        let xn = sub(&self.xn, &[n, h]);
        let qkv = sub(&self.qkv, &[n, qkv_rows]);
        let (gate, up, mlp) = (
            sub(&self.gate, &[n, d.inter]),
            sub(&self.up, &[n, d.inter]),
            sub(&self.mlp, &[n, d.inter]),
        );
        let p0 = self.len;
        let (q, attn_heads) = if n == 1 {
            (
                sub(&self.q, &[d.heads, hd]),
                sub(&self.attn, &[d.heads, hd]),
            )
        } else {
            (
                sub(&self.q, &[n, d.heads, hd]),
                sub(&self.attn, &[n, d.heads, hd]),
            )
        };
        let ctx = rec.ctx();
        // a decode step defers each RMSNorm into the product after it where the device can: the
        // product before the norm writes x·g as int8 x (see `h2_xq`)
        let defers = |a: &crate::tensor::Matrix, b: &crate::tensor::Matrix| {
            n == 1 && ops::norm_defers(ctx, a, b)
        };
        // whether x arrives as the previous layer's down wrote it for this layer's norm
        let mut x_deferred = false;
        for (li, (l, cache)) in llm.layers.iter().zip(&self.caches).enumerate() {
            let qkv_epi = Epilogue {
                bias: Some(&l.b_pack),
                rope: Some(ops::RopeOut {
                    inv_freq: &llm.inv_freq,
                    pos: p0,
                    q: &q,
                    cache,
                }),
                ..Default::default()
            };
            if x_deferred {
                let (xq, xd, ss) = &self.x_xq;
                let epi = Epilogue {
                    prequantised: Some((xq, xd)),
                    deferred_norm: Some((ss, d.eps)),
                    ..qkv_epi
                };
                ops::gemv(rec, &l.w_pack, &x, &qkv, epi)?;
            } else {
                // each RMSNorm that only feeds a product goes into the product's quantisation
                // of x where that is free (decode with int8 activations: one dispatch fewer),
                // and RoPE with the cache append into its epilogue (decode: one more)
                ops::gemv_rmsnorm(
                    rec,
                    &l.w_pack,
                    &x,
                    (&l.ln1, d.eps),
                    &xn,
                    false,
                    &qkv,
                    qkv_epi,
                )?;
            }
            // decode into an int8 o_proj: the attention writes its output as int8 x too
            let xq = (n == 1 && ops::attn_feeds_int8(rec.ctx(), &l.o, hd))
                .then_some((&self.attn_xq.0, &self.attn_xq.1));
            if n == 1 {
                let s = &self.scratch;
                ops::attn_decode_xq(rec, &q, cache, p0 + 1, scale, s, &attn_heads, xq)?;
            } else {
                ops::attn_prefill(rec, &q, cache, p0, scale, &attn_heads)?;
            }
            let attn = sub(&self.attn, &[n, d.heads * hd]);
            // o_proj writes h2·ln2 for gate/up's deferred norm where it can
            let h2_deferred = match &l.mlp {
                Mlp::Fused(gu) => defers(&l.o, gu),
                Mlp::Split { .. } => false,
            };
            let (hq, hd2, hss) = &self.h2_xq;
            ops::gemv(
                rec,
                &l.o,
                &attn,
                &h2,
                Epilogue {
                    residual: Some(&x),
                    prequantised: xq,
                    xq_out: h2_deferred.then_some((hq, hd2)),
                    xq_out_norm: h2_deferred.then_some((&l.ln2, hss)),
                    ..Default::default()
                },
            )?;
            // a decode step's gate/up writes down's int8 x itself
            let mxq =
                (n == 1 && matches!(l.mlp, Mlp::Fused(_)) && ops::feeds_int8(rec.ctx(), &l.down))
                    .then_some((&self.mlp_xq.0, &self.mlp_xq.1));
            match &l.mlp {
                Mlp::Fused(gu) if h2_deferred => ops::gemv(
                    rec,
                    gu,
                    &h2,
                    &mlp,
                    Epilogue {
                        act: ops::Activation::SwiGlu,
                        xq_out: mxq,
                        prequantised: Some((hq, hd2)),
                        deferred_norm: Some((hss, d.eps)),
                        ..Default::default()
                    },
                )?,
                // decode: the SwiGLU epilogue of the matrix–vector kernel
                Mlp::Fused(gu) if n < ops::GEMM_MIN_N => ops::gemv_rmsnorm(
                    rec,
                    gu,
                    &h2,
                    (&l.ln2, d.eps),
                    &xn,
                    false,
                    &mlp,
                    Epilogue {
                        act: ops::Activation::SwiGlu,
                        xq_out: mxq,
                        ..Default::default()
                    },
                )?,
                // prefill: the plain tiled product (its SwiGLU epilogue measured 20 % slower
                // on an H100), then SwiGLU over the interleaved pairs
                Mlp::Fused(gu) => {
                    let gup = sub(&self.gate_up, &[n, 2 * d.inter]);
                    ops::rmsnorm(rec, &h2, &l.ln2, d.eps, &xn)?;
                    ops::gemv(rec, gu, &xn, &gup, Epilogue::default())?;
                    ops::swiglu_pairs(rec, &gup, &mlp)?;
                }
                Mlp::Split { gate: g, up: u } => {
                    ops::rmsnorm(rec, &h2, &l.ln2, d.eps, &xn)?;
                    ops::gemv(rec, g, &xn, &gate, Epilogue::default())?;
                    ops::gemv(rec, u, &xn, &up, Epilogue::default())?;
                    ops::swiglu(rec, &gate, &up, &mlp)?;
                }
            }
            // down writes x·ln1 of the next layer for its W_pack's deferred norm where it can
            let next = llm
                .layers
                .get(li + 1)
                .filter(|nx| defers(&l.down, &nx.w_pack));
            let (xq, xd, ss) = &self.x_xq;
            ops::gemv(
                rec,
                &l.down,
                &mlp,
                &x,
                Epilogue {
                    residual: Some(&h2),
                    prequantised: mxq,
                    xq_out: next.map(|_| (xq, xd)),
                    xq_out_norm: next.map(|nx| (&nx.ln1, ss)),
                    ..Default::default()
                },
            )?;
            x_deferred = next.is_some();
        }
        ops::rmsnorm(rec, &x, &llm.norm, d.eps, &xn)?;
        Ok(())
    }

    /// Feeds `inputs` (any length): chunks of up to `chunk` positions, then the last position
    /// alone as a decode step whose final hidden state and logits stay in `hidden`/`logits`.
    pub fn feed(
        &mut self,
        ctx: &GpuContext,
        llm: &Llm,
        inputs: &[Input],
    ) -> Result<(), ModelError> {
        self.check_inputs(llm, inputs)?;
        let (body, last) = inputs.split_at(inputs.len() - 1);
        for c in body.chunks(self.chunk) {
            let mut rec = Recorder::new(ctx, "llm.prefill").with_cache(&self.binds);
            self.record_embed(ctx, &mut rec, llm, c)?;
            self.record_layers(&mut rec, llm, c.len())?;
            rec.submit()?;
            self.len += c.len();
        }
        self.step(ctx, llm, last[0])
    }

    /// One decode step: the input at position `len`, then final hidden + logits of it.
    pub fn step(&mut self, ctx: &GpuContext, llm: &Llm, input: Input) -> Result<(), ModelError> {
        self.check_inputs(llm, &[input])?;
        let mut rec = Recorder::new(ctx, "llm.decode").with_cache(&self.binds);
        self.record_embed(ctx, &mut rec, llm, &[input])?;
        self.record_step_tail(rec, llm, false)?;
        self.len += 1;
        Ok(())
    }

    /// One decode step whose input is a text id already on the GPU: the u32 at `ids[slot]`, as
    /// a sampler's draw leaves it ([`GpuSampler::submit_draw`](sample::GpuSampler::submit_draw)),
    /// so the step can be submitted before the id is read back. Its logits and final hidden
    /// state go to spare buffers, and `logits`/`hidden` keep the last step's until
    /// [`Self::keep_step`] (the id was read and kept); to drop the step, [`Self::truncate`] to
    /// the fed positions. The id is not checked on the CPU: the caller reads it back and drops
    /// the step where [`Self::step`] would have refused the id (`<audio_pad_baichuan>`); every
    /// id a draw can give is < the LM head's rows = the vocabulary.
    pub fn step_id(
        &mut self,
        ctx: &GpuContext,
        llm: &Llm,
        ids: &wgpu::Buffer,
        slot: usize,
    ) -> Result<(), ModelError> {
        if self.len + 1 > self.tmax {
            return Err(ModelError::input(format!(
                "1 position after the {} in the cache exceeds the context length {}",
                self.len, self.tmax
            )));
        }
        if llm.embed.is_empty() || llm.lm_head.is_empty() || (slot as u64 + 1) * 4 > ids.size() {
            return Err(ModelError::input(format!(
                "a step on a GPU-side id needs an embedding table and an LM head, and the id in \
                 its buffer (slot {slot} of {} bytes)",
                ids.size()
            )));
        }
        let h = llm.dims.hidden;
        let x = sub(&self.x, &[1, h]);
        let mut rec = Recorder::new(ctx, "llm.decode.id").with_cache(&self.binds);
        rec.encoder()?
            .copy_buffer_to_buffer(ids, 4 * slot as u64, &self.ids, 0, 4);
        // a table in row parts: each part in turn writes the row if it holds the id
        for (i, p) in llm.embed.iter().enumerate() {
            ops::embedding_part(&mut rec, &p.matrix, &self.ids, &x, p.row_start, i > 0)?;
        }
        self.record_step_tail(rec, llm, true)?;
        self.len += 1;
        Ok(())
    }

    /// The logits of the last step with the first vocabulary row of each (one per LM-head
    /// part), as the samplers take them.
    pub fn logit_parts<'a>(&'a self, llm: &Llm) -> Vec<(usize, &'a Tensor)> {
        llm.lm_head
            .iter()
            .map(|p| p.row_start)
            .zip(&self.logits)
            .collect()
    }

    /// [`Self::logit_parts`] of the last [`Self::step_id`], not kept yet.
    pub fn step_logit_parts<'a>(&'a self, llm: &Llm) -> Vec<(usize, &'a Tensor)> {
        llm.lm_head
            .iter()
            .map(|p| p.row_start)
            .zip(&self.spare.0)
            .collect()
    }

    /// Keeps the step of [`Self::step_id`]: its logits and hidden state become `logits` and
    /// `hidden`.
    pub fn keep_step(&mut self) {
        std::mem::swap(&mut self.logits, &mut self.spare.0);
        std::mem::swap(&mut self.hidden, &mut self.spare.1);
    }

    /// The layers, the LM head and the final hidden state of a decode step whose input
    /// embedding `rec` has recorded, into the spare buffers where `spare`; then submits.
    fn record_step_tail(
        &self,
        mut rec: Recorder,
        llm: &Llm,
        spare: bool,
    ) -> Result<(), ModelError> {
        self.record_layers(&mut rec, llm, 1)?;
        let hn = sub(&self.xn, &[llm.dims.hidden]);
        let (logits, hidden) = if spare {
            (&self.spare.0, &self.spare.1)
        } else {
            (&self.logits, &self.hidden)
        };
        for (p, out) in llm.lm_head.iter().zip(logits) {
            ops::gemv(&mut rec, &p.matrix, &hn, out, Epilogue::default())?;
        }
        // keep the final hidden state for the audio head
        let bytes = (llm.dims.hidden * rec.ctx().act().size()) as u64;
        rec.encoder()?
            .copy_buffer_to_buffer(&self.xn.buf, 0, &hidden.buf, 0, bytes);
        rec.submit()?;
        Ok(())
    }

    /// One decode step whose input is an audio frame already on the GPU: the 8 codes (u32) at
    /// the start of `codes`, as [`FrameSampler`](head::FrameSampler) leaves them in
    /// [`HeadState::codes`](head::HeadState::codes). Only the final hidden state is computed:
    /// the LM head is skipped, since an audio position's text logits are never sampled (the
    /// next frame reads `hidden`; a segment's end feeds `<audiogen_end_baichuan>`, whose step
    /// computes them). `logits` keep the previous step's values until then. Codes are not
    /// checked on the CPU: the sampler draws them within each codebook (codebook 0's audio-end
    /// class included, which has its own embedding row).
    pub fn step_codes(
        &mut self,
        ctx: &GpuContext,
        llm: &Llm,
        codes: &wgpu::Buffer,
    ) -> Result<(), ModelError> {
        if self.len + 1 > self.tmax {
            return Err(ModelError::input(format!(
                "1 position after the {} in the cache exceeds the context length {}",
                self.len, self.tmax
            )));
        }
        let h = llm.dims.hidden;
        let mut rec = Recorder::new(ctx, "llm.decode.audio").with_cache(&self.binds);
        ops::audio_embed(
            &mut rec,
            &llm.audio.stacked,
            &llm.audio.rows,
            codes,
            &sub(&self.x, &[1, h]),
        )?;
        self.record_layers(&mut rec, llm, 1)?;
        let bytes = (h * ctx.act().size()) as u64;
        rec.encoder()?
            .copy_buffer_to_buffer(&self.xn.buf, 0, &self.hidden.buf, 0, bytes);
        rec.submit()?;
        self.len += 1;
        Ok(())
    }

    /// Logits of every position of `inputs` (for tools and tests: reads all of them back),
    /// (n, vocab) row-major f32.
    pub async fn all_logits(
        &mut self,
        ctx: &GpuContext,
        llm: &Llm,
        inputs: &[Input],
    ) -> Result<Vec<f32>, ModelError> {
        self.check_inputs(llm, inputs)?;
        let v = llm.dims.vocab;
        let mut out = vec![0f32; inputs.len() * v];
        let mut row0 = 0;
        for c in inputs.chunks(self.chunk) {
            let n = c.len();
            let mut rec = Recorder::new(ctx, "llm.prefill+logits");
            self.record_embed(ctx, &mut rec, llm, c)?;
            self.record_layers(&mut rec, llm, n)?;
            let xn = sub(&self.xn, &[n, llm.dims.hidden]);
            let mut parts = Vec::new();
            for p in llm.lm_head.iter() {
                let y = Tensor::empty(ctx, "llm.logits.all", &[n, p.matrix.rows()]);
                ops::gemv(&mut rec, &p.matrix, &xn, &y, Epilogue::default())?;
                parts.push((p.row_start, y));
            }
            rec.submit()?;
            self.len += n;
            for (r0, y) in parts {
                let rows = y.shape[1];
                let vals = y.to_vec(ctx).await?;
                for t in 0..n {
                    out[(row0 + t) * v + r0..(row0 + t) * v + r0 + rows]
                        .copy_from_slice(&vals[t * rows..(t + 1) * rows]);
                }
            }
            row0 += n;
        }
        Ok(out)
    }

    /// All logits of the last fed position (reads the whole vocabulary back).
    pub async fn read_logits(&self, ctx: &GpuContext, llm: &Llm) -> Result<Vec<f32>, ModelError> {
        let mut out = vec![0f32; llm.dims.vocab];
        for (p, t) in llm.lm_head.iter().zip(&self.logits) {
            let vals = t.to_vec(ctx).await?;
            out[p.row_start..p.row_start + vals.len()].copy_from_slice(&vals);
        }
        Ok(out)
    }
}
