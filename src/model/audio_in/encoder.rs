//! Whisper-style audio encoder (spec §3, `OmniAudioEncoder` in [AUD] audio_modeling_omni.py):
//! conv1 (k3, pad 1) + GELU, conv2 (k3, stride 2, pad 1) + GELU, + sinusoid positions [0, T2),
//! N pre-LayerNorm layers (bidirectional attention within the chunk, k_proj without bias),
//! final LayerNorm. Time-major activations `(T, C)` throughout.

use crate::gpu::Recorder;
// the stacked q/k/v projection the flow U-Net's blocks use too
use crate::model::audio_out::layers::{Linear, Qkv};
use crate::model::{ModelError, Weights};
use crate::ops::{self, Activation, Binary, Conv1dSpec, ConvWeight, Epilogue, Unary};
use crate::tensor::{Matrix, Tensor};

const LN_EPS: f32 = 1e-5;

/// One `OmniWhisperTransformerLayer`.
struct Layer {
    ln1: (wgpu::Buffer, wgpu::Buffer), // self_attn_layer_norm (d) f32
    qkv: Qkv,                          // q (d, d) + bias, k (d, d) no bias, v (d, d) + bias
    o: Matrix,                         // (d, d)
    o_b: Tensor,                       // (d)
    ln2: (wgpu::Buffer, wgpu::Buffer), // final_layer_norm (d) f32
    fc1: Matrix,                       // (ffn, d)
    fc1_b: Tensor,                     // (ffn)
    fc2: Matrix,                       // (d, ffn)
    fc2_b: Tensor,                     // (d)
}

/// Encoder weights and shape.
pub struct AudioEncoder {
    pub n_mels: usize,
    pub d: usize,
    pub heads: usize,
    pub ffn: usize,
    conv1: ConvWeight, // (d, n_mels, 3)
    conv1_b: ops::ConvBias,
    conv2: ConvWeight, // (d, d, 3)
    conv2_b: ops::ConvBias,
    pos: Vec<f32>, // (positions, d) host
    positions: usize,
    layers: Vec<Layer>,
    ln: (wgpu::Buffer, wgpu::Buffer), // layer_norm (d) f32
}

/// Named intermediate tensors of a forward pass (a trace), in order.
pub type Taps = Vec<(String, Tensor)>;

/// `(T − 1) // 2 + 1`: encoder frames for `t` mel frames (conv2, stride 2, pad 1).
pub fn enc_len(t: usize) -> usize {
    if t == 0 {
        0
    } else {
        (t - 1) / 2 + 1
    }
}

impl AudioEncoder {
    pub const PREFIX: &'static str = "audio_tokenizer.audio_model";

    pub fn load(ctx: &crate::gpu::GpuContext, w: &Weights) -> Result<Self, ModelError> {
        let a = &w.config.audio;
        let (d, n_mels, ffn, heads) = (
            a.d_model,
            a.num_mel_bins,
            a.encoder_ffn_dim,
            a.encoder_attention_heads,
        );
        if heads == 0 || d % heads != 0 || d % 4 != 0 || ffn % 4 != 0 {
            return Err(ModelError::input(format!(
                "encoder d_model {d} must be a multiple of 4 and of its {heads} heads (ffn {ffn} a multiple of 4)"
            )));
        }
        let p = Self::PREFIX;
        let mut rec = crate::gpu::Recorder::new(ctx, "encoder.load");
        let mut conv = |name: &str, cin: usize| -> Result<ConvWeight, ModelError> {
            let h = w.raw(ctx, &format!("{p}.{name}.weight"))?;
            if h.shape != [d, cin, 3] {
                return Err(ModelError::input(format!(
                    "{p}.{name}.weight is {:?}, want [{d}, {cin}, 3]",
                    h.shape
                )));
            }
            Ok(ConvWeight::conv1d_raw(&mut rec, name, &h, 1)?)
        };
        let ln = |name: &str| -> Result<(wgpu::Buffer, wgpu::Buffer), ModelError> {
            Ok((
                w.f32_buffer(ctx, &format!("{name}.weight"))?,
                w.f32_buffer(ctx, &format!("{name}.bias"))?,
            ))
        };
        let pos_h = w.host(&format!("{p}.positional_embedding"))?;
        if pos_h.shape.len() != 2 || pos_h.shape[1] != d {
            return Err(ModelError::input(format!(
                "{p}.positional_embedding is {:?}, want [positions, {d}]",
                pos_h.shape
            )));
        }
        let mut layers = Vec::new();
        for i in 0..a.encoder_layers {
            let l = format!("{p}.layers.{i}");
            let m = |n: &str| w.matrix(ctx, &format!("{l}.{n}.weight"));
            let b = |n: &str| w.tensor(ctx, &format!("{l}.{n}.bias"));
            layers.push(Layer {
                ln1: ln(&format!("{l}.self_attn_layer_norm"))?,
                qkv: Qkv::fuse(
                    ctx,
                    Linear {
                        w: m("self_attn.q_proj")?,
                        b: Some(b("self_attn.q_proj")?),
                    },
                    Linear {
                        w: m("self_attn.k_proj")?,
                        b: None,
                    },
                    Linear {
                        w: m("self_attn.v_proj")?,
                        b: Some(b("self_attn.v_proj")?),
                    },
                )?,
                o: m("self_attn.out_proj")?,
                o_b: b("self_attn.out_proj")?,
                ln2: ln(&format!("{l}.final_layer_norm"))?,
                fc1: m("fc1")?,
                fc1_b: b("fc1")?,
                fc2: m("fc2")?,
                fc2_b: b("fc2")?,
            });
        }
        let conv1 = conv("conv1", n_mels)?;
        let conv2 = conv("conv2", d)?;
        rec.submit()?;
        Ok(AudioEncoder {
            n_mels,
            d,
            heads,
            ffn,
            conv1,
            conv1_b: w.conv_bias(ctx, &format!("{p}.conv1.bias"))?,
            conv2,
            conv2_b: w.conv_bias(ctx, &format!("{p}.conv2.bias"))?,
            positions: pos_h.shape[0],
            pos: pos_h.data.clone(),
            layers,
            ln: ln(&format!("{p}.layer_norm"))?,
        })
    }

    pub fn layers(&self) -> usize {
        self.layers.len()
    }

    /// Records the encoder on one chunk's mel, time-major `(T, n_mels)` f32. `pad_one` adds a
    /// zero mel column before conv1 (the padded-batch edge of spec §3 step 0, for an odd-T
    /// chunk shorter than the longest of its batch). `out` receives the final `(T2, d)`
    /// (a tensor whose buffer may be larger, e.g. padded for the bridge). Tap points go to
    /// `taps` when given.
    pub fn record(
        &self,
        rec: &mut Recorder,
        mel: &[f32],
        t: usize,
        pad_one: bool,
        out: &Tensor,
        mut taps: Option<&mut Taps>,
    ) -> Result<(), ModelError> {
        let ctx = rec.ctx();
        let d = self.d;
        if t == 0 || mel.len() != t * self.n_mels {
            return Err(ModelError::input(format!(
                "mel has {} values, want ({t}, {}) with T > 0",
                mel.len(),
                self.n_mels
            )));
        }
        let t2 = enc_len(t);
        if t2 > self.positions {
            return Err(ModelError::input(format!(
                "{t} mel frames give {t2} encoder frames, more than the {} positions",
                self.positions
            )));
        }
        if out.shape != [t2, d] {
            return Err(ModelError::input(format!(
                "encoder output is {:?}, want [{t2}, {d}]",
                out.shape
            )));
        }
        let t1 = t + pad_one as usize;
        let mut x = mel.to_vec();
        x.resize(t1 * self.n_mels, 0.0);
        let x = Tensor::from_f32(ctx, "enc.mel", &[t1, self.n_mels], &x);
        let c1 = Tensor::empty(ctx, "enc.conv1", &[t1, d]);
        let same = Conv1dSpec {
            stride: 1,
            pad_left: 1,
            pad_right: 1,
            dilation: 1,
        };
        ops::conv1d(rec, &x, &self.conv1, Some(&self.conv1_b), same, &c1)?;
        ops::unary(rec, Unary::Gelu, &c1, &c1)?;
        let h0 = Tensor::empty(ctx, "enc.h", &[t2, d]);
        let down = Conv1dSpec { stride: 2, ..same };
        // t1 = t + 1 (t odd) gives the same t2 frames; the last reads conv1 at frame t
        ops::conv1d(rec, &c1, &self.conv2, Some(&self.conv2_b), down, &h0)?;
        ops::unary(rec, Unary::Gelu, &h0, &h0)?;
        // spec §3 step 3: the checkpoint's table (bf16-rounded in the reference), rows [0, T2)
        let pos = Tensor::from_f32(ctx, "enc.pos", &[t2, d], &self.pos[..t2 * d]);
        let h_emb = Tensor::empty(ctx, "enc.embed", &[t2, d]);
        ops::binary(rec, Binary::Add, &h0, &pos, &h_emb)?;
        if let Some(tp) = taps.as_deref_mut() {
            tp.push(("encoder.conv".into(), h0));
            tp.push(("encoder.embed".into(), view(&h_emb, &[t2, d])?));
        }

        let hd = d / self.heads;
        let scale = 1.0 / (hd as f32).sqrt();
        let a = Tensor::empty(ctx, "enc.a", &[t2, d]);
        let att = Tensor::empty(ctx, "enc.att", &[t2, d]);
        let h1 = Tensor::empty(ctx, "enc.h1", &[t2, d]);
        let mid = Tensor::empty(ctx, "enc.mid", &[t2, self.ffn]);
        let h3 = [t2, self.heads, hd];
        // q/k/v buffers, made at the first layer (every layer stacks q/k/v, or none does)
        let mut fused: Option<Tensor> = None;
        let mut split: Option<[Tensor; 3]> = None;
        let mut h = h_emb;
        for (i, l) in self.layers.iter().enumerate() {
            ops::layernorm(rec, &h, &l.ln1.0, &l.ln1.1, LN_EPS, &a)?;
            let o3 = view(&att, &h3)?;
            let cu = [0, t2 as u32];
            match &l.qkv {
                // one product over [Wq; Wk; Wv], attention reading the fused rows
                Qkv::Fused(p) => {
                    let qkv =
                        fused.get_or_insert_with(|| Tensor::empty(ctx, "enc.qkv", &[t2, 3 * d]));
                    p.fwd(rec, &a, qkv, Activation::None, None)?;
                    ops::attn_varlen_qkv(rec, qkv, self.heads, &cu, scale, &o3)?;
                }
                Qkv::Split(p) => {
                    let [lq, lk, lv] = &**p;
                    let [q, k, v] = split.get_or_insert_with(|| {
                        ["enc.q", "enc.k", "enc.v"].map(|n| Tensor::empty(ctx, n, &[t2, d]))
                    });
                    for (l, y) in [(lq, &*q), (lk, &*k), (lv, &*v)] {
                        l.fwd(rec, &a, y, Activation::None, None)?;
                    }
                    let (q3, k3, v3) = (view(q, &h3)?, view(k, &h3)?, view(v, &h3)?);
                    ops::attn_varlen(rec, &q3, &k3, &v3, &cu, scale, &o3)?;
                }
            }
            ops::gemv(
                rec,
                &l.o,
                &att,
                &h1,
                Epilogue {
                    bias: Some(&l.o_b),
                    residual: Some(&h),
                    ..Default::default()
                },
            )?;
            ops::layernorm(rec, &h1, &l.ln2.0, &l.ln2.1, LN_EPS, &a)?;
            ops::gemv(
                rec,
                &l.fc1,
                &a,
                &mid,
                Epilogue {
                    bias: Some(&l.fc1_b),
                    act: Activation::Gelu,
                    ..Default::default()
                },
            )?;
            // with taps every layer output is its own tensor; otherwise h is overwritten
            let next = if taps.is_some() {
                Tensor::empty(ctx, "enc.layer_out", &[t2, d])
            } else {
                view(&h, &[t2, d])?
            };
            ops::gemv(
                rec,
                &l.fc2,
                &mid,
                &next,
                Epilogue {
                    bias: Some(&l.fc2_b),
                    residual: Some(&h1),
                    ..Default::default()
                },
            )?;
            if let Some(tp) = taps.as_deref_mut() {
                tp.push((format!("encoder.layers.{i}"), view(&next, &[t2, d])?));
            }
            // let the GPU start on the first layers while the rest are recorded (early: the
            // GPU idles until the first submit)
            if i == 1 || i % 8 == 7 {
                rec.flush()?;
            }
            h = next;
        }
        ops::layernorm(rec, &h, &self.ln.0, &self.ln.1, LN_EPS, out)?;
        Ok(())
    }
}

fn view(t: &Tensor, shape: &[usize]) -> Result<Tensor, ModelError> {
    t.view(shape)
        .ok_or_else(|| ModelError::input(format!("cannot view {:?} as {shape:?}", t.shape)))
}
