//! Benchmarks (`bca bench …`): GPU time from timestamp queries, reported against the memory
//! bandwidth a plain vec4 copy kernel reaches in the same run. Speed is never a timed test.

use serde::Serialize;

use crate::gpu::{read_buffer, GpuContext, GpuError, Recorder};
use crate::ops::{self, Epilogue, OpError};
use crate::tensor::{Matrix, Tensor, WeightFormat};

#[cfg(not(target_vendor = "apple"))]
mod vk;
#[cfg(not(target_vendor = "apple"))]
pub mod vk_barriers;
#[cfg(not(target_vendor = "apple"))]
pub mod vk_stats;

/// Times GPU work with timestamp queries written at the start and end of one compute pass.
pub struct GpuTimer {
    qs: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    period_ns: f64,
}

impl GpuTimer {
    pub fn new(ctx: &GpuContext) -> Result<Self, GpuError> {
        if !ctx.caps.timestamps {
            return Err(GpuError::MissingFeature {
                feature: "timestamp-query",
                why: "GPU timing in benchmarks",
            });
        }
        let qs = ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("bench"),
            ty: wgpu::QueryType::Timestamp,
            count: 2,
        });
        let resolve = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("bench.resolve"),
            size: 16,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        Ok(GpuTimer {
            qs,
            resolve,
            period_ns: ctx.queue.get_timestamp_period() as f64,
        })
    }

    /// Seconds of GPU time for everything `record` puts into one pass.
    pub async fn time<F>(&self, ctx: &GpuContext, record: F) -> Result<f64, OpError>
    where
        F: FnOnce(&mut Recorder) -> Result<(), OpError>,
    {
        let mut rec = Recorder::new(ctx, "bench");
        rec.time_next_pass(&self.qs, 0);
        record(&mut rec)?;
        rec.encoder()?
            .resolve_query_set(&self.qs, 0..2, &self.resolve, 0);
        rec.submit()?;
        let bytes = read_buffer(ctx, &self.resolve, 0, 16).await?;
        let t: Vec<u64> = bytemuck::pod_collect_to_vec(&bytes);
        Ok(t[1].saturating_sub(t[0]) as f64 * self.period_ns * 1e-9)
    }
}

/// The bandwidth limit: bytes read + written per second by the vec4 copy kernel.
pub async fn copy_bandwidth(ctx: &GpuContext, bytes: u64, reps: usize) -> Result<f64, OpError> {
    let src = ctx.storage("bw.src", bytes);
    let dst = ctx.storage("bw.dst", bytes);
    let timer = GpuTimer::new(ctx)?;
    let mut rec = Recorder::new(ctx, "bw.fill");
    ops::fill(&mut rec, &src, (bytes / 4) as usize, 1, ops::Fill::Bits)?;
    rec.submit()?;
    // warm-up, then the best of three timed runs
    timer.time(ctx, |r| ops::copy(r, &src, &dst, bytes)).await?;
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let t = timer
            .time(ctx, |r| {
                for _ in 0..reps {
                    ops::copy(r, &src, &dst, bytes)?;
                }
                Ok(())
            })
            .await?;
        best = best.min(t / reps as f64);
    }
    Ok(2.0 * bytes as f64 / best)
}

/// The cost of one dependent dispatch: seconds per dispatch of a chain of `count` tiny copies
/// (256 bytes, each reading what the one before it wrote) in one pass, best of three. The
/// floor under any kernel of a decode step, whose dispatches depend on each other in turn.
/// With `fixed` the copies take their size as pipeline constants, so each waits on no read of
/// its params before its load: the difference is what that read costs a dispatch.
pub async fn dispatch_latency(ctx: &GpuContext, count: usize, fixed: bool) -> Result<f64, OpError> {
    let a = ctx.storage("lat.a", 256);
    let b = ctx.storage("lat.b", 256);
    let chain = |r: &mut Recorder| -> Result<(), OpError> {
        for i in 0..count {
            let (src, dst) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
            ops::copy_with(r, src, dst, 256, fixed)?;
        }
        Ok(())
    };
    best_of_three(ctx, &GpuTimer::new(ctx)?, chain, count).await
}

/// Seconds per unit (`per` units a recording) of what `record` records: a warm-up (pipelines,
/// caches), then the best of three timed runs.
async fn best_of_three<F>(
    ctx: &GpuContext,
    timer: &GpuTimer,
    record: F,
    per: usize,
) -> Result<f64, OpError>
where
    F: Fn(&mut Recorder) -> Result<(), OpError>,
{
    timer.time(ctx, &record).await?;
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        best = best.min(timer.time(ctx, &record).await? / per.max(1) as f64);
    }
    Ok(best)
}

/// The cost of one independent dispatch: seconds per dispatch of `count` tiny copies (256
/// bytes, pipeline-constant sizes) in one pass, each with a source and destination of its own,
/// so wgpu records no barrier between them (best of three). Against [`dispatch_latency`] it
/// splits a dependent dispatch's cost into the barrier's wait and the launch itself.
pub async fn independent_dispatch(ctx: &GpuContext, count: usize) -> Result<f64, OpError> {
    let bufs: Vec<(wgpu::Buffer, wgpu::Buffer)> = (0..count)
        .map(|_| (ctx.storage("ind.a", 256), ctx.storage("ind.b", 256)))
        .collect();
    let all = |r: &mut Recorder| -> Result<(), OpError> {
        for (src, dst) in &bufs {
            ops::copy_with(r, src, dst, 256, true)?;
        }
        Ok(())
    };
    best_of_three(ctx, &GpuTimer::new(ctx)?, all, count).await
}

/// The tensor-core limit (FLOP/s) of 16×16×16 f16 → f32 cooperative-matrix multiply-adds,
/// by where the fragments come from: `[registers, storage buffer, workgroup memory]`
/// (`mma_peak.wgsl`, 16 subgroups per SM-sized batch, best of three).
pub async fn tensor_peak(ctx: &GpuContext) -> Result<[f64; 3], OpError> {
    let groups = 132 * 16u32;
    let reps = 4096u32;
    let x = ctx.storage("peak.x", 512 * 8);
    let y = ctx.storage("peak.y", groups as u64 * 8192);
    let timer = GpuTimer::new(ctx)?;
    let mut rec = Recorder::new(ctx, "peak.fill");
    let small = ops::Fill::F16 {
        lo: (-0.01, 0.01),
        hi: (-0.01, 0.01),
    };
    ops::fill(&mut rec, &x, 1024, 1, small)?;
    rec.submit()?;
    let mut out = [0.0; 3];
    for (mode, o) in out.iter_mut().enumerate() {
        let run = |r: &mut Recorder| ops::mma_peak(r, &x, &y, (groups, reps, mode as u32));
        let best = best_of_three(ctx, &timer, run, 1).await?;
        *o = groups as f64 * reps as f64 * 8.0 * 2.0 * 4096.0 / best;
    }
    Ok(out)
}

#[derive(Clone, Debug, Serialize)]
pub struct ProductResult {
    pub name: String,
    pub format: String,
    pub rows: usize,
    pub cols: usize,
    pub weight_bytes: u64,
    /// Input vectors per call (1 = decode; more = prefill through the tiled kernel).
    pub n: usize,
    /// x came quantised to int8 (one dispatch per call: the product's), as in a decode step.
    pub x_given: bool,
    pub us_per_call: f64,
    pub gb_per_s: f64,
    pub pct_of_copy: f64,
    /// Arithmetic rate, 2·N·rows·cols / time.
    pub tflops: f64,
}

/// One product shape of the model.
pub struct Shape {
    pub name: &'static str,
    pub rows: usize,
    pub cols: usize,
}

/// The decode-time products of the model (spec §3–§6).
pub const PRODUCT_SHAPES: &[Shape] = &[
    Shape {
        name: "llm.qkv (W_pack)",
        rows: 4608,
        cols: 3584,
    },
    Shape {
        name: "llm.o_proj / head out_proj",
        rows: 3584,
        cols: 3584,
    },
    Shape {
        name: "llm.gate / up",
        rows: 18944,
        cols: 3584,
    },
    Shape {
        name: "llm.down",
        rows: 3584,
        cols: 18944,
    },
    Shape {
        name: "llm.lm_head",
        rows: 152064,
        cols: 3584,
    },
    Shape {
        name: "head.in_proj",
        rows: 10752,
        cols: 3584,
    },
    Shape {
        name: "head.linear1 (per position)",
        rows: 7168,
        cols: 3584,
    },
    Shape {
        name: "head.linear2 (per position)",
        rows: 3584,
        cols: 7168,
    },
    Shape {
        name: "head.heads[0]",
        rows: 8193,
        cols: 3584,
    },
    Shape {
        name: "enc.q/k/v/o",
        rows: 1280,
        cols: 1280,
    },
    Shape {
        name: "enc.fc1",
        rows: 5120,
        cols: 1280,
    },
    Shape {
        name: "enc.fc2",
        rows: 1280,
        cols: 5120,
    },
];

/// Times `y = W x` for one shape and format, cycling over enough distinct copies of W that
/// the working set exceeds the GPU's last-level cache (so the figure is DRAM bandwidth).
/// With `x_given` a one-vector q4/q8 product with int8 activations takes x already quantised
/// (quantised once, before the timing), as the decode step's products take it from the
/// kernel before them; else each call quantises x in a dispatch of its own first.
#[allow(clippy::too_many_arguments)]
pub async fn bench_product(
    ctx: &GpuContext,
    shape: &Shape,
    format: WeightFormat,
    copy_bw: f64,
    working_set: u64,
    scale: usize,
    n: usize,
    xq_out: bool,
    x_given: bool,
) -> Result<ProductResult, OpError> {
    let n = n.max(1);
    let (rows, cols) = (shape.rows / scale.max(1), shape.cols / scale.max(1));
    let timer = GpuTimer::new(ctx)?;
    let mut rec = Recorder::new(ctx, "bench.init");
    let first = Matrix::random(&mut rec, rows, cols, format, 7)?;
    let bytes = first.data_bytes() + first.scale_bytes();
    let copies = (working_set / bytes.max(1)).clamp(1, 64) as usize;
    let mut ws = vec![first];
    for i in 1..copies {
        ws.push(Matrix::random(&mut rec, rows, cols, format, 7 + i as u32)?);
    }
    let x = if n == 1 {
        Tensor::empty(ctx, "x", &[cols])
    } else {
        Tensor::empty(ctx, "x", &[n, cols])
    };
    ops::fill(
        &mut rec,
        &x.buf,
        (x.buf.size() / 4) as usize,
        3,
        ops::Fill::F16 {
            lo: (1.0, 0.0),
            hi: (1.0, 0.0),
        },
    )?;
    let y = Tensor::empty(ctx, "y", &[n * rows]);
    // `xq_out`: the product also writes y as the next product's int8 x
    let (lq, ld) = ops::xq_buffers_len(rows);
    let yq = (ctx.storage("yq", lq), ctx.storage("yd", ld));
    // `x_given`: x as int8 x, quantised here once
    let x_given = x_given && n == 1 && ops::norm_folds(ctx, &ws[0], 1);
    let (lxq, lxd) = ops::xq_buffers_len(cols);
    let xg = (ctx.storage("xq", lxq), ctx.storage("xd", lxd));
    if x_given {
        ops::quantise_vector(&mut rec, &x, (&xg.0, &xg.1))?;
    }
    let epi = Epilogue {
        xq_out: (xq_out && n == 1).then_some((&yq.0, &yq.1)),
        prequantised: x_given.then_some((&xg.0, &xg.1)),
        ..Default::default()
    };
    rec.submit()?;
    let reps = copies.max(8).div_ceil(copies) * copies;
    let run = |r: &mut Recorder| -> Result<(), OpError> {
        for i in 0..reps {
            ops::gemv(r, &ws[i % copies], &x, &y, epi)?;
        }
        Ok(())
    };
    let best = best_of_three(ctx, &timer, run, reps).await?;
    let gbs = bytes as f64 / best / 1e9;
    Ok(ProductResult {
        name: shape.name.to_string(),
        format: format.name().to_string(),
        rows,
        cols,
        weight_bytes: bytes,
        n,
        x_given,
        us_per_call: best * 1e6,
        gb_per_s: gbs,
        pct_of_copy: 100.0 * gbs * 1e9 / copy_bw,
        tflops: 2.0 * (n * rows * cols) as f64 / best / 1e12,
    })
}

/// The shape of a Qwen2-style decoder (what a decode step reads).
#[derive(Clone, Copy, Debug, Serialize)]
pub struct DecoderShape {
    pub layers: usize,
    pub hidden: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub inter: usize,
    pub vocab: usize,
}

/// Qwen2.5-7B, the shape of Baichuan-Audio's LLM (spec §5).
pub const QWEN25_7B: DecoderShape = DecoderShape {
    layers: 28,
    hidden: 3584,
    heads: 28,
    kv_heads: 4,
    head_dim: 128,
    inter: 18944,
    vocab: 152064,
};

/// A small shape for trying the benchmark on a CPU adapter.
pub const SMALL: DecoderShape = DecoderShape {
    layers: 2,
    hidden: 256,
    heads: 4,
    kv_heads: 2,
    head_dim: 64,
    inter: 512,
    vocab: 1000,
};

#[derive(Clone, Debug, Serialize)]
pub struct DecodeResult {
    pub format: String,
    pub context: usize,
    pub dispatches_per_token: usize,
    pub gpu_us_per_token: f64,
    pub tokens_per_s: f64,
    pub wall_tokens_per_s: f64,
    pub bytes_per_token: u64,
    pub gb_per_s: f64,
    pub pct_of_copy: f64,
    /// GPU µs per token of each stage, timed alone over all layers (dependent dispatches).
    pub breakdown_us: Vec<(String, f64)>,
    /// The stream bound of this structure: GPU µs per token of a chain of plain reads of the
    /// same bytes, one dispatch per stage (each layer's qkv, KV cache, o_proj, gate/up, down;
    /// then the LM head), each ordered after the one before (`ops::read_sink`).
    pub read_chain_us: f64,
    /// vec4s per invocation of the best read chain (1, 2, 4 or 8).
    pub read_chain_vec4s: u32,
    /// GPU µs per token of each stage's reads alone (qkv, the cache, o_proj, gate/up, down
    /// over all layers; the LM head), with that many vec4s per invocation.
    pub read_stages_us: Vec<(String, f64)>,
}

struct Layer {
    qkv: Matrix,
    qkv_bias: Tensor,
    o: Matrix,
    gate_up: Matrix,
    down: Matrix,
    ln1: wgpu::Buffer,
    ln2: wgpu::Buffer,
    cache: ops::KvCache,
}

/// A synthetic decode step with random weights: per layer RMSNorm → QKV(+bias) → RoPE + KV
/// append → split-K attention over `context` positions → o_proj(+residual) → RMSNorm →
/// gate/up(SwiGLU) → down(+residual); then the final RMSNorm + LM head and a GPU argmax.
/// `fuse_norm` folds each RMSNorm into the following product instead (one dispatch fewer,
/// but every workgroup recomputes the norm).
pub async fn bench_decode(
    ctx: &GpuContext,
    s: &DecoderShape,
    format: WeightFormat,
    contexts: &[usize],
    copy_bw: f64,
    fuse_norm: bool,
) -> Result<Vec<DecodeResult>, OpError> {
    use crate::ops::{Activation, Fill};
    let tmax = contexts.iter().copied().max().unwrap_or(1).max(1);
    let d = s.head_dim;
    let qkv_rows = (s.heads + 2 * s.kv_heads) * d;
    let small = Fill::F16 {
        lo: (0.5, 0.0),
        hi: (0.5, 0.0),
    };
    let norm_w = |rec: &mut Recorder, n: usize, seed: u32| -> Result<wgpu::Buffer, OpError> {
        let b = ctx.storage("ln", (n * 4) as u64);
        // f32 weights near 1: two f16 halves make one f32 whose high half is ~1.0 (0x3c00).
        let f = Fill::F16 {
            lo: (0.0, 0.0),
            hi: (0.1, 1.875),
        };
        ops::fill(rec, &b, n, seed, f)?;
        Ok(b)
    };
    let mut layers = Vec::with_capacity(s.layers);
    for l in 0..s.layers {
        let seed = 100 * l as u32;
        let mut rec = Recorder::new(ctx, "bench.init");
        let qkv_bias = Tensor::empty(ctx, "qkv.bias", &[qkv_rows]);
        ops::fill(
            &mut rec,
            &qkv_bias.buf,
            (qkv_bias.buf.size() / 4) as usize,
            seed + 9,
            small,
        )?;
        let cache = ops::KvCache::new(ctx, "cache", s.kv_heads, tmax, d)?;
        ops::fill(
            &mut rec,
            &cache.buf,
            (cache.buf.size() / 4) as usize,
            seed + 8,
            small,
        )?;
        layers.push(Layer {
            qkv: Matrix::random(&mut rec, qkv_rows, s.hidden, format, seed + 1)?,
            qkv_bias,
            o: Matrix::random(&mut rec, s.hidden, s.heads * d, format, seed + 2)?,
            gate_up: Matrix::random(&mut rec, 2 * s.inter, s.hidden, format, seed + 3)?,
            down: Matrix::random(&mut rec, s.hidden, s.inter, format, seed + 4)?,
            ln1: norm_w(&mut rec, s.hidden, seed + 5)?,
            ln2: norm_w(&mut rec, s.hidden, seed + 6)?,
            cache,
        });
        rec.submit()?;
    }
    let mut rec = Recorder::new(ctx, "bench.init");
    let lm_head = Matrix::random(&mut rec, s.vocab, s.hidden, format, 7777)?;
    let final_norm = norm_w(&mut rec, s.hidden, 7778)?;
    let h_a = Tensor::empty(ctx, "h.a", &[s.hidden]);
    ops::fill(&mut rec, &h_a.buf, (h_a.buf.size() / 4) as usize, 5, small)?;
    rec.submit()?;
    let h_b = Tensor::empty(ctx, "h.b", &[s.hidden]);
    let h_n = Tensor::empty(ctx, "h.norm", &[s.hidden]);
    let qkv = Tensor::empty(ctx, "qkv", &[qkv_rows]);
    let q = Tensor::empty(ctx, "q", &[s.heads, d]);
    let attn = Tensor::empty(ctx, "attn", &[s.heads, d]);
    let attn_flat = attn
        .view(&[s.heads * d])
        .ok_or_else(|| crate::ops::OpError::Shape {
            op: "bench",
            detail: "attn view".into(),
        })?;
    let mlp = Tensor::empty(ctx, "mlp", &[s.inter]);
    let logits = Tensor::empty(ctx, "logits", &[s.vocab]);
    let inv = ctx.upload(
        "inv_freq",
        bytemuck::cast_slice(&ops::rope_inv_freq(1e6, d)),
    );
    let scratch = ctx.storage("attn.scratch", ops::decode_scratch_bytes(s.heads, d, tmax));
    let attn_xq = crate::model::llm::xq_buffers(ctx, "attn", s.heads * d);
    let mlp_xq = crate::model::llm::xq_buffers(ctx, "mlp", s.inter);
    let a_xq = crate::model::llm::xq_norm_buffers(ctx, "h.a", s.hidden);
    let b_xq = crate::model::llm::xq_norm_buffers(ctx, "h.b", s.hidden);
    let am_scratch = ops::ArgmaxScratch::new(ctx, s.vocab);
    let am_out = ctx.storage("argmax.out", 16);
    let scale = 1.0 / (d as f32).sqrt();

    // `only`: record just one stage (for the per-stage breakdown); None = the whole token.
    let stage = |rec: &mut Recorder, pos: usize, only: Option<usize>| -> Result<(), OpError> {
        let on = |i: usize| only.is_none_or(|o| o == i);
        // as the engine's decode does, the RMSNorms of layers after the first are deferred
        // into the products after them where the device can (o_proj / down write h·g as int8
        // x); in the per-stage breakdown each product reads what the last full step left
        let defers = |a: &Matrix, b: &Matrix| fuse_norm && ops::norm_defers(ctx, a, b);
        for (li, l) in layers.iter().enumerate() {
            let qkv_deferred = li > 0 && defers(&layers[li - 1].down, &l.qkv);
            if on(0) {
                // RoPE and the cache append in the product's epilogue where it can (else a
                // rope_kv dispatch after it, inside gemv), as the engine's decode does
                let epi = Epilogue {
                    bias: Some(&l.qkv_bias),
                    rope: Some(ops::RopeOut {
                        inv_freq: &inv,
                        pos,
                        q: &q,
                        cache: &l.cache,
                    }),
                    ..Default::default()
                };
                if qkv_deferred {
                    let epi = Epilogue {
                        prequantised: Some((&a_xq.0, &a_xq.1)),
                        deferred_norm: Some((&a_xq.2, 1e-6)),
                        ..epi
                    };
                    ops::gemv(rec, &l.qkv, &h_a, &qkv, epi)?;
                } else if fuse_norm {
                    let epi = Epilogue {
                        norm: Some((&l.ln1, 1e-6)),
                        ..epi
                    };
                    ops::gemv(rec, &l.qkv, &h_a, &qkv, epi)?;
                } else {
                    ops::rmsnorm(rec, &h_a, &l.ln1, 1e-6, &h_n)?;
                    ops::gemv(rec, &l.qkv, &h_n, &qkv, epi)?;
                }
            }
            // the attention writes o_proj's int8 x itself, as the engine's decode does (so in
            // the per-stage breakdown that quantisation counts in "attention", and o_proj
            // alone reads the x left by earlier runs: its cost in the step)
            let xq = ops::attn_feeds_int8(ctx, &l.o, d).then_some((&attn_xq.0, &attn_xq.1));
            if on(1) {
                ops::attn_decode_xq(rec, &q, &l.cache, pos + 1, scale, &scratch, &attn, xq)?;
            }
            let gu_deferred = defers(&l.o, &l.gate_up);
            if on(2) {
                let epi = Epilogue {
                    residual: Some(&h_a),
                    prequantised: xq,
                    xq_out: gu_deferred.then_some((&b_xq.0, &b_xq.1)),
                    xq_out_norm: gu_deferred.then_some((&l.ln2, &b_xq.2)),
                    ..Default::default()
                };
                ops::gemv(rec, &l.o, &attn_flat, &h_b, epi)?;
            }
            // gate/up writes down's int8 x itself, as the engine's decode does (so in the
            // per-stage breakdown that quantisation counts in "norm+gate_up+swiglu")
            let mxq = ops::feeds_int8(ctx, &l.down).then_some((&mlp_xq.0, &mlp_xq.1));
            if on(3) {
                let epi = Epilogue {
                    act: Activation::SwiGlu,
                    xq_out: mxq,
                    ..Default::default()
                };
                if gu_deferred {
                    let epi = Epilogue {
                        prequantised: Some((&b_xq.0, &b_xq.1)),
                        deferred_norm: Some((&b_xq.2, 1e-6)),
                        ..epi
                    };
                    ops::gemv(rec, &l.gate_up, &h_b, &mlp, epi)?;
                } else if fuse_norm {
                    let epi = Epilogue {
                        norm: Some((&l.ln2, 1e-6)),
                        ..epi
                    };
                    ops::gemv(rec, &l.gate_up, &h_b, &mlp, epi)?;
                } else {
                    ops::rmsnorm(rec, &h_b, &l.ln2, 1e-6, &h_n)?;
                    ops::gemv(rec, &l.gate_up, &h_n, &mlp, epi)?;
                }
            }
            let next = layers.get(li + 1).filter(|nx| defers(&l.down, &nx.qkv));
            if on(4) {
                let epi = Epilogue {
                    residual: Some(&h_b),
                    prequantised: mxq,
                    xq_out: next.map(|_| (&a_xq.0, &a_xq.1)),
                    xq_out_norm: next.map(|nx| (&nx.ln1, &a_xq.2)),
                    ..Default::default()
                };
                ops::gemv(rec, &l.down, &mlp, &h_a, epi)?;
            }
        }
        if on(5) {
            if fuse_norm {
                let epi = Epilogue {
                    norm: Some((&final_norm, 1e-6)),
                    ..Default::default()
                };
                ops::gemv(rec, &lm_head, &h_a, &logits, epi)?;
            } else {
                ops::rmsnorm(rec, &h_a, &final_norm, 1e-6, &h_n)?;
                ops::gemv(rec, &lm_head, &h_n, &logits, Epilogue::default())?;
            }
        }
        if on(6) {
            ops::argmax(rec, &logits, &am_scratch, &am_out)?;
        }
        Ok(())
    };
    const STAGES: [&str; 7] = [
        "norm+qkv+rope_kv",
        "attention",
        "o_proj+res",
        "norm+gate_up+swiglu",
        "down+res",
        "norm+lm_head",
        "argmax",
    ];
    let step = |rec: &mut Recorder, pos: usize| stage(rec, pos, None);

    let mut weight_bytes = lm_head.data_bytes() + lm_head.scale_bytes();
    for l in &layers {
        for m in [&l.qkv, &l.o, &l.gate_up, &l.down] {
            weight_bytes += m.data_bytes() + m.scale_bytes();
        }
    }
    let timer = GpuTimer::new(ctx)?;
    let sink = ctx.storage("read.sink", 16);
    let mut out = Vec::new();
    for &len in contexts {
        let pos = len.saturating_sub(1);
        let tokens = 4;
        let mut dispatches = 0;
        let record = |r: &mut Recorder| -> Result<(), OpError> {
            for _ in 0..tokens {
                step(r, pos)?;
            }
            Ok(())
        };
        let best = best_of_three(ctx, &timer, record, tokens).await?;
        let mut breakdown_us = Vec::new();
        for (i, name) in STAGES.iter().enumerate() {
            let t = timer
                .time(ctx, |r| {
                    for _ in 0..tokens {
                        stage(r, pos, Some(i))?;
                    }
                    Ok(())
                })
                .await?;
            breakdown_us.push((name.to_string(), t / tokens as f64 * 1e6));
        }
        // wall clock: record, submit and wait for single tokens, as an engine would
        // (bind groups cached across tokens, as the engine's session does)
        let binds = crate::gpu::BindCache::default();
        let mut r = Recorder::new(ctx, "token").with_cache(&binds);
        step(&mut r, pos)?;
        r.submit()?;
        read_buffer(ctx, &am_out, 0, 8).await?;
        let t0 = web_time_now();
        let wall_tokens = 8;
        for _ in 0..wall_tokens {
            let mut r = Recorder::new(ctx, "token").with_cache(&binds);
            step(&mut r, pos)?;
            dispatches = r.dispatches();
            r.submit()?;
            read_buffer(ctx, &am_out, 0, 8).await?;
        }
        let wall = (web_time_now() - t0) / wall_tokens as f64;
        let kv_layer = (2 * s.kv_heads * len * d * ctx.act().size()) as u64;
        // `only`: one stage's reads (qkv, the cache, o_proj, gate/up, down, LM head)
        let read_chain = |r: &mut Recorder, ru: u32, only: Option<usize>| -> Result<(), OpError> {
            type Part<'a> = (&'a wgpu::Buffer, u64);
            fn m<'a>(w: &'a Matrix, dummy: &'a wgpu::Buffer) -> (Part<'a>, Part<'a>) {
                (
                    (w.data(), w.data_bytes()),
                    (w.scales().unwrap_or(dummy), w.scale_bytes()),
                )
            }
            let on = |i: usize| only.is_none_or(|o| o == i);
            let none = (&ctx.dummy, 0);
            for _ in 0..tokens {
                for l in &layers {
                    let parts = [
                        m(&l.qkv, &ctx.dummy),
                        ((&l.cache.buf, kv_layer), none),
                        m(&l.o, &ctx.dummy),
                        m(&l.gate_up, &ctx.dummy),
                        m(&l.down, &ctx.dummy),
                    ];
                    for (i, (a, b)) in parts.into_iter().enumerate() {
                        if on(i) {
                            ops::read_sink(r, a, b, &sink, ru)?;
                        }
                    }
                }
                if on(5) {
                    let (a, b) = m(&lm_head, &ctx.dummy);
                    ops::read_sink(r, a, b, &sink, ru)?;
                }
            }
            Ok(())
        };
        // the best over 1, 2, 4 and 8 vec4s per invocation
        let (mut read_best, mut read_ru) = (f64::INFINITY, 1);
        for ru in [1, 2, 4, 8] {
            let t = best_of_three(ctx, &timer, |r| read_chain(r, ru, None), tokens).await?;
            if t < read_best {
                (read_best, read_ru) = (t, ru);
            }
        }
        let mut read_stages_us = Vec::new();
        for (i, name) in ["qkv", "kv cache", "o_proj", "gate_up", "down", "lm_head"]
            .iter()
            .enumerate()
        {
            let t = timer.time(ctx, |r| read_chain(r, read_ru, Some(i))).await?;
            read_stages_us.push((name.to_string(), t / tokens as f64 * 1e6));
        }
        let kv_bytes = kv_layer * s.layers as u64;
        let bytes = weight_bytes + kv_bytes;
        let gbs = bytes as f64 / best / 1e9;
        out.push(DecodeResult {
            format: format.name().to_string(),
            context: len,
            dispatches_per_token: dispatches,
            gpu_us_per_token: best * 1e6,
            tokens_per_s: 1.0 / best,
            wall_tokens_per_s: 1.0 / wall,
            bytes_per_token: bytes,
            gb_per_s: gbs,
            pct_of_copy: 100.0 * gbs * 1e9 / copy_bw,
            breakdown_us,
            read_chain_us: read_best * 1e6,
            read_chain_vec4s: read_ru,
            read_stages_us,
        });
    }
    Ok(out)
}

fn web_time_now() -> f64 {
    // bench is native-only (see lib.rs); std's clock is fine here
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
