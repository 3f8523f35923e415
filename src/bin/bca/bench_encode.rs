//! `bca bench encode`: time to turn N seconds of speech into codes (log-mel on the CPU, then
//! encoder + bridge + RVQ on the GPU, codes read back) with random weights of the real shapes
//! (Whisper-large encoder: d 1280, 32 layers, 20 heads, ffn 5120, 128 mels; bridge 5120;
//! codebooks 8192…1024, spec §3/§4/§13), or the tiny shapes (`--shape tiny`, for CPU adapters).
//! Wall-clock time (the stage reads its codes back, so the GPU work is complete), median of
//! 5 runs after a warm-up of ≥ 3 runs and ≥ 1 s.

use std::process::ExitCode;
use std::time::Instant;

const WARM_RUNS: usize = 3;
const WARM_SECS: f64 = 1.0;
const TIMED_RUNS: usize = 5;

use bca::gpu::{GpuContext, Recorder};
use bca::model::audio_in::AudioIn;
use bca::model::weights::MatrixPart;
use bca::model::{HostTensor, Weights};
use bca::tensor::Matrix;
use bca::util::rng::Rng;
use bca::weights::spec::{model_tensors, Role, Stage};
use bca::weights::tiny::{init_values, real_config_value, tiny_config_value, Variant};
use bca::weights::OmniConfig;
use clap::Args;

use super::GpuArgs;

#[derive(Args)]
pub struct EncodeBenchArgs {
    #[command(flatten)]
    gpu: GpuArgs,
    /// `whisper-large` (the real encoder) or `tiny` (the `bca tiny` shapes).
    #[arg(long, default_value = "whisper-large")]
    shape: String,
    /// Weight format of the encoder and bridge matrices.
    #[arg(long, default_value = "f16")]
    quant: String,
    /// Input lengths in seconds (each ≤ 30: one chunk).
    #[arg(long, value_delimiter = ',', default_value = "10,30")]
    seconds: Vec<f64>,
    /// Also write the results as JSON here.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

/// A store with random encoder/bridge/RVQ weights of `cfg`'s shapes.
fn random_weights(
    ctx: &GpuContext,
    cfg: OmniConfig,
    format: bca::tensor::WeightFormat,
) -> Result<Weights, Box<dyn std::error::Error>> {
    let specs = model_tensors(&cfg);
    let w = Weights::empty(cfg, format);
    let mut rng = Rng::new(11);
    let mut rec = Recorder::new(ctx, "bench.weights");
    for (i, s) in specs.iter().enumerate() {
        if !matches!(s.stage, Stage::Encoder | Stage::Bridge | Stage::Rvq)
            || s.role == Role::TrainingOnly
        {
            continue;
        }
        if bca::model::weights::is_matrix(s.role) {
            let m = Matrix::random(&mut rec, s.shape[0], s.shape[1], format, i as u32)?;
            w.insert_matrix(
                &s.name,
                vec![MatrixPart {
                    row_start: 0,
                    matrix: m,
                }],
            );
        } else {
            let data = init_values(s, &mut rng);
            w.insert_host(
                &s.name,
                HostTensor {
                    shape: s.shape.clone(),
                    data,
                },
            );
        }
    }
    rec.submit()?;
    Ok(w)
}

/// Deterministic speech-like test signal: a few harmonics with a slow AM, plus noise.
fn signal(seconds: f64) -> Vec<f32> {
    let n = (seconds * 16000.0) as usize;
    let mut rng = Rng::new(3);
    (0..n)
        .map(|i| {
            let t = i as f64 / 16000.0;
            let am = 0.5 + 0.5 * (2.0 * std::f64::consts::PI * 3.0 * t).sin();
            let v: f64 = (1..6)
                .map(|h| (2.0 * std::f64::consts::PI * 140.0 * h as f64 * t).sin() / h as f64)
                .sum();
            (0.2 * am * v) as f32 + 0.01 * rng.normal()
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

pub fn run(a: EncodeBenchArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let cfg_v = match a.shape.as_str() {
        "whisper-large" => real_config_value(),
        "tiny" => tiny_config_value(Variant::Base),
        other => return Err(format!("unknown shape `{other}` (whisper-large or tiny)").into()),
    };
    let cfg = OmniConfig::from_value(cfg_v, "bench")?;
    let format = super::parse_format(&a.quant)?;
    let ctx = pollster::block_on(GpuContext::new(&a.gpu.options()))?;
    let au = &cfg.audio;
    println!(
        "adapter: {} ({:?}), activations {}, weights {}; encoder d {} × {} layers, {} heads, ffn {}, {} mels; codebooks {:?}",
        ctx.info.name,
        ctx.info.backend,
        ctx.act().name(),
        a.quant,
        au.d_model,
        au.encoder_layers,
        au.encoder_attention_heads,
        au.encoder_ffn_dim,
        au.num_mel_bins,
        au.vq_config.codebook_sizes
    );
    let t0 = Instant::now();
    let w = random_weights(&ctx, cfg, format)?;
    let model = AudioIn::load(&ctx, &w)?;
    println!(
        "random weights ready in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    println!(
        "{:>8} {:>8} {:>10} {:>14} {:>10} {:>8}",
        "seconds", "frames", "mel ms", "enc+rvq ms", "total ms", "x rt"
    );
    let mut rows = Vec::new();
    for &s in &a.seconds {
        if !(s > 0.0 && s <= model.mel.max_seconds() as f64) {
            return Err(format!(
                "--seconds {s}: each length must be in (0, {}]",
                model.mel.max_seconds()
            )
            .into());
        }
        let x = signal(s);
        let (mut mel_t, mut enc_t) = (Vec::new(), Vec::new());
        let mut frames = 0;
        // warm-up: at least WARM_RUNS runs and WARM_SECS seconds (the GPU's clocks ramp up
        // over a few hundred ms: one warm-up run left the first timings of a process 2× slow)
        let warm = Instant::now();
        let mut rep = 0;
        while mel_t.len() < TIMED_RUNS {
            let t = Instant::now();
            let mels = model.mels(&x)?;
            let t_mel = t.elapsed().as_secs_f64();
            let t = Instant::now();
            let enc = pollster::block_on(model.encode_mels(&ctx, &mels, None))?;
            let t_enc = t.elapsed().as_secs_f64();
            frames = enc.frames;
            rep += 1;
            if rep > WARM_RUNS && warm.elapsed().as_secs_f64() >= WARM_SECS {
                mel_t.push(t_mel);
                enc_t.push(t_enc);
            }
        }
        let (m, e) = (median(mel_t) * 1e3, median(enc_t) * 1e3);
        println!(
            "{:>8.1} {:>8} {:>10.1} {:>14.1} {:>10.1} {:>8.1}",
            s,
            frames,
            m,
            e,
            m + e,
            s * 1e3 / (m + e)
        );
        rows.push(serde_json::json!({"seconds": s, "frames": frames, "mel_ms": m, "encode_ms": e, "total_ms": m + e}));
    }
    if let Some(p) = a.json {
        let doc = serde_json::json!({"adapter": ctx.report(), "shape": a.shape, "quant": a.quant, "timing": format!("wall clock, median of {TIMED_RUNS} after ≥ {WARM_RUNS} warm-up runs and ≥ {WARM_SECS} s"), "runs": rows});
        std::fs::write(p, serde_json::to_string_pretty(&doc)?)?;
    }
    Ok(ExitCode::SUCCESS)
}
