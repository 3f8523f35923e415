//! The model stages built on `ops`: each stage owns its GPU weights, taken from a [`Weights`]
//! store that hides where they came from (an HF folder, a converted web folder, the browser
//! loader).

pub mod llm;
pub mod stream;
pub mod weights;

pub use weights::{HostTensor, ModelError, Weights};
pub mod audio_in;
pub mod audio_out;
