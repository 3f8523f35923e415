//! Audio out (spec §7–§9, §10.4, §11): one segment of codes (N, 8) → audio decoder (50 Hz
//! hidden states) → Pre-Net → flow matching (10 Euler steps, CFG) → 80-bin mel → HiFT →
//! 24 kHz PCM, and the 240-sample cross-fade that joins segments.

#[cfg(not(target_arch = "wasm32"))]
pub mod bench;
pub mod decoder;
pub mod flow;
pub mod hift;
pub(crate) mod layers;
pub mod stream;

pub use decoder::{AudioDecoder, Prenet};
pub use flow::{cfm_sample, CfmParams, Unet};
pub use hift::{Hift, SourceNoise};
pub use stream::{chunked_deviation, ChunkOpts, Deviation, StreamState, VocodeStream};

use crate::gpu::{GpuContext, Recorder};
use crate::model::{ModelError, Weights};
use crate::tensor::Tensor;
use crate::util::rng::Rng;

/// Output sample rate.
pub const SAMPLE_RATE: u32 = 24000;
/// Cross-fade inserted between segments: `int(24000 · 0.01)` samples (spec §10.4).
pub const CROSSFADE: usize = 240;

/// The random inputs of one segment: CFM start noise `(T, 80)` time-major and the HiFT source
/// noise. Tests inject the reference's; [`SegmentNoise::seeded`] makes them from one seed.
#[derive(Clone, Debug)]
pub struct SegmentNoise {
    pub cfm: Vec<f32>,
    pub source: SourceNoise,
}

impl SegmentNoise {
    pub fn seeded(
        seed: u64,
        mel_frames: usize,
        mel_bins: usize,
        samples: usize,
        harmonics: usize,
    ) -> Self {
        let mut g = NoiseStream::new(seed, mel_bins, harmonics);
        g.grow(mel_frames, samples);
        g.noise
    }
}

/// [`SegmentNoise::seeded`] drawn as a segment grows: the CFM noise time-major and the source
/// noise sample-major, each from its own sequential generator, so the noise of a prefix is the
/// prefix of the whole segment's noise (chunked streaming decodes prefixes and relies on it).
pub struct NoiseStream {
    cfm_rng: Rng,
    src_rng: Rng,
    bins: usize,
    /// Harmonics + 1 (source noise values per sample).
    h: usize,
    noise: SegmentNoise,
}

impl NoiseStream {
    pub fn new(seed: u64, mel_bins: usize, harmonics: usize) -> Self {
        let (source, src_rng) = SourceNoise::start(seed ^ 0x5EED_50C5, harmonics);
        NoiseStream {
            cfm_rng: Rng::new(seed),
            src_rng,
            bins: mel_bins,
            h: harmonics + 1,
            noise: SegmentNoise {
                cfm: Vec::new(),
                source,
            },
        }
    }

    /// Draws until there are at least `mel_frames` CFM rows and `samples` source samples.
    pub fn grow(&mut self, mel_frames: usize, samples: usize) {
        let (cfm, src) = (&mut self.noise.cfm, &mut self.noise.source.noise);
        if cfm.len() < mel_frames * self.bins {
            let more = mel_frames * self.bins - cfm.len();
            cfm.extend(self.cfm_rng.normal_vec(more, 1.0));
        }
        if src.len() < samples * self.h {
            let more = samples * self.h - src.len();
            src.extend(self.src_rng.normal_vec(more, 1.0));
        }
    }

    /// The noise of the first `mel_frames` frames / `samples` samples (a copy; drawn if needed).
    pub fn prefix(&mut self, mel_frames: usize, samples: usize) -> SegmentNoise {
        self.grow(mel_frames, samples);
        SegmentNoise {
            cfm: self.noise.cfm[..mel_frames * self.bins].to_vec(),
            source: SourceNoise {
                phases: self.noise.source.phases.clone(),
                noise: self.noise.source.noise[..samples * self.h].to_vec(),
            },
        }
    }
}

/// Intermediate results of one segment (for tests and `--trace`).
pub struct SegmentTrace {
    pub hidden: Vec<f32>,
    pub mu: Vec<f32>,
    pub mel: Vec<f32>,
    pub f0: Vec<f32>,
    pub pcm: Vec<f32>,
}

/// Every audio-out stage of one model.
pub struct Vocoder {
    pub decoder: AudioDecoder,
    pub prenet: Prenet,
    pub unet: Unet,
    pub hift: Hift,
    pub cfm: CfmParams,
}

impl Vocoder {
    pub fn load(w: &Weights, ctx: &GpuContext) -> Result<Self, ModelError> {
        let f = &w.config.flow;
        Ok(Vocoder {
            decoder: AudioDecoder::load(w, ctx)?,
            prenet: Prenet::load(w, ctx)?,
            unet: Unet::load(w, ctx)?,
            hift: Hift::load(w, ctx)?,
            cfm: CfmParams {
                steps: f.diffusion_steps.max(1),
                cfg_rate: f
                    .cfm_params
                    .as_ref()
                    .map(|c| c.inference_cfg_rate as f32)
                    .unwrap_or(0.7),
            },
        })
    }

    /// Mel frames for N code frames: 4N − 1 (spec §7 step 1).
    pub fn mel_frames(n: usize) -> usize {
        (4 * n).saturating_sub(1)
    }

    /// PCM samples of one segment of N frames: (4N − 1)·480.
    pub fn segment_samples(&self, n: usize) -> usize {
        Self::mel_frames(n) * self.hift.params.frame_samples
    }

    /// Seeded noise for a segment of `n` code frames.
    pub fn noise(&self, n: usize, seed: u64) -> SegmentNoise {
        let t = Self::mel_frames(n);
        SegmentNoise::seeded(
            seed,
            t,
            self.unet.mel,
            self.segment_samples(n),
            self.hift.params.harmonics,
        )
    }

    /// Seeded noise that grows with a segment ([`Vocoder::noise`]'s values, drawn on demand).
    pub fn noise_stream(&self, seed: u64) -> NoiseStream {
        NoiseStream::new(seed, self.unet.mel, self.hift.params.harmonics)
    }

    /// codes (N, 8) row-major → mel `(4N−1, 80)` on the GPU (decoder, Pre-Net, CFM).
    pub fn mel(
        &self,
        ctx: &GpuContext,
        codes: &[u32],
        cfm_noise: &[f32],
    ) -> Result<(Tensor, Tensor, Tensor), ModelError> {
        let n = self.decoder.check_codes(codes)?;
        let t = Self::mel_frames(n);
        if cfm_noise.len() != t * self.unet.mel {
            return Err(ModelError::input(format!(
                "flow noise has {} values, ({t}, {}) needed",
                cfm_noise.len(),
                self.unet.mel
            )));
        }
        let mut rec = Recorder::new(ctx, "audio_out.mel");
        let hidden = self.decoder.forward(&mut rec, codes)?;
        let mu = self.prenet.forward(&mut rec, &hidden)?;
        let z = Tensor::from_f32(ctx, "cfm.noise", &[t, self.unet.mel], cfm_noise);
        let mel = cfm_sample(&mut rec, &self.unet, &mu, &z, self.cfm)?;
        rec.submit()?;
        Ok((hidden, mu, mel))
    }

    /// One segment, every intermediate read back.
    pub async fn segment_traced(
        &self,
        ctx: &GpuContext,
        codes: &[u32],
        noise: &SegmentNoise,
    ) -> Result<SegmentTrace, ModelError> {
        let (hidden, mu, mel) = self.mel(ctx, codes, &noise.cfm)?;
        let f0 = self.hift.f0(ctx, &mel).await?;
        let pcm = self.hift.forward(ctx, &mel, &noise.source).await?;
        check_finite(&pcm)?;
        Ok(SegmentTrace {
            hidden: hidden.to_vec(ctx).await?,
            mu: mu.to_vec(ctx).await?,
            mel: mel.to_vec(ctx).await?,
            f0,
            pcm,
        })
    }

    /// One segment of codes (N, 8) → (4N−1)·480 samples at 24 kHz.
    pub async fn segment(
        &self,
        ctx: &GpuContext,
        codes: &[u32],
        noise: &SegmentNoise,
    ) -> Result<Vec<f32>, ModelError> {
        let (_, _, mel) = self.mel(ctx, codes, &noise.cfm)?;
        let pcm = self.hift.forward(ctx, &mel, &noise.source).await?;
        check_finite(&pcm)?;
        Ok(pcm)
    }
}

/// The NaN guard on the output.
pub fn check_finite(pcm: &[f32]) -> Result<(), ModelError> {
    match pcm.iter().position(|v| !v.is_finite()) {
        Some(i) => Err(ModelError::input(format!(
            "the vocoder produced a non-finite sample at {i} (of {}); the weights or the \
             activation precision overflowed (try --f32)",
            pcm.len()
        ))),
        None => Ok(()),
    }
}

/// Joins segments like the reference's `wave_concat` (spec §10.4): between two segments longer
/// than 240 samples a 240-sample linear cross-fade (`prev tail·(1 − n/239) + next head·n/239`)
/// is *inserted*, both segments kept whole.
pub fn stitch(segments: &[Vec<f32>]) -> Vec<f32> {
    let mut out: Vec<f32> = Vec::new();
    let mut prev: Option<&Vec<f32>> = None;
    for s in segments {
        if let Some(p) = prev {
            out.extend(crossfade(p, s));
        }
        out.extend_from_slice(s);
        prev = Some(s);
    }
    out
}

/// The inserted cross-fade between `prev` and `next` (empty if either is ≤ 240 samples).
pub fn crossfade(prev: &[f32], next: &[f32]) -> Vec<f32> {
    let n = CROSSFADE;
    if prev.len() <= n || next.len() <= n {
        return Vec::new();
    }
    fade(&prev[prev.len() - n..], &next[..n])
}

/// The linear fade from `from` to `to` (equal lengths ≥ 2): `from·(1 − i/(n−1)) + to·i/(n−1)`,
/// so the first sample is `from`'s and the last is `to`'s.
pub fn fade(from: &[f32], to: &[f32]) -> Vec<f32> {
    let n = from.len().min(to.len());
    let d = n.saturating_sub(1).max(1) as f32;
    (0..n)
        .map(|i| {
            let up = i as f32 / d;
            from[i] * (1.0 - up) + to[i] * up
        })
        .collect()
}
