//! GPU ops, one file per family: validate shapes → pick the kernel variant → bind → dispatch.
//! Every op records into a [`Recorder`](crate::gpu::Recorder); nothing is submitted here.

mod attention;
mod conv;
mod elementwise;
mod embedding;
mod fill;
mod gemv;
mod groupnorm;
mod hift_source;
mod istft;
mod layernorm;
mod norm;
mod quantize;
mod relayout;
mod rope;
mod rope_kv;
mod rvq;
mod sampling;
mod softmax;

pub use attention::{
    attn_chunk_causal, attn_chunk_causal_batch, attn_chunk_causal_qkv, attn_decode, attn_decode_xq,
    attn_feeds_int8, attn_prefill, attn_varlen, attn_varlen_qkv, decode_one_pass, decode_quantises,
    decode_scratch_bytes, kv_append, KvCache, ONE_PASS_MAX_KEYS,
};
pub use conv::{
    avgpool1d, conv1d, conv1d_batch, conv1d_batch_res, conv_transpose1d, Conv1dSpec, ConvBias,
    ConvTranspose1dSpec, ConvWeight,
};
pub use elementwise::{
    binary, cfg_euler, snake, swiglu, swiglu_fused, swiglu_pairs, unary, Binary, Unary,
};
pub use embedding::{audio_embed, embedding, embedding_part, CODEBOOKS};
pub use fill::{copy, copy_with, fill, mma_peak, read_sink, Fill};
pub(crate) use gemv::probe_coop;
pub use gemv::{
    feeds_int8, gemv, gemv_rmsnorm, ln_folds, norm_defers, norm_folds, quantise_vector,
    xq_buffers_len, Activation, Epilogue, LnIn, LnOut, RopeOut, COOPB_SPLIT_TARGET,
    COOPD_SPLIT_TARGET, GEMM_MIN_N, GEMV_MAX_N,
};
pub use groupnorm::groupnorm;
pub use hift_source::{hift_source_stft, SourceInputs, SourceSpec, SOURCE_MAX_H, SOURCE_MAX_NFFT};
pub use istft::istft_hift;
pub use layernorm::{layernorm, layernorm_post, LnPost};
pub use norm::rmsnorm;
pub use quantize::quantize;
pub use relayout::{concat_rows, f32_to_act, interleave_rows, relayout, relayout_words, Strided};
pub use rope::{rope, rope_inv_freq};
pub use rope_kv::rope_kv;
pub use rvq::{rvq_decode, rvq_encode, rvq_norms, Codebooks, RVQ_LEVELS};
pub use sampling::{
    argmax, penalty_mask_bytes, read_argmax, repetition_penalty, repetition_penalty_part,
    sample_draw, topk, topk_draw, topk_draw_parts, ArgmaxScratch, TopkScratch, TOPK_MAX,
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

/// `(rows, cols)` of a row-wise op over the last dimension of `x`, with `y` of the same shape.
pub(crate) fn rows_cols(
    op: &'static str,
    x: &crate::tensor::Tensor,
    y: &crate::tensor::Tensor,
) -> Result<(usize, usize), OpError> {
    let cols = *x
        .shape
        .last()
        .ok_or_else(|| shape_err(op, "x has no dimensions"))?;
    let rows = x.numel() / cols.max(1);
    if cols == 0 || rows == 0 {
        return Err(shape_err(op, format!("empty input {:?}", x.shape)));
    }
    if y.shape != x.shape {
        return Err(shape_err(
            op,
            format!("y is {:?}, x is {:?}", y.shape, x.shape),
        ));
    }
    Ok((rows, cols))
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

/// Checks that every tensor is in the device's activation dtype.
pub(crate) fn check_act(
    op: &'static str,
    ctx: &crate::gpu::GpuContext,
    tensors: &[(&str, &crate::tensor::Tensor)],
) -> Result<(), OpError> {
    let act = ctx.act();
    for (name, t) in tensors {
        if t.dtype != act {
            return Err(shape_err(
                op,
                format!(
                    "{name} is {}, the device computes in {}",
                    t.dtype.name(),
                    act.name()
                ),
            ));
        }
    }
    Ok(())
}
