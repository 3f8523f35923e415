//! Audio decoder (spec §4 decode + §7): codes (N, 8) → Σ codebook vectors → `proj_decoder` →
//! ConvTranspose ×4 + GroupNorm(1) → + sinusoid table → causal Whisper layers → LayerNorm,
//! giving `hidden_before_dconv2` (4N−1, d) at 50 Hz.
//! Reference: Baichuan-Omni-1.5 `audio_modeling_omni.py` (`OmniAudioVQBridgeTokenizer.decode`,
//! `OmniAudioDecoder.forward`).

use std::rc::Rc;

use crate::gpu::{GpuContext, Recorder};
use crate::model::{HostTensor, ModelError, Weights};
use crate::ops::{self, Activation, Binary, ConvTranspose1dSpec, ConvWeight, RVQ_LEVELS};
use crate::tensor::Tensor;

use super::layers::{Linear, Norm, WhisperLayer};

const BRIDGE: &str = "audio_tokenizer.audio_bridge_model";
const DEC: &str = "audio_tokenizer.audio_decoder";

pub struct AudioDecoder {
    /// Codebooks C_i (N_i, Dq) f32 on the host (the decode sum runs on the CPU: 8 gathers).
    codebooks: Rc<ops::Codebooks>,
    dq: usize,
    /// proj_decoder (d, Dq) + bias.
    proj: Linear,
    /// dconv1 ConvTranspose1d (d → d, k, stride 4).
    dconv1: ConvWeight,
    dconv1_b: crate::ops::ConvBias,
    gn_w: wgpu::Buffer,
    gn_b: wgpu::Buffer,
    /// positional_embedding (P, d) host f32.
    pos: Rc<HostTensor>,
    layers: Vec<WhisperLayer>,
    ln: Norm,
    /// d_model.
    pub d: usize,
}

impl AudioDecoder {
    pub fn load(w: &Weights, ctx: &GpuContext) -> Result<Self, ModelError> {
        let a = &w.config.audio;
        let d = a.d_model;
        let codebooks = w.rvq_codebooks(ctx)?;
        let dq = codebooks.dim;
        let k = a.decoder_kernel_size;
        let wt = w.raw(ctx, &format!("{DEC}.dconv1.conv.weight"))?;
        if wt.shape != [d, d, k] {
            return Err(ModelError::input(format!(
                "{DEC}.dconv1.conv.weight is {:?}, want [{d}, {d}, {k}]",
                wt.shape
            )));
        }
        let mut rec = Recorder::new(ctx, "decoder.load");
        let dconv1 = ConvWeight::conv_transpose1d_raw(&mut rec, "dconv1", &wt, 1)?;
        rec.submit()?;
        let layers = (0..a.decoder_layers)
            .map(|i| {
                WhisperLayer::load(
                    w,
                    ctx,
                    &format!("{DEC}.layers.{i}"),
                    a.decoder_attention_heads,
                    false,
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(AudioDecoder {
            codebooks,
            dq,
            proj: Linear::load(w, ctx, &format!("{BRIDGE}.proj_decoder"), true)?,
            dconv1,
            dconv1_b: w.conv_bias(ctx, &format!("{DEC}.dconv1.conv.bias"))?,
            gn_w: w.f32_buffer(ctx, &format!("{DEC}.dconv1.norm.weight"))?,
            gn_b: w.f32_buffer(ctx, &format!("{DEC}.dconv1.norm.bias"))?,
            pos: w.host(&format!("{DEC}.positional_embedding"))?,
            layers,
            ln: Norm::layer(w, ctx, &format!("{DEC}.layer_norm"), 1e-5)?,
            d,
        })
    }

    /// Codebook sizes N_i.
    pub fn codebook_sizes(&self) -> Vec<usize> {
        self.codebooks.sizes.to_vec()
    }

    /// Most frames one segment may hold: 4N−1 ≤ positional table length (spec §7 step 2).
    pub fn max_frames(&self) -> usize {
        (self.pos.shape[0] + 1) / 4
    }

    /// Checks codes (N, 8) row-major against the codebook sizes and the segment limit.
    pub fn check_codes(&self, codes: &[u32]) -> Result<usize, ModelError> {
        if codes.is_empty() || !codes.len().is_multiple_of(RVQ_LEVELS) {
            return Err(ModelError::input(format!(
                "codes must be (N, {RVQ_LEVELS}) with N ≥ 1, got {} values",
                codes.len()
            )));
        }
        let n = codes.len() / RVQ_LEVELS;
        if n > self.max_frames() {
            return Err(ModelError::input(format!(
                "{n} frames exceed one segment's limit of {} (the decoder's positional table)",
                self.max_frames()
            )));
        }
        for (e, &c) in codes.iter().enumerate() {
            let (f, i) = (e / RVQ_LEVELS, e % RVQ_LEVELS);
            let size = self.codebooks.sizes[i];
            if c as usize >= size {
                return Err(ModelError::input(format!(
                    "code {c} at frame {f}, codebook {i} is out of range (codebook {i} has {size} entries{})",
                    if i == 0 && c as usize == size { "; this is the audio EOS, drop that frame" } else { "" }
                )));
            }
        }
        Ok(n)
    }

    /// Codes (N, 8) row-major → `hidden_before_dconv2` (4N−1, d).
    pub fn forward(&self, rec: &mut Recorder, codes: &[u32]) -> Result<Tensor, ModelError> {
        let ctx = rec.ctx();
        let n = self.check_codes(codes)?;
        // e (N, Dq) = Σ_{i=7..0} C_i[code_i] in f32 on the GPU (spec §4 decode); codes were
        // checked above, so the kernel's out-of-range flag stays clear
        let cb = ctx.upload("rvq.codes", bytemuck::cast_slice(codes));
        let sum = ctx.storage("rvq.sum", (n * self.dq * 4) as u64);
        let flags = ctx.upload("rvq.flags", &[0u8; 4]);
        ops::rvq_decode(rec, &cb, n, &self.codebooks, &sum, &flags)?;
        let e = ops::f32_to_act(rec, &sum, &[n, self.dq])?;
        let z = self.proj.apply(rec, &e, Activation::None, None)?;
        let spec = ConvTranspose1dSpec {
            stride: 4,
            padding: 0,
            output_padding: 0,
            dilation: 1,
        };
        let t = spec
            .out_len(n, self.dconv1.k)
            .ok_or_else(|| ModelError::input("dconv1 output is empty"))?;
        let up = rec.scratch("dconv1.y", &[t, self.d]);
        ops::conv_transpose1d(rec, &z, &self.dconv1, Some(&self.dconv1_b), spec, &up)?;
        let gn = rec.scratch("dconv1.gn", &[t, self.d]);
        ops::groupnorm(rec, &up, 1, &self.gn_w, &self.gn_b, 1e-5, &gn)?;
        let p = Tensor::from_f32(ctx, "dec.pos", &[t, self.d], &self.pos.data[..t * self.d]);
        ops::binary(rec, Binary::Add, &gn, &p, &gn)?;
        let mut h = gn;
        for l in &self.layers {
            h = l.forward(rec, &h, 1)?;
        }
        Ok(self.ln.apply(rec, &h)?)
    }
}

const FM: &str = "audio_tokenizer.audio_flow_matching_decoder";

/// Flow-matching Pre-Net (spec §8.1): MLP 1280→2048→512, causal RMSNorm layers, final RMSNorm,
/// `out_proj` → `mu (T, 80)` (time-major).
pub struct Prenet {
    in0: Linear,
    in2: Linear,
    layers: Vec<WhisperLayer>,
    norm: Norm,
    out: Linear,
}

impl Prenet {
    pub fn load(w: &Weights, ctx: &GpuContext) -> Result<Self, ModelError> {
        let f = &w.config.flow;
        let layers = (0..f.prenet_nlayers)
            .map(|i| {
                WhisperLayer::load(
                    w,
                    ctx,
                    &format!("{FM}.prenet.transformer_layers.{i}"),
                    f.prenet_attention_heads,
                    true,
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Prenet {
            in0: Linear::load(w, ctx, &format!("{FM}.prenet.in_mlp.0"), true)?,
            in2: Linear::load(w, ctx, &format!("{FM}.prenet.in_mlp.2"), true)?,
            layers,
            norm: Norm::rms(w, ctx, &format!("{FM}.prenet.final_norm"), 1e-6)?,
            out: Linear::load(w, ctx, &format!("{FM}.prenet.out_proj"), false)?,
        })
    }

    /// `h (T, 1280)` → `mu (T, 80)`.
    pub fn forward(&self, rec: &mut Recorder, h: &Tensor) -> Result<Tensor, ModelError> {
        let a = self.in0.apply(rec, h, Activation::Silu, None)?;
        let mut y = self.in2.apply(rec, &a, Activation::None, None)?;
        for l in &self.layers {
            y = l.forward(rec, &y, 1)?;
        }
        let n = self.norm.apply(rec, &y)?;
        Ok(self.out.apply(rec, &n, Activation::None, None)?)
    }
}
