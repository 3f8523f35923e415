//! CPU audio front end (spec §2): WAV → mono f32 → 16 kHz → Whisper log-mel.
//!
//! - [`wav`]: WAV decoding (8/16/24/32-bit int, 32-bit float, any channel count → mean).
//! - [`resample`]: any rate → 16 kHz with a windowed-sinc resampler (rubato), batch and
//!   streaming forms that give identical samples.
//! - [`mel`]: Whisper's log-mel (n_fft 400, hop 160, Slaney filters, log10/max−8/(x+4)/4), batch
//!   and incremental ([`mel::MelStream`]).
//!
//! Everything here is plain Rust (no GPU), used natively and in the browser alike.

pub mod mel;
pub mod resample;
pub mod wav;

pub use mel::{log_mel, mel_filters, valid_frames, MelConfig, MelStream};
pub use resample::{resample, StreamResampler};
pub use wav::{read_wav, Pcm};

/// Everything that can go wrong turning user audio into model input. Messages are written
/// to be shown to a user as they are.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum AudioError {
    #[error("the audio is empty (no samples)")]
    Empty,
    #[error("not a WAV file: {0}")]
    NotWav(String),
    #[error("unsupported WAV format: {0}")]
    Unsupported(String),
    #[error("sample rate {0} Hz is not supported (use 8000–192000 Hz)")]
    BadRate(u32),
    #[error(
        "the audio is {seconds:.1} s long; one turn may be at most {max} s \
         (longer input is split into {max} s chunks by the batch encoder)"
    )]
    TooLong { seconds: f64, max: usize },
    #[error("audio has {0} samples, fewer than one analysis window ({1})")]
    TooShort(usize, usize),
    #[error("resampler: {0}")]
    Resample(String),
    #[error("audio contains a non-finite sample at index {0}")]
    NotFinite(usize),
}

/// Peak absolute value below which a signal is reported as silent (≈ −80 dBFS).
pub const SILENCE_PEAK: f32 = 1e-4;

/// True when every sample is below [`SILENCE_PEAK`] in magnitude (a silent turn is still
/// encoded — the model sees silence codes — but callers may want to warn).
pub fn is_silent(samples: &[f32]) -> bool {
    samples.iter().all(|s| s.abs() < SILENCE_PEAK)
}

/// Splits a 16 kHz signal into the spec's chunks (§2 step 2, `split_overlap` 0): one chunk if
/// it fits `max_samples`, else consecutive `max_samples` pieces; pieces shorter than `n_fft`
/// are dropped (as the reference does).
pub fn split_chunks(samples: &[f32], max_samples: usize, n_fft: usize) -> Vec<&[f32]> {
    if samples.len() <= max_samples {
        return vec![samples];
    }
    samples
        .chunks(max_samples.max(1))
        .filter(|c| c.len() >= n_fft)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_audio_splits_into_chunks_and_drops_tiny_tails() {
        let x: Vec<f32> = (0..2500).map(|i| i as f32).collect();
        let c = split_chunks(&x, 1000, 400);
        assert_eq!(c.len(), 3);
        assert_eq!((c[0][0], c[1][0], c[2].len()), (0.0, 1000.0, 500));
        let c = split_chunks(&x[..2300], 1000, 400);
        assert_eq!(c.len(), 2, "a 300-sample tail (< n_fft) is dropped");
        assert_eq!(split_chunks(&x[..1000], 1000, 400).len(), 1);
        assert_eq!(
            split_chunks(&x[..10], 1000, 400).len(),
            1,
            "one short chunk is kept"
        );
    }

    #[test]
    fn silence_is_detected() {
        assert!(is_silent(&[0.0, 5e-5, -5e-5]));
        assert!(!is_silent(&[0.0, 0.01]));
    }
}
