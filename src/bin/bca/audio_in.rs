//! `bca mel`, `bca encode`, `bca trace`: the audio-in stage (spec §2–§4) from a WAV file.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use bca::audio::{self, MelConfig};
use bca::gpu::GpuContext;
use bca::model::audio_in::{AudioIn, TraceTensor};
use bca::model::Weights;
use bca::util::npy;
use clap::Args;

use super::GpuArgs;

type Res = Result<ExitCode, Box<dyn std::error::Error>>;

#[derive(Args)]
pub struct MelArgs {
    /// Input WAV (any common rate, any channel count).
    wav: PathBuf,
    /// Output .npy, float32 [n_mels, frames].
    #[arg(short, long)]
    out: PathBuf,
    /// Mel bins (the model's `num_mel_bins`).
    #[arg(long, default_value_t = 128)]
    n_mels: usize,
    /// Also write the 16 kHz mono signal the mel was computed from (.npy float32).
    #[arg(long)]
    pcm_out: Option<PathBuf>,
}

#[derive(Args)]
pub struct EncodeArgs {
    /// Model folder: Hugging Face (from `bca tiny`) or converted (`bca convert`).
    model_dir: PathBuf,
    /// Input WAV.
    wav: PathBuf,
    /// Output .npy, int32 [frames, 8].
    #[arg(short, long)]
    out: PathBuf,
    #[command(flatten)]
    gpu: GpuArgs,
    /// Weight format for an HF folder's matrices (a converted folder keeps its own).
    #[arg(long, default_value = "f16")]
    quant: String,
}

/// Reads a WAV, downmixes to mono and resamples to 16 kHz.
pub fn load_pcm16k(path: &Path) -> Result<(Vec<f32>, audio::Pcm), Box<dyn std::error::Error>> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let pcm = audio::read_wav(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    let x = audio::resample(&pcm.samples, pcm.rate)?;
    if audio::is_silent(&x) {
        eprintln!(
            "bca: warning: {} is silent (peak below −80 dBFS)",
            path.display()
        );
    }
    Ok((x, pcm))
}

pub fn mel(a: MelArgs) -> Res {
    let (x, _) = load_pcm16k(&a.wav)?;
    let cfg = MelConfig {
        n_mels: a.n_mels,
        ..MelConfig::default()
    };
    let chunks = audio::split_chunks(&x, cfg.chunk_samples, cfg.n_fft);
    if chunks.len() > 1 {
        eprintln!(
            "bca: {:.1} s is longer than one {} s chunk: writing {} chunks' frames one after another",
            x.len() as f64 / cfg.sample_rate as f64,
            cfg.max_seconds(),
            chunks.len()
        );
    }
    let mels = chunks
        .into_iter()
        .map(|c| audio::log_mel(cfg, c))
        .collect::<Result<Vec<_>, _>>()?;
    let frames: usize = mels.iter().map(|m| m.frames).sum();
    let mut data = vec![0f32; cfg.n_mels * frames];
    let mut t0 = 0;
    for m in &mels {
        for b in 0..cfg.n_mels {
            data[b * frames + t0..b * frames + t0 + m.frames]
                .copy_from_slice(&m.data[b * m.frames..(b + 1) * m.frames]);
        }
        t0 += m.frames;
    }
    std::fs::write(&a.out, npy::write_f32(&[cfg.n_mels, frames], &data))?;
    if let Some(p) = a.pcm_out {
        std::fs::write(p, npy::write_f32(&[x.len()], &x))?;
    }
    println!(
        "{} mel bins × {frames} frames → {}",
        cfg.n_mels,
        a.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn open(
    model_dir: &Path,
    gpu: &GpuArgs,
    quant: &str,
) -> Result<(GpuContext, AudioIn), Box<dyn std::error::Error>> {
    let format = super::parse_format(quant)?;
    let ctx = pollster::block_on(GpuContext::new(&gpu.options()))?;
    let w = Weights::open(model_dir, format)?;
    let model = AudioIn::load(&ctx, &w)?;
    Ok((ctx, model))
}

pub fn encode(a: EncodeArgs) -> Res {
    let (x, _) = load_pcm16k(&a.wav)?;
    let (ctx, model) = open(&a.model_dir, &a.gpu, &a.quant)?;
    let enc = pollster::block_on(model.encode_pcm(&ctx, &x))?;
    std::fs::write(&a.out, npy::write_i32(&[enc.frames, 8], &enc.codes))?;
    println!(
        "{} frames × 8 codes ({} chunk(s), activations {}) → {}",
        enc.frames,
        enc.chunks.len(),
        ctx.act().name(),
        a.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

pub fn trace(a: EncodeArgs) -> Res {
    let (x, _) = load_pcm16k(&a.wav)?;
    let (ctx, model) = open(&a.model_dir, &a.gpu, &a.quant)?;
    let mels = model.mels(&x)?;
    let mut tr = Vec::new();
    let enc = pollster::block_on(model.encode_mels(&ctx, &mels, Some(&mut tr)))?;
    std::fs::write(&a.out, safetensors_bytes(&tr, &enc.codes, enc.frames)?)?;
    println!("{} tensors → {}", tr.len() + 1, a.out.display());
    Ok(ExitCode::SUCCESS)
}

/// A safetensors file of the trace (F32) plus `codes` (I32 [frames, 8]).
fn safetensors_bytes(
    tr: &[TraceTensor],
    codes: &[i32],
    frames: usize,
) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    let mut header = serde_json::Map::new();
    let mut data: Vec<u8> = Vec::new();
    for t in tr {
        let s = data.len();
        data.extend_from_slice(bytemuck::cast_slice(&t.data));
        header.insert(
            t.name.clone(),
            serde_json::json!({"dtype": "F32", "shape": t.shape, "data_offsets": [s, data.len()]}),
        );
    }
    let s = data.len();
    data.extend_from_slice(bytemuck::cast_slice(codes));
    header.insert(
        "codes".into(),
        serde_json::json!({"dtype": "I32", "shape": [frames, 8], "data_offsets": [s, data.len()]}),
    );
    let mut h = serde_json::to_vec(&serde_json::Value::Object(header))?;
    while h.len() % 8 != 0 {
        h.push(b' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    out.extend_from_slice(&data);
    Ok(out)
}
