//! Building blocks shared by the audio-out stages: a Linear through `ops::gemv`, LayerNorm /
//! RMSNorm, and the pre-norm Whisper-style transformer layer (spec §3 step 4, causal in §7 and
//! §8.1).

use crate::gpu::{GpuContext, Recorder};
use crate::model::{ModelError, Weights};
use crate::ops::{self, Activation, Epilogue, OpError};
use crate::tensor::{Matrix, Tensor};

/// `nn.Linear` (`{p}.weight` (M, K), optional `{p}.bias`).
pub(crate) struct Linear {
    pub w: Matrix,
    pub b: Option<Tensor>,
}

impl Linear {
    pub fn load(w: &Weights, ctx: &GpuContext, p: &str, bias: bool) -> Result<Self, ModelError> {
        Ok(Linear {
            w: w.matrix(ctx, &format!("{p}.weight"))?,
            b: if bias {
                Some(w.tensor(ctx, &format!("{p}.bias"))?)
            } else {
                None
            },
        })
    }

    pub fn out_dim(&self) -> usize {
        self.w.rows()
    }

    /// `y = act(x·Wᵀ + b) + residual`.
    pub fn fwd(
        &self,
        rec: &mut Recorder,
        x: &Tensor,
        y: &Tensor,
        act: Activation,
        residual: Option<&Tensor>,
    ) -> Result<(), OpError> {
        ops::gemv(
            rec,
            &self.w,
            x,
            y,
            Epilogue {
                bias: self.b.as_ref(),
                residual,
                act,
                norm: None,
                norm_out: None,
                prequantised: None,
                rope: None,
                layernorm: None,
                xq_out: None,
                xq_out_norm: None,
                deferred_norm: None,
                residual_norm: None,
                ln_in: None,
            },
        )
    }

    /// `(y, norm(y))` for `y = x·Wᵀ + b + residual`: a LayerNorm goes into the product's
    /// split-K reduce where it runs one (`Epilogue::layernorm`), else after it.
    pub fn apply_norm(
        &self,
        rec: &mut Recorder,
        x: &Tensor,
        residual: Option<&Tensor>,
        norm: &Norm,
    ) -> Result<(Tensor, Tensor), OpError> {
        let rows = x.numel() / self.w.cols().max(1);
        let y = rec.scratch("linear.y", &[rows, self.out_dim()]);
        match norm {
            Norm::Layer { w, b, eps } => {
                let out = rec.scratch("norm.y", &y.shape);
                let epi = Epilogue {
                    bias: self.b.as_ref(),
                    residual,
                    layernorm: Some(ops::LnOut {
                        w,
                        b,
                        eps: *eps,
                        out: &out,
                    }),
                    ..Default::default()
                };
                ops::gemv(rec, &self.w, x, &y, epi)?;
                Ok((y, out))
            }
            Norm::Rms { .. } => {
                self.fwd(rec, x, &y, Activation::None, residual)?;
                let out = norm.apply(rec, &y)?;
                Ok((y, out))
            }
        }
    }

    /// `act(LayerNorm(x)·Wᵀ + b)` as a new (rows, M) tensor, the LayerNorm folded into the
    /// product where it can be ([`ops::ln_folds`]; no LayerNorm dispatch), else run first.
    /// `norm` must be a LayerNorm.
    pub fn apply_ln_in(
        &self,
        rec: &mut Recorder,
        x: &Tensor,
        norm: &Norm,
        act: Activation,
    ) -> Result<Tensor, OpError> {
        let Norm::Layer { w, b, eps } = norm else {
            return Err(ops_shape("a LayerNorm folded into a product", x));
        };
        let rows = x.numel() / self.w.cols().max(1);
        let y = rec.scratch("linear.y", &[rows, self.out_dim()]);
        let epi = Epilogue {
            bias: self.b.as_ref(),
            act,
            ln_in: Some(ops::LnIn { w, b, eps: *eps }),
            ..Default::default()
        };
        ops::gemv(rec, &self.w, x, &y, epi)?;
        Ok(y)
    }

    /// A new (rows, M) tensor holding `act(x·Wᵀ + b) + residual`.
    pub fn apply(
        &self,
        rec: &mut Recorder,
        x: &Tensor,
        act: Activation,
        residual: Option<&Tensor>,
    ) -> Result<Tensor, OpError> {
        let rows = x.numel() / self.w.cols().max(1);
        let y = rec.scratch("linear.y", &[rows, self.out_dim()]);
        self.fwd(rec, x, &y, act, residual)?;
        Ok(y)
    }
}

/// LayerNorm (weight + bias) or RMSNorm (weight only) over the last dimension.
pub(crate) enum Norm {
    Layer {
        w: wgpu::Buffer,
        b: wgpu::Buffer,
        eps: f32,
    },
    Rms {
        w: wgpu::Buffer,
        eps: f32,
    },
}

impl Norm {
    pub fn layer(w: &Weights, ctx: &GpuContext, p: &str, eps: f32) -> Result<Self, ModelError> {
        Ok(Norm::Layer {
            w: w.f32_buffer(ctx, &format!("{p}.weight"))?,
            b: w.f32_buffer(ctx, &format!("{p}.bias"))?,
            eps,
        })
    }

    pub fn rms(w: &Weights, ctx: &GpuContext, p: &str, eps: f32) -> Result<Self, ModelError> {
        Ok(Norm::Rms {
            w: w.f32_buffer(ctx, &format!("{p}.weight"))?,
            eps,
        })
    }

    pub fn fwd(&self, rec: &mut Recorder, x: &Tensor, y: &Tensor) -> Result<(), OpError> {
        match self {
            Norm::Layer { w, b, eps } => ops::layernorm(rec, x, w, b, *eps, y),
            Norm::Rms { w, eps } => ops::rmsnorm(rec, x, w, *eps, y),
        }
    }

    pub fn apply(&self, rec: &mut Recorder, x: &Tensor) -> Result<Tensor, OpError> {
        let y = rec.scratch("norm.y", &x.shape);
        self.fwd(rec, x, &y)?;
        Ok(y)
    }
}

/// `OmniWhisperTransformerLayer` (spec §3 step 4): pre-norm self-attention (q/v/out biased, k
/// not) and a GELU MLP, both residual. `chunk = 1` is plain causal attention. The flow
/// estimator's diffusers `BasicTransformerBlock` is the same computation under other names
/// ([`WhisperLayer::from_parts`]).
pub(crate) struct WhisperLayer {
    ln1: Norm,
    qkv: Qkv,
    o: Linear,
    ln2: Norm,
    fc1: Linear,
    fc2: Linear,
    heads: usize,
}

impl WhisperLayer {
    /// `rms`: the Pre-Net's RMSNorm variant (eps 1e-6, weight only); else LayerNorm eps 1e-5.
    pub fn load(
        w: &Weights,
        ctx: &GpuContext,
        p: &str,
        heads: usize,
        rms: bool,
    ) -> Result<Self, ModelError> {
        let norm = |n: &str| {
            let name = format!("{p}.{n}");
            if rms {
                Norm::rms(w, ctx, &name, 1e-6)
            } else {
                Norm::layer(w, ctx, &name, 1e-5)
            }
        };
        let a = format!("{p}.self_attn");
        Self::from_parts(
            ctx,
            p,
            [norm("self_attn_layer_norm")?, norm("final_layer_norm")?],
            [
                Linear::load(w, ctx, &format!("{a}.q_proj"), true)?,
                Linear::load(w, ctx, &format!("{a}.k_proj"), false)?,
                Linear::load(w, ctx, &format!("{a}.v_proj"), true)?,
                Linear::load(w, ctx, &format!("{a}.out_proj"), true)?,
            ],
            [
                Linear::load(w, ctx, &format!("{p}.fc1"), true)?,
                Linear::load(w, ctx, &format!("{p}.fc2"), true)?,
            ],
            heads,
        )
    }

    /// From loaded parts: norms `[attention, MLP]`, projections `[q, k, v, out]`, MLP
    /// `[up (GELU), down]`; `p` names the layer in errors.
    pub fn from_parts(
        ctx: &GpuContext,
        p: &str,
        [ln1, ln2]: [Norm; 2],
        [q, k, v, o]: [Linear; 4],
        [fc1, fc2]: [Linear; 2],
        heads: usize,
    ) -> Result<Self, ModelError> {
        let d = q.out_dim();
        if heads == 0 || !d.is_multiple_of(heads) {
            return Err(ModelError::input(format!(
                "{p}: {heads} heads do not divide width {d}"
            )));
        }
        if k.out_dim() != d || v.out_dim() != d {
            return Err(ModelError::input(format!(
                "{p}: q, k, v widths {d}, {}, {} differ",
                k.out_dim(),
                v.out_dim()
            )));
        }
        Ok(WhisperLayer {
            ln1,
            qkv: Qkv::fuse(ctx, q, k, v)?,
            o,
            ln2,
            fc1,
            fc2,
            heads,
        })
    }

    /// `h (T, d)` → new `(T, d)`.
    pub fn forward(&self, rec: &mut Recorder, h: &Tensor, chunk: usize) -> Result<Tensor, OpError> {
        self.forward_batch(rec, h, 1, chunk)
    }

    /// `h (B·T, d)`: `batch` sequences packed one after another, attending each within itself.
    pub fn forward_batch(
        &self,
        rec: &mut Recorder,
        h: &Tensor,
        batch: usize,
        chunk: usize,
    ) -> Result<Tensor, OpError> {
        let [t, _] = h.shape[..] else {
            return Err(ops_shape("whisper layer", h));
        };
        // the attention width (the flow U-Net's blocks attend wider than their channels)
        let d = self.qkv.width();
        let hd = d / self.heads;
        let ctx = rec.ctx();
        // LayerNorms folded into the products after them where they can be (the U-Net at
        // 2–5 s: ops::ln_folds), else dispatches of their own (or the split-K reduce's)
        let fold1 = matches!(
            (&self.qkv, &self.ln1),
            (Qkv::Fused(l), Norm::Layer { .. }) if ops::ln_folds(ctx, &l.w, t)
        );
        let fold2 = matches!(self.ln2, Norm::Layer { .. }) && ops::ln_folds(ctx, &self.fc1.w, t);
        let a = if fold1 {
            None
        } else {
            Some(self.ln1.apply(rec, h)?)
        };
        let att = rec.scratch("whisper.att", &[t, d]);
        let att3 = att
            .view(&[t, self.heads, hd])
            .ok_or_else(|| ops_shape("view", &att))?;
        let scale = 1.0 / (hd as f32).sqrt();
        match &self.qkv {
            Qkv::Fused(l) => {
                let qkv = match &a {
                    Some(a) => l.apply(rec, a, Activation::None, None)?,
                    None => l.apply_ln_in(rec, h, &self.ln1, Activation::None)?,
                };
                ops::attn_chunk_causal_qkv(rec, &qkv, self.heads, batch, chunk, scale, &att3)?;
            }
            Qkv::Split(p) => {
                let a = match a {
                    Some(a) => a,
                    None => self.ln1.apply(rec, h)?,
                };
                let [lq, lk, lv] = &**p;
                let q = lq.apply(rec, &a, Activation::None, None)?;
                let k = lk.apply(rec, &a, Activation::None, None)?;
                let v = lv.apply(rec, &a, Activation::None, None)?;
                let v3 = |x: &Tensor| {
                    x.view(&[t, self.heads, hd])
                        .ok_or_else(|| ops_shape("view", x))
                };
                ops::attn_chunk_causal_batch(
                    rec,
                    &v3(&q)?,
                    &v3(&k)?,
                    &v3(&v)?,
                    batch,
                    chunk,
                    scale,
                    &att3,
                )?;
            }
        }
        let (h2, g) = if fold2 {
            // o_proj + residual, then fc1 on LayerNorm2 of it (folded into fc1)
            let h2 = self.o.apply(rec, &att, Activation::None, Some(h))?;
            let g = self
                .fc1
                .apply_ln_in(rec, &h2, &self.ln2, Activation::Gelu)?;
            (h2, g)
        } else {
            // o_proj + residual, and LayerNorm2 in the product's reduce pass where it has one
            let (h2, f) = self.o.apply_norm(rec, &att, Some(h), &self.ln2)?;
            let g = self.fc1.apply(rec, &f, Activation::Gelu, None)?;
            (h2, g)
        };
        self.fc2.apply(rec, &g, Activation::None, Some(&h2))
    }
}

/// The q, k, v projections: one product over the stacked `[Wq; Wk; Wv]` (biases `[bq, 0 or
/// bk, bv]`) where the format allows stacking rows, else three.
pub(crate) enum Qkv {
    Fused(Linear),
    Split(Box<[Linear; 3]>),
}

impl Qkv {
    pub(crate) fn fuse(
        ctx: &GpuContext,
        q: Linear,
        k: Linear,
        v: Linear,
    ) -> Result<Qkv, ModelError> {
        let d = q.out_dim();
        let sz = ctx.act().size() as u64;
        // biases are placed by buffer copies, which need word offsets
        if !(d as u64 * sz).is_multiple_of(4) {
            return Ok(Qkv::Split(Box::new([q, k, v])));
        }
        let mut rec = Recorder::new(ctx, "qkv.fuse");
        let Some(w) = ops::concat_rows(&mut rec, &[&q.w, &k.w, &v.w])? else {
            return Ok(Qkv::Split(Box::new([q, k, v])));
        };
        let b = if q.b.is_none() && k.b.is_none() && v.b.is_none() {
            None
        } else {
            let b = Tensor::empty(ctx, "qkv.bias", &[3 * d]);
            let row = d as u64 * sz;
            let enc = rec.encoder()?;
            enc.clear_buffer(&b.buf, 0, None);
            for (i, part) in [&q.b, &k.b, &v.b].into_iter().enumerate() {
                if let Some(pb) = part {
                    enc.copy_buffer_to_buffer(&pb.buf, 0, &b.buf, i as u64 * row, row);
                }
            }
            Some(b)
        };
        rec.submit()?;
        Ok(Qkv::Fused(Linear { w, b }))
    }

    /// The attention width (q's output dimension).
    fn width(&self) -> usize {
        match self {
            Qkv::Fused(l) => l.out_dim() / 3,
            Qkv::Split(p) => p[0].out_dim(),
        }
    }
}

pub(crate) fn ops_shape(op: &'static str, x: &Tensor) -> OpError {
    crate::ops::shape_err(op, format!("unexpected shape {:?}", x.shape))
}
