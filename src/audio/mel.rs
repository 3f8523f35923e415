//! Whisper's log-mel spectrogram (spec §2 step 3), in f64 on the CPU:
//! STFT with a periodic Hann window of `n_fft` (400), hop 160, `center=True` with reflect
//! padding, power |X|², Slaney-scale mel filters with Slaney area normalisation (0–8 kHz),
//! `log10(max(mel, 1e-10))`, clamp to `max − 8` (max over the whole 30 s chunk), `(x + 4)/4`,
//! first `valid_frames = min(3000, W // 160 + 1)` frames kept.
//!
//! The reference pads every chunk to 30 s before the STFT, so frames past the end of the
//! audio read zeros (and the last frame of a full 30 s chunk reflects at the 30 s boundary);
//! [`MelStream`] reproduces exactly that while computing frames as soon as their window is
//! complete.
//!
//! **Incremental form.** The `max − 8` clamp is global over the turn, so [`MelStream`] keeps
//! the raw `log10` frames as audio arrives and applies the clamp and the `(x+4)/4` scale only
//! in [`MelStream::finish`], once the maximum is known. Frames past `valid_frames` whose
//! window still overlaps the audio take part in the maximum (as in the reference) and are
//! then dropped. Batch ([`log_mel`]) is "push everything, then finish": same numbers.

use std::sync::Arc;

use realfft::{RealFftPlanner, RealToComplex};

use super::AudioError;
use crate::weights::config::AudioConfig;

/// Front-end parameters (from `audio_config`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MelConfig {
    pub sample_rate: usize,
    pub n_fft: usize,
    pub hop: usize,
    pub n_mels: usize,
    /// Samples of one chunk (`max_audio_seconds · sampling_rate`, 480000).
    pub chunk_samples: usize,
}

impl Default for MelConfig {
    fn default() -> Self {
        MelConfig {
            sample_rate: 16000,
            n_fft: 400,
            hop: 160,
            n_mels: 128,
            chunk_samples: 480_000,
        }
    }
}

impl MelConfig {
    pub fn from_audio(a: &AudioConfig) -> Self {
        MelConfig {
            sample_rate: a.sampling_rate,
            n_fft: a.n_fft,
            hop: a.hop_length,
            n_mels: a.num_mel_bins,
            chunk_samples: a.max_audio_seconds * a.sampling_rate,
        }
    }

    /// Frames of a full chunk (3000): `chunk / hop + 1` STFT frames minus the dropped last one.
    pub fn chunk_frames(&self) -> usize {
        self.chunk_samples / self.hop
    }

    /// Seconds of one chunk.
    pub fn max_seconds(&self) -> usize {
        self.chunk_samples / self.sample_rate.max(1)
    }
}

/// `min(chunk_frames, W // hop + 1)` (spec §2).
pub fn valid_frames(cfg: &MelConfig, w: usize) -> usize {
    (w / cfg.hop + 1).min(cfg.chunk_frames())
}

fn hz_to_mel(f: f64) -> f64 {
    // Slaney: linear below 1 kHz (200/3 Hz per mel), logarithmic above.
    let f_sp = 200.0 / 3.0;
    let min_log_hz = 1000.0;
    let min_log_mel = min_log_hz / f_sp;
    let logstep = 6.4f64.ln() / 27.0;
    if f >= min_log_hz {
        min_log_mel + (f / min_log_hz).ln() / logstep
    } else {
        f / f_sp
    }
}

fn mel_to_hz(m: f64) -> f64 {
    let f_sp = 200.0 / 3.0;
    let min_log_hz = 1000.0;
    let min_log_mel = min_log_hz / f_sp;
    let logstep = 6.4f64.ln() / 27.0;
    if m >= min_log_mel {
        min_log_hz * (logstep * (m - min_log_mel)).exp()
    } else {
        m * f_sp
    }
}

/// Slaney mel filter bank `[n_mels][n_fft/2 + 1]` (row-major), triangles between mel-spaced
/// edges from `fmin` to `fmax`, each scaled by `2 / (f_right − f_left)` (area normalisation).
pub fn mel_filters(n_mels: usize, n_fft: usize, sr: f64, fmin: f64, fmax: f64) -> Vec<f64> {
    let nf = n_fft / 2 + 1;
    let fft_freqs: Vec<f64> = (0..nf).map(|k| k as f64 * sr / n_fft as f64).collect();
    let (m0, m1) = (hz_to_mel(fmin), hz_to_mel(fmax));
    let edges: Vec<f64> = (0..n_mels + 2)
        .map(|i| mel_to_hz(m0 + (m1 - m0) * i as f64 / (n_mels + 1) as f64))
        .collect();
    let mut out = vec![0.0; n_mels * nf];
    for m in 0..n_mels {
        let (l, c, r) = (edges[m], edges[m + 1], edges[m + 2]);
        let norm = 2.0 / (r - l);
        for (k, &f) in fft_freqs.iter().enumerate() {
            let down = (f - l) / (c - l);
            let up = (r - f) / (r - c);
            out[m * nf + k] = down.min(up).max(0.0) * norm;
        }
    }
    out
}

/// Log-mel of one turn: `data` is `[n_mels, frames]` row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Mel {
    pub n_mels: usize,
    pub frames: usize,
    pub data: Vec<f32>,
}

impl Mel {
    /// `(frames, n_mels)` row-major: the encoder's time-major input.
    pub fn time_major(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.data.len()];
        for m in 0..self.n_mels {
            for t in 0..self.frames {
                out[t * self.n_mels + m] = self.data[m * self.frames + t];
            }
        }
        out
    }
}

/// Incremental log-mel of one turn (≤ one chunk): push 16 kHz samples as they arrive.
pub struct MelStream {
    cfg: MelConfig,
    frames: FrameMaker,
    scratch: Scratch,
    samples: Vec<f32>,
    /// Raw `log10(max(mel, 1e-10))` per computed frame, frame-major `(frames, n_mels)`.
    raw: Vec<f32>,
    /// Next frame to compute.
    next: usize,
}

/// What computing a frame reads and never changes (shared by the threads of a batch).
struct FrameMaker {
    cfg: MelConfig,
    filters: Vec<f64>,
    /// Per mel filter, the FFT bins where its weight is non-zero `[lo, hi)`.
    support: Vec<(usize, usize)>,
    window: Vec<f64>,
    fft: Arc<dyn RealToComplex<f64>>,
}

/// One thread's FFT buffers.
struct Scratch {
    buf: Vec<f64>,
    spec: Vec<realfft::num_complex::Complex<f64>>,
    /// Power spectrum of the current frame.
    power: Vec<f64>,
}

/// From this many frames at once (a whole turn given in one piece), native builds spread them
/// over rayon's threads; every frame is computed alone, so the result is the same.
#[cfg(not(target_arch = "wasm32"))]
const PARALLEL_FRAMES: usize = 256;

/// Frames `from ..` into `out` (`n_mels` values each) on rayon's pool, in blocks of
/// [`PARALLEL_BLOCK`] frames with a scratch per worker.
#[cfg(not(target_arch = "wasm32"))]
fn parallel_frames(
    frames: &FrameMaker,
    samples: &[f32],
    from: usize,
    nm: usize,
    out: &mut [f32],
) -> Result<(), AudioError> {
    use rayon::prelude::*;
    out.par_chunks_mut(PARALLEL_BLOCK * nm)
        .enumerate()
        .try_for_each_init(
            || frames.scratch(),
            |scratch, (c, part)| {
                part.chunks_mut(nm).enumerate().try_for_each(|(j, o)| {
                    frames.frame(samples, from + c * PARALLEL_BLOCK + j, scratch, o)
                })
            },
        )
}

/// Frames per parallel block.
#[cfg(not(target_arch = "wasm32"))]
const PARALLEL_BLOCK: usize = 32;

impl FrameMaker {
    fn scratch(&self) -> Scratch {
        Scratch {
            buf: self.fft.make_input_vec(),
            spec: self.fft.make_output_vec(),
            power: vec![0.0; self.cfg.n_fft / 2 + 1],
        }
    }

    /// Sample `j` of the reflect-padded, zero-extended 30 s chunk.
    fn sample(&self, samples: &[f32], j: isize) -> f64 {
        let n = self.cfg.chunk_samples as isize;
        let mut j = j.abs();
        if j >= n {
            j = 2 * (n - 1) - j;
        }
        samples.get(j as usize).map_or(0.0, |&v| v as f64)
    }

    /// Frame `i`'s raw log10 mels into `out` (`n_mels` values).
    fn frame(
        &self,
        samples: &[f32],
        i: usize,
        sc: &mut Scratch,
        out: &mut [f32],
    ) -> Result<(), AudioError> {
        let n = self.cfg.n_fft;
        let start = (i * self.cfg.hop) as isize - (n / 2) as isize;
        let mut any = false;
        if start >= 0 && start as usize + n <= samples.len() {
            // inside the audio (every frame but the edges): no reflection or zero-extension
            let src = &samples[start as usize..start as usize + n];
            for ((b, &x), w) in sc.buf.iter_mut().zip(src).zip(&self.window) {
                any |= x != 0.0;
                *b = x as f64 * w;
            }
        } else {
            for k in 0..n {
                let x = self.sample(samples, start + k as isize);
                any |= x != 0.0;
                sc.buf[k] = x * self.window[k];
            }
        }
        if !any {
            // the zero-extended tail of the chunk: every mel is 0 → log10(1e-10), exactly as
            // the FFT of zeros gives (no FFT needed)
            out.fill(1e-10f64.log10() as f32);
            return Ok(());
        }
        self.fft
            .process(&mut sc.buf, &mut sc.spec)
            .map_err(|e| AudioError::Unsupported(format!("fft: {e}")))?;
        let nf = n / 2 + 1;
        for (p, c) in sc.power.iter_mut().zip(&sc.spec) {
            *p = c.re * c.re + c.im * c.im;
        }
        // each filter over its non-zero bins only: the same sum, in the same order, as the
        // dense row (the skipped terms are exact zeros)
        for ((m, &(lo, hi)), o) in self.support.iter().enumerate().zip(out.iter_mut()) {
            let row = &self.filters[m * nf + lo..m * nf + hi];
            let mut acc = 0.0;
            for (w, p) in row.iter().zip(&sc.power[lo..hi]) {
                acc += w * p;
            }
            *o = (acc.max(1e-10) as f32).log10();
        }
        Ok(())
    }
}

impl MelStream {
    pub fn new(cfg: MelConfig) -> Result<Self, AudioError> {
        if cfg.n_fft < 4 || cfg.hop == 0 || cfg.n_mels == 0 || cfg.chunk_samples < cfg.hop {
            return Err(AudioError::Unsupported(format!("mel config {cfg:?}")));
        }
        let fft = RealFftPlanner::<f64>::new().plan_fft_forward(cfg.n_fft);
        let n = cfg.n_fft;
        // periodic Hann: w[i] = 0.5 − 0.5 cos(2πi/N)
        let window = (0..n)
            .map(|i| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / n as f64).cos())
            .collect();
        let sr = cfg.sample_rate as f64;
        let filters = mel_filters(cfg.n_mels, n, sr, 0.0, sr / 2.0);
        let nf = n / 2 + 1;
        let support = (0..cfg.n_mels)
            .map(|m| {
                let row = &filters[m * nf..(m + 1) * nf];
                let lo = row.iter().position(|&w| w != 0.0).unwrap_or(0);
                let hi = row.iter().rposition(|&w| w != 0.0).map_or(0, |i| i + 1);
                (lo, hi.max(lo))
            })
            .collect();
        let frames = FrameMaker {
            cfg,
            filters,
            support,
            window,
            fft,
        };
        Ok(MelStream {
            scratch: frames.scratch(),
            frames,
            samples: Vec::new(),
            raw: Vec::new(),
            next: 0,
            cfg,
        })
    }

    pub fn config(&self) -> &MelConfig {
        &self.cfg
    }

    /// Samples pushed so far.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Raw log10 frames computed so far (before the global clamp).
    pub fn frames_ready(&self) -> usize {
        self.next
    }

    /// Appends samples and computes every frame whose window is now complete. Fails (and
    /// keeps nothing of `x`) when the turn would exceed one chunk (30 s).
    pub fn push(&mut self, x: &[f32]) -> Result<usize, AudioError> {
        if let Some(i) = x.iter().position(|s| !s.is_finite()) {
            return Err(AudioError::NotFinite(self.samples.len() + i));
        }
        let total = self.samples.len() + x.len();
        if total > self.cfg.chunk_samples {
            return Err(AudioError::TooLong {
                seconds: total as f64 / self.cfg.sample_rate as f64,
                max: self.cfg.max_seconds(),
            });
        }
        self.samples.extend_from_slice(x);
        let before = self.next;
        let half = self.cfg.n_fft / 2;
        let len = self.samples.len();
        // frame i reads samples [i·hop − half, i·hop + half) (reflected at 0, so ≥ half+1 needed)
        let mut end = self.next;
        while end < self.cfg.chunk_frames()
            && end * self.cfg.hop + half <= len.min(self.cfg.chunk_samples - 1)
            && len > half
        {
            end += 1;
        }
        self.compute(end)?;
        Ok(self.next - before)
    }

    /// Computes frames `next .. end` (in parallel natively when there are many).
    fn compute(&mut self, end: usize) -> Result<(), AudioError> {
        let (from, nm) = (self.next, self.cfg.n_mels);
        if end <= from {
            return Ok(());
        }
        let base = self.raw.len();
        self.raw.resize(base + (end - from) * nm, 0.0);
        let out = &mut self.raw[base..];
        let (frames, samples, scratch) = (&self.frames, &self.samples[..], &mut self.scratch);
        let r = match end - from {
            #[cfg(not(target_arch = "wasm32"))]
            count if count >= PARALLEL_FRAMES => parallel_frames(frames, samples, from, nm, out),
            _ => (from..end)
                .zip(out.chunks_mut(nm))
                .try_for_each(|(i, o)| frames.frame(samples, i, scratch, o)),
        };
        if r.is_err() {
            self.raw.truncate(base);
            return r;
        }
        self.next = end;
        Ok(())
    }

    /// Completes the turn: computes the remaining frames (zero-extended to 30 s), applies
    /// `max(x, max − 8)` and `(x + 4)/4`, and returns the first `valid_frames` frames.
    pub fn finish(mut self) -> Result<Mel, AudioError> {
        let w = self.samples.len();
        if w == 0 {
            return Err(AudioError::Empty);
        }
        let half = self.cfg.n_fft / 2;
        // frames whose window overlaps the audio; the rest are all −10 (log10 of the floor)
        let last = ((w + half).div_ceil(self.cfg.hop)).min(self.cfg.chunk_frames());
        self.compute(last)?;
        let nm = self.cfg.n_mels;
        let mut max = self.raw.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        if self.next < self.cfg.chunk_frames() {
            max = max.max(-10.0);
        }
        let floor = max - 8.0;
        let frames = valid_frames(&self.cfg, w);
        let mut data = vec![0f32; nm * frames];
        // (frames, n_mels) → (n_mels, frames) in 32-frame blocks (each block's rows stay in
        // cache while its columns are written)
        for t0 in (0..frames).step_by(32) {
            for m in 0..nm {
                let row = &mut data[m * frames..(m + 1) * frames];
                for (t, d) in row
                    .iter_mut()
                    .enumerate()
                    .take(frames.min(t0 + 32))
                    .skip(t0)
                {
                    let v = self.raw.get(t * nm + m).copied().unwrap_or(-10.0);
                    *d = (v.max(floor) + 4.0) / 4.0;
                }
            }
        }
        Ok(Mel {
            n_mels: nm,
            frames,
            data,
        })
    }
}

/// Log-mel of one chunk of 16 kHz audio (≤ 30 s; split longer audio with
/// [`super::split_chunks`] first).
pub fn log_mel(cfg: MelConfig, samples: &[f32]) -> Result<Mel, AudioError> {
    let mut s = MelStream::new(cfg)?;
    s.push(samples)?;
    s.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slaney_scale_round_trips_and_filters_have_unit_area_scale() {
        for f in [0.0, 200.0, 999.0, 1000.0, 4000.0, 8000.0] {
            assert!((mel_to_hz(hz_to_mel(f)) - f).abs() < 1e-9);
        }
        let fb = mel_filters(128, 400, 16000.0, 0.0, 8000.0);
        assert_eq!(fb.len(), 128 * 201);
        // every filter is non-negative and non-empty; no weight above 8 kHz bin count
        for m in 0..128 {
            let row = &fb[m * 201..(m + 1) * 201];
            assert!(row.iter().all(|&v| v >= 0.0));
            assert!(row.iter().any(|&v| v > 0.0), "filter {m} empty");
        }
    }

    #[test]
    fn stream_equals_batch_for_any_blocking() {
        let mut rng = crate::util::rng::Rng::new(3);
        let cfg = MelConfig::default();
        for n in [1000usize, 16000 + 37, 48000] {
            let x = rng.uniform_vec(n, -0.3, 0.3);
            let batch = log_mel(cfg, &x).unwrap();
            assert_eq!(batch.frames, n / 160 + 1);
            for step in [128usize, 1000, 7] {
                let mut s = MelStream::new(cfg).unwrap();
                for c in x.chunks(step) {
                    s.push(c).unwrap();
                }
                assert_eq!(s.finish().unwrap(), batch, "n {n} step {step}");
            }
        }
    }

    #[test]
    fn frames_are_computed_as_audio_arrives() {
        let mut s = MelStream::new(MelConfig::default()).unwrap();
        assert_eq!(s.push(&vec![0.1; 200]).unwrap(), 0);
        assert_eq!(s.push(&[0.1]).unwrap(), 1); // frame 0 needs samples 0..=200
        assert_eq!(s.push(&vec![0.1; 1599]).unwrap(), 10); // 1800 samples: frames 0..=10
    }

    #[test]
    fn clamps_to_max_minus_8_and_scales() {
        // a loud tone, then silence: silence is clamped to (max − 8 + 4)/4
        let mut x: Vec<f32> = (0..8000).map(|i| (i as f32 * 0.3).sin() * 0.5).collect();
        x.extend(vec![0.0; 8000]);
        let m = log_mel(MelConfig::default(), &x).unwrap();
        let max = m.data.iter().copied().fold(f32::MIN, f32::max);
        let min = m.data.iter().copied().fold(f32::MAX, f32::min);
        assert!((max - min - 2.0).abs() < 1e-5, "range {min}..{max}");
        // silence only: everything is log10(1e-10) → (−10 + 4)/4
        let z = log_mel(MelConfig::default(), &[0.0; 1600]).unwrap();
        assert!(z.data.iter().all(|&v| v == -1.5));
    }

    #[test]
    fn long_turns_are_rejected_with_a_message() {
        let cfg = MelConfig {
            chunk_samples: 16000,
            ..Default::default()
        };
        let mut s = MelStream::new(cfg).unwrap();
        s.push(&vec![0.0; 15000]).unwrap();
        let e = s.push(&vec![0.0; 2000]).unwrap_err();
        assert!(matches!(e, AudioError::TooLong { max: 1, .. }), "{e}");
        assert!(e.to_string().contains("at most 1 s"));
        assert_eq!(s.len(), 15000);
        assert_eq!(
            MelStream::new(MelConfig::default()).unwrap().finish(),
            Err(AudioError::Empty)
        );
    }

    #[test]
    fn full_chunk_has_3000_frames() {
        let x: Vec<f32> = (0..480_000)
            .map(|i| ((i % 97) as f32 / 97.0 - 0.5) * 0.1)
            .collect();
        let m = log_mel(MelConfig::default(), &x).unwrap();
        assert_eq!(m.frames, 3000);
    }
}
