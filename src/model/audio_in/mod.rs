//! Audio in (spec §2–§4): 16 kHz PCM → log-mel (CPU, [`crate::audio`]) → Whisper-style encoder
//! → gated-conv bridge → 8-level RVQ codes `(frames, 8)` at 12.5 Hz.
//!
//! Audio longer than one chunk (30 s) is split as the reference does (§2 step 2) and every
//! chunk is encoded on its own; the reference batches the chunks zero-padded, which changes
//! the last encoder frame of an odd-length chunk shorter than the longest (§3 step 0): we
//! reproduce that by giving conv1 one zero mel column more for such a chunk.

pub mod bridge;
pub mod encoder;

use crate::audio::{self, mel::Mel, MelConfig};
use crate::gpu::{GpuContext, Recorder};
use crate::model::{ModelError, Weights};
use crate::ops;
use crate::tensor::Tensor;

pub use bridge::Bridge;
pub use encoder::{enc_len, AudioEncoder, Taps};

/// Lengths of one encoded chunk (spec §2 step 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkLens {
    /// Mel frames T.
    pub mel: usize,
    /// Encoder frames `(T − 1)//2 + 1`.
    pub enc: usize,
    /// Bridge frames `enc // 4` (codes emitted).
    pub bridge: usize,
}

impl ChunkLens {
    pub fn new(mel: usize, pool: usize) -> Self {
        let enc = enc_len(mel);
        ChunkLens {
            mel,
            enc,
            bridge: enc / pool.max(1),
        }
    }
}

/// Codes of one utterance.
#[derive(Clone, Debug, PartialEq)]
pub struct Encoded {
    /// `(frames, 8)` row-major.
    pub codes: Vec<i32>,
    pub frames: usize,
    /// Per chunk that produced codes.
    pub chunks: Vec<ChunkLens>,
}

impl Encoded {
    /// The codes as frames of 8 (the LLM's audio inputs).
    pub fn frames(&self) -> Vec<[u32; ops::RVQ_LEVELS]> {
        self.codes
            .chunks(ops::RVQ_LEVELS)
            .map(|c| std::array::from_fn(|i| c.get(i).copied().unwrap_or(0).max(0) as u32))
            .collect()
    }
}

/// A named host copy of an intermediate (for `bca trace` and tests).
#[derive(Clone, Debug)]
pub struct TraceTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// The audio tokenizer's input side.
pub struct AudioIn {
    pub mel: MelConfig,
    pub encoder: AudioEncoder,
    pub bridge: Bridge,
}

impl AudioIn {
    pub fn load(ctx: &GpuContext, w: &Weights) -> Result<Self, ModelError> {
        Ok(AudioIn {
            mel: MelConfig::from_audio(&w.config.audio),
            encoder: AudioEncoder::load(ctx, w)?,
            bridge: Bridge::load(ctx, w)?,
        })
    }

    /// Log-mel of every chunk of a 16 kHz signal.
    pub fn mels(&self, pcm16k: &[f32]) -> Result<Vec<Mel>, ModelError> {
        if pcm16k.is_empty() {
            return Err(ModelError::input(audio::AudioError::Empty.to_string()));
        }
        audio::split_chunks(pcm16k, self.mel.chunk_samples, self.mel.n_fft)
            .into_iter()
            .map(|c| audio::log_mel(self.mel, c).map_err(|e| ModelError::input(e.to_string())))
            .collect()
    }

    /// PCM at 16 kHz → codes.
    pub async fn encode_pcm(
        &self,
        ctx: &GpuContext,
        pcm16k: &[f32],
    ) -> Result<Encoded, ModelError> {
        let mels = self.mels(pcm16k)?;
        self.encode_mels(ctx, &mels, None).await
    }

    /// Mel chunks → codes; with `trace`, every tap point is read back into it.
    pub async fn encode_mels(
        &self,
        ctx: &GpuContext,
        mels: &[Mel],
        mut trace: Option<&mut Vec<TraceTensor>>,
    ) -> Result<Encoded, ModelError> {
        let t_max = mels.iter().map(|m| m.frames).max().unwrap_or(0);
        let mut out = Encoded {
            codes: Vec::new(),
            frames: 0,
            chunks: Vec::new(),
        };
        for (ci, mel) in mels.iter().enumerate() {
            if mel.n_mels != self.encoder.n_mels {
                return Err(ModelError::input(format!(
                    "mel has {} bins, the encoder wants {}",
                    mel.n_mels, self.encoder.n_mels
                )));
            }
            let lens = ChunkLens::new(mel.frames, self.bridge.pool);
            if lens.bridge == 0 {
                continue; // the reference skips such a chunk (§2 step 4)
            }
            let prefix = if mels.len() > 1 {
                format!("chunk{ci}.")
            } else {
                String::new()
            };
            let pad_one = mel.frames % 2 == 1 && mel.frames < t_max;
            let codes = self
                .encode_chunk(ctx, mel, lens, pad_one, &prefix, trace.as_deref_mut())
                .await?;
            out.codes.extend(codes.iter().map(|&c| c as i32));
            out.frames += lens.bridge;
            out.chunks.push(lens);
        }
        if out.frames == 0 {
            // bridge_len ≥ 1 ⇔ enc ≥ P ⇔ T ≥ 2P − 1 ⇔ W ≥ (2P − 2)·hop samples
            let min_ms =
                (2 * self.bridge.pool - 2) * self.mel.hop * 1000 / self.mel.sample_rate.max(1);
            return Err(ModelError::input(format!(
                "the audio is too short to give one 80 ms frame (at least {min_ms} ms needed)"
            )));
        }
        Ok(out)
    }

    async fn encode_chunk(
        &self,
        ctx: &GpuContext,
        mel: &Mel,
        lens: ChunkLens,
        pad_one: bool,
        prefix: &str,
        trace: Option<&mut Vec<TraceTensor>>,
    ) -> Result<Vec<u32>, ModelError> {
        let d = self.encoder.d;
        let big = self.bridge.dim();
        let pool = self.bridge.pool;
        let t4 = lens.enc.div_ceil(pool);
        // encoder output, zero-padded to 4·T4 frames: the bridge reads it as (T4, P·d)
        // (new buffers are zero-filled: WebGPU guarantees it)
        let enc_buf = Tensor::empty(ctx, "enc.out", &[t4 * pool, d]);
        let enc = Tensor {
            buf: enc_buf.buf.clone(),
            shape: vec![lens.enc, d],
            dtype: enc_buf.dtype,
        };
        let x4 = Tensor {
            buf: enc_buf.buf.clone(),
            shape: vec![t4, big],
            dtype: enc_buf.dtype,
        };
        let r = Tensor::empty(ctx, "bridge.out", &[t4, big]);
        let mut taps: Taps = Vec::new();
        let want_taps = trace.is_some();
        let mut rec = Recorder::new(ctx, "audio_in");
        self.encoder.record(
            &mut rec,
            &mel.time_major(),
            mel.frames,
            pad_one,
            &enc,
            want_taps.then_some(&mut taps),
        )?;
        self.bridge
            .record(&mut rec, &x4, &r, want_taps.then_some(&mut taps))?;

        // RVQ runs in f32 on the first `bridge` frames (trailing < 4 encoder frames dropped);
        // f16 activations are widened on the GPU, in the same submission
        let n = lens.bridge;
        let x32 = match ctx.act() {
            crate::gpu::ActDType::F32 => r.buf.clone(),
            crate::gpu::ActDType::F16 => {
                let x32 = ctx.storage("rvq.x", (n * big * 4) as u64);
                ops::relayout(
                    &mut rec,
                    &r.buf,
                    crate::tensor::RawDType::F16,
                    &x32,
                    crate::tensor::RawDType::F32,
                    &ops::Strided::flat(n * big, n * big),
                )?;
                x32
            }
        };
        let codes = ctx.storage("rvq.codes", (n * ops::RVQ_LEVELS * 4) as u64);
        let res = want_taps.then(|| ctx.storage("rvq.res", (ops::RVQ_LEVELS * n * big * 4) as u64));
        ops::rvq_encode(
            &mut rec,
            &x32,
            n,
            &self.bridge.codebooks,
            &codes,
            res.as_ref(),
        )?;
        rec.submit()?;
        let codes: Vec<u32> = ctx
            .read_f32(&codes, n * ops::RVQ_LEVELS)
            .await?
            .into_iter()
            .map(f32::to_bits)
            .collect();

        if let Some(tr) = trace {
            let push =
                |tr: &mut Vec<TraceTensor>, name: &str, shape: Vec<usize>, data: Vec<f32>| {
                    tr.push(TraceTensor {
                        name: format!("{prefix}{name}"),
                        shape,
                        data,
                    })
                };
            push(tr, "mel", vec![mel.n_mels, mel.frames], mel.data.clone());
            for (name, t) in &taps {
                let v = t.to_vec(ctx).await?;
                push(tr, name, t.shape.clone(), v);
            }
            push(tr, "encoder.out", vec![lens.enc, d], enc.to_vec(ctx).await?);
            let rv = ctx.read_act(&r.buf, n * big).await?;
            push(tr, "bridge.out", vec![n, big], rv);
            if let Some(res) = &res {
                let all = ctx.read_f32(res, ops::RVQ_LEVELS * n * big).await?;
                for (i, lv) in all.chunks(n * big).enumerate() {
                    push(tr, &format!("rvq.residual.{i}"), vec![n, big], lv.to_vec());
                }
            }
            for i in 0..ops::RVQ_LEVELS {
                let c = (0..n)
                    .map(|t| codes[t * ops::RVQ_LEVELS + i] as f32)
                    .collect();
                push(tr, &format!("rvq.codes.{i}"), vec![n], c);
            }
        }
        Ok(codes)
    }
}
