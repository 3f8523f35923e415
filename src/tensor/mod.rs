//! What lives in GPU buffers: activation tensors and weight matrices.
//!
//! Quantisation is a property of a weight ([`Matrix`]), not of the model code: ops take a
//! `&Matrix` and pick the kernel for its format.

pub mod quant;

use half::f16;

use crate::gpu::{ActDType, GpuContext};
use crate::util::round_up;

/// An activation tensor: a storage buffer of `shape.iter().product()` elements of `dtype`.
pub struct Tensor {
    pub buf: wgpu::Buffer,
    pub shape: Vec<usize>,
    pub dtype: ActDType,
}

impl Tensor {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Uploads `data` in the context's activation dtype.
    pub fn from_f32(ctx: &GpuContext, label: &str, shape: &[usize], data: &[f32]) -> Tensor {
        let dtype = ctx.act();
        let buf = ctx.upload(label, &act_bytes(dtype, data));
        Tensor {
            buf,
            shape: shape.to_vec(),
            dtype,
        }
    }

    /// An uninitialised activation tensor.
    pub fn empty(ctx: &GpuContext, label: &str, shape: &[usize]) -> Tensor {
        let dtype = ctx.act();
        let n: usize = shape.iter().product();
        Tensor {
            buf: ctx.storage(label, (n * dtype.size()) as u64),
            shape: shape.to_vec(),
            dtype,
        }
    }

    /// The same buffer seen with another shape of the same element count.
    pub fn view(&self, shape: &[usize]) -> Option<Tensor> {
        (shape.iter().product::<usize>() == self.numel()).then(|| Tensor {
            buf: self.buf.clone(),
            shape: shape.to_vec(),
            dtype: self.dtype,
        })
    }

    pub async fn to_vec(&self, ctx: &GpuContext) -> Result<Vec<f32>, crate::gpu::GpuError> {
        ctx.read_act(&self.buf, self.numel()).await
    }
}

/// Encodes f32 values as `dtype` bytes (round to nearest even for f16).
pub fn act_bytes(dtype: ActDType, data: &[f32]) -> Vec<u8> {
    match dtype {
        ActDType::F32 => bytemuck::cast_slice(data).to_vec(),
        ActDType::F16 => data
            .iter()
            .flat_map(|v| f16::from_f32(*v).to_le_bytes())
            .collect(),
    }
}

/// Rounds every value through the activation dtype (what the GPU sees).
pub fn round_act(dtype: ActDType, data: &[f32]) -> Vec<f32> {
    match dtype {
        ActDType::F32 => data.to_vec(),
        ActDType::F16 => data.iter().map(|v| f16::from_f32(*v).to_f32()).collect(),
    }
}

/// Element type of a raw weight buffer (as the checkpoint stored it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawDType {
    F16,
    F32,
}

/// A non-matrix weight (conv kernel, codebook …) kept on the GPU in its checkpoint layout,
/// row-major, f16 or f32 (`buf` is padded to whole u32 words). Stages lay it out for their
/// kernels with [`crate::ops::relayout`]; its values never need to pass through the host.
pub struct RawTensor {
    pub buf: wgpu::Buffer,
    pub shape: Vec<usize>,
    pub dtype: RawDType,
}

impl RawTensor {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Uploads host f32 values (native loading, tests).
    pub fn from_f32(ctx: &GpuContext, label: &str, shape: &[usize], data: &[f32]) -> RawTensor {
        RawTensor {
            buf: ctx.upload(label, bytemuck::cast_slice(data)),
            shape: shape.to_vec(),
            dtype: RawDType::F32,
        }
    }

    /// Reads the values back as f32 (tests, digests).
    pub async fn to_vec(&self, ctx: &GpuContext) -> Result<Vec<f32>, crate::gpu::GpuError> {
        let n = self.numel();
        let (bytes, dt) = match self.dtype {
            RawDType::F16 => ((n * 2).div_ceil(4) * 4, crate::weights::dtype::DType::F16),
            RawDType::F32 => (n * 4, crate::weights::dtype::DType::F32),
        };
        let b = crate::gpu::read_buffer(ctx, &self.buf, 0, bytes as u64).await?;
        let mut v = crate::weights::dtype::to_f32(dt, &b);
        v.truncate(n);
        Ok(v)
    }
}

/// Storage format of a weight matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightFormat {
    F16,
    Q8,
    Q4,
}

impl WeightFormat {
    pub fn name(self) -> &'static str {
        match self {
            WeightFormat::F16 => "f16",
            WeightFormat::Q8 => "q8",
            WeightFormat::Q4 => "q4",
        }
    }
    /// Average bits per weight, scales included.
    pub fn bits_per_weight(self) -> f64 {
        match self {
            WeightFormat::F16 => 16.0,
            WeightFormat::Q8 => 8.5,
            WeightFormat::Q4 => 5.0,
        }
    }
}

/// A weight matrix `(rows, cols)` = PyTorch `Linear.weight` `(out, in)`, in one of the
/// formats the products accept (layouts: shaders/matmul/gemv.wgsl and [`quant`]).
#[derive(Clone)]
pub enum Matrix {
    /// f16, rows padded with zeros to `stride` = ⌈cols/8⌉·8 elements.
    F16 {
        buf: wgpu::Buffer,
        rows: usize,
        cols: usize,
        stride: usize,
    },
    /// Symmetric 8-bit blocks of 32 with f16 scales.
    Q8 {
        data: wgpu::Buffer,
        scales: wgpu::Buffer,
        rows: usize,
        cols: usize,
    },
    /// Asymmetric 4-bit blocks of 32 with f16 scale and minimum.
    Q4 {
        data: wgpu::Buffer,
        scales: wgpu::Buffer,
        rows: usize,
        cols: usize,
    },
}

impl Matrix {
    pub fn rows(&self) -> usize {
        match self {
            Matrix::F16 { rows, .. } | Matrix::Q8 { rows, .. } | Matrix::Q4 { rows, .. } => *rows,
        }
    }
    pub fn cols(&self) -> usize {
        match self {
            Matrix::F16 { cols, .. } | Matrix::Q8 { cols, .. } | Matrix::Q4 { cols, .. } => *cols,
        }
    }
    pub fn weight_format(&self) -> WeightFormat {
        match self {
            Matrix::F16 { .. } => WeightFormat::F16,
            Matrix::Q8 { .. } => WeightFormat::Q8,
            Matrix::Q4 { .. } => WeightFormat::Q4,
        }
    }
    pub fn format(&self) -> &'static str {
        self.weight_format().name()
    }
    /// Blocks per row as the kernels see them (8 weights for f16, 32 for q8/q4).
    pub fn blocks_per_row(&self) -> usize {
        match self {
            Matrix::F16 { stride, .. } => stride / 8,
            Matrix::Q8 { cols, .. } | Matrix::Q4 { cols, .. } => cols.div_ceil(quant::QBLOCK),
        }
    }
    pub fn data(&self) -> &wgpu::Buffer {
        match self {
            Matrix::F16 { buf, .. } => buf,
            Matrix::Q8 { data, .. } | Matrix::Q4 { data, .. } => data,
        }
    }
    pub fn scales(&self) -> Option<&wgpu::Buffer> {
        match self {
            Matrix::F16 { .. } => None,
            Matrix::Q8 { scales, .. } | Matrix::Q4 { scales, .. } => Some(scales),
        }
    }
    /// u32 words per row of `(data, scales)`, where rows end on word boundaries (every format
    /// but q8 with an odd number of blocks per row: two of its scales share a word).
    pub fn row_words(&self) -> Option<(usize, usize)> {
        let nb = self.blocks_per_row();
        match self {
            Matrix::F16 { stride, .. } => Some((stride / 2, 0)),
            Matrix::Q8 { .. } if nb % 2 == 1 => None,
            Matrix::Q8 { .. } => Some((nb * 8, nb / 2)),
            Matrix::Q4 { .. } => Some((nb * 4, nb)),
        }
    }

    /// Byte offsets of row `r` in the (data, scales) buffers; None where q8's scales (two to a
    /// word) would start mid-word: an odd block count before row `r`.
    pub fn row_offsets(&self, r: usize) -> Option<(u64, u64)> {
        let b = (r * self.blocks_per_row()) as u64;
        match self {
            Matrix::F16 { .. } => Some((b * 16, 0)),
            Matrix::Q8 { .. } => b.is_multiple_of(2).then_some((b * 32, b * 2)),
            Matrix::Q4 { .. } => Some((b * 16, b * 4)),
        }
    }

    /// Bytes of the weight data the kernel reads.
    pub fn data_bytes(&self) -> u64 {
        let blocks = (self.rows() * self.blocks_per_row()) as u64;
        match self {
            Matrix::F16 { .. } => blocks * 16,
            Matrix::Q8 { .. } => blocks * 32,
            Matrix::Q4 { .. } => blocks * 16,
        }
    }
    /// Bytes of scales the kernel reads.
    pub fn scale_bytes(&self) -> u64 {
        let blocks = (self.rows() * self.blocks_per_row()) as u64;
        match self {
            Matrix::F16 { .. } => 0,
            Matrix::Q8 { .. } => blocks.div_ceil(2) * 4,
            Matrix::Q4 { .. } => blocks * 4,
        }
    }

    /// Uploads a row-major f32 matrix as f16 (rounding to nearest even).
    pub fn f16_from_f32(
        ctx: &GpuContext,
        label: &str,
        rows: usize,
        cols: usize,
        data: &[f32],
    ) -> Matrix {
        let stride = round_up(cols, 8);
        let mut packed = vec![f16::ZERO; rows * stride];
        for r in 0..rows {
            for c in 0..cols {
                packed[r * stride + c] = f16::from_f32(data[r * cols + c]);
            }
        }
        let buf = ctx.upload(label, bytemuck::cast_slice(&packed));
        Matrix::F16 {
            buf,
            rows,
            cols,
            stride,
        }
    }

    /// Quantises on the CPU (see [`quant`]) and uploads in `format`.
    pub fn from_f32(
        ctx: &GpuContext,
        label: &str,
        rows: usize,
        cols: usize,
        data: &[f32],
        format: WeightFormat,
    ) -> Matrix {
        match format {
            WeightFormat::F16 => Self::f16_from_f32(ctx, label, rows, cols, data),
            WeightFormat::Q8 => {
                let q = quant::quantize_q8(data, rows, cols);
                Matrix::Q8 {
                    data: ctx.upload(label, bytemuck::cast_slice(&q.data)),
                    scales: ctx.upload(label, bytemuck::cast_slice(&q.scales)),
                    rows,
                    cols,
                }
            }
            WeightFormat::Q4 => {
                let q = quant::quantize_q4(data, rows, cols);
                Matrix::Q4 {
                    data: ctx.upload(label, bytemuck::cast_slice(&q.data)),
                    scales: ctx.upload(label, bytemuck::cast_slice(&q.scales)),
                    rows,
                    cols,
                }
            }
        }
    }

    /// A `(rows, cols)` matrix of seeded random values generated on the GPU (benchmarks at
    /// full model size): f16 ≈ U(−0.02, 0.02); q8/q4 random codes with plausible scales.
    pub fn random(
        rec: &mut crate::gpu::Recorder,
        rows: usize,
        cols: usize,
        format: WeightFormat,
        seed: u32,
    ) -> Result<Matrix, crate::ops::OpError> {
        use crate::ops::{fill, Fill};
        let ctx = rec.ctx();
        let nb = match format {
            WeightFormat::F16 => round_up(cols, 8) / 8,
            _ => cols.div_ceil(quant::QBLOCK),
        };
        let blocks = rows * nb;
        let m = match format {
            WeightFormat::F16 => Matrix::F16 {
                buf: ctx.storage("W", (blocks * 16) as u64),
                rows,
                cols,
                stride: nb * 8,
            },
            WeightFormat::Q8 => Matrix::Q8 {
                data: ctx.storage("W", (blocks * 32) as u64),
                scales: ctx.storage("W.s", (blocks.div_ceil(2) * 4) as u64),
                rows,
                cols,
            },
            WeightFormat::Q4 => Matrix::Q4 {
                data: ctx.storage("W", (blocks * 16) as u64),
                scales: ctx.storage("W.s", (blocks * 4) as u64),
                rows,
                cols,
            },
        };
        match format {
            WeightFormat::F16 => {
                let f = Fill::F16 {
                    lo: (0.04, 0.0),
                    hi: (0.04, 0.0),
                };
                fill(rec, m.data(), blocks * 4, seed, f)?;
            }
            WeightFormat::Q8 => {
                fill(rec, m.data(), blocks * 8, seed, Fill::Bits)?;
                let s = (1e-4, 1.6e-4);
                if let Some(sb) = m.scales() {
                    fill(
                        rec,
                        sb,
                        blocks.div_ceil(2),
                        seed ^ 1,
                        Fill::F16 { lo: s, hi: s },
                    )?;
                }
            }
            WeightFormat::Q4 => {
                fill(rec, m.data(), blocks * 4, seed, Fill::Bits)?;
                if let Some(sb) = m.scales() {
                    let f = Fill::F16 {
                        lo: (0.001, 0.0025),
                        hi: (0.01, -0.02),
                    };
                    fill(rec, sb, blocks, seed ^ 1, f)?;
                }
            }
        }
        Ok(m)
    }

    /// The values the GPU multiplies by (for CPU references): f16-rounded or dequantised.
    pub fn reference_values(
        rows: usize,
        cols: usize,
        data: &[f32],
        format: WeightFormat,
    ) -> Vec<f32> {
        match format {
            WeightFormat::F16 => data.iter().map(|v| f16::from_f32(*v).to_f32()).collect(),
            WeightFormat::Q8 => quant::dequantize_q8(&quant::quantize_q8(data, rows, cols)),
            WeightFormat::Q4 => quant::dequantize_q4(&quant::quantize_q4(data, rows, cols)),
        }
    }
}
