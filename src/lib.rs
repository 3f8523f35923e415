//! Baichuan-Audio on WebGPU: one crate for the browser (wasm32) and native tools.
//!
//! Layout (see ARCHITECTURE.md): `gpu` owns the device, pipelines, buffers and readback;
//! `tensor` describes what lives in GPU buffers; `ops` validates shapes and dispatches the
//! WGSL kernels of `shaders/`; `reference` holds the CPU references every kernel is tested
//! against; `selftest` runs those comparisons on whatever adapter we got (native or browser).

pub mod audio;
#[cfg(not(target_arch = "wasm32"))]
pub mod bench;
pub mod gpu;
pub mod model;
pub mod ops;
pub mod reference;
pub mod selftest;
pub mod tensor;
pub mod text;
pub mod util;
pub mod weights;

#[cfg(target_arch = "wasm32")]
pub mod web;

pub use gpu::{GpuContext, GpuError, GpuOptions};
/// The wgpu version this crate is built against (for tools and tests).
pub use wgpu;
