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
    pub codebooks: Codebooks,         // 8 × (N_i, P·d) f32
    proj: Option<(Matrix, Tensor)>,   // proj_decoder (d, P·d) + bias (d), decode only
}

impl Bridge {
    pub const PREFIX: &'static str = "audio_tokenizer.audio_bridge_model";

    pub fn load(ctx: &crate::gpu::GpuContext, w: &Weights) -> Result<Self, ModelError> {
        let a = &w.config.audio;
        let (d, pool) = (a.d_model, a.avg_pooler);
        let big = d * pool;
        let p = Self::PREFIX;
        let g = w.host(&format!("{p}.gate_proj.weight"))?;
        let u = w.host(&format!("{p}.up_proj.weight"))?;
        for (n, t) in [("gate_proj", &g), ("up_proj", &u)] {
            if t.shape != [big, d, pool] {
                return Err(ModelError::input(format!(
                    "{p}.{n}.weight is {:?}, want [{big}, {d}, {pool}]",
                    t.shape
                )));
            }
        }
        let mut gu = vec![0f32; 2 * big * big];
        for co in 0..big {
            for (which, src) in [(0, &g.data), (1, &u.data)] {
                let row = &mut gu[(2 * co + which) * big..(2 * co + which + 1) * big];
                for ci in 0..d {
                    for k in 0..pool {
                        row[k * d + ci] = src[(co * d + ci) * pool + k];
                    }
                }
            }
        }
        let gate_up = Matrix::from_f32(ctx, "bridge.gate_up", 2 * big, big, &gu, w.format);
        let sizes = &a.vq_config.codebook_sizes;
        let mut data = Vec::new();
        for (i, &n) in sizes.iter().enumerate() {
            let c = w.host(&format!("{p}.vq_list.{i}.codebook.embed"))?;
            if c.shape != [n, big] {
                return Err(ModelError::input(format!(
                    "{p}.vq_list.{i}.codebook.embed is {:?}, want [{n}, {big}]",
                    c.shape
                )));
            }
            data.extend_from_slice(&c.data);
        }
        let codebooks = Codebooks::from_f32(ctx, "rvq.codebooks", sizes, big, &data)?;
        let mut rec = Recorder::new(ctx, "rvq_norms");
        ops::rvq_norms(&mut rec, &codebooks)?;
        rec.submit()?;
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
