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

/// A weight matrix `(rows, cols)` = PyTorch `Linear.weight` `(out, in)`, in one of the
/// formats the products accept.
pub enum Matrix {
    /// f16, rows padded with zeros to `stride` = ⌈cols/8⌉·8 elements.
    F16 {
        buf: wgpu::Buffer,
        rows: usize,
        cols: usize,
        stride: usize,
    },
}

impl Matrix {
    pub fn rows(&self) -> usize {
        match self {
            Matrix::F16 { rows, .. } => *rows,
        }
    }
    pub fn cols(&self) -> usize {
        match self {
            Matrix::F16 { cols, .. } => *cols,
        }
    }
    pub fn format(&self) -> &'static str {
        match self {
            Matrix::F16 { .. } => "f16",
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
}
