//! Any sample rate → 16 kHz with rubato's windowed-sinc resampler (`SincFixedIn`, 256 taps,
//! Blackman-Harris² window, cut-off from rubato's fit for that window, cubic interpolation of
//! 256× oversampled sincs, f64 arithmetic).
//!
//! Batch and streaming are one code path: [`StreamResampler`] collects pushed samples and runs
//! the resampler on fixed internal blocks of [`BLOCK`] input samples, so the output does not
//! depend on how the input was cut; [`resample`] is "push everything, then finish". The
//! filter's delay, measured once on an impulse, is removed (leading outputs dropped, a few
//! zeros prepended so the rest is within ~0.05 output samples of whole) and `finish`
//! flushes with zeros up to `ceil(n_in · 16000 / rate)` samples, torchaudio's output length.
//! Streaming latency: up to one block (1024 input samples, 21 ms at 48 kHz) plus the filter's
//! half length (128 input samples).
//!
//! The reference (spec §2) uses torchaudio's Hann-windowed sinc (`lowpass_filter_width` 128,
//! rolloff 0.99); the two differ slightly near the 8 kHz band edge. The golden script measures
//! that difference (ARCHITECTURE.md "Audio in").

use rubato::{
    calculate_cutoff, Resampler, SincFixedIn, SincInterpolationParameters, SincInterpolationType,
    WindowFunction,
};

use super::AudioError;

/// Input samples per internal resampler call.
pub const BLOCK: usize = 1024;
/// Taps of the windowed sinc.
const SINC_LEN: usize = 256;
/// The model's input rate.
pub const TARGET_RATE: u32 = 16000;

/// Incremental resampler from `rate` to 16 kHz (pass-through at 16 kHz).
pub struct StreamResampler {
    inner: Option<SincFixedIn<f64>>,
    pending: Vec<f64>,
    /// Output samples still to drop (the filter delay).
    skip: usize,
    n_in: u64,
    n_out: u64,
    rate: u32,
}

/// The resampler's delay in output samples, measured once: coarsely on an impulse (the
/// output index of its peak), then exactly from the phase of a 500 Hz tone; turned into
/// (outputs to drop, zeros to prepend): prepending z input zeros delays the output by
/// z·16000/rate samples, and z (< 64) is picked to make the remaining delay the closest to a
/// whole number of output samples. Leaves the resampler reset.
fn impulse_delay(r: &mut SincFixedIn<f64>, rate: u32) -> Result<(usize, usize), AudioError> {
    let n = 8 * BLOCK;
    let mut run = |x: &[f64]| -> Result<Vec<f64>, AudioError> {
        let mut y = Vec::new();
        for c in x.chunks(BLOCK) {
            y.extend(r.process(&[c], None).map_err(rerr)?.remove(0));
        }
        r.reset();
        Ok(y)
    };
    let at = 2 * BLOCK + 17;
    let mut x = vec![0.0f64; 4 * BLOCK];
    x[at] = 1.0;
    let y = run(&x)?;
    let (k, _) = y
        .iter()
        .enumerate()
        .fold((0, f64::MIN), |m, (i, &v)| if v > m.1 { (i, v) } else { m });
    let step = TARGET_RATE as f64 / rate as f64;
    let coarse = k as f64 - at as f64 * step;
    let f0 = 500.0;
    let tau = 2.0 * std::f64::consts::PI;
    let x: Vec<f64> = (0..n)
        .map(|i| (tau * f0 * i as f64 / rate as f64).sin())
        .collect();
    let y = run(&x)?;
    let w = tau * f0 / TARGET_RATE as f64;
    let (mut i_, mut q_) = (0.0, 0.0);
    for (k, v) in y.iter().enumerate().take(3 * y.len() / 4).skip(y.len() / 4) {
        i_ += v * (w * k as f64).sin();
        q_ += v * (w * k as f64).cos();
    }
    let fine = (-q_).atan2(i_) / w;
    let period = TARGET_RATE as f64 / f0;
    let d = coarse + (fine - coarse + period / 2.0).rem_euclid(period) - period / 2.0;
    (0..64usize)
        .map(|z| (z, d + z as f64 * step))
        .filter(|(_, dz)| *dz > -0.01)
        .min_by(|a, b| {
            let off = |v: f64| (v - v.round()).abs();
            off(a.1).total_cmp(&off(b.1))
        })
        .map(|(z, dz)| (dz.round().max(0.0) as usize, z))
        .ok_or_else(|| rerr(format!("resampler delay {d} cannot be compensated")))
}

fn rerr(e: impl std::fmt::Display) -> AudioError {
    AudioError::Resample(e.to_string())
}

impl StreamResampler {
    pub fn new(rate: u32) -> Result<Self, AudioError> {
        if !(8000..=192_000).contains(&rate) {
            return Err(AudioError::BadRate(rate));
        }
        let mut inner = if rate == TARGET_RATE {
            None
        } else {
            let window = WindowFunction::BlackmanHarris2;
            let params = SincInterpolationParameters {
                sinc_len: SINC_LEN,
                f_cutoff: calculate_cutoff(SINC_LEN, window),
                oversampling_factor: 256,
                interpolation: SincInterpolationType::Cubic,
                window,
            };
            let r =
                SincFixedIn::<f64>::new(TARGET_RATE as f64 / rate as f64, 1.0, params, BLOCK, 1)
                    .map_err(rerr)?;
            Some(r)
        };
        // The filter's delay, measured once on an impulse (rubato's `output_delay` is not the
        // exact group delay of its sinc): dropped from the start of the output.
        let (skip, zeros) = match inner.as_mut() {
            Some(r) => impulse_delay(r, rate)?,
            None => (0, 0),
        };
        let mut pending = Vec::with_capacity(2 * BLOCK + zeros);
        pending.resize(zeros, 0.0);
        Ok(StreamResampler {
            inner,
            pending,
            skip,
            n_in: 0,
            n_out: 0,
            rate,
        })
    }

    /// Input rate.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Output length `finish` will have reached for the input pushed so far.
    fn total_out(&self) -> u64 {
        (self.n_in * TARGET_RATE as u64).div_ceil(self.rate as u64)
    }

    fn emit(&mut self, block: &[f64], out: &mut Vec<f32>) {
        let drop = self.skip.min(block.len());
        self.skip -= drop;
        out.extend(block[drop..].iter().map(|&v| v as f32));
    }

    /// Feeds samples (any count); returns the 16 kHz samples that became ready.
    pub fn push(&mut self, x: &[f32]) -> Result<Vec<f32>, AudioError> {
        if let Some(i) = x.iter().position(|s| !s.is_finite()) {
            return Err(AudioError::NotFinite(self.n_in as usize + i));
        }
        self.n_in += x.len() as u64;
        let Some(r) = self.inner.as_mut() else {
            self.n_out += x.len() as u64;
            return Ok(x.to_vec());
        };
        self.pending.extend(x.iter().map(|&v| v as f64));
        let mut out = Vec::new();
        let mut used = 0;
        let mut blocks = Vec::new();
        while self.pending.len() - used >= BLOCK {
            let y = r
                .process(&[&self.pending[used..used + BLOCK]], None)
                .map_err(rerr)?;
            blocks.push(y.into_iter().next().unwrap_or_default());
            used += BLOCK;
        }
        self.pending.drain(..used);
        for b in blocks {
            self.emit(&b, &mut out);
        }
        self.n_out += out.len() as u64;
        Ok(out)
    }

    /// Flushes the tail (zero padded) and returns the last samples; the total output is then
    /// exactly `ceil(n_in · 16000 / rate)` samples.
    pub fn finish(mut self) -> Result<Vec<f32>, AudioError> {
        let want = self.total_out();
        let mut out = Vec::new();
        if self.inner.is_none() {
            return Ok(out);
        }
        let mut first = true;
        let mut guard = 0;
        while self.n_out + (out.len() as u64) < want {
            let pending = std::mem::take(&mut self.pending);
            let r = self.inner.as_mut().ok_or_else(|| rerr("no resampler"))?;
            let y = if first && !pending.is_empty() {
                r.process_partial(Some(&[&pending[..]]), None)
            } else {
                r.process_partial(None::<&[&[f64]]>, None)
            }
            .map_err(rerr)?;
            first = false;
            let b = y.into_iter().next().unwrap_or_default();
            self.emit(&b, &mut out);
            guard += 1;
            if guard > 64 {
                return Err(rerr("flush did not converge"));
            }
        }
        out.truncate((want - self.n_out) as usize);
        Ok(out)
    }
}

/// Resamples a whole signal from `rate` to 16 kHz (same samples as streaming it).
pub fn resample(x: &[f32], rate: u32) -> Result<Vec<f32>, AudioError> {
    let mut s = StreamResampler::new(rate)?;
    let mut out = s.push(x)?;
    out.extend(s.finish()?);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(rate: u32, n: usize, hz: f64) -> Vec<f32> {
        (0..n)
            .map(|i| {
                (0.5 * (2.0 * std::f64::consts::PI * hz * i as f64 / rate as f64).sin()) as f32
            })
            .collect()
    }

    #[test]
    fn common_rates_reproduce_a_tone() {
        for rate in [8000u32, 22050, 24000, 32000, 44100, 48000] {
            let n = rate as usize / 2;
            let y = resample(&tone(rate, n, 440.0), rate).unwrap();
            assert_eq!(y.len(), (n as u64 * 16000).div_ceil(rate as u64) as usize);
            let want = tone(16000, y.len(), 440.0);
            // away from the edges (filter transients), the tone is reproduced closely
            let err = y[400..y.len() - 400]
                .iter()
                .zip(&want[400..])
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(err < 1e-3, "{rate} Hz: max err {err}");
        }
    }

    #[test]
    fn removes_content_above_8khz() {
        let rate = 48000;
        let y = resample(&tone(rate, 24000, 12000.0), rate).unwrap();
        let peak = y[400..y.len() - 400]
            .iter()
            .fold(0f32, |m, v| m.max(v.abs()));
        assert!(peak < 1e-3, "12 kHz leaked through: {peak}");
    }

    #[test]
    fn streaming_equals_batch_for_any_blocking() {
        let mut rng = crate::util::rng::Rng::new(5);
        for rate in [44100u32, 48000, 8000, 16000] {
            let x: Vec<f32> = rng.uniform_vec(rate as usize / 3 + 77, -0.5, 0.5);
            let batch = resample(&x, rate).unwrap();
            for step in [128usize, 1, 333, 4096] {
                let mut s = StreamResampler::new(rate).unwrap();
                let mut y = Vec::new();
                for c in x.chunks(step) {
                    y.extend(s.push(c).unwrap());
                }
                y.extend(s.finish().unwrap());
                assert_eq!(y, batch, "{rate} Hz in blocks of {step}");
            }
        }
    }

    #[test]
    fn rejects_bad_rates_and_samples() {
        assert!(matches!(
            StreamResampler::new(100),
            Err(AudioError::BadRate(100))
        ));
        let mut s = StreamResampler::new(48000).unwrap();
        assert_eq!(s.push(&[0.0, f32::INFINITY]), Err(AudioError::NotFinite(1)));
    }
}
