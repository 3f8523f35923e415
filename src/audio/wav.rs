//! WAV decoding with `hound`: integer PCM of 8, 16, 24 or 32 bits and 32-bit float, any number
//! of channels, downmixed to mono by the mean of the channels.
//!
//! Integer samples are scaled by 2^(bits−1) (so 16-bit −32768 → −1.0), the convention of
//! torchaudio/soundfile that the reference loader uses.

use super::AudioError;

/// Mono PCM in [-1, 1] at `rate` Hz.
#[derive(Clone, Debug, PartialEq)]
pub struct Pcm {
    pub samples: Vec<f32>,
    pub rate: u32,
    /// Channels of the source before the downmix.
    pub channels: u16,
}

impl Pcm {
    /// Duration in seconds.
    pub fn seconds(&self) -> f64 {
        self.samples.len() as f64 / self.rate.max(1) as f64
    }
}

/// Decodes a WAV file held in memory.
pub fn read_wav(bytes: &[u8]) -> Result<Pcm, AudioError> {
    if bytes.is_empty() {
        return Err(AudioError::Empty);
    }
    let reader = hound::WavReader::new(std::io::Cursor::new(bytes)).map_err(|e| match e {
        hound::Error::Unsupported => {
            AudioError::Unsupported("hound cannot read this encoding".into())
        }
        hound::Error::FormatError(m) => AudioError::NotWav(m.to_string()),
        e => AudioError::NotWav(e.to_string()),
    })?;
    let spec = reader.spec();
    let ch = spec.channels as usize;
    if ch == 0 {
        return Err(AudioError::Unsupported("0 channels".into()));
    }
    if !(8000..=192_000).contains(&spec.sample_rate) {
        return Err(AudioError::BadRate(spec.sample_rate));
    }
    let interleaved: Vec<f32> = match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Float, 32) => reader
            .into_samples::<f32>()
            .collect::<Result<_, _>>()
            .map_err(|e| AudioError::NotWav(e.to_string()))?,
        (hound::SampleFormat::Int, b @ (8 | 16 | 24 | 32)) => {
            let scale = 1.0 / (1u64 << (b - 1)) as f64;
            reader
                .into_samples::<i32>()
                .map(|s| s.map(|v| (v as f64 * scale) as f32))
                .collect::<Result<_, _>>()
                .map_err(|e| AudioError::NotWav(e.to_string()))?
        }
        (f, b) => {
            return Err(AudioError::Unsupported(format!(
                "{b}-bit {} samples (want 8/16/24/32-bit integer or 32-bit float)",
                if f == hound::SampleFormat::Float {
                    "float"
                } else {
                    "integer"
                }
            )))
        }
    };
    if interleaved.is_empty() {
        return Err(AudioError::Empty);
    }
    if let Some(i) = interleaved.iter().position(|s| !s.is_finite()) {
        return Err(AudioError::NotFinite(i / ch));
    }
    let samples = if ch == 1 {
        interleaved
    } else {
        interleaved
            .chunks_exact(ch)
            .map(|f| (f.iter().map(|&s| s as f64).sum::<f64>() / ch as f64) as f32)
            .collect()
    };
    Ok(Pcm {
        samples,
        rate: spec.sample_rate,
        channels: spec.channels,
    })
}

/// Encodes mono f32 samples as a 16-bit PCM WAV (tests and tools).
pub fn write_wav_i16(samples: &[f32], rate: u32) -> Vec<u8> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut cur = std::io::Cursor::new(Vec::new());
    // Writing into a Vec cannot fail for a valid spec.
    if let Ok(mut w) = hound::WavWriter::new(&mut cur, spec) {
        for &s in samples {
            let v = (s.clamp(-1.0, 1.0) * 32767.0).round() as i16;
            let _ = w.write_sample(v);
        }
        let _ = w.finalize();
    }
    cur.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(
        spec: hound::WavSpec,
        write: impl Fn(&mut hound::WavWriter<&mut std::io::Cursor<Vec<u8>>>),
    ) -> Vec<u8> {
        let mut cur = std::io::Cursor::new(Vec::new());
        let mut w = hound::WavWriter::new(&mut cur, spec).unwrap();
        write(&mut w);
        w.finalize().unwrap();
        cur.into_inner()
    }

    fn spec(ch: u16, bits: u16, float: bool) -> hound::WavSpec {
        hound::WavSpec {
            channels: ch,
            sample_rate: 22050,
            bits_per_sample: bits,
            sample_format: if float {
                hound::SampleFormat::Float
            } else {
                hound::SampleFormat::Int
            },
        }
    }

    #[test]
    fn integer_widths_scale_to_unit_range() {
        for bits in [8u16, 16, 24, 32] {
            let full = 1i64 << (bits - 1);
            let bytes = wav(spec(1, bits, false), |w| {
                for v in [-full, -full / 2, 0, full / 4, full - 1] {
                    w.write_sample(v as i32).unwrap();
                }
            });
            let p = read_wav(&bytes).unwrap();
            assert_eq!(p.rate, 22050);
            let want = [-1.0, -0.5, 0.0, 0.25, 1.0 - 1.0 / full as f64];
            for (g, w) in p.samples.iter().zip(want) {
                assert!((*g as f64 - w).abs() < 1e-6, "{bits}-bit: {g} vs {w}");
            }
        }
    }

    #[test]
    fn float_and_stereo_downmix_by_mean() {
        let bytes = wav(spec(2, 32, true), |w| {
            for (l, r) in [(0.5f32, -0.25f32), (1.0, 0.0), (-0.75, -0.25)] {
                w.write_sample(l).unwrap();
                w.write_sample(r).unwrap();
            }
        });
        let p = read_wav(&bytes).unwrap();
        assert_eq!(p.channels, 2);
        assert_eq!(p.samples, vec![0.125, 0.5, -0.5]);
        let bytes = wav(spec(3, 16, false), |w| {
            for v in [3000i32, 6000, 9000] {
                w.write_sample(v).unwrap();
            }
        });
        let p = read_wav(&bytes).unwrap();
        assert!((p.samples[0] - 6000.0 / 32768.0).abs() < 1e-7);
    }

    #[test]
    fn bad_input_gives_typed_errors() {
        assert_eq!(read_wav(&[]), Err(AudioError::Empty));
        assert!(matches!(
            read_wav(b"hello, this is not audio at all"),
            Err(AudioError::NotWav(_))
        ));
        let empty = wav(spec(1, 16, false), |_| {});
        assert_eq!(read_wav(&empty), Err(AudioError::Empty));
        let nan = wav(spec(1, 32, true), |w| {
            w.write_sample(0.0f32).unwrap();
            w.write_sample(f32::NAN).unwrap();
        });
        assert_eq!(read_wav(&nan), Err(AudioError::NotFinite(1)));
        let mut slow = spec(1, 16, false);
        slow.sample_rate = 4000;
        let b = wav(slow, |w| w.write_sample(1i16).unwrap());
        assert_eq!(read_wav(&b), Err(AudioError::BadRate(4000)));
    }

    #[test]
    fn write_then_read_round_trips() {
        let x: Vec<f32> = (0..100).map(|i| ((i as f32) * 0.1).sin() * 0.9).collect();
        let p = read_wav(&write_wav_i16(&x, 16000)).unwrap();
        assert_eq!(p.rate, 16000);
        for (a, b) in x.iter().zip(&p.samples) {
            assert!((a - b).abs() < 1e-4);
        }
    }
}
