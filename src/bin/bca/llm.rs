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
    let text = String::from_utf8(text)
        .map_err(|e| format!("{}: not UTF-8 ({e})", a.file.display()))?;
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
