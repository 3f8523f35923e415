//! VQ bridge + residual VQ (spec §4, `OmniAudioVQBridgeTokenizer` in [AUD] and
//! `vector_quantize.py` [VQ]): 4 encoder frames → one 12.5 Hz frame through a gated conv,
//! LayerNorm, then 8-level RVQ to codes `(frames, 8)`; and the inverse lookup for the decoder.
//!
//! The two k=4, stride-4 convolutions (gate_proj, up_proj) are products on 4 concatenated
//! frames: with `x4 (T4, 4·d)` = the encoder output viewed 4 frames per row, `g = Wg' x4`
//! where `Wg'[co, p·d + ci] = gate_proj.weight[co, ci, p]`. Gate and up rows are interleaved
//! into one matrix so a single `gemv` with the SwiGLU epilogue gives `SiLU(g) ⊙ u`.

use crate::gpu::Recorder;
use crate::model::{ModelError, Weights};
use crate::ops::{self, Activation, Codebooks, Epilogue};
use crate::tensor::{Matrix, Tensor};

const LN_EPS: f32 = 1e-5;

pub struct Bridge {
    /// Encoder width d.
    pub d: usize,
    /// avg_pooler P (4).
    pub pool: usize,
    gate_up: Matrix,                  // (2·P·d, P·d), rows (gate_i, up_i) interleaved
    down: Matrix,                     // (P·d, P·d), no bias
    ln: (wgpu::Buffer, wgpu::Buffer), // layer_norm (P·d) f32
    pub codebooks: std::rc::Rc<Codebooks>, // 8 × (N_i, P·d) f32, shared with the decoder
    proj: Option<(Matrix, Tensor)>,   // proj_decoder (d, P·d) + bias (d), decode only
}

impl Bridge {
    pub const PREFIX: &'static str = "audio_tokenizer.audio_bridge_model";

    pub fn load(ctx: &crate::gpu::GpuContext, w: &Weights) -> Result<Self, ModelError> {
        let a = &w.config.audio;
        let (d, pool) = (a.d_model, a.avg_pooler);
        let big = d * pool;
        let p = Self::PREFIX;
        let g = w.raw(ctx, &format!("{p}.gate_proj.weight"))?;
        let u = w.raw(ctx, &format!("{p}.up_proj.weight"))?;
        for (n, t) in [("gate_proj", &g), ("up_proj", &u)] {
            if t.shape != [big, d, pool] {
                return Err(ModelError::input(format!(
                    "{p}.{n}.weight is {:?}, want [{big}, {d}, {pool}]",
                    t.shape
                )));
            }
        }
        // gate and up rows interleaved (2co + which) so one product gives both; column
        // k·d + ci multiplies input frame k, channel ci. Laid out on the GPU (f16), then
        // quantised there for q8/q4.
        let mut rec = Recorder::new(ctx, "bridge.load");
        let stride = if w.format == crate::tensor::WeightFormat::F16 {
            big.div_ceil(8) * 8
        } else {
            big
        };
        let gu = ctx.storage("bridge.gate_up", (2 * big * stride * 2) as u64);
        for (which, t) in [(0, &g), (1, &u)] {
            let s = ops::Strided {
                x: big,
                y: pool,
                z: d,
                zvalid: d,
                sbase: 0,
                sx: d * pool,
                sy: 1,
                sz: pool,
                dbase: which * stride,
                dx: 2 * stride,
                dy: d,
            };
            ops::relayout(
                &mut rec,
                &t.buf,
                t.dtype,
                &gu,
                crate::tensor::RawDType::F16,
                &s,
            )?;
        }
        let gate_up = match w.format {
            crate::tensor::WeightFormat::F16 => Matrix::F16 {
                buf: gu,
                rows: 2 * big,
                cols: big,
                stride,
            },
            f => ops::quantize(&mut rec, &gu, 2 * big, big, f)?,
        };
        rec.submit()?;
        let codebooks = w.rvq_codebooks(ctx)?;
        let proj = match (
            w.matrix(ctx, &format!("{p}.proj_decoder.weight")),
            w.tensor(ctx, &format!("{p}.proj_decoder.bias")),
        ) {
            (Ok(m), Ok(b)) => Some((m, b)),
            _ => None,
        };
        Ok(Bridge {
            d,
            pool,
            gate_up,
            down: w.matrix(ctx, &format!("{p}.down_proj.weight"))?,
            ln: (
                w.f32_buffer(ctx, &format!("{p}.layer_norm.weight"))?,
                w.f32_buffer(ctx, &format!("{p}.layer_norm.bias"))?,
            ),
            codebooks,
            proj,
        })
    }

    /// Width of a bridge frame (P·d).
    pub fn dim(&self) -> usize {
        self.d * self.pool
    }

    /// Records gated conv + LayerNorm on `x4 (T4, P·d)` (the encoder output, zero-padded to
    /// 4·T4 frames and viewed 4 frames per row) → `r (T4, P·d)`.
    pub fn record(
        &self,
        rec: &mut Recorder,
        x4: &Tensor,
        r: &Tensor,
        taps: Option<&mut super::Taps>,
    ) -> Result<(), ModelError> {
        let ctx = rec.ctx();
        let big = self.dim();
        let t4 = x4.shape.first().copied().unwrap_or(0);
        if x4.shape != [t4, big] || r.shape != [t4, big] || t4 == 0 {
            return Err(ModelError::input(format!(
                "bridge input {:?} / output {:?}, want (T4, {big})",
                x4.shape, r.shape
            )));
        }
        let gu = Tensor::empty(ctx, "bridge.gu", &[t4, big]);
        let swiglu = Epilogue {
            act: Activation::SwiGlu,
            ..Default::default()
        };
        ops::gemv(rec, &self.gate_up, x4, &gu, swiglu)?;
        let c = Tensor::empty(ctx, "bridge.c", &[t4, big]);
        ops::gemv(
            rec,
            &self.down,
            &gu,
            &c,
            Epilogue {
                residual: Some(x4),
                ..Default::default()
            },
        )?;
        ops::layernorm(rec, &c, &self.ln.0, &self.ln.1, LN_EPS, r)?;
        if let Some(tp) = taps {
            tp.push(("bridge.gated".into(), gu));
            tp.push(("bridge.pre_norm".into(), c));
        }
        Ok(())
    }

    /// Inverse lookup for the audio decoder: codes `(N, 8)` → `Σ_{i=7..0} C_i[code_i]`
    /// `(N, P·d)` f32 (a storage buffer). Codes are checked on the CPU first.
    pub fn lookup(&self, rec: &mut Recorder, codes: &[u32]) -> Result<wgpu::Buffer, ModelError> {
        let ctx = rec.ctx();
        self.codebooks.check_codes(codes)?;
        let n = codes.len() / ops::RVQ_LEVELS;
        if n == 0 {
            return Err(ModelError::input("no code frames to look up"));
        }
        let cb = ctx.upload("rvq.codes", bytemuck::cast_slice(codes));
        let out = ctx.storage("rvq.sum", (n * self.dim() * 4) as u64);
        let flags = ctx.upload("rvq.flags", &[0u8; 4]);
        ops::rvq_decode(rec, &cb, n, &self.codebooks, &out, &flags)?;
        Ok(out)
    }

    /// `proj_decoder` of the summed codewords (activation dtype) → `(N, d)`.
    pub fn project(&self, rec: &mut Recorder, e: &Tensor, z: &Tensor) -> Result<(), ModelError> {
        let (m, b) = self
            .proj
            .as_ref()
            .ok_or_else(|| ModelError::input("checkpoint has no proj_decoder"))?;
        ops::gemv(
            rec,
            m,
            e,
            z,
            Epilogue {
                bias: Some(b),
                ..Default::default()
            },
        )?;
        Ok(())
    }
}
