//! The GPU runtime: adapter and device negotiation, kernels, pipelines, buffers, readback.
//!
//! One [`GpuContext`] per engine. It owns the wgpu device and queue, the capabilities we
//! negotiated ([`Caps`]), a pipeline cache and a buffer pool, and it turns device loss and
//! uncaptured validation errors into [`GpuError`] values instead of panics.

mod buffers;
mod context;
pub mod kernels;
mod pipelines;
mod readback;
mod recorder;

pub use buffers::{Arena, BufferPool, PooledBuffer};
pub use context::{Caps, CoopF16, GpuContext, GpuOptions, NegotiatedLimits, COOPB_WG_STORAGE};
pub use kernels::{ActDType, KernelKey};
pub use pipelines::{Binding, PipelineCache};
pub use readback::{map_read, read_buffer};
pub use recorder::{grid, Bind, BindCache, Param, Profile, Recorder};

/// Errors of the GPU layer. Each says what happened and, where a user can act, what to do.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum GpuError {
    #[error("WebGPU is not available: {0}")]
    NoWebGpu(String),
    #[error("no GPU adapter found ({0}); natively install a Vulkan driver (e.g. Mesa's lavapipe: apt-get install mesa-vulkan-drivers), in a browser enable WebGPU")]
    NoAdapter(String),
    #[error("the GPU refused to create a device: {0}")]
    RequestDevice(String),
    #[error("the adapter lacks the `{feature}` feature, needed for {why}")]
    MissingFeature {
        feature: &'static str,
        why: &'static str,
    },
    #[error("the adapter's limit {limit} is {have}, below the {need} this engine needs")]
    LimitTooLow {
        limit: &'static str,
        have: u64,
        need: u64,
    },
    #[error("the GPU device was lost ({0}); reload the page or restart the tool")]
    DeviceLost(String),
    #[error("GPU validation error: {0}")]
    Validation(String),
    #[error("the GPU ran out of memory: {0}")]
    OutOfMemory(String),
    #[error("internal GPU error: {0}")]
    Internal(String),
    #[error("reading a GPU buffer back failed: {0}")]
    Readback(String),
    #[error("unknown kernel `{0}`")]
    UnknownKernel(String),
    #[error("invalid GPU option: {0}")]
    BadOption(String),
}

impl From<wgpu::Error> for GpuError {
    fn from(e: wgpu::Error) -> Self {
        match e {
            wgpu::Error::OutOfMemory { .. } => GpuError::OutOfMemory(e.to_string()),
            wgpu::Error::Validation { description, .. } => GpuError::Validation(description),
            wgpu::Error::Internal { description, .. } => GpuError::Internal(description),
        }
    }
}
