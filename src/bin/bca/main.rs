//! `bca`: the native command-line tool. Same kernels as the browser, on wgpu's native backends.

use std::path::PathBuf;
use std::process::ExitCode;

use bca::gpu::{GpuContext, GpuOptions};
use clap::{Args, Parser, Subcommand};

mod audio_in;
mod bench_encode;
mod llm;
mod serve;
mod vocode;

#[derive(Parser)]
#[command(
    name = "bca",
    version,
    about = "Baichuan-Audio on WebGPU: tools, tests and benchmarks"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Clone)]
struct GpuArgs {
    /// Use the portable f32 activation path even if the adapter has shader-f16.
    #[arg(long)]
    f32: bool,
    /// Do not use subgroup operations even if the adapter has them.
    #[arg(long)]
    no_subgroups: bool,
    /// Fail if the adapter lacks shader-f16 instead of falling back to f32.
    #[arg(long, conflicts_with = "f32")]
    require_f16: bool,
    /// Rows per lane group in the matrix–vector kernels (a tuning knob for benchmarks).
    #[arg(long)]
    gemv_rows: Option<u32>,
    /// Invocations per row in the int8 matrix–vector kernel, 32, 64, 128 or 256 (a tuning
    /// knob; default by shape).
    #[arg(long, value_parser = parse_tpr)]
    gemv_tpr: Option<u32>,
    /// Quantise the int8 products' x with the old looping one-workgroup kernel (a tuning
    /// knob for comparisons).
    #[arg(long)]
    xq_loop: bool,
    /// The decode attention does not write its output as int8 x for the product after it (a
    /// knob for comparisons).
    #[arg(long)]
    no_attn_xq: bool,
    /// The W_pack product leaves RoPE and the cache append to a dispatch of their own (a knob
    /// for comparisons).
    #[arg(long)]
    no_fused_rope: bool,
    /// Split-K products leave a LayerNorm after them to a dispatch of its own (a knob for
    /// comparisons).
    #[arg(long)]
    no_fused_ln: bool,
    /// Products whose output feeds a q4/q8 product leave its int8 quantisation to a dispatch
    /// of its own (a knob for comparisons).
    #[arg(long)]
    no_fused_xqo: bool,
    /// Invocations per workgroup of the products that write their output as int8 x: 256, 512
    /// or 1024 (a tuning knob).
    #[arg(long)]
    xqo_wg: Option<u32>,
    /// RMSNorms before q4/q8 products keep a quantisation dispatch of their own instead of
    /// being deferred into the product (a knob for comparisons).
    #[arg(long)]
    no_defer_norm: bool,
    /// Outputs per lane group of those products: 1 or 2 (a tuning knob).
    #[arg(long)]
    xqo_outs: Option<u32>,
    /// q4/q8 blocks in flight per lane in those products, 1 to 4 (a tuning knob).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=4))]
    xqo_xu: Option<u32>,
    /// Keys per split of the decode attention, 32 or 64 (a tuning knob; default 32 up to 1024
    /// keys, 64 beyond).
    #[arg(long, value_parser = parse_decode_keys)]
    attn_decode_keys: Option<u32>,
    /// Tile of the matrix–matrix kernel, 64 or 128 (a tuning knob; default by shape).
    #[arg(long)]
    gemm_tile: Option<u32>,
    /// K slices of the 64-tile matrix–matrix kernel (1 never splits; default by shape).
    #[arg(long)]
    gemm_split: Option<usize>,
    /// Query rows per workgroup of the small-head attention kernel, 16, 32 or 64 (default 64);
    /// 0 runs the general attention kernel instead.
    #[arg(long)]
    attn_rows_block: Option<u32>,
    /// Key-range splits of that kernel, 1 to 8 (1 never splits; default by grid size).
    #[arg(long)]
    attn_splits: Option<u32>,
    /// q4/q8 matrix–vector products dequantise and FMA instead of int8 dot products.
    #[arg(long)]
    no_int8: bool,
    /// Keep the shader compiler's bounds checks (natively they are off by default).
    #[arg(long)]
    checked_shaders: bool,
    /// Time every GPU dispatch and print a per-kernel table at exit (changes timings).
    #[arg(long)]
    profile: bool,
    /// Do not use cooperative matrices (tensor cores) even where the adapter has them.
    #[arg(long)]
    no_coop: bool,
    /// The tensor-core product's K step, 32 or 64 (a tuning knob).
    #[arg(long, value_parser = parse_k_step)]
    coop_k_step: Option<u32>,
    /// The tensor-core kernel of f16-weight products: staged, direct or big (a tuning knob).
    #[arg(long, value_parser = parse_coop_f16)]
    coop_f16: Option<bca::gpu::CoopF16>,
    /// Subgroups the f16-weight tensor-core products aim for through split-K (a tuning knob).
    #[arg(long)]
    coop_split_target: Option<usize>,
    /// The direct tensor-core tile FNxGNxGM: (16·FN) × 64 per subgroup, GN × GM subgroups per
    /// workgroup; FN 2 or 4, GN·GM ≤ 4 (a tuning knob).
    #[arg(long, value_parser = parse_coopd_shape)]
    coopd_shape: Option<[u32; 3]>,
    /// f16-weight tensor-core products of at most this many vectors take the one-pass
    /// chunked kernel instead of the split-K tile; 0 never (a tuning knob; default 512).
    #[arg(long)]
    coops_max_n: Option<usize>,
    /// The same bound for convolutions, in output frames (a tuning knob; default: as
    /// --coops-max-n).
    #[arg(long)]
    coops_conv_max_n: Option<usize>,
    /// That kernel's shape SGxKS: 16·SG W rows per workgroup, KS subgroups sharing each
    /// block's K steps; SG·KS ≤ 4, KS 1, 2 or 4 (a tuning knob; default 4x1).
    #[arg(long, value_parser = parse_coops_shape)]
    coops_shape: Option<(u32, u32)>,
    /// Subgroups per workgroup of the tensor-core attention, 1, 2 or 4 (16 query rows each; a
    /// tuning knob; default 4).
    #[arg(long, value_parser = parse_sg)]
    attn_coop_sg: Option<u32>,
    /// The tensor-core attention loads each K/V tile when it starts on it instead of during
    /// the previous one (a knob for comparisons).
    #[arg(long)]
    no_attn_prefetch: bool,
    /// HiFT's F0, sine source and source STFT on the host, with a read-back of F0 (a knob for
    /// comparisons).
    #[arg(long)]
    host_source: bool,
    /// The decode attention always takes its split passes, not the one-pass kernel for short
    /// caches (33 to 384 keys; a knob for comparisons).
    #[arg(long)]
    no_attn_one_pass: bool,
    /// The decode attention's GQA pass with 64-key splits (past 1024 keys) reduces through
    /// workgroup memory even where the adapter has subgroups (a knob for comparisons).
    #[arg(long)]
    no_attn_sg: bool,
    /// The LLM's gate and up as two products and a SwiGLU dispatch, not one interleaved matrix
    /// (the path of a GPU too small to bind it; a knob for comparisons).
    #[arg(long)]
    no_fused_mlp: bool,
}

fn parse_coops_shape(s: &str) -> Result<(u32, u32), String> {
    let bad = || format!("{s:?}: SGxKS, each 1, 2 or 4, SG·KS ≤ 4 (e.g. 4x1, 2x2)");
    let (a, b) = s.trim().split_once('x').ok_or_else(bad)?;
    let sg = a.parse::<u32>().map_err(|_| bad())?;
    let ks = b.parse::<u32>().map_err(|_| bad())?;
    if !matches!(sg, 1 | 2 | 4) || !matches!(ks, 1 | 2 | 4) || sg * ks > 4 {
        return Err(bad());
    }
    Ok((sg, ks))
}

fn parse_sg(s: &str) -> Result<u32, String> {
    match s.trim().parse::<u32>() {
        Ok(v @ (1 | 2 | 4)) => Ok(v),
        _ => Err(format!("{s:?}: 1, 2 or 4")),
    }
}

fn parse_coop_f16(s: &str) -> Result<bca::gpu::CoopF16, String> {
    use bca::gpu::CoopF16;
    match s.trim() {
        "staged" => Ok(CoopF16::Staged),
        "direct" => Ok(CoopF16::Direct),
        "big" => Ok(CoopF16::Big),
        o => Err(format!("{o:?}: staged, direct or big")),
    }
}

fn parse_coopd_shape(s: &str) -> Result<[u32; 3], String> {
    let v: Vec<u32> = s
        .split('x')
        .map(|p| p.trim().parse::<u32>().map_err(|e| format!("{p:?}: {e}")))
        .collect::<Result<_, _>>()?;
    match v[..] {
        [f, gn, gm] if (f == 2 || f == 4) && gn >= 1 && gm >= 1 && gn * gm <= 4 => Ok([f, gn, gm]),
        _ => Err(format!("{s:?}: FNxGNxGM with FN 2 or 4 and GN·GM ≤ 4")),
    }
}

fn parse_tpr(s: &str) -> Result<u32, String> {
    match s.trim().parse::<u32>() {
        Ok(t @ (32 | 64 | 128 | 256)) => Ok(t),
        _ => Err(format!("invocations per row {s:?}: 32, 64, 128 or 256")),
    }
}

fn parse_decode_keys(s: &str) -> Result<u32, String> {
    match s.trim() {
        "32" => Ok(32),
        "64" => Ok(64),
        o => Err(format!("keys per split {o:?}: 32 or 64")),
    }
}

fn parse_k_step(s: &str) -> Result<u32, String> {
    match s.trim() {
        "32" => Ok(32),
        "64" => Ok(64),
        o => Err(format!("K step {o:?}: 32 or 64")),
    }
}

impl GpuArgs {
    fn options(&self) -> GpuOptions {
        GpuOptions {
            force_f32: self.f32,
            no_subgroups: self.no_subgroups,
            low_power: false,
            require_f16: self.require_f16,
            gemv_rows: self.gemv_rows,
            gemv_tpr: self.gemv_tpr,
            xq_loop: self.xq_loop,
            no_attn_xq: self.no_attn_xq,
            no_fused_rope: self.no_fused_rope,
            no_fused_ln: self.no_fused_ln,
            no_fused_xqo: self.no_fused_xqo,
            xqo_wg: self.xqo_wg,
            no_defer_norm: self.no_defer_norm,
            xqo_outs: self.xqo_outs,
            xqo_xu: self.xqo_xu,
            attn_decode_keys: self.attn_decode_keys,
            gemm_tile: self.gemm_tile,
            gemm_split: self.gemm_split,
            attn_rows_block: self.attn_rows_block,
            attn_splits: self.attn_splits,
            no_int8: self.no_int8,
            profile: self.profile,
            checked_shaders: self.checked_shaders,
            no_coop: self.no_coop,
            coop_k_step: self.coop_k_step,
            coop_f16: self.coop_f16,
            coop_split_target: self.coop_split_target,
            coopd_shape: self.coopd_shape,
            coops_max_n: self.coops_max_n,
            coops_conv_max_n: self.coops_conv_max_n,
            coops_shape: self.coops_shape,
            attn_coop_sg: self.attn_coop_sg,
            no_attn_prefetch: self.no_attn_prefetch,
            host_source: self.host_source,
            no_attn_one_pass: self.no_attn_one_pass,
            no_attn_sg: self.no_attn_sg,
            no_fused_mlp: self.no_fused_mlp,
            max_binding: None,
        }
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Print the adapter, backend, driver, features and negotiated limits.
    Info {
        #[command(flatten)]
        gpu: GpuArgs,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run the kernel self-tests (the same cases as the web page) against CPU references.
    Selftest {
        #[command(flatten)]
        gpu: GpuArgs,
    },
    /// Benchmarks on the GPU (full model shapes, random weights), against measured bandwidth.
    Bench {
        #[command(subcommand)]
        what: BenchCmd,
    },
    /// Serve the web app (www/) with the COOP/COEP headers it needs.
    Serve {
        /// Folder to serve.
        #[arg(long, default_value = "www")]
        dir: PathBuf,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: String,
    },
    /// Write a miniature checkpoint folder with the real folder's structure (seeded weights).
    Tiny {
        /// Output folder.
        out: PathBuf,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long, value_enum, default_value = "instruct")]
        variant: VariantArg,
        /// The Qwen tokenizer.json (scripts/fetch-assets.sh downloads it).
        #[arg(long, default_value = ".cache/assets/tokenizer-qwen3.json")]
        tokenizer: PathBuf,
    },
    /// Convert a Hugging Face folder into the web format (manifest.json + shards).
    Convert {
        hf_dir: PathBuf,
        out_dir: PathBuf,
        #[arg(long, value_enum, default_value = "q4")]
        quant: QuantArg,
        /// Largest part (one storage binding) in bytes.
        #[arg(long, default_value_t = bca::weights::manifest::DEFAULT_MAX_BINDING)]
        max_binding: u64,
        /// Largest shard file in bytes.
        #[arg(long, default_value_t = bca::weights::manifest::DEFAULT_MAX_SHARD)]
        max_shard: u64,
    },
    /// Verify a converted or Hugging Face folder (hashes, shapes, formats) and summarise it.
    Check {
        model_dir: PathBuf,
        /// Also write each tensor's SHA-256 as the weight store holds it (JSON) to this file.
        #[arg(long)]
        digests: Option<PathBuf>,
    },
    /// Whisper log-mel of a WAV file (resampled to 16 kHz, mono) → .npy float32 [n_mels, frames].
    Mel(audio_in::MelArgs),
    /// Audio in: WAV → mel → encoder → bridge → RVQ codes (.npy int32 [frames, 8]).
    Encode(audio_in::EncodeArgs),
    /// Audio in with every tap point (mel, encoder layers, bridge, RVQ levels) → .safetensors.
    Trace(audio_in::EncodeArgs),
    /// Codes (N, 8) .npy → 24 kHz WAV (audio decoder, flow matching, HiFT).
    Vocode(vocode::VocodeArgs),
    /// Print the token ids of a UTF-8 file's whole content (no special tokens added).
    Tokenize(llm::TokenizeArgs),
    /// Logits of the LLM at every position of a token sequence → .npy float32 [n, vocab].
    Logits(llm::LogitsArgs),
    /// Continue a text prompt with the LLM (prints the new token ids).
    Generate(llm::GenerateArgs),
    /// Transcribe speech given as audio codes (Base model prompt).
    Asr(llm::AsrArgs),
    /// Speak text: audio codes per clause (Base model prompt) → .npy [frames, 8].
    Tts(llm::TtsArgs),
    /// One spoken-chat turn with an Instruct model: prints the reply text, writes its codes.
    Chat(llm::ChatArgs),
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum VariantArg {
    Instruct,
    Base,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum QuantArg {
    Q4,
    Q8,
    F16,
}

#[derive(Subcommand)]
enum BenchCmd {
    /// Every decode-time matrix-vector product, per weight format: time, GB/s, % of copy bandwidth.
    Kernels {
        #[command(flatten)]
        gpu: GpuArgs,
        /// Weight formats to measure.
        #[arg(long, value_delimiter = ',', default_value = "q4,q8,f16")]
        formats: Vec<String>,
        /// Divide every dimension by this (quick runs on small adapters).
        #[arg(long, default_value_t = 1)]
        scale: usize,
        /// Input vectors per product: 1 measures decode (bandwidth); e.g. 512 measures prefill
        /// through the tiled kernel (arithmetic rate).
        #[arg(long, default_value_t = 1)]
        n: usize,
        /// Bytes of distinct weights cycled through per shape (defeats the GPU's L2 cache).
        #[arg(long, default_value_t = 512 << 20)]
        working_set: u64,
        /// Each product also writes its output as the next product's int8 x
        /// (`Epilogue::xq_out`; one vector).
        #[arg(long)]
        xq_out: bool,
        /// One-vector q4/q8 products take x already quantised to int8, as the decode step's
        /// products do (its producer's epilogue writes it), so a call is the product's
        /// dispatch alone; without it each call quantises x in a dispatch of its own first.
        #[arg(long)]
        x_given: bool,
        /// Instead of the model's shapes, products of these row counts (× `--cols`): how the
        /// time grows with the grid, e.g. across multiples of the GPU's workgroup slots.
        #[arg(long, value_delimiter = ',')]
        rows: Vec<usize>,
        /// Columns of the `--rows` products.
        #[arg(long, default_value_t = 3584)]
        cols: usize,
        /// Also write the results as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// A synthetic full decode step (all layers, attention, LM head, argmax) with random weights.
    Decode {
        #[command(flatten)]
        gpu: GpuArgs,
        /// `qwen2.5-7b` (the LLM of Baichuan-Audio) or `small` (for CPU adapters).
        #[arg(long, default_value = "qwen2.5-7b")]
        shape: String,
        /// Weight formats to measure.
        #[arg(long, value_delimiter = ',', default_value = "q4")]
        quant: Vec<String>,
        /// Context lengths (the token attends to this many positions).
        #[arg(long, value_delimiter = ',', default_value = "1024,4096")]
        contexts: Vec<usize>,
        /// Fold each RMSNorm into the following product instead of a separate dispatch
        /// (the default for q4/q8 with int8 activations, where the norm is computed once in the
        /// quantise step; `--separate-norm` turns it off).
        #[arg(long)]
        fuse_norm: bool,
        /// Keep RMSNorm as its own dispatch even on the int8 path.
        #[arg(long, conflicts_with = "fuse_norm")]
        separate_norm: bool,
        /// Afterwards, what the driver made of each kernel the step used (registers, local
        /// and shared memory), where the Vulkan driver reports it
        /// (VK_KHR_pipeline_executable_properties: NVIDIA's does, lavapipe's not).
        #[arg(long)]
        pipeline_stats: bool,
        /// Also write the results as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Audio in: seconds of speech → codes (mel + encoder + bridge + RVQ), random weights.
    Encode(bench_encode::EncodeBenchArgs),
    /// Real-time factor of audio out (decoder + flow matching + HiFT), random weights.
    Vocode(vocode::BenchVocodeArgs),
    /// The audio LLM on random weights: prefill, decode and audio-frame rates.
    Llm(llm::BenchLlmArgs),
}

fn print_adapter(ctx: &GpuContext) {
    println!(
        "adapter: {} ({:?}, driver {} {}), activations {}, subgroup size {}",
        ctx.info.name,
        ctx.info.backend,
        ctx.info.driver,
        ctx.info.driver_info,
        ctx.act().name(),
        ctx.caps.subgroup_size
    );
}

fn parse_format(s: &str) -> Result<bca::tensor::WeightFormat, String> {
    match s {
        "f16" => Ok(bca::tensor::WeightFormat::F16),
        "q8" => Ok(bca::tensor::WeightFormat::Q8),
        "q4" => Ok(bca::tensor::WeightFormat::Q4),
        other => Err(format!("unknown weight format `{other}` (f16, q8 or q4)")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bca: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode, Box<dyn std::error::Error>> {
    match cli.cmd {
        Cmd::Info { gpu, json } => {
            let ctx = pollster::block_on(GpuContext::new(&gpu.options()))?;
            let r = ctx.report();
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print_info(&r);
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Selftest { gpu } => {
            let ctx = pollster::block_on(GpuContext::new(&gpu.options()))?;
            println!("adapter: {} ({:?})", ctx.info.name, ctx.info.backend);
            let results = pollster::block_on(bca::selftest::run_all(&ctx));
            let failed = results.iter().filter(|r| !r.passed).count();
            for r in &results {
                println!(
                    "{} {}: {}",
                    if r.passed { "ok  " } else { "FAIL" },
                    r.name,
                    r.detail
                );
            }
            println!("{} passed, {} failed", results.len() - failed, failed);
            Ok(if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Cmd::Bench {
            what:
                BenchCmd::Kernels {
                    gpu,
                    formats,
                    scale,
                    n,
                    working_set,
                    xq_out,
                    x_given,
                    rows,
                    cols,
                    json,
                },
        } => {
            let formats = formats
                .iter()
                .map(|f| parse_format(f))
                .collect::<Result<Vec<_>, _>>()?;
            let ctx = pollster::block_on(GpuContext::new(&gpu.options()))?;
            println!(
                "adapter: {} ({:?}, driver {} {}), activations {}, subgroups {}",
                ctx.info.name,
                ctx.info.backend,
                ctx.info.driver,
                ctx.info.driver_info,
                ctx.act().name(),
                ctx.caps.subgroup_size
            );
            let bw_bytes = (working_set / 2).min(ctx.limits.max_storage_buffer_binding_size);
            let bw = pollster::block_on(bca::bench::copy_bandwidth(&ctx, bw_bytes, 10))?;
            println!("copy kernel bandwidth: {:.1} GB/s (read + write)", bw / 1e9);
            let lat = pollster::block_on(bca::bench::dispatch_latency(&ctx, 512, false))?;
            let lat_fixed = pollster::block_on(bca::bench::dispatch_latency(&ctx, 512, true))?;
            println!(
                "dependent dispatch: {:.2} us each (a chain of 512 tiny copies in one pass), \
                 {:.2} us with the copy's size as pipeline constants",
                lat * 1e6,
                lat_fixed * 1e6
            );
            let ind = pollster::block_on(bca::bench::independent_dispatch(&ctx, 256))?;
            println!(
                "independent dispatch: {:.2} us each (256 tiny copies in one pass with no barrier \
                 between them: the rest of a dependent one is the barrier's wait)",
                ind * 1e6
            );
            let mut barrier_kinds = Vec::new();
            #[cfg(not(target_vendor = "apple"))]
            for groups in [1u32, 132, 1056] {
                use bca::bench::vk_barriers::{barrier_costs, FLAVOURS};
                if let Some(costs) =
                    pollster::block_on(barrier_costs(&ctx, 256, groups, &FLAVOURS))?
                {
                    println!(
                        "dependent dispatch through raw Vulkan, {groups} workgroup(s) of 256 vec4s \
                         per link, by barrier kind:"
                    );
                    for (f, us) in costs {
                        println!("  {:<40} {us:>6.2} us per link", f.name());
                        barrier_kinds.push(serde_json::json!({
                            "workgroups": groups, "barrier": f.name(), "us_per_link": us
                        }));
                    }
                }
            }
            if ctx.caps.coop {
                let p = pollster::block_on(bca::bench::tensor_peak(&ctx))?;
                println!(
                    "tensor-core multiply-add limit: {:.1} TFLOP/s (fragments in registers), \
                     {:.1} (reloaded from a buffer), {:.1} (from workgroup memory)",
                    p[0] / 1e12,
                    p[1] / 1e12,
                    p[2] / 1e12
                );
            }
            if x_given {
                println!(
                    "one-vector q4/q8 products take x as int8, quantised once before the timing \
                     (as in a decode step): a call is the product's dispatch alone"
                );
            }
            println!(
                "{:<30} {:>4} {:>7} {:>6} {:>10} {:>9} {:>8} {:>7} {:>7}",
                "product", "fmt", "rows", "cols", "MB", "us/call", "GB/s", "% copy", "TFLOP/s"
            );
            let mut all = Vec::new();
            for f in &formats {
                // `--rows`: shapes named by their size (leaked: a few per run, alive to exit)
                let custom: Vec<bca::bench::Shape> = rows
                    .iter()
                    .map(|&r| bca::bench::Shape {
                        name: Box::leak(format!("rows {r} × {cols}").into_boxed_str()),
                        rows: r,
                        cols,
                    })
                    .collect();
                let shapes = if custom.is_empty() {
                    bca::bench::PRODUCT_SHAPES
                } else {
                    &custom[..]
                };
                for shape in shapes {
                    let r = pollster::block_on(bca::bench::bench_product(
                        &ctx,
                        shape,
                        *f,
                        bw,
                        working_set,
                        scale,
                        n,
                        xq_out,
                        x_given,
                    ))?;
                    println!(
                        "{:<30} {:>4} {:>7} {:>6} {:>10.2} {:>9.2} {:>8.1} {:>6.1}% {:>7.2}",
                        r.name,
                        r.format,
                        r.rows,
                        r.cols,
                        r.weight_bytes as f64 / 1e6,
                        r.us_per_call,
                        r.gb_per_s,
                        r.pct_of_copy,
                        r.tflops
                    );
                    all.push(r);
                }
            }
            if let Some(p) = json {
                let doc = serde_json::json!({
                    "adapter": ctx.report(),
                    "copy_bandwidth_bytes_per_s": bw,
                    "dependent_dispatch_s": lat,
                    "independent_dispatch_s": ind,
                    "raw_vulkan_links": barrier_kinds,
                    "products": all,
                });
                std::fs::write(&p, serde_json::to_string_pretty(&doc)?)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Bench {
            what:
                BenchCmd::Decode {
                    gpu,
                    shape,
                    quant,
                    contexts,
                    fuse_norm,
                    separate_norm,
                    pipeline_stats,
                    json,
                },
        } => {
            let shape = match shape.as_str() {
                "qwen2.5-7b" => bca::bench::QWEN25_7B,
                "small" => bca::bench::SMALL,
                other => {
                    return Err(format!("unknown shape `{other}` (qwen2.5-7b or small)").into())
                }
            };
            let formats = quant
                .iter()
                .map(|f| parse_format(f))
                .collect::<Result<Vec<_>, _>>()?;
            let ctx = pollster::block_on(GpuContext::new(&gpu.options()))?;
            print_adapter(&ctx);
            let bw_bytes = (256u64 << 20).min(ctx.limits.max_storage_buffer_binding_size);
            let bw = pollster::block_on(bca::bench::copy_bandwidth(&ctx, bw_bytes, 10))?;
            println!("copy kernel bandwidth: {:.1} GB/s (read + write)", bw / 1e9);
            println!("shape: {shape:?}");
            println!(
                "{:>4} {:>7} {:>10} {:>11} {:>9} {:>10} {:>9} {:>8} {:>7}",
                "fmt",
                "context",
                "dispatch",
                "GPU us/tok",
                "tok/s",
                "wall tok/s",
                "MB/tok",
                "GB/s",
                "% copy"
            );
            let mut all = Vec::new();
            for f in formats {
                let fuse = fuse_norm
                    || (!separate_norm && ctx.int8 && f != bca::tensor::WeightFormat::F16);
                let rs = pollster::block_on(bca::bench::bench_decode(
                    &ctx, &shape, f, &contexts, bw, fuse,
                ))?;
                // a per-stage breakdown as "name µs, …"
                let stages = |v: &[(String, f64)]| {
                    v.iter()
                        .map(|(n, us)| format!("{n} {us:.0}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                for r in rs {
                    println!(
                        "{:>4} {:>7} {:>10} {:>11.1} {:>9.1} {:>10.1} {:>9.1} {:>8.1} {:>6.1}%",
                        r.format,
                        r.context,
                        r.dispatches_per_token,
                        r.gpu_us_per_token,
                        r.tokens_per_s,
                        r.wall_tokens_per_s,
                        r.bytes_per_token as f64 / 1e6,
                        r.gb_per_s,
                        r.pct_of_copy
                    );
                    println!(
                        "     stages alone, GPU us/token: {}",
                        stages(&r.breakdown_us)
                    );
                    println!(
                        "     stream bound (plain reads of the same bytes, one dispatch per stage, {} vec4s per invocation): {:.1} us/token, {:.1}% copy; this step at {:.1}% of it",
                        r.read_chain_vec4s,
                        r.read_chain_us,
                        100.0 * r.bytes_per_token as f64 / (r.read_chain_us * 1e-6) / bw,
                        100.0 * r.read_chain_us / r.gpu_us_per_token
                    );
                    println!(
                        "     its stages alone, GPU us/token: {}",
                        stages(&r.read_stages_us)
                    );
                    all.push(r);
                }
            }
            let mut kernel_stats = Vec::new();
            if pipeline_stats {
                #[cfg(not(target_vendor = "apple"))]
                // a driver that refuses the second device costs the statistics, not the run
                match bca::bench::vk_stats::pipeline_stats(&ctx, "") {
                    Err(e) => println!("{e}"),
                    Ok(Some(all)) => {
                        println!("what the driver made of each kernel (compiled again with its statistics):");
                        for k in all {
                            let s: Vec<String> =
                                k.stats.iter().map(|(n, v)| format!("{n} {v}")).collect();
                            println!("  {}: {}", k.kernel, s.join(", "));
                            kernel_stats.push(k);
                        }
                    }
                    Ok(None) => println!(
                        "pipeline statistics: not reported by this driver (needs Vulkan with \
                         VK_KHR_pipeline_executable_properties)"
                    ),
                }
            }
            if let Some(p) = json {
                let doc = serde_json::json!({
                    "adapter": ctx.report(),
                    "copy_bandwidth_bytes_per_s": bw,
                    "shape": shape,
                    "decode": all,
                    "kernel_stats": kernel_stats,
                });
                std::fs::write(&p, serde_json::to_string_pretty(&doc)?)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Serve { dir, addr } => {
            serve::serve(&dir, &addr)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Tiny {
            out,
            seed,
            variant,
            tokenizer,
        } => {
            use bca::weights::tiny::{write_tiny, TinyOptions, Variant};
            let variant = match variant {
                VariantArg::Instruct => Variant::Instruct,
                VariantArg::Base => Variant::Base,
            };
            let files = write_tiny(&TinyOptions {
                out,
                seed,
                variant,
                tokenizer,
            })?;
            for f in files {
                let len = std::fs::metadata(&f).map(|m| m.len()).unwrap_or(0);
                println!("{:>12}  {}", len, f.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Convert {
            hf_dir,
            out_dir,
            quant,
            max_binding,
            max_shard,
        } => {
            use bca::weights::spec::Quant;
            let quant = match quant {
                QuantArg::Q4 => Quant::Q4,
                QuantArg::Q8 => Quant::Q8,
                QuantArg::F16 => Quant::F16,
            };
            let opts = bca::weights::convert::ConvertOptions {
                quant,
                max_binding,
                max_shard,
                progress: true,
            };
            let m = bca::weights::convert::convert(&hf_dir, &out_dir, &opts)?;
            let bytes: u64 = m.shards.iter().map(|s| s.bytes).sum();
            println!(
                "{} tensors, {} shards, {} bytes → {}",
                m.tensors.len(),
                m.shards.len(),
                bytes,
                out_dir.display()
            );
            let cfg = bca::weights::convert::manifest_config(&m)?;
            let roles = bca::weights::spec::model_tensors(&cfg)
                .into_iter()
                .map(|s| (s.name, s.role))
                .collect();
            if let Some((name, need)) = bca::weights::manifest::largest_binding(&m, &roles) {
                println!(
                    "loads on GPUs whose maxStorageBufferBindingSize is at least {need} bytes \
                     ({:.1} MiB, for {name})",
                    need as f64 / (1u64 << 20) as f64
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Check { model_dir, digests } => match bca::weights::check::check_dir(&model_dir) {
            Ok(summary) => {
                print!("{summary}");
                if let Some(out) = digests {
                    let d = bca::weights::check::digests(&model_dir)?;
                    std::fs::write(&out, serde_json::to_string_pretty(&d)?)?;
                }
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                println!("FAIL: {e}");
                Ok(ExitCode::FAILURE)
            }
        },
        Cmd::Bench {
            what: BenchCmd::Encode(a),
        } => bench_encode::run(a),
        Cmd::Mel(a) => audio_in::mel(a),
        Cmd::Encode(a) => audio_in::encode(a),
        Cmd::Trace(a) => audio_in::trace(a),
        Cmd::Vocode(a) => vocode::run(a),
        Cmd::Bench {
            what: BenchCmd::Vocode(a),
        } => vocode::bench(a),
        Cmd::Tokenize(a) => llm::tokenize(a),
        Cmd::Logits(a) => llm::logits(a),
        Cmd::Bench {
            what: BenchCmd::Llm(a),
        } => llm::bench(a),
        Cmd::Generate(a) => llm::generate(a),
        Cmd::Asr(a) => llm::asr(a),
        Cmd::Tts(a) => llm::tts(a),
        Cmd::Chat(a) => llm::chat(a),
    }
}

fn print_info(r: &serde_json::Value) {
    let s = |k: &str| r[k].as_str().unwrap_or("?").to_string();
    println!("adapter:   {}", s("adapter"));
    println!("backend:   {} ({})", s("backend"), s("device_type"));
    println!("driver:    {} {}", s("driver"), s("driver_info"));
    println!("ids:       vendor {} device {}", s("vendor"), s("device"));
    println!("compute:   activations {}", s("activation_dtype"));
    if let Some(f) = r["features"].as_object() {
        for (k, v) in f {
            println!("feature:   {k} = {v}");
        }
    }
    if let Some(l) = r["limits"].as_object() {
        for (k, v) in l {
            println!("limit:     {k} = {v}");
        }
    }
}
