//! `bca vocode`: codes (N, 8) int32 `.npy` → 24 kHz mono WAV through the audio-out stages
//! (decoder, Pre-Net, flow matching, HiFT), one segment.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use bca::gpu::GpuContext;
use bca::model::audio_out::{
    chunked_deviation, ChunkOpts, Deviation, SegmentTrace, Vocoder, SAMPLE_RATE,
};
use bca::model::Weights;
use clap::Args;

use super::{parse_format, GpuArgs};

#[derive(Args)]
pub struct VocodeArgs {
    /// Model folder (HF folder from `bca tiny`/the real checkpoint, or a converted web folder).
    model_dir: PathBuf,
    /// Codes: int32 `.npy` of shape (N, 8), the frames of one segment (audio EOS excluded).
    codes: PathBuf,
    /// Output WAV.
    #[arg(short, long)]
    out: PathBuf,
    /// Seed of the flow-matching noise and the NSF source.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Matrix format for an HF folder: f16, q8 or q4 (a web folder keeps its own).
    #[arg(long, default_value = "f16")]
    quant: String,
    /// Write 32-bit float samples instead of 16-bit PCM.
    #[arg(long)]
    float: bool,
    /// Also write the intermediates (hidden, mu, mel, f0, pcm) to this .safetensors file.
    #[arg(long)]
    trace: Option<PathBuf>,
    /// Chunked streaming (off by default): feed the frames one by one, re-decoding the prefix
    /// every C frames so playback could start before the segment ends; writes the chunked
    /// output and prints its chunks and its deviation from whole-segment decoding.
    #[arg(long, value_name = "C")]
    chunk_frames: Option<usize>,
    /// With --chunk-frames: code frames held back at the end of each prefix (default 3).
    #[arg(long, value_name = "L")]
    lookahead: Option<usize>,
    #[command(flatten)]
    gpu: GpuArgs,
}

fn read_codes(path: &Path) -> Result<Vec<u32>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let arr = bca::util::npy::read(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    let bca::util::npy::NpyArray::I32 { shape, data } = arr else {
        return Err(format!("{}: codes must be int32", path.display()));
    };
    if shape.len() != 2 || shape[1] != 8 {
        return Err(format!(
            "{}: codes must have shape (N, 8), got {shape:?}",
            path.display()
        ));
    }
    if shape[0] == 0 {
        return Err(format!("{}: codes are empty (N = 0)", path.display()));
    }
    data.iter()
        .enumerate()
        .map(|(i, &c)| {
            u32::try_from(c).map_err(|_| {
                format!(
                    "{}: code {c} at frame {}, codebook {} is negative",
                    path.display(),
                    i / 8,
                    i % 8
                )
            })
        })
        .collect()
}

fn write_trace(path: &Path, tr: &SegmentTrace, d: usize) -> Result<(), Box<dyn std::error::Error>> {
    use safetensors::tensor::TensorView;
    let t = tr.f0.len();
    let items: Vec<(&str, Vec<usize>, &[f32])> = vec![
        ("hidden", vec![t, d], &tr.hidden),
        ("mu", vec![t, tr.mu.len() / t.max(1)], &tr.mu),
        ("mel", vec![t, tr.mel.len() / t.max(1)], &tr.mel),
        ("f0", vec![t], &tr.f0),
        ("pcm", vec![tr.pcm.len()], &tr.pcm),
    ];
    let mut views = Vec::new();
    for (name, shape, data) in &items {
        views.push((
            name.to_string(),
            TensorView::new(
                safetensors::Dtype::F32,
                shape.clone(),
                bytemuck::cast_slice(data),
            )?,
        ));
    }
    safetensors::serialize_to_file(views, None, path)?;
    Ok(())
}

pub fn run(a: VocodeArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let codes = read_codes(&a.codes)?;
    let format = parse_format(&a.quant)?;
    let ctx = pollster::block_on(GpuContext::new(&a.gpu.options()))?;
    let w = Weights::open(&a.model_dir, format)?;
    let voc = Vocoder::load(&w, &ctx)?;
    let n = voc.decoder.check_codes(&codes)?;
    if a.chunk_frames.is_none() && a.lookahead.is_some() {
        return Err("--lookahead needs --chunk-frames".into());
    }
    if let Some(c) = a.chunk_frames {
        if a.trace.is_some() {
            return Err("--trace writes a whole-segment decode; drop --chunk-frames".into());
        }
        let opts = ChunkOpts::new(c, a.lookahead.unwrap_or(ChunkOpts::DEFAULT_LOOKAHEAD))?;
        let d = pollster::block_on(chunked_deviation(&voc, &ctx, &codes, a.seed, opts))?;
        write_wav(&a.out, &d.chunked, a.float)?;
        report_chunked(&d);
        eprintln!(
            "{} frames → {} samples ({:.2} s at {} Hz), chunked → {}",
            n,
            d.chunked.len(),
            d.chunked.len() as f64 / SAMPLE_RATE as f64,
            SAMPLE_RATE,
            a.out.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let noise = voc.noise(n, a.seed);
    let pcm = if let Some(tp) = &a.trace {
        let tr = pollster::block_on(voc.segment_traced(&ctx, &codes, &noise))?;
        write_trace(tp, &tr, voc.decoder.d)?;
        tr.pcm
    } else {
        pollster::block_on(voc.segment(&ctx, &codes, &noise))?
    };
    write_wav(&a.out, &pcm, a.float)?;
    eprintln!(
        "{} frames → {} samples ({:.2} s at {} Hz) → {}",
        n,
        pcm.len(),
        pcm.len() as f64 / SAMPLE_RATE as f64,
        SAMPLE_RATE,
        a.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Prints the chunks (when each arrived, how long) and the deviation from whole-segment decoding.
fn report_chunked(d: &Deviation) {
    println!(
        "chunked: {} frames per chunk, lookahead {}; {} chunks from {} decodes",
        d.opts.frames,
        d.opts.lookahead,
        d.chunks.len(),
        d.decodes
    );
    let last = d.chunks.len().saturating_sub(1);
    for (i, (f, s)) in d.chunks.iter().enumerate() {
        let when = if i == last {
            "segment end".to_string()
        } else {
            format!("frame {f}")
        };
        println!("chunk {i}: after {when}: {s} samples");
    }
    println!(
        "deviation from whole-segment decoding: SNR {:.2} dB, max |Δ| {:.3e}, flow mel L1 {:.3e} \
         (mean |mel| {:.3e})",
        d.snr_db, d.max_abs, d.mel_l1, d.mel_mean_abs
    );
}

#[derive(Args)]
pub struct BenchVocodeArgs {
    #[command(flatten)]
    gpu: GpuArgs,
    /// Segment lengths in seconds of audio (12.5 code frames per second).
    #[arg(long, value_delimiter = ',', default_value = "2,10")]
    seconds: Vec<f64>,
    /// `full` (spec §13 shapes, random weights) or `tiny` (the `bca tiny` shapes, for CPU adapters).
    #[arg(long, default_value = "full")]
    shape: String,
    /// Matrix format: f16, q8 or q4.
    #[arg(long, default_value = "f16")]
    quant: String,
    /// Timed runs per length (after one warm-up run).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Also write the results as JSON here (an array of rows; with --chunk-frames
    /// `{"whole": rows, "chunked": rows}`).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Also time chunked streaming with C frames per chunk (frames pushed one by one): its RTF
    /// and the latency of its first chunk.
    #[arg(long, value_name = "C")]
    chunk_frames: Option<usize>,
    /// With --chunk-frames: code frames held back at the end of each prefix (default 3).
    #[arg(long, value_name = "L")]
    lookahead: Option<usize>,
}

pub fn bench(a: BenchVocodeArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    use bca::model::audio_out::bench::{random_weights, time_chunked, time_segment};
    use bca::weights::tiny::{real_config_value, tiny_config_value, tiny_hift_config, Variant};
    use bca::weights::OmniConfig;
    let (cfg_v, hcfg) = match a.shape.as_str() {
        "full" => (
            real_config_value(),
            bca::weights::hift::HiftConfig::default(),
        ),
        "tiny" => (tiny_config_value(Variant::Instruct), tiny_hift_config()),
        s => return Err(format!("unknown shape `{s}` (full or tiny)").into()),
    };
    let chunk = match (a.chunk_frames, a.lookahead) {
        (Some(c), l) => Some(ChunkOpts::new(
            c,
            l.unwrap_or(ChunkOpts::DEFAULT_LOOKAHEAD),
        )?),
        (None, Some(_)) => return Err("--lookahead needs --chunk-frames".into()),
        (None, None) => None,
    };
    let format = parse_format(&a.quant)?;
    let cfg = OmniConfig::from_value(cfg_v, "config.json")?;
    let ctx = pollster::block_on(GpuContext::new(&a.gpu.options()))?;
    super::print_adapter(&ctx);
    let w = random_weights(&ctx, cfg, &hcfg, format, 1)?;
    let voc = Vocoder::load(&w, &ctx)?;
    println!(
        "audio out, {} shapes, {} matrices, {} CFM steps × 2 (CFG), reps {}",
        a.shape, a.quant, voc.cfm.steps, a.reps
    );
    println!(
        "{:>8} {:>7} {:>10} {:>10} {:>10} {:>10} {:>8} {:>11} {:>8}   hift stages ms",
        "audio s",
        "frames",
        "mel ms",
        "(record)",
        "hift ms",
        "total ms",
        "RTF",
        "pipeline ms",
        "RTF"
    );
    let mut rows = Vec::new();
    for &s in &a.seconds {
        pollster::block_on(time_segment(&ctx, &voc, s, 0))?; // warm-up: pipelines, buffers
        let mut best: Option<bca::model::audio_out::bench::VocodeTiming> = None;
        // the production path's best over the reps, next to the staged run's best
        let mut pipe = f64::INFINITY;
        for r in 0..a.reps.max(1) {
            let t = pollster::block_on(time_segment(&ctx, &voc, s, r as u64 + 1))?;
            pipe = pipe.min(t.pipeline_s);
            if best.as_ref().is_none_or(|b| t.total_s < b.total_s) {
                best = Some(t);
            }
        }
        if let Some(mut t) = best {
            t.pipeline_s = pipe;
            t.pipeline_rtf = pipe / t.seconds.max(1e-9);
            let stages: Vec<String> = t
                .hift_stages_s
                .iter()
                .map(|(n, s)| format!("{n} {:.1}", s * 1e3))
                .collect();
            println!(
                "{:>8.2} {:>7} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>8.4} {:>11.1} {:>8.4}   {}",
                t.seconds,
                t.frames,
                t.mel_s * 1e3,
                t.mel_record_s * 1e3,
                t.hift_s * 1e3,
                t.total_s * 1e3,
                t.rtf,
                t.pipeline_s * 1e3,
                t.pipeline_rtf,
                stages.join(", ")
            );
            rows.push(t);
        }
    }
    let Some(opts) = chunk else {
        if let Some(p) = &a.json {
            std::fs::write(p, serde_json::to_string_pretty(&rows)?)?;
        }
        return Ok(ExitCode::SUCCESS);
    };
    println!(
        "chunked streaming, {} frames per chunk, lookahead {}",
        opts.frames, opts.lookahead
    );
    println!(
        "{:>8} {:>7} {:>8} {:>14} {:>10} {:>8}",
        "audio s", "frames", "decodes", "first chunk ms", "total ms", "RTF"
    );
    let mut chunked = Vec::new();
    for &s in &a.seconds {
        let mut best: Option<bca::model::audio_out::bench::ChunkedTiming> = None;
        for r in 0..a.reps.max(1) {
            let t = pollster::block_on(time_chunked(&ctx, &voc, s, r as u64 + 1, opts))?;
            if best.as_ref().is_none_or(|b| t.total_s < b.total_s) {
                best = Some(t);
            }
        }
        if let Some(t) = best {
            println!(
                "{:>8.2} {:>7} {:>8} {:>14.1} {:>10.1} {:>8.4}",
                t.seconds,
                t.frames,
                t.decodes,
                t.first_chunk_s * 1e3,
                t.total_s * 1e3,
                t.rtf
            );
            chunked.push(t);
        }
    }
    if let Some(p) = &a.json {
        let v = serde_json::json!({ "whole": rows, "chunked": chunked });
        std::fs::write(p, serde_json::to_string_pretty(&v)?)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes 24 kHz mono PCM as a WAV: 16-bit as the reference does (clamp ±0.99, ·32768, truncate),
/// or 32-bit float.
pub fn write_wav(path: &Path, pcm: &[f32], float: bool) -> Result<(), Box<dyn std::error::Error>> {
    let a_float = float;
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: SAMPLE_RATE,
        bits_per_sample: if a_float { 32 } else { 16 },
        sample_format: if a_float {
            hound::SampleFormat::Float
        } else {
            hound::SampleFormat::Int
        },
    };
    let mut wr = hound::WavWriter::create(path, spec)?;
    for &v in pcm {
        if a_float {
            wr.write_sample(v)?;
        } else {
            // the reference: clamp(±0.99)·32768 cast to int16 (truncation)
            wr.write_sample((v.clamp(-0.99, 0.99) * 32768.0) as i16)?;
        }
    }
    wr.finalize()?;
    Ok(())
}
