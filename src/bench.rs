//! Benchmarks (`bca bench …`): GPU time from timestamp queries, reported against the memory
//! bandwidth a plain vec4 copy kernel reaches in the same run. Speed is never a timed test.

use serde::Serialize;

use crate::gpu::{read_buffer, GpuContext, GpuError, Recorder};
use crate::ops::{self, Epilogue, OpError};
use crate::tensor::{Matrix, Tensor, WeightFormat};

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

#[derive(Clone, Debug, Serialize)]
pub struct ProductResult {
    pub name: String,
    pub format: String,
    pub rows: usize,
    pub cols: usize,
    pub weight_bytes: u64,
    pub us_per_call: f64,
    pub gb_per_s: f64,
    pub pct_of_copy: f64,
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
pub async fn bench_product(
    ctx: &GpuContext,
    shape: &Shape,
    format: WeightFormat,
    copy_bw: f64,
    working_set: u64,
    scale: usize,
) -> Result<ProductResult, OpError> {
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
    let x = Tensor::empty(ctx, "x", &[cols]);
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
    let y = Tensor::empty(ctx, "y", &[rows]);
    rec.submit()?;
    let reps = copies.max(8).div_ceil(copies) * copies;
    let run = |r: &mut Recorder| -> Result<(), OpError> {
        for i in 0..reps {
            ops::gemv(r, &ws[i % copies], &x, &y, Epilogue::default())?;
        }
        Ok(())
    };
    timer.time(ctx, run).await?; // warm-up (pipelines, caches)
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        best = best.min(timer.time(ctx, run).await? / reps as f64);
    }
    let gbs = bytes as f64 / best / 1e9;
    Ok(ProductResult {
        name: shape.name.to_string(),
        format: format.name().to_string(),
        rows,
        cols,
        weight_bytes: bytes,
        us_per_call: best * 1e6,
        gb_per_s: gbs,
        pct_of_copy: 100.0 * gbs * 1e9 / copy_bw,
    })
}
