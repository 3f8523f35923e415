//! `bca bench llm`: the real decoder, audio head and samplers on random weights of full size
//! (the Qwen2.5-7B shape of the real config) or of the tiny config: prefill tokens/s, decode
//! tokens/s (step + greedy pick) and audio frames/s (LLM step + 8 head steps + 8 code picks),
//! each against the copy-kernel bandwidth (bytes a step must read / time / copy GB/s).

use crate::gpu::{GpuContext, Recorder};
use crate::tensor::{Matrix, WeightFormat};
use crate::util::rng::Rng;
use crate::weights::spec::{model_tensors, Role, Stage};
use crate::weights::OmniConfig;

use super::head::{AudioHead, FrameSampler, HeadState};
use super::sample::{GpuSampler, SamplingParams};
use super::{Input, Llm, Session};
use crate::model::weights::MatrixPart;
use crate::model::{HostTensor, ModelError, Weights};

#[derive(Clone, Debug, serde::Serialize)]
pub struct LlmBench {
    pub format: String,
    pub prompt: usize,
    pub prefill_tokens_per_s: f64,
    /// Text tokens per second as the generator decodes them (greedy, drawn on the GPU):
    /// pipelined (the step on a token and the next draw submitted before the token is read).
    pub decode_tokens_per_s: f64,
    /// The same, each token read back before the next step is recorded (`pipeline: false`).
    pub decode_tokens_per_s_serial: f64,
    /// Row parts of the embedding table and of the LM head.
    pub table_parts: (usize, usize),
    pub decode_bytes: u64,
    pub decode_pct_of_copy: f64,
    /// Audio frames per second, pipelined as the generator runs them (one frame in flight).
    pub frames_per_s: f64,
    /// The same, each frame read back before the next is recorded (`pipeline: false`).
    pub frames_per_s_serial: f64,
    /// Pipelined, per frame: the CPU's time recording and submitting (the LLM step and the
    /// next frame), and its time waiting for the frame's codes.
    pub frame_record_ms: f64,
    pub frame_wait_ms: f64,
    pub frame_bytes: u64,
    pub frame_pct_of_copy: f64,
}

/// A weight store of random values for the LLM, audio embeddings and audio head of `cfg`, each
/// matrix in row parts of at most `max_binding` bytes (the device's binding limit when `None`;
/// `bca convert` stores a real checkpoint in 128 MiB parts).
pub fn random_weights(
    ctx: &GpuContext,
    cfg: OmniConfig,
    format: WeightFormat,
    max_binding: Option<u64>,
) -> Result<Weights, ModelError> {
    let specs = model_tensors(&cfg);
    let w = Weights::empty(cfg, format);
    let mut rng = Rng::new(1);
    let max = max_binding
        .unwrap_or(u64::MAX)
        .min(ctx.limits.max_storage_buffer_binding_size);
    for (n, s) in specs.iter().enumerate() {
        if !matches!(s.stage, Stage::Llm | Stage::AudioEmbed | Stage::AudioHead) {
            continue;
        }
        let numel: usize = s.shape.iter().product();
        match s.role {
            Role::Linear | Role::Embedding => {
                let rows = s.shape[0];
                let cols = numel / rows;
                let fmt = if s.role == Role::Embedding {
                    WeightFormat::F16
                } else {
                    format
                };
                let bytes_per_row = (cols as f64 * fmt.bits_per_weight() / 8.0).ceil() as u64 + 16;
                let per = ((max / bytes_per_row) as usize).clamp(1, rows);
                let mut parts = Vec::new();
                let mut r0 = 0;
                let mut rec = Recorder::new(ctx, "bench.random");
                while r0 < rows {
                    let r1 = (r0 + per).min(rows);
                    parts.push(MatrixPart {
                        row_start: r0,
                        matrix: Matrix::random(
                            &mut rec,
                            r1 - r0,
                            cols,
                            fmt,
                            (n * 131 + r0) as u32,
                        )?,
                    });
                    r0 = r1;
                }
                rec.submit()?;
                w.insert_matrix(&s.name, parts);
            }
            Role::Norm => w.insert_host(
                &s.name,
                HostTensor {
                    shape: s.shape.clone(),
                    data: (0..numel).map(|_| 1.0 + 0.02 * rng.normal()).collect(),
                },
            ),
            _ => w.insert_host(
                &s.name,
                HostTensor {
                    shape: s.shape.clone(),
                    data: rng.normal_vec(numel, 0.02),
                },
            ),
        }
    }
    Ok(w)
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn matrix_bytes(m: &Matrix) -> u64 {
    m.data_bytes() + m.scale_bytes()
}

/// `n` frames with one in flight (the generator's pipelined loop, without its bookkeeping). It
/// keeps going past an audio-end code, which has its own embedding row.
#[allow(clippy::too_many_arguments)]
async fn pipelined_frames(
    ctx: &GpuContext,
    fp: &FrameSampler,
    s: &mut Session,
    hs: &HeadState,
    head: &AudioHead,
    llm: &Llm,
    codes_s: &GpuSampler,
    n: usize,
) -> Result<(f64, f64), ModelError> {
    let audio = SamplingParams::AUDIO;
    let mut rng = Rng::new(5);
    let (mut record, mut wait) = (0.0, 0.0);
    let mut cur = fp.submit(
        ctx, hs, head, llm, &s.hidden, codes_s, 0, &audio, &mut rng, 0,
    )?;
    for k in 0..n {
        let t0 = now();
        s.step_codes(ctx, llm, hs.codes())?;
        let next = fp.submit(
            ctx,
            hs,
            head,
            llm,
            &s.hidden,
            codes_s,
            k + 1,
            &audio,
            &mut rng,
            (k + 1) % 2,
        )?;
        let t1 = now();
        fp.read(ctx, cur, llm, &mut rng).await?;
        record += t1 - t0;
        wait += now() - t1;
        cur = next;
    }
    fp.read(ctx, cur, llm, &mut rng).await?;
    Ok((record, wait))
}

/// `n` greedy text tokens drawn on the GPU from the session's logits, each fed back as the
/// generator feeds it: with `pipeline`, the step on a token (from the GPU-side id) and the
/// next token's draw are submitted before the token is read ([`Session::step_id`]); without,
/// each token is read, then stepped on. `hist` is the penalty history so far.
async fn text_tokens(
    ctx: &GpuContext,
    s: &mut Session,
    llm: &Llm,
    text: &GpuSampler,
    hist: &mut Vec<u32>,
    n: usize,
    pipeline: bool,
) -> Result<(), ModelError> {
    let greedy = SamplingParams::greedy(1.0);
    let mut rng = Rng::new(3);
    text.load_history(ctx, hist)?;
    let mut cur = text.submit_draw(ctx, &s.logit_parts(llm), hist.len(), &greedy, &mut rng)?;
    for k in 0..n {
        let last = k + 1 == n;
        if pipeline && !last {
            s.step_id(ctx, llm, text.history(), cur.pos())?;
            let spare = s.step_logit_parts(llm);
            let next = text.submit_draw(ctx, &spare, cur.pos() + 1, &greedy, &mut rng)?;
            let id = text.read_draw(ctx, &cur).await?;
            s.keep_step();
            hist.push(id);
            cur = next;
        } else {
            let id = text.read_draw(ctx, &cur).await?;
            hist.push(id);
            // random weights may pick <audio_pad_baichuan>, which is no text input
            let feed = if id == llm.dims.audio_pad { 0 } else { id };
            s.step(ctx, llm, Input::Text(feed.min(llm.dims.vocab as u32 - 1)))?;
            if !last {
                cur = text.submit_draw(ctx, &s.logit_parts(llm), hist.len(), &greedy, &mut rng)?;
            }
        }
    }
    s.hidden.to_vec(ctx).await?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub async fn bench_llm(
    ctx: &GpuContext,
    cfg: OmniConfig,
    format: WeightFormat,
    prompt: usize,
    tokens: usize,
    frames: usize,
    copy_bw: f64,
    max_binding: Option<u64>,
) -> Result<LlmBench, ModelError> {
    let w = random_weights(ctx, cfg, format, max_binding)?;
    let llm = Llm::load(ctx, &w)?;
    let head = AudioHead::load(ctx, &w, &llm)?;
    let tmax = (prompt + tokens + frames + 8).min(llm.dims.max_positions);
    let mut s = Session::new(ctx, &llm, tmax, 128)?;
    let hs = HeadState::new(ctx, &head)?;
    let parts = llm.head_parts();
    let max_rows = parts.iter().map(|p| p.1).max().unwrap_or(1);
    let text = GpuSampler::new(ctx, max_rows, parts.len(), tmax);
    let cb_max = llm.dims.codebooks.iter().max().copied().unwrap_or(1) + 1;
    let codes_s = GpuSampler::new(ctx, cb_max, 1, frames + 1);
    let mut rng = Rng::new(3);
    let ids: Vec<Input> = (0..prompt)
        .map(|_| Input::Text(rng.below(151_000) as u32))
        .collect();
    // warm-up: the same prefill once (the driver compiles each pipeline at its first use, and
    // the chunk shapes are pipeline constants), then the measured prefill
    s.feed(ctx, &llm, &ids)?;
    s.hidden.to_vec(ctx).await?;
    s.truncate(0);
    let t0 = now();
    s.feed(ctx, &llm, &ids)?;
    s.hidden.to_vec(ctx).await?;
    let prefill = prompt as f64 / (now() - t0);

    // decode: warm-up (the driver compiles each pipeline at its first use), then measured,
    // pipelined and serial, each from the same position
    let pos = s.len;
    let mut hist: Vec<u32> = ids
        .iter()
        .map(|i| match i {
            Input::Text(t) => *t,
            Input::Audio(_) => llm.dims.audio_pad,
        })
        .collect();
    let n_prompt = hist.len();
    let mut rates = Vec::new();
    // (pipelined, tokens, measured); the last run leaves the cache at pos + tokens
    for (pipe, n, measured) in [
        (false, 2, false),
        (false, tokens, true),
        (true, 3, false),
        (true, tokens, true),
    ] {
        s.truncate(pos);
        hist.truncate(n_prompt);
        let t0 = now();
        text_tokens(ctx, &mut s, &llm, &text, &mut hist, n, pipe).await?;
        if measured {
            rates.push(n as f64 / (now() - t0));
        }
    }
    let decode_serial = rates.first().copied().unwrap_or(0.0);
    let decode = rates.last().copied().unwrap_or(0.0);

    let audio = SamplingParams::AUDIO;
    let cbs = llm.dims.codebooks;
    // both frame loops start from here
    let pos = s.len;
    // one submission per frame (eight head steps sampled on the GPU), as the generator runs it
    // with `pipeline: false`; two frames of warm-up first
    let fs = FrameSampler::new(ctx, 1);
    let none: Vec<Vec<u32>> = vec![Vec::new(); 8];
    let mut t0 = now();
    for k in 0..frames + 2 {
        if k == 2 {
            s.hidden.to_vec(ctx).await?;
            s.truncate(pos);
            t0 = now();
        }
        let mut codes = fs
            .frame(
                ctx, &hs, &head, &llm, &s.hidden, &codes_s, &none, &audio, &mut rng,
            )
            .await?
            .ok_or_else(|| ModelError::input("the audio sampling parameters need the CPU path"))?;
        // the bench keeps going past an audio-end code
        codes[0] = codes[0].min(cbs[0] as u32 - 1);
        s.step(ctx, &llm, Input::Audio(codes))?;
    }
    s.hidden.to_vec(ctx).await?;
    let fps_serial = frames as f64 / (now() - t0);

    // pipelined, as the generator runs it (`GenConfig::pipeline`): frame k's codes go to the
    // LLM from the GPU and frame k + 1 is submitted before frame k is read back; the penalty
    // histories grow on the GPU
    let fp = FrameSampler::new(ctx, frames + 2);
    s.truncate(pos);
    // warm-up (the first use of a pipeline includes the driver's compile), then measured
    pipelined_frames(ctx, &fp, &mut s, &hs, &head, &llm, &codes_s, 2).await?;
    s.truncate(pos);
    let t0 = now();
    let (record, wait) =
        pipelined_frames(ctx, &fp, &mut s, &hs, &head, &llm, &codes_s, frames).await?;
    let fps = frames as f64 / (now() - t0);

    // bytes one step must read: every LLM matrix but the embedding, plus the KV cache
    let d = &llm.dims;
    let mut llm_bytes = 0u64;
    for (name, _) in model_tensors(&w.config)
        .iter()
        .filter(|s| s.stage == Stage::Llm && s.role == Role::Linear)
        .map(|s| (s.name.clone(), ()))
    {
        // gate/up live as one interleaved matrix once the Llm is loaded (see `Mlp`)
        let fused = name
            .strip_suffix(".mlp.gate_proj.weight")
            .map(super::Mlp::fused_name);
        let name = match fused {
            Some(f) if w.matrix_parts(ctx, &f).is_ok() => f,
            _ if name.ends_with(".mlp.up_proj.weight") && w.matrix_parts(ctx, &name).is_err() => {
                continue;
            }
            _ => name,
        };
        for p in w.matrix_parts(ctx, &name)?.iter() {
            llm_bytes += matrix_bytes(&p.matrix);
        }
    }
    let ctx_len = prompt + tokens / 2;
    let kv = (d.layers * 2 * d.kv_heads * ctx_len * d.head_dim * ctx.act().size()) as u64;
    let decode_bytes = llm_bytes + kv;
    // per frame: the LLM step + 8 head steps (in/out proj, one FFN slice pair per layer, one
    // classifier); approximated from the head's shapes
    let h = d.hidden as f64;
    let nl = w.config.audio.audio_head_transformer_layers as f64;
    let bpw = format.bits_per_weight() / 8.0;
    let head_step = nl * (3.0 * h * h + h * h + 2.0 * h * h + 2.0 * h * h) * bpw;
    let classifiers: f64 = cbs.iter().map(|c| (*c as f64 + 1.0) * h * bpw).sum();
    // the pipelined frame's LLM step skips the LM head (`Session::step_codes`)
    let lm_bytes: u64 = llm.lm_head.iter().map(|p| matrix_bytes(&p.matrix)).sum();
    let frame_bytes =
        decode_bytes - lm_bytes.min(decode_bytes) + (8.0 * head_step + classifiers) as u64;
    Ok(LlmBench {
        format: format.name().to_string(),
        prompt,
        prefill_tokens_per_s: prefill,
        decode_tokens_per_s: decode,
        decode_tokens_per_s_serial: decode_serial,
        table_parts: llm.table_parts(),
        decode_bytes,
        decode_pct_of_copy: 100.0 * decode_bytes as f64 * decode / copy_bw,
        frames_per_s: fps,
        frames_per_s_serial: fps_serial,
        frame_record_ms: 1e3 * record / frames.max(1) as f64,
        frame_wait_ms: 1e3 * wait / frames.max(1) as f64,
        frame_bytes,
        frame_pct_of_copy: 100.0 * frame_bytes as f64 * fps / copy_bw,
    })
}
