//! GPU ops, one file per family: validate shapes → pick the kernel variant → bind → dispatch.
//! Every op records into a [`Recorder`](crate::gpu::Recorder); nothing is submitted here.

mod attention;
mod fill;
mod gemv;
mod norm;
mod quantize;
mod rvq;
mod sampling;
mod softmax;

pub use attention::{
    attn_chunk_causal, attn_decode, attn_prefill, attn_varlen, decode_scratch_bytes, kv_append,
    KvCache,
};
pub use fill::{copy, fill, Fill};
pub use gemv::{gemv, Activation, Epilogue, GEMV_MAX_N};
pub use norm::rmsnorm;
pub use quantize::quantize;
pub use rvq::{rvq_decode, rvq_encode, rvq_norms, Codebooks, RVQ_LEVELS};
pub use sampling::{
    argmax, penalty_mask_bytes, read_argmax, repetition_penalty, topk, ArgmaxScratch, TopkScratch,
    TOPK_MAX,
};
pub use softmax::softmax;

use crate::gpu::GpuError;

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum OpError {
    #[error("{op}: {detail}")]
    Shape { op: &'static str, detail: String },
    #[error(transparent)]
    Gpu(#[from] GpuError),
}

pub(crate) fn shape_err(op: &'static str, detail: impl Into<String>) -> OpError {
    OpError::Shape {
        op,
        detail: detail.into(),
    }
}

/// Checks that `buf` can hold `need` bytes (a typed error otherwise).
pub(crate) fn check_len(
    op: &'static str,
    what: &str,
    buf: &wgpu::Buffer,
    need: u64,
) -> Result<(), OpError> {
    if buf.size() < need {
        return Err(shape_err(
            op,
            format!("{what} buffer holds {} bytes, needs {need}", buf.size()),
        ));
    }
    Ok(())
}
