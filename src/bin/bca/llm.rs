//! `bca tokenize`, `bca logits` (and the generation commands): the audio LLM from the CLI.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use bca::gpu::GpuContext;
use bca::model::llm::{Input, Llm, Session};
use bca::model::Weights;
use bca::tensor::WeightFormat;
use bca::text::TextTokenizer;
use clap::Args;

use crate::GpuArgs;

type Res = Result<ExitCode, Box<dyn std::error::Error>>;

#[derive(Args)]
pub struct TokenizeArgs {
    /// Model folder (HF or converted) holding tokenizer.json.
    pub model_dir: PathBuf,
    /// UTF-8 text file; its whole content is encoded.
    #[arg(long)]
    pub file: PathBuf,
}

#[derive(Args)]
pub struct LogitsArgs {
    /// Model folder (HF from `bca tiny`, or converted).
    pub model_dir: PathBuf,
    /// Comma-separated token ids.
    #[arg(long, value_delimiter = ',', required = true)]
    pub tokens: Vec<u32>,
    /// Output .npy (float32 [n, vocab]).
    #[arg(short, long)]
    pub out: PathBuf,
    /// Weight format for an HF folder's matrices.
    #[arg(long, default_value = "f16")]
    pub quant: String,
    #[command(flatten)]
    pub gpu: GpuArgs,
}

pub fn load_tokenizer(dir: &Path) -> Result<TextTokenizer, Box<dyn std::error::Error>> {
    let p = dir.join("tokenizer.json");
    let bytes = std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))?;
    Ok(TextTokenizer::from_json_bytes(&bytes)?)
}

pub fn tokenize(a: TokenizeArgs) -> Res {
    let tok = load_tokenizer(&a.model_dir)?;
    let text = std::fs::read(&a.file).map_err(|e| format!("{}: {e}", a.file.display()))?;
    let text =
        String::from_utf8(text).map_err(|e| format!("{}: not UTF-8 ({e})", a.file.display()))?;
    let ids = tok.encode(&text)?;
    let s: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
    println!("{}", s.join(" "));
    Ok(ExitCode::SUCCESS)
}

pub fn open_model(
    dir: &Path,
    quant: &str,
    gpu: &GpuArgs,
) -> Result<(GpuContext, Weights), Box<dyn std::error::Error>> {
    let format = crate::parse_format(quant)?;
    let ctx = pollster::block_on(GpuContext::new(&gpu.options()))?;
    let w = Weights::open(dir, format)?;
    Ok((ctx, w))
}

pub fn logits(a: LogitsArgs) -> Res {
    let (ctx, w) = open_model(&a.model_dir, &a.quant, &a.gpu)?;
    let llm = Llm::load(&ctx, &w)?;
    let n = a.tokens.len();
    let mut s = Session::new(&ctx, &llm, n.max(1), 64)?;
    let inputs: Vec<Input> = a.tokens.iter().map(|&t| Input::Text(t)).collect();
    let v = pollster::block_on(s.all_logits(&ctx, &llm, &inputs))?;
    let bytes = bca::util::npy::write_f32(&[n, llm.dims.vocab], &v);
    std::fs::write(&a.out, bytes).map_err(|e| format!("{}: {e}", a.out.display()))?;
    eprintln!(
        "{n} positions × {} logits ({} activations, {} weights) → {}",
        llm.dims.vocab,
        ctx.act().name(),
        WeightFormat::name(w.format),
        a.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

use bca::model::llm::generate::{
    is_base, tts_clauses, Event, GenConfig, GenOverrides, Generator, Mode,
};
use bca::model::llm::Frame;

/// Sampling overrides shared by the generation commands (unset = the mode's defaults).
#[derive(Args, Clone)]
pub struct SampleArgs {
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Weight format for an HF folder's matrices (f16, q8, q4).
    #[arg(long, default_value = "f16")]
    pub quant: String,
    /// Context length (positions in the KV cache).
    #[arg(long, default_value_t = 4096)]
    pub context: usize,
    #[arg(long)]
    pub temperature: Option<f32>,
    #[arg(long)]
    pub top_k: Option<usize>,
    #[arg(long)]
    pub top_p: Option<f32>,
    #[arg(long)]
    pub repetition_penalty: Option<f32>,
    /// Base models: sample instead of greedy decoding (the demos' --do_sample).
    #[arg(long)]
    pub do_sample: bool,
    /// Audio frames per segment at most (≤ 500, the reference's limit).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u16).range(1..=500))]
    pub max_frames: u16,
    /// Text + speech rounds per turn at most (default: the reference's limit); the last
    /// round's speech segment ends the turn.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub max_rounds: Option<u16>,
    /// Text tokens per text round at most (default 50 for Instruct, 700 for Base); also the
    /// length of a text-only or ASR reply (default 1024 / 700).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub max_text: Option<u16>,
    /// Write every event as JSON lines here.
    #[arg(long)]
    pub events: Option<PathBuf>,
    #[command(flatten)]
    pub gpu: GpuArgs,
}

impl SampleArgs {
    fn config(&self, base: bool) -> GenConfig {
        let c = if base {
            GenConfig::base(self.do_sample)
        } else {
            GenConfig::default()
        };
        c.with(&GenOverrides {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            repetition_penalty: self.repetition_penalty,
            max_frames: Some(self.max_frames as usize),
            max_rounds: self.max_rounds.map(usize::from),
            max_text: self.max_text.map(usize::from),
        })
    }
}

#[derive(Args)]
pub struct GenerateArgs {
    pub model_dir: PathBuf,
    /// Prompt text (special-token strings become their ids).
    #[arg(long)]
    pub text: String,
    /// New tokens at most (stops earlier at <|endoftext|>).
    #[arg(long, default_value_t = 32)]
    pub max_new: usize,
    #[command(flatten)]
    pub s: SampleArgs,
}

#[derive(Args)]
pub struct AsrArgs {
    pub model_dir: PathBuf,
    /// Audio codes .npy [frames, 8] (int32) from the audio-in stage.
    #[arg(long)]
    pub codes: PathBuf,
    #[command(flatten)]
    pub s: SampleArgs,
}

#[derive(Args)]
pub struct TtsArgs {
    pub model_dir: PathBuf,
    pub text: String,
    /// Output: a 24 kHz WAV (audio decoder → flow matching → HiFT), or with a `.npy` name the
    /// codes [frames, 8] (int32).
    #[arg(short, long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub s: SampleArgs,
}

#[derive(Args)]
pub struct ChatArgs {
    pub model_dir: PathBuf,
    /// The user's speech as a WAV file (any common rate/channels; encoded by the audio-in stages).
    #[arg(long)]
    pub audio: Option<PathBuf>,
    /// The user's speech as codes .npy [frames, 8].
    #[arg(long)]
    pub codes: Option<PathBuf>,
    /// The user's text (instead of, or after, the speech).
    #[arg(long)]
    pub text: Option<String>,
    /// Earlier turns: JSON list of {"role": "user"|"assistant", "text": "…", "audio": …}, where
    /// `audio` (optional) is a WAV path or a list of them, relative to the JSON file: the user's
    /// speech, or the assistant's reply speech (one 24 kHz WAV per segment), which is re-encoded
    /// through audio in and spliced as `<audiogen_start_baichuan>` pads `<audiogen_end_baichuan>`.
    #[arg(long)]
    pub history: Option<PathBuf>,
    /// System prompt.
    #[arg(long, default_value = "请用【邻家女声】这个声音回答问题。")]
    pub system: String,
    /// Text-only reply (no audio).
    #[arg(long)]
    pub text_only: bool,
    /// The reply's speech: a 24 kHz WAV, or with a `.npy` name its codes [frames, 8] (int32,
    /// all segments in order).
    #[arg(short, long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub s: SampleArgs,
}

fn read_codes(p: &Path) -> Result<Vec<Frame>, Box<dyn std::error::Error>> {
    use bca::util::npy::{read, NpyArray};
    let bytes = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
    let a = read(&bytes).map_err(|e| format!("{}: {e}", p.display()))?;
    let vals: Vec<i64> = match &a {
        NpyArray::I32 { data, .. } => data.iter().map(|v| *v as i64).collect(),
        NpyArray::F32 { data, .. } => data.iter().map(|v| *v as i64).collect(),
    };
    let shape = a.shape();
    if shape.len() != 2 || shape[1] != 8 {
        return Err(format!("{}: codes must be [frames, 8], got {shape:?}", p.display()).into());
    }
    if shape[0] == 0 {
        return Err(format!("{}: the audio is empty (0 frames)", p.display()).into());
    }
    let mut out = Vec::with_capacity(shape[0]);
    for row in vals.chunks(8) {
        let mut f = [0u32; 8];
        for (i, v) in row.iter().enumerate() {
            if *v < 0 || *v > u32::MAX as i64 {
                return Err(format!("{}: negative or huge code {v}", p.display()).into());
            }
            f[i] = *v as u32;
        }
        out.push(f);
    }
    Ok(out)
}

fn write_codes(p: &Path, frames: &[Frame]) -> Result<(), Box<dyn std::error::Error>> {
    let data: Vec<i32> = frames.iter().flatten().map(|c| *c as i32).collect();
    let bytes = bca::util::npy::write_i32(&[frames.len(), 8], &data);
    std::fs::write(p, bytes).map_err(|e| format!("{}: {e}", p.display()))?;
    Ok(())
}

fn generator(
    dir: &Path,
    s: &SampleArgs,
) -> Result<(GpuContext, Generator, bool), Box<dyn std::error::Error>> {
    let (ctx, g, base, _) = generator_with_weights(dir, s)?;
    Ok((ctx, g, base))
}

/// [`generator`] that also hands back the weight store (for the audio-in/out stages).
fn generator_with_weights(
    dir: &Path,
    s: &SampleArgs,
) -> Result<(GpuContext, Generator, bool, Weights), Box<dyn std::error::Error>> {
    let (ctx, w) = open_model(dir, &s.quant, &s.gpu)?;
    let tok = load_tokenizer(dir)?;
    let base = is_base(&w);
    let mut g = Generator::new(&ctx, &w, tok, s.context, s.seed)?;
    g.cfg = s.config(base);
    Ok((ctx, g, base, w))
}

/// The audio segments of a turn, split where the generator ended each one.
fn segments(events: &[Event]) -> Vec<Vec<Frame>> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    for e in events {
        match e {
            Event::Frame { codes } => cur.push(*codes),
            Event::SegmentEnd { .. } => out.push(std::mem::take(&mut cur)),
            _ => {}
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out.retain(|s| !s.is_empty());
    out
}

/// Writes a reply's audio: `.npy` → the codes [frames, 8]; anything else → a 24 kHz WAV made by
/// the audio-out stages, one segment at a time with the reference's cross-fades.
fn write_reply(
    path: &Path,
    ctx: &GpuContext,
    w: &Weights,
    segs: &[Vec<Frame>],
    seed: u64,
) -> Result<(), Box<dyn std::error::Error>> {
    let all: Vec<Frame> = segs.iter().flatten().copied().collect();
    if path.extension().and_then(|e| e.to_str()) == Some("npy") {
        write_codes(path, &all)?;
        eprintln!("{} frames → {}", all.len(), path.display());
        return Ok(());
    }
    let voc = bca::model::audio_out::Vocoder::load(w, ctx)?;
    let mut stream = bca::model::audio_out::VocodeStream::new(&voc, seed);
    let mut pcm = Vec::new();
    for s in segs {
        let codes: Vec<u32> = s.iter().flatten().copied().collect();
        pcm.extend(pollster::block_on(stream.push(ctx, &codes))?);
    }
    crate::vocode::write_wav(path, &pcm, false)?;
    eprintln!(
        "{} frames in {} segment(s) → {} samples ({:.2} s at 24 kHz) → {}",
        all.len(),
        segs.len(),
        pcm.len(),
        pcm.len() as f64 / 24000.0,
        path.display()
    );
    Ok(())
}

/// A finished turn: its text, its audio frames, all its events.
type TurnOutput = (String, Vec<Frame>, Vec<Event>);

/// Runs a turn, collecting text deltas and frames; returns (text, frames, events).
fn run_turn(
    ctx: &GpuContext,
    g: &mut Generator,
    events: &Option<PathBuf>,
) -> Result<TurnOutput, Box<dyn std::error::Error>> {
    use std::io::Write;
    let mut text = String::new();
    let mut frames = Vec::new();
    let all = pollster::block_on(g.run(ctx, |e| {
        match e {
            Event::Text { delta, .. } => {
                text.push_str(delta);
            }
            Event::Frame { codes } => frames.push(*codes),
            _ => {}
        }
        true
    }))?;
    if let Some(p) = events {
        let mut f = std::fs::File::create(p).map_err(|e| format!("{}: {e}", p.display()))?;
        for e in &all {
            writeln!(f, "{}", serde_json::to_string(e)?)?;
        }
    }
    Ok((text, frames, all))
}

pub fn generate(a: GenerateArgs) -> Res {
    let (ctx, mut g, _) = generator(&a.model_dir, &a.s)?;
    g.cfg.text_only_max = a.max_new.max(1);
    let inputs = g.text_inputs(&a.text)?;
    g.start(&ctx, &inputs, Mode::TextOnly)?;
    let (text, _, all) = run_turn(&ctx, &mut g, &a.s.events)?;
    let ids: Vec<String> = all
        .iter()
        .filter_map(|e| match e {
            Event::Text { id, .. } if *id != u32::MAX => Some(id.to_string()),
            _ => None,
        })
        .collect();
    println!("{}", ids.join(" "));
    eprintln!("{text}");
    Ok(ExitCode::SUCCESS)
}

pub fn asr(a: AsrArgs) -> Res {
    let codes = read_codes(&a.codes)?;
    let (ctx, mut g, _) = generator(&a.model_dir, &a.s)?;
    let mut inputs = g.text_inputs("将语音转录为文本:")?;
    inputs.extend(g.audio_inputs(&codes)?);
    g.start(&ctx, &inputs, Mode::Asr)?;
    let (text, _, _) = run_turn(&ctx, &mut g, &a.s.events)?;
    println!("{}", text.trim_end_matches("<|endoftext|>"));
    Ok(ExitCode::SUCCESS)
}

pub fn tts(a: TtsArgs) -> Res {
    let (ctx, mut g, _, w) = generator_with_weights(&a.model_dir, &a.s)?;
    let clauses = tts_clauses(&a.text);
    if clauses.is_empty() {
        return Err("nothing to say: the text is empty".into());
    }
    let mut segs = Vec::new();
    for c in &clauses {
        // each clause is its own prompt (fresh cache)
        g.fed.clear();
        let inputs = g.text_inputs(&format!("{c}<audiogen_start_baichuan>"))?;
        g.start(&ctx, &inputs, Mode::Tts)?;
        let (_, f, all) = run_turn(&ctx, &mut g, &a.s.events)?;
        eprintln!("{c}: {} frames", f.len());
        segs.extend(segments(&all));
    }
    if segs.is_empty() {
        return Err("the model produced no audio frames for this text".into());
    }
    write_reply(&a.out, &ctx, &w, &segs, a.s.seed)?;
    let n: usize = segs.iter().map(Vec::len).sum();
    println!("{n} frames → {}", a.out.display());
    Ok(ExitCode::SUCCESS)
}

pub fn chat(a: ChatArgs) -> Res {
    let (ctx, mut g, base, w) = generator_with_weights(&a.model_dir, &a.s)?;
    if base {
        return Err(
            "this is a Base model (its _name_or_path names -Base): it has no chat \
                    format; use `bca asr` / `bca tts`, or an Instruct model"
                .into(),
        );
    }
    if a.codes.is_none() && a.text.is_none() && a.audio.is_none() {
        return Err("nothing to answer: give --audio, --codes and/or --text".into());
    }
    if a.codes.is_some() && a.audio.is_some() {
        return Err("give the user's speech as --audio or as --codes, not both".into());
    }
    // speech through the audio-in stages (mel → encoder → bridge → RVQ), loaded on first use
    let mut audio_in = None;
    let mut encode = |wav: &Path| -> Result<Vec<Frame>, Box<dyn std::error::Error>> {
        if audio_in.is_none() {
            audio_in = Some(bca::model::audio_in::AudioIn::load(&ctx, &w)?);
        }
        let enc = audio_in.as_ref().ok_or("audio in not loaded")?;
        let (pcm, _) = crate::audio_in::load_pcm16k(wav)?;
        Ok(pollster::block_on(enc.encode_pcm(&ctx, &pcm))?.frames())
    };
    let mut inputs = g.chat_system_inputs(&a.system)?;
    if let Some(h) = &a.history {
        let s = std::fs::read_to_string(h).map_err(|e| format!("{}: {e}", h.display()))?;
        let v: serde_json::Value =
            serde_json::from_str(&s).map_err(|e| format!("{}: {e}", h.display()))?;
        let turns = v
            .as_array()
            .ok_or_else(|| format!("{}: expected a JSON list of turns", h.display()))?;
        let base = h.parent().unwrap_or(Path::new("."));
        let wav_of = |x: &serde_json::Value| -> Result<Vec<PathBuf>, String> {
            match x {
                serde_json::Value::Null => Ok(Vec::new()),
                serde_json::Value::String(p) => Ok(vec![base.join(p)]),
                serde_json::Value::Array(v) => v
                    .iter()
                    .map(|p| {
                        p.as_str()
                            .map(|p| base.join(p))
                            .ok_or_else(|| format!("{}: audio paths must be strings", h.display()))
                    })
                    .collect(),
                _ => Err(format!(
                    "{}: `audio` must be a path or a list of paths",
                    h.display()
                )),
            }
        };
        let mut spliced = 0;
        for t in turns {
            let text = t["text"].as_str().unwrap_or("");
            match t["role"].as_str() {
                Some("user") => {
                    inputs.extend(g.text_inputs("<C_Q>")?);
                    for wav in wav_of(&t["audio"])? {
                        let codes = encode(&wav)?;
                        inputs.extend(g.audio_inputs(&codes)?);
                    }
                    if !text.is_empty() {
                        inputs.extend(g.text_inputs(text)?);
                    }
                }
                Some("assistant") if a.text_only => {
                    inputs.extend(g.text_inputs(&format!("<C_A>{text}"))?)
                }
                Some("assistant") => {
                    // the reply's own speech (24 kHz segments) re-encoded, as the reference
                    // re-reads it (spec §2 step 5): text, then each segment as
                    // <audiogen_start_baichuan> pads <audiogen_end_baichuan>
                    inputs
                        .extend(g.text_inputs(&format!("<audiotext_start_baichuan><C_A>{text}"))?);
                    for wav in wav_of(&t["audio"])? {
                        let codes = encode(&wav)?;
                        spliced += codes.len();
                        inputs.push(Input::Text(bca::model::llm::generate::AUDIOGEN_START));
                        inputs.extend(codes.iter().map(|f| Input::Audio(*f)));
                        inputs.push(Input::Text(bca::model::llm::generate::AUDIOGEN_END));
                    }
                }
                r => return Err(format!("{}: unknown role {r:?}", h.display()).into()),
            }
        }
        eprintln!(
            "history: {} turns, {} positions, {spliced} frames of reply speech re-encoded",
            turns.len(),
            inputs.len()
        );
    }
    let user = match (&a.codes, &a.audio) {
        (Some(c), _) => Some(read_codes(c)?),
        (None, Some(wav)) => {
            let codes = encode(wav)?;
            eprintln!("{}: {} frames of speech", wav.display(), codes.len());
            Some(codes)
        }
        (None, None) => None,
    };
    inputs.extend(g.chat_user_inputs(user.as_deref(), a.text.as_deref(), a.text_only)?);
    let mode = if a.text_only {
        Mode::TextOnly
    } else {
        Mode::Speech
    };
    g.start(&ctx, &inputs, mode)?;
    let (text, frames, all) = run_turn(&ctx, &mut g, &a.s.events)?;
    println!("{text}");
    if let Some(o) = &a.out {
        if frames.is_empty() && o.extension().and_then(|e| e.to_str()) != Some("npy") {
            return Err(format!(
                "the reply has no audio (text only), nothing to write to {}",
                o.display()
            )
            .into());
        }
        write_reply(o, &ctx, &w, &segments(&all), a.s.seed)?;
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct BenchLlmArgs {
    #[command(flatten)]
    pub gpu: GpuArgs,
    /// Weight formats to measure.
    #[arg(long, value_delimiter = ',', default_value = "q4")]
    pub quant: Vec<String>,
    /// `7b` (the real config's Qwen2.5-7B shape) or `tiny` (the tiny checkpoint's shape).
    #[arg(long, default_value = "7b")]
    pub shape: String,
    /// Prompt tokens to prefill.
    #[arg(long, default_value_t = 256)]
    pub prompt: usize,
    /// Tokens to decode.
    #[arg(long, default_value_t = 32)]
    pub tokens: usize,
    /// Audio frames to generate.
    #[arg(long, default_value_t = 8)]
    pub frames: usize,
    /// Store each random matrix in row parts of at most this many MiB, as `bca convert` stores
    /// a real checkpoint for the page (128); default: the device's binding limit.
    #[arg(long)]
    pub max_binding_mib: Option<u64>,
    /// Also write the results as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

pub fn bench(a: BenchLlmArgs) -> Res {
    use bca::weights::tiny::{real_config_value, tiny_config_value, Variant};
    let cfg_v = match a.shape.as_str() {
        "7b" => real_config_value(),
        "tiny" => tiny_config_value(Variant::Instruct),
        o => return Err(format!("unknown shape `{o}` (7b or tiny)").into()),
    };
    let formats = a
        .quant
        .iter()
        .map(|f| crate::parse_format(f))
        .collect::<Result<Vec<_>, _>>()?;
    let ctx = pollster::block_on(GpuContext::new(&a.gpu.options()))?;
    crate::print_adapter(&ctx);
    let bw_bytes = (256u64 << 20).min(ctx.limits.max_storage_buffer_binding_size);
    let bw = pollster::block_on(bca::bench::copy_bandwidth(&ctx, bw_bytes, 10))?;
    println!("copy kernel bandwidth: {:.1} GB/s (read + write)", bw / 1e9);
    println!(
        "{:>4} {:>7} {:>12} {:>10} {:>10} {:>9} {:>7} {:>9} {:>9} {:>7} {:>10} {:>8} {:>9}",
        "fmt",
        "prompt",
        "prefill t/s",
        "decode t/s",
        "serial t/s",
        "MB/tok",
        "% copy",
        "frames/s",
        "MB/frame",
        "% copy",
        "serial f/s",
        "rec ms/f",
        "wait ms/f"
    );
    let mut all = Vec::new();
    for f in formats {
        let cfg = bca::weights::OmniConfig::from_value(cfg_v.clone(), "config")?;
        let r = pollster::block_on(bca::model::llm::bench::bench_llm(
            &ctx,
            cfg,
            f,
            a.prompt,
            a.tokens,
            a.frames,
            bw,
            a.max_binding_mib.map(|m| m << 20),
        ))?;
        println!(
            "{:>4} {:>7} {:>12.1} {:>10} {:>10.2} {:>9.1} {:>6.1}% {:>9.2} {:>9.1} {:>6.1}% {:>10.2} {:>8.2} {:>9.2}",
            r.format,
            r.prompt,
            r.prefill_tokens_per_s,
            format!("{:.2}", r.decode_tokens_per_s),
            r.decode_tokens_per_s_serial,
            r.decode_bytes as f64 / 1e6,
            r.decode_pct_of_copy,
            r.frames_per_s,
            r.frame_bytes as f64 / 1e6,
            r.frame_pct_of_copy,
            r.frames_per_s_serial,
            r.frame_record_ms,
            r.frame_wait_ms
        );
        println!(
            "     embedding in {} part(s), LM head in {}",
            r.table_parts.0, r.table_parts.1
        );
        all.push(r);
    }
    println!(
        "decode t/s: pipelined, as the generator decodes text (the step on a token and the next \
         draw submitted before the token is read); serial t/s: each token read before the \
         next step"
    );
    if let Some(p) = a.json {
        let doc = serde_json::json!({"adapter": ctx.report(), "copy_bandwidth_bytes_per_s": bw, "llm": all});
        std::fs::write(&p, serde_json::to_string_pretty(&doc)?)?;
    }
    Ok(ExitCode::SUCCESS)
}
