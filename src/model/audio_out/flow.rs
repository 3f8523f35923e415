//! Conditional flow matching (spec §8.2–8.3): the causal U-Net estimator (CosyVoice-style
//! `ConditionalDecoder`, causal convs, chunk-causal attention) and the 10-step Euler sampler
//! with classifier-free guidance on the cosine time grid. All tensors time-major `(T, C)`.
//! Reference: Baichuan-Omni-1.5 `flow_matching.py`, `matcha_components.py`,
//! `matcha_transformer.py`; CosyVoice `flow/decoder.py`, `flow/flow_matching.py`.
//!
//! Channel concatenations (`[x, mu]`, `[h, skip]`) are never materialised: a convolution over
//! concatenated inputs is the sum of convolutions over each input with its slice of the
//! kernel, so each first conv keeps one weight per input part.

use crate::gpu::{Arena, BindCache, GpuContext, Recorder};
use crate::model::{ModelError, Weights};
use crate::ops::{self, Activation, Binary, Conv1dSpec, ConvWeight, OpError, Unary};
use crate::tensor::Tensor;

use super::layers::{ops_shape, Linear, Norm, WhisperLayer};

const CD: &str = "audio_tokenizer.audio_flow_matching_decoder.conditional_decoder";
/// Chunk of the U-Net's chunk-causal attention mask (`static_chunk_size`).
pub const UNET_CHUNK: usize = 100;

/// A Conv1d whose input is a channel concatenation of parts (one kernel slice per part).
struct SplitConv {
    parts: Vec<ConvWeight>,
    bias: ops::ConvBias,
    spec: Conv1dSpec,
    cout: usize,
}

impl SplitConv {
    /// `{p}.weight` (Cout, ΣC_i, K) split along input channels into `split` widths.
    fn load(
        w: &Weights,
        ctx: &GpuContext,
        p: &str,
        split: &[usize],
        causal: bool,
    ) -> Result<Self, ModelError> {
        let wt = w.raw(ctx, &format!("{p}.weight"))?;
        let [cout, cin, k] = wt.shape[..] else {
            return Err(ModelError::input(format!("{p}.weight is not 3-D")));
        };
        if split.iter().sum::<usize>() != cin {
            return Err(ModelError::input(format!(
                "{p}.weight has {cin} input channels, the inputs {split:?}"
            )));
        }
        let mut rec = crate::gpu::Recorder::new(ctx, "flow.conv.load");
        let mut parts = Vec::new();
        let mut c0 = 0;
        for &c in split {
            parts.push(ConvWeight::conv1d_raw_inputs(&mut rec, p, &wt, c0, c)?);
            c0 += c;
        }
        rec.submit()?;
        Ok(SplitConv {
            parts,
            bias: w.conv_bias(ctx, &format!("{p}.bias"))?,
            spec: Conv1dSpec {
                stride: 1,
                pad_left: if causal { k - 1 } else { 0 },
                pad_right: 0,
                dilation: 1,
            },
            cout,
        })
    }

    /// Inputs `(B·T, C_i)` (`batch` sequences of T frames, padded each on its own); a `None`
    /// part is all zeros (the unconditional `mu`) and is skipped. `residual` (the output's
    /// shape) is added in the first part's product.
    fn fwd(
        &self,
        rec: &mut Recorder,
        xs: &[Option<&Tensor>],
        batch: usize,
        residual: Option<&Tensor>,
    ) -> Result<Tensor, OpError> {
        let t = xs.iter().flatten().next().map(|x| x.shape[0]).unwrap_or(0);
        let y = rec.scratch("conv.y", &[t, self.cout]);
        let mut first = true;
        for (x, wgt) in xs.iter().zip(&self.parts) {
            let Some(x) = x else { continue };
            if first {
                let (b, spec) = (Some(&self.bias), self.spec);
                ops::conv1d_batch_res(rec, x, wgt, b, spec, batch, &y, residual)?;
                first = false;
            } else {
                let tmp = rec.scratch("conv.part", &[t, self.cout]);
                ops::conv1d_batch(rec, x, wgt, None, self.spec, batch, &tmp)?;
                ops::binary(rec, Binary::Add, &y, &tmp, &y)?;
            }
        }
        Ok(y)
    }
}

/// `CausalBlock1D`: causal conv k3 → LayerNorm over channels → Mish.
struct CausalBlock {
    conv: SplitConv,
    ln: Norm,
}

impl CausalBlock {
    fn load(w: &Weights, ctx: &GpuContext, p: &str, split: &[usize]) -> Result<Self, ModelError> {
        Ok(CausalBlock {
            conv: SplitConv::load(w, ctx, &format!("{p}.block.0"), split, true)?,
            ln: Norm::layer(w, ctx, &format!("{p}.block.2"), 1e-5)?,
        })
    }

    /// `add` (C): a row added after the Mish (the ResBlock's time-embedding projection), in
    /// the LayerNorm's dispatch.
    fn fwd(
        &self,
        rec: &mut Recorder,
        xs: &[Option<&Tensor>],
        batch: usize,
        add: Option<&Tensor>,
    ) -> Result<Tensor, OpError> {
        let c = self.conv.fwd(rec, xs, batch, None)?;
        let Norm::Layer { w, b, eps } = &self.ln else {
            return Err(ops_shape("CausalBlock1D's norm is a LayerNorm", &c));
        };
        let y = rec.scratch("norm.y", &c.shape);
        let post = match add {
            Some(a) => ops::LnPost::MishAdd(a),
            None => ops::LnPost::Mish,
        };
        ops::layernorm_post(rec, &c, w, b, *eps, &y, post)?;
        Ok(y)
    }
}

/// `CausalResnetBlock1D`: block1 (+ time MLP) → block2, plus a 1×1 residual conv.
struct ResBlock {
    block1: CausalBlock,
    block2: CausalBlock,
    mlp: Linear,
    res: SplitConv,
}

impl ResBlock {
    fn load(w: &Weights, ctx: &GpuContext, p: &str, split: &[usize]) -> Result<Self, ModelError> {
        let cout = w
            .shape(&format!("{p}.block1.block.0.weight"))
            .and_then(|s| s.first().copied())
            .unwrap_or(0);
        Ok(ResBlock {
            block1: CausalBlock::load(w, ctx, &format!("{p}.block1"), split)?,
            block2: CausalBlock::load(w, ctx, &format!("{p}.block2"), &[cout])?,
            mlp: Linear::load(w, ctx, &format!("{p}.mlp.1"), true)?,
            res: SplitConv::load(w, ctx, &format!("{p}.res_conv"), split, false)?,
        })
    }

    /// `temb_mish`: Mish(temb) (1, 4·C0).
    fn fwd(
        &self,
        rec: &mut Recorder,
        xs: &[Option<&Tensor>],
        temb_mish: &Tensor,
        batch: usize,
    ) -> Result<Tensor, OpError> {
        let tproj = self.mlp.apply(rec, temb_mish, Activation::None, None)?;
        let c = tproj.numel();
        let tv = tproj.view(&[c]).ok_or_else(|| ops_shape("temb", &tproj))?;
        let a = self.block1.fwd(rec, xs, batch, Some(&tv))?;
        let b = self.block2.fwd(rec, &[Some(&a)], batch, None)?;
        // block2's output + the 1×1 residual conv, added in the conv's epilogue
        self.res.fwd(rec, xs, batch, Some(&b))
    }
}

/// diffusers `BasicTransformerBlock` (self-attention only, LayerNorm, GELU feed-forward): the
/// Whisper layer's computation with chunk-causal attention (chunk [`UNET_CHUNK`]).
struct TransformerBlock(WhisperLayer);

impl TransformerBlock {
    fn load(w: &Weights, ctx: &GpuContext, p: &str, heads: usize) -> Result<Self, ModelError> {
        let a = format!("{p}.attn1");
        Ok(TransformerBlock(WhisperLayer::from_parts(
            ctx,
            p,
            [
                Norm::layer(w, ctx, &format!("{p}.norm1"), 1e-5)?,
                Norm::layer(w, ctx, &format!("{p}.norm3"), 1e-5)?,
            ],
            [
                Linear::load(w, ctx, &format!("{a}.to_q"), false)?,
                Linear::load(w, ctx, &format!("{a}.to_k"), false)?,
                Linear::load(w, ctx, &format!("{a}.to_v"), false)?,
                Linear::load(w, ctx, &format!("{a}.to_out.0"), true)?,
            ],
            [
                Linear::load(w, ctx, &format!("{p}.ff.net.0.proj"), true)?,
                Linear::load(w, ctx, &format!("{p}.ff.net.2"), true)?,
            ],
            heads,
        )?))
    }

    fn fwd(&self, rec: &mut Recorder, h: &Tensor, batch: usize) -> Result<Tensor, OpError> {
        self.0.forward_batch(rec, h, batch, UNET_CHUNK)
    }
}

struct Stage {
    res: ResBlock,
    blocks: Vec<TransformerBlock>,
    /// The down/up block's trailing causal conv k3 (None for mid blocks).
    conv: Option<SplitConv>,
}

impl Stage {
    fn fwd(
        &self,
        rec: &mut Recorder,
        xs: &[Option<&Tensor>],
        temb_mish: &Tensor,
        batch: usize,
    ) -> Result<(Tensor, Tensor), OpError> {
        let mut h = self.res.fwd(rec, xs, temb_mish, batch)?;
        for b in &self.blocks {
            h = b.fwd(rec, &h, batch)?;
        }
        let out = match &self.conv {
            Some(c) => c.fwd(rec, &[Some(&h)], batch, None)?,
            None => h.view(&h.shape).ok_or_else(|| ops_shape("view", &h))?,
        };
        Ok((h, out))
    }
}

/// The U-Net estimator `U(x, mask = 1, mu, t)` (spec §8.3), single down and up level.
pub struct Unet {
    t1: Linear,
    t2: Linear,
    /// 160 = 2·in_channels sinusoid width.
    temb_in: usize,
    down: Stage,
    mid: Vec<Stage>,
    up: Stage,
    final_block: CausalBlock,
    final_proj: SplitConv,
    /// Mel bins (80).
    pub mel: usize,
}

impl Unet {
    pub fn load(w: &Weights, ctx: &GpuContext) -> Result<Self, ModelError> {
        let f = &w.config.flow;
        if f.channels.len() != 1 {
            return Err(ModelError::input(format!(
                "only the single-level U-Net is implemented (channels {:?})",
                f.channels
            )));
        }
        let c = f.channels[0];
        let mel = f.in_channels;
        let heads = f.num_heads;
        let blocks = |p: &str| {
            (0..f.n_blocks)
                .map(|k| TransformerBlock::load(w, ctx, &format!("{p}.1.{k}"), heads))
                .collect::<Result<Vec<_>, _>>()
        };
        let down_p = format!("{CD}.down_blocks.0");
        let down = Stage {
            res: ResBlock::load(w, ctx, &format!("{down_p}.0"), &[mel, mel])?,
            blocks: blocks(&down_p)?,
            conv: Some(SplitConv::load(w, ctx, &format!("{down_p}.2"), &[c], true)?),
        };
        let mid = (0..f.num_mid_blocks)
            .map(|i| {
                let p = format!("{CD}.mid_blocks.{i}");
                Ok(Stage {
                    res: ResBlock::load(w, ctx, &format!("{p}.0"), &[c])?,
                    blocks: blocks(&p)?,
                    conv: None,
                })
            })
            .collect::<Result<Vec<_>, ModelError>>()?;
        let up_p = format!("{CD}.up_blocks.0");
        let up = Stage {
            res: ResBlock::load(w, ctx, &format!("{up_p}.0"), &[c, c])?,
            blocks: blocks(&up_p)?,
            conv: Some(SplitConv::load(w, ctx, &format!("{up_p}.2"), &[c], true)?),
        };
        Ok(Unet {
            t1: Linear::load(w, ctx, &format!("{CD}.time_mlp.linear_1"), true)?,
            t2: Linear::load(w, ctx, &format!("{CD}.time_mlp.linear_2"), true)?,
            temb_in: 2 * mel,
            down,
            mid,
            up,
            final_block: CausalBlock::load(w, ctx, &format!("{CD}.final_block"), &[c])?,
            final_proj: SplitConv::load(w, ctx, &format!("{CD}.final_proj"), &[c], false)?,
            mel,
        })
    }

    /// Mish(time_mlp(sinusoid(t))) (1, 4·C): shared by every ResBlock of one evaluation.
    pub fn time_embedding(&self, rec: &mut Recorder, t: f32) -> Result<Tensor, OpError> {
        let e = sinusoid_pos_emb(t, self.temb_in);
        // a scratch buffer written through the queue (ordered after the work already
        // submitted), so a repeated step binds the same buffer
        let et = rec.scratch("unet.t", &[1, self.temb_in]);
        let bytes = crate::tensor::act_bytes(et.dtype, &e);
        let whole = bytes.len() / 4 * 4;
        if whole != bytes.len() {
            return Err(crate::ops::shape_err(
                "time embedding",
                format!("{} values do not fill whole words", self.temb_in),
            ));
        }
        rec.ctx().queue.write_buffer(&et.buf, 0, &bytes);
        let e = et;
        let a = self.t1.apply(rec, &e, Activation::Silu, None)?;
        let temb = self.t2.apply(rec, &a, Activation::None, None)?;
        ops::unary(rec, Unary::Mish, &temb, &temb)?;
        Ok(temb)
    }

    /// `x (T, 80)`, `mu (T, 80)` or None (all zeros) → velocity `(T, 80)`.
    pub fn forward(
        &self,
        rec: &mut Recorder,
        x: &Tensor,
        mu: Option<&Tensor>,
        temb_mish: &Tensor,
    ) -> Result<Tensor, OpError> {
        self.forward_batch(rec, x, mu, temb_mish, 1)
    }

    /// [`Unet::forward`] on `batch` sequences of T frames packed one after another
    /// (`x`, `mu`: `(B·T, 80)`), each evaluated on its own; one time step for all.
    pub fn forward_batch(
        &self,
        rec: &mut Recorder,
        x: &Tensor,
        mu: Option<&Tensor>,
        temb_mish: &Tensor,
        batch: usize,
    ) -> Result<Tensor, OpError> {
        let (skip, h) = self.down.fwd(rec, &[Some(x), mu], temb_mish, batch)?;
        let mut h = h;
        for m in &self.mid {
            h = m.fwd(rec, &[Some(&h)], temb_mish, batch)?.1;
        }
        let (_, h) = self
            .up
            .fwd(rec, &[Some(&h), Some(&skip)], temb_mish, batch)?;
        let h = self.final_block.fwd(rec, &[Some(&h)], batch, None)?;
        self.final_proj.fwd(rec, &[Some(&h)], batch, None)
    }
}

/// matcha `SinusoidalPosEmb(dim)` with scale 1000: `[sin(1000·t·f_i), cos(1000·t·f_i)]`,
/// `f_i = exp(−i·ln(10000)/(dim/2 − 1))`.
pub fn sinusoid_pos_emb(t: f32, dim: usize) -> Vec<f32> {
    let half = dim / 2;
    let step = (10000f32).ln() / (half.max(2) - 1) as f32;
    let mut e = vec![0f32; dim];
    for i in 0..half {
        let a = 1000.0 * t * (-(i as f32) * step).exp();
        e[i] = a.sin();
        e[half + i] = a.cos();
    }
    e
}

/// The cosine time grid `1 − cos(π/2 · k/steps)`, k = 0..=steps (f32; the bf16 grid of the HF
/// reference is a documented deviation, spec §8.2).
pub fn cosine_grid(steps: usize) -> Vec<f32> {
    (0..=steps)
        .map(|k| {
            let t = k as f32 / steps as f32;
            1.0 - (t * 0.5 * std::f32::consts::PI).cos()
        })
        .collect()
}

/// Sampler settings (spec §8.2).
#[derive(Clone, Copy, Debug)]
pub struct CfmParams {
    pub steps: usize,
    pub cfg_rate: f32,
}

impl Default for CfmParams {
    fn default() -> Self {
        CfmParams {
            steps: 10,
            cfg_rate: 0.7,
        }
    }
}

/// Euler with CFG: from `noise (T, 80)` to the mel `(T, 80)`:
/// `x ← x + dt·((1+r)·U(x, mu, t) − r·U(x, 0, t))`. The conditional and unconditional
/// evaluations run as one batch of two sequences (`[x; x]` against `[mu; 0]`), so each step is
/// one U-Net pass over `(2T, ·)` tensors.
///
/// What `rec` holds so far is submitted first; then each step is recorded and submitted on its
/// own (the GPU runs step k while the CPU records step k + 1), taking its scratch tensors from
/// one [`Arena`] reset between steps and its bind groups from one [`BindCache`]: every step has
/// the same shapes, so from the second step on it reuses the first step's buffers and bind
/// groups instead of creating a thousand of each.
pub fn cfm_sample(
    rec: &mut Recorder,
    unet: &Unet,
    mu: &Tensor,
    noise: &Tensor,
    p: CfmParams,
) -> Result<Tensor, OpError> {
    let ctx = rec.ctx();
    if noise.shape != mu.shape || mu.shape.len() != 2 {
        return Err(crate::ops::shape_err(
            "cfm",
            format!("noise is {:?}, mu is {:?}", noise.shape, mu.shape),
        ));
    }
    let (t, c) = (mu.shape[0], mu.shape[1]);
    let grid = cosine_grid(p.steps);
    // [x; x] and [mu; 0] (the config check keeps C even, so each half is whole words)
    let half = (t * c * ctx.act().size()) as u64;
    if !half.is_multiple_of(4) {
        return Err(crate::ops::shape_err(
            "cfm",
            format!(
                "mu {:?}: T·C must fill whole words in the activation dtype",
                mu.shape
            ),
        ));
    }
    let x2 = Tensor::empty(ctx, "cfm.x2", &[2 * t, c]);
    let mu2 = Tensor::empty(ctx, "cfm.mu2", &[2 * t, c]);
    {
        let enc = rec.encoder()?;
        enc.clear_buffer(&mu2.buf, half, None);
        enc.copy_buffer_to_buffer(&mu.buf, 0, &mu2.buf, 0, half);
        enc.copy_buffer_to_buffer(&noise.buf, 0, &x2.buf, 0, half);
        enc.copy_buffer_to_buffer(&noise.buf, 0, &x2.buf, half, half);
    }
    let step = |r: &mut Recorder, tt: f32, dt: f32| -> Result<(), OpError> {
        let temb = unet.time_embedding(r, tt)?;
        let v = unet.forward_batch(r, &x2, Some(&mu2), &temb, 2)?;
        ops::cfg_euler(r, &x2, &v, (1.0 + p.cfg_rate) * dt, p.cfg_rate * dt)
    };
    // a profiled recorder cannot submit part-way (its timestamps resolve at the end), so
    // under `--profile` the steps go into the caller's recorder, in order
    let profiling = ctx.profiling();
    if !profiling {
        rec.flush()?;
    }
    let arena = Arena::default();
    let cache = BindCache::default();
    let mut tt = grid[0];
    let mut dt = grid[1] - grid[0];
    for k in 1..=p.steps {
        if profiling {
            step(rec, tt, dt)?;
        } else {
            let mut srec = Recorder::new(ctx, "cfm.step")
                .with_cache(&cache)
                .with_arena(&arena);
            step(&mut srec, tt, dt)?;
            srec.submit()?;
            // every tensor of the step is dropped: its buffers serve the next step
            arena.reset();
        }
        tt += dt;
        if k < p.steps {
            dt = grid[k + 1] - tt;
        }
    }
    Ok(Tensor {
        buf: x2.buf.clone(),
        shape: vec![t, c],
        dtype: x2.dtype,
    })
}
