//! `bca bench vocode`: the real-time factor of audio out (decoder + Pre-Net + flow matching
//! with 10 CFG steps + HiFT) with random weights at full size (spec §13 shapes) or tiny size.

use crate::gpu::{GpuContext, Recorder};
use crate::model::weights::{is_matrix, MatrixPart};
use crate::model::{HostTensor, ModelError, Weights};
use crate::tensor::{Matrix, WeightFormat};
use crate::util::rng::Rng;
use crate::weights::hift::HiftConfig;
use crate::weights::spec::{model_tensors, Role, Stage};
use crate::weights::OmniConfig;

use super::Vocoder;

/// A store with random weights for every audio-out tensor of `cfg` (full: the real config).
pub fn random_weights(
    ctx: &GpuContext,
    cfg: OmniConfig,
    hift: &HiftConfig,
    format: WeightFormat,
    seed: u64,
) -> Result<Weights, ModelError> {
    let w = Weights::empty(cfg.clone(), format);
    let mut rng = Rng::new(seed);
    let mut rec = Recorder::new(ctx, "bench.vocode.weights");
    let host = |name: String, shape: Vec<usize>, role: Role, rng: &mut Rng| {
        let n: usize = shape.iter().product();
        let fan_in = shape.iter().skip(1).product::<usize>().max(1) as f32;
        let data = match role {
            Role::Norm | Role::Alpha => (0..n).map(|_| 1.0 + 0.02 * rng.normal()).collect(),
            Role::Positional => crate::weights::tiny::sinusoids(shape[0], shape[1]),
            Role::Bias => rng.uniform_vec(n, -0.02, 0.02),
            _ => {
                let a = fan_in.sqrt().recip();
                rng.uniform_vec(n, -a, a)
            }
        };
        w.insert_host(&name, HostTensor { shape, data });
    };
    let mut mseed = seed as u32;
    for s in model_tensors(&cfg) {
        let bridge_dec = s.name.contains("audio_bridge_model.proj_decoder");
        let codebook = s.role == Role::Codebook;
        let audio_out = matches!(s.stage, Stage::Decoder | Stage::Prenet | Stage::Unet);
        if !(audio_out || bridge_dec || codebook) {
            continue;
        }
        if codebook {
            // full size, random f16 on the GPU (the raw tensor the loader would leave)
            let n: usize = s.shape.iter().product();
            let words = n.div_ceil(2);
            let buf = ctx.storage(&s.name, (words * 4) as u64);
            mseed = mseed.wrapping_add(1);
            let amp = (s.shape[1] as f32).sqrt().recip();
            let f = crate::ops::Fill::F16 {
                lo: (amp, 0.0),
                hi: (amp, 0.0),
            };
            crate::ops::fill(&mut rec, &buf, words, mseed, f)?;
            w.insert_raw(
                &s.name,
                crate::tensor::RawTensor {
                    buf,
                    shape: s.shape.clone(),
                    dtype: crate::tensor::RawDType::F16,
                },
            );
        } else if is_matrix(s.role) {
            mseed = mseed.wrapping_add(1);
            let m = Matrix::random(&mut rec, s.shape[0], s.shape[1], format, mseed)?;
            w.insert_matrix(
                &s.name,
                vec![MatrixPart {
                    row_start: 0,
                    matrix: m,
                }],
            );
        } else {
            host(s.name, s.shape, s.role, &mut rng);
        }
    }
    for s in hift.tensors() {
        match s.role {
            Role::WeightG => continue,
            _ => {
                let name = match s.name.strip_suffix(".weight_v") {
                    Some(b) => format!("hift.{b}.weight"),
                    None => format!("hift.{}", s.name),
                };
                host(name, s.shape, s.role, &mut rng);
            }
        }
    }
    rec.submit()?;
    Ok(w)
}

/// One measurement.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VocodeTiming {
    pub seconds: f64,
    pub frames: usize,
    pub mel_s: f64,
    /// Of `mel_s`: recording and submitting on the CPU (the rest is waiting for the GPU).
    pub mel_record_s: f64,
    pub hift_s: f64,
    /// Of `hift_s`, per stage: F0 net (GPU + read-back), source + STFT (host), the network
    /// (GPU + read-back), iSTFT (host).
    pub hift_stages_s: Vec<(String, f64)>,
    pub total_s: f64,
    pub rtf: f64,
    /// The same segment through the production path ([`Vocoder::segment`]: no mel read-back
    /// between the stages, so HiFT is recorded while the GPU still runs the flow), codes →
    /// PCM on the host, and its real-time factor.
    pub pipeline_s: f64,
    pub pipeline_rtf: f64,
}

fn now() -> f64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Random codes for `seconds` of audio (12.5 code frames per second): (frames, codes).
fn random_codes(voc: &Vocoder, seconds: f64, seed: u64) -> (usize, Vec<u32>) {
    let n = ((seconds * 12.5).round() as usize).clamp(1, voc.decoder.max_frames());
    let mut rng = Rng::new(seed);
    let sizes = voc.decoder.codebook_sizes();
    let codes: Vec<u32> = (0..n * 8)
        .map(|i| rng.below(sizes[i % 8] as u64) as u32)
        .collect();
    (n, codes)
}

/// Times one segment of `seconds` of audio (12.5 code frames per second): decoder + Pre-Net +
/// CFM (waited for by reading the mel back), then HiFT (which reads back its own results).
pub async fn time_segment(
    ctx: &GpuContext,
    voc: &Vocoder,
    seconds: f64,
    seed: u64,
) -> Result<VocodeTiming, ModelError> {
    let (n, codes) = random_codes(voc, seconds, seed);
    let noise = voc.noise(n, seed);
    let t0 = now();
    let (_, _, mel) = voc.mel(ctx, &codes, &noise.cfm)?;
    let t_rec = now();
    let _ = mel.to_vec(ctx).await?;
    let t1 = now();
    let mut stages = Vec::new();
    let mut last = t1;
    let pcm = voc
        .hift
        .forward_marked(ctx, &mel, &noise.source, &mut |s| {
            let t = now();
            stages.push((s.to_string(), t - last));
            last = t;
        })
        .await?;
    let t2 = now();
    let audio = pcm.len() as f64 / super::SAMPLE_RATE as f64;
    // the production path on the same codes and noise (the same PCM)
    let t3 = now();
    let pcm2 = voc.segment(ctx, &codes, &noise).await?;
    let pipeline_s = now() - t3;
    if pcm2.len() != pcm.len() {
        return Err(ModelError::input(format!(
            "the pipeline gave {} samples, the staged run {}",
            pcm2.len(),
            pcm.len()
        )));
    }
    Ok(VocodeTiming {
        pipeline_s,
        pipeline_rtf: pipeline_s / audio.max(1e-9),
        seconds: audio,
        frames: n,
        mel_s: t1 - t0,
        mel_record_s: t_rec - t0,
        hift_s: t2 - t1,
        hift_stages_s: stages,
        total_s: t2 - t0,
        rtf: (t2 - t0) / audio.max(1e-9),
    })
}

/// One measurement of chunked streaming.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ChunkedTiming {
    pub seconds: f64,
    pub frames: usize,
    pub chunk_frames: usize,
    pub lookahead: usize,
    /// Decodes run (prefixes, and the whole segment at its end unless the last prefix was it).
    pub decodes: usize,
    /// The push that returned the first audio: from frame C + L's arrival to its samples (or
    /// the end's decode, for a segment shorter than C + L).
    pub first_chunk_s: f64,
    /// All pushes and the end, frames arriving at once (the decoding cost, no waiting).
    pub total_s: f64,
    pub rtf: f64,
}

/// Times chunked streaming of one segment of `seconds` of audio, frames pushed one by one.
pub async fn time_chunked(
    ctx: &GpuContext,
    voc: &Vocoder,
    seconds: f64,
    seed: u64,
    opts: super::ChunkOpts,
) -> Result<ChunkedTiming, ModelError> {
    let (n, codes) = random_codes(voc, seconds, seed);
    let mut s = super::StreamState::chunked(seed, opts)?;
    let mut first = None;
    let mut samples = 0;
    let t0 = now();
    for f in codes.chunks(8) {
        let t = now();
        let out = s.push_frames(voc, ctx, f).await?;
        if !out.is_empty() && first.is_none() {
            first = Some(now() - t);
        }
        samples += out.len();
    }
    let t = now();
    samples += s.end_segment(voc, ctx).await?.len();
    let t1 = now();
    let (c, l) = (opts.frames, opts.lookahead);
    let prefixes = if n >= c + l { (n - l) / c } else { 0 };
    let reused = prefixes > 0 && prefixes * c + l == n;
    let audio = samples as f64 / super::SAMPLE_RATE as f64;
    Ok(ChunkedTiming {
        seconds: audio,
        frames: n,
        chunk_frames: c,
        lookahead: l,
        decodes: prefixes + usize::from(!reused),
        first_chunk_s: first.unwrap_or(t1 - t),
        total_s: t1 - t0,
        rtf: (t1 - t0) / audio.max(1e-9),
    })
}
