//! HiFT vocoder (spec §9; CosyVoice2 `HiFTGenerator` at 24 kHz with the `SineGen` source):
//! mel (T, 80) → 480·T samples.
//!
//! Split between devices: the F0 network, upsampling, source fusion and ResBlocks run on the
//! GPU, and so does the final iSTFT (`ops::istft_hift`); the neural-source-filter sine source
//! (a cumulative sum over 480·T samples) and the source STFT (n_fft 16, hop 4: 9 bins, a direct
//! DFT is cheaper than an FFT at that size) run on the host. Two readbacks per segment (F0, PCM).
//! [`istft_hift`] stays as the GPU kernel's CPU reference.

use crate::gpu::{GpuContext, Recorder};
use crate::model::{ModelError, Weights};
use crate::ops::{self, Binary, Conv1dSpec, ConvTranspose1dSpec, ConvWeight, OpError, Unary};
use crate::tensor::Tensor;
use crate::util::rng::Rng;

const P: &str = "hift.";

/// Host-side constants of the source and the iSTFT.
#[derive(Clone, Debug)]
pub struct HiftParams {
    pub sampling_rate: f32,
    pub harmonics: usize,
    pub sine_amp: f32,
    pub noise_std: f32,
    pub voiced_threshold: f32,
    pub n_fft: usize,
    pub hop: usize,
    /// Samples per mel frame (Π upsample rates · hop = 480).
    pub frame_samples: usize,
    pub lrelu_slope: f32,
    pub audio_limit: f32,
}

impl HiftParams {
    /// The GPU source's constants (`ops::hift_source_stft`) with the source Linear's bias and
    /// the F0 Linear's.
    pub fn source_spec(&self, lin_b: f32, cls_b: f32) -> ops::SourceSpec {
        ops::SourceSpec {
            sampling_rate: self.sampling_rate,
            h: self.harmonics + 1,
            sine_amp: self.sine_amp,
            noise_std: self.noise_std,
            voiced_threshold: self.voiced_threshold,
            frame_samples: self.frame_samples,
            n_fft: self.n_fft,
            hop: self.hop,
            lin_b,
            cls_b,
        }
    }
}

/// The random parts of the source (spec §9 step 2), injectable so tests can pass the
/// reference's noise: initial phases per harmonic (index 0 is forced to 0) and standard
/// normal noise (L, H+1) sample-major.
#[derive(Clone, Debug)]
pub struct SourceNoise {
    pub phases: Vec<f32>,
    pub noise: Vec<f32>,
}

impl SourceNoise {
    /// Seeded: phases U(−π, π), noise N(0, 1).
    pub fn seeded(seed: u64, samples: usize, harmonics: usize) -> Self {
        let (mut s, mut rng) = Self::start(seed, harmonics);
        s.noise = rng.normal_vec(samples * (harmonics + 1), 1.0);
        s
    }

    /// Whether this is noise for `samples` samples of `h` harmonics (+ 1).
    fn check(&self, h: usize, samples: usize) -> Result<(), ModelError> {
        if self.phases.len() != h || self.noise.len() != samples * h {
            return Err(ModelError::input(format!(
                "source noise has {} phases and {} values, want {h} and {}",
                self.phases.len(),
                self.noise.len(),
                samples * h
            )));
        }
        Ok(())
    }

    /// The phases of [`SourceNoise::seeded`] with no noise yet, and the generator that draws
    /// the noise next (sample-major, so drawing it in pieces gives the same values).
    pub fn start(seed: u64, harmonics: usize) -> (Self, Rng) {
        let mut rng = Rng::new(seed);
        let mut phases =
            rng.uniform_vec(harmonics + 1, -std::f32::consts::PI, std::f32::consts::PI);
        phases[0] = 0.0;
        (
            SourceNoise {
                phases,
                noise: Vec::new(),
            },
            rng,
        )
    }
}

/// The excitation `s = tanh(Linear(sines))` for `f0` (one value per sample, Hz), SineGen
/// semantics: cumsum of `h·f0/sr` over the whole segment, then mod 1 (spec §9 step 2); no
/// per-step wrap, so the phase keeps the reference's f32 rounding.
pub fn sine_source(
    p: &HiftParams,
    f0: &[f32],
    lin_w: &[f32],
    lin_b: f32,
    noise: &SourceNoise,
) -> Result<Vec<f32>, ModelError> {
    let h = p.harmonics + 1;
    noise.check(h, f0.len())?;
    if lin_w.len() != h {
        return Err(ModelError::input(format!(
            "the source's Linear has {} weights for {h} harmonics",
            lin_w.len()
        )));
    }
    // running sums in f64, each prefix rounded to f32 before `mod 1`: what torch's CPU cumsum
    // (f64 accumulator for f32) gives; a CUDA f32 scan drifts ~1e-3 cycles over 1e4 cycles
    let mut acc = vec![0f64; h];
    let mut out = Vec::with_capacity(f0.len());
    let two_pi = 2.0 * std::f32::consts::PI;
    for (n, &f) in f0.iter().enumerate() {
        let uv = if f > p.voiced_threshold { 1.0 } else { 0.0 };
        let amp = uv * p.noise_std + (1.0 - uv) * p.sine_amp / 3.0;
        let mut s = lin_b;
        for k in 0..h {
            acc[k] += (f * (k as f32 + 1.0) / p.sampling_rate) as f64;
            // unvoiced: the reference's `sine · 0` is 0, so the sine is not evaluated
            let sine = if uv > 0.0 {
                // `rem_euclid(1.0)` without fmod: x − ⌊x⌋ is exact for f32 (same value)
                let a = acc[k] as f32;
                let frac = a - a.floor();
                p.sine_amp * sin_f32(two_pi * frac + noise.phases[k])
            } else {
                0.0
            };
            let v = sine * uv + amp * noise.noise[n * h + k];
            s += lin_w[k] * v;
        }
        out.push(s.tanh());
    }
    Ok(out)
}

/// `sin(x)` for |x| ≲ 1e5 without a libm call (branch-free, so a loop over harmonics can be
/// vectorised): round-to-nearest by the 1.5·2²³ trick, Cody–Waite reduction by 2π into
/// [−π, π], reflection into [−π/2, π/2], then the Taylor series to x¹¹ (truncation < 6e-8 at
/// π/2). Absolute error ≤ 4e-7 against f64 `sin` of the same f32 input (tested; largest near
/// ±π, where the reduction rounds).
#[inline]
pub fn sin_f32(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5·2²³
    let k = (x * std::f32::consts::FRAC_1_PI * 0.5 + MAGIC) - MAGIC;
    // 2π = 6.28125 + 0.0019353071795864769 (6.28125 has 8 significant bits: k·6.28125 exact)
    let r = (x - k * 6.28125) - k * 0.001_935_307_2;
    let h = std::f32::consts::FRAC_PI_2;
    let pi = std::f32::consts::PI;
    let r = if r > h {
        pi - r
    } else if r < -h {
        -pi - r
    } else {
        r
    };
    let r2 = r * r;
    r * (1.0
        + r2 * (-1.0 / 6.0
            + r2 * (1.0 / 120.0
                + r2 * (-1.0 / 5040.0 + r2 * (1.0 / 362_880.0 + r2 * (-1.0 / 39_916_800.0))))))
}

/// Periodic Hann window of length n.
fn hann(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let a = 2.0 * std::f64::consts::PI * i as f64 / n as f64;
            (0.5 - 0.5 * a.cos()) as f32
        })
        .collect()
}

/// `torch.stft(x, n_fft, hop, window = periodic Hann, center = True, reflect)` →
/// frame-major `(frames, 2·(n_fft/2+1))` rows `[re_0..re_F, im_0..im_F]` (the source fusion's
/// input layout, time-major).
pub fn stft(x: &[f32], n_fft: usize, hop: usize) -> Vec<f32> {
    let half = n_fft / 2;
    let len = x.len();
    // reflect padding by n_fft/2 on both sides (needs len > half)
    let at = |i: isize| -> f32 {
        let l = len as isize;
        let mut j = i - half as isize;
        if j < 0 {
            j = -j;
        }
        if j >= l {
            j = 2 * (l - 1) - j;
        }
        x[j.clamp(0, l - 1) as usize]
    };
    let frames = len / hop + 1;
    let nb = half + 1;
    let w = hann(n_fft);
    let (cos, sin) = twiddles(n_fft);
    // the window folded into the twiddles: re_k = Σ_n x[n]·(w[n]·cos), im_k = −Σ_n x[n]·(w[n]·sin)
    let wc: Vec<f64> = (0..nb * n_fft)
        .map(|i| w[i % n_fft] as f64 * cos[(i / n_fft) * (i % n_fft) % n_fft])
        .collect();
    let ws: Vec<f64> = (0..nb * n_fft)
        .map(|i| w[i % n_fft] as f64 * sin[(i / n_fft) * (i % n_fft) % n_fft])
        .collect();
    let mut out = vec![0f32; frames * 2 * nb];
    let mut seg = vec![0f64; n_fft];
    for f in 0..frames {
        let start = f * hop;
        if start >= half && start + n_fft - half <= len {
            for (n, s) in seg.iter_mut().enumerate() {
                *s = x[start + n - half] as f64;
            }
        } else {
            for (n, s) in seg.iter_mut().enumerate() {
                *s = at((start + n) as isize) as f64;
            }
        }
        for k in 0..nb {
            let (c, sn) = (
                &wc[k * n_fft..(k + 1) * n_fft],
                &ws[k * n_fft..(k + 1) * n_fft],
            );
            let (mut re, mut im) = (0f64, 0f64);
            for n in 0..n_fft {
                re += seg[n] * c[n];
                im -= seg[n] * sn[n];
            }
            out[f * 2 * nb + k] = re as f32;
            out[f * 2 * nb + nb + k] = im as f32;
        }
    }
    out
}

/// `cos(2πj/n)` and `sin(2πj/n)` for j = 0..n (the DFT's angles reduced mod n).
fn twiddles(n: usize) -> (Vec<f64>, Vec<f64>) {
    (0..n)
        .map(|j| {
            let a = 2.0 * std::f64::consts::PI * j as f64 / n as f64;
            (a.cos(), a.sin())
        })
        .unzip()
}

/// `torch.istft(mag·e^{i·ph}, n_fft, hop, window = periodic Hann, center = True)` for
/// frame-major `spec (frames, 2·nb)` rows `[log-mag logits.., phase logits..]` as HiFT's
/// conv_post emits them: `mag = min(exp(·), 100)`, `ph = sin(·)`. Output `hop·(frames−1)`.
pub fn istft_hift(spec: &[f32], frames: usize, n_fft: usize, hop: usize) -> Vec<f32> {
    let nb = n_fft / 2 + 1;
    let w = hann(n_fft);
    let total = hop * (frames - 1) + n_fft;
    let mut y = vec![0f64; total];
    let mut env = vec![0f64; total];
    let (cos, sin) = twiddles(n_fft);
    let mut re = vec![0f64; nb];
    let mut im = vec![0f64; nb];
    for f in 0..frames {
        let row = &spec[f * 2 * nb..(f + 1) * 2 * nb];
        for k in 0..nb {
            let mag = (row[k].exp()).min(100.0) as f64;
            let ph = row[nb + k].sin() as f64;
            re[k] = mag * ph.cos();
            im[k] = mag * ph.sin();
        }
        for n in 0..n_fft {
            // irfft: DC and Nyquist imaginary parts are ignored
            let mut v = re[0] + if n % 2 == 0 { re[nb - 1] } else { -re[nb - 1] };
            for k in 1..nb - 1 {
                let j = (k * n) % n_fft;
                v += 2.0 * (re[k] * cos[j] - im[k] * sin[j]);
            }
            v /= n_fft as f64;
            y[f * hop + n] += v * w[n] as f64;
            env[f * hop + n] += (w[n] as f64) * (w[n] as f64);
        }
    }
    let start = n_fft / 2;
    let len = hop * (frames - 1);
    (0..len)
        .map(|i| {
            let e = env[start + i];
            (if e > 1e-11 {
                y[start + i] / e
            } else {
                y[start + i]
            }) as f32
        })
        .collect()
}

struct Conv {
    w: ConvWeight,
    b: Option<ops::ConvBias>,
    spec: Conv1dSpec,
}

impl Conv {
    fn load(
        w: &Weights,
        ctx: &GpuContext,
        name: &str,
        stride: usize,
        pad: usize,
        dilation: usize,
        bias: bool,
    ) -> Result<Self, ModelError> {
        let t = w.raw(ctx, &format!("{P}{name}.weight"))?;
        let mut rec = Recorder::new(ctx, "hift.conv.load");
        let cw = ConvWeight::conv1d_raw(&mut rec, name, &t, 1)?;
        rec.submit()?;
        Ok(Conv {
            w: cw,
            b: if bias {
                Some(w.conv_bias(ctx, &format!("{P}{name}.bias"))?)
            } else {
                None
            },
            spec: Conv1dSpec {
                stride,
                pad_left: pad,
                pad_right: pad,
                dilation,
            },
        })
    }

    fn fwd(&self, rec: &mut Recorder, x: &Tensor) -> Result<Tensor, OpError> {
        let t = self.spec.out_len(x.shape[0], self.w.k).ok_or_else(|| {
            crate::ops::shape_err("hift conv", format!("input {:?} too short", x.shape))
        })?;
        let y = rec.scratch("hift.conv", &[t, self.w.cout]);
        ops::conv1d(rec, x, &self.w, self.b.as_ref(), self.spec, &y)?;
        Ok(y)
    }
}

/// HiFT `ResBlock` (Snake → dilated conv → Snake → conv, residual) × dilations.
struct ResBlock {
    convs1: Vec<Conv>,
    convs2: Vec<Conv>,
    a1: Vec<wgpu::Buffer>,
    a2: Vec<wgpu::Buffer>,
}

impl ResBlock {
    fn load(w: &Weights, ctx: &GpuContext, p: &str, dil: &[usize]) -> Result<Self, ModelError> {
        let mut r = ResBlock {
            convs1: vec![],
            convs2: vec![],
            a1: vec![],
            a2: vec![],
        };
        for (i, &d) in dil.iter().enumerate() {
            let k = w
                .raw(ctx, &format!("{P}{p}.convs1.{i}.weight"))?
                .shape
                .get(2)
                .copied()
                .unwrap_or(1);
            r.convs1.push(Conv::load(
                w,
                ctx,
                &format!("{p}.convs1.{i}"),
                1,
                d * (k - 1) / 2,
                d,
                true,
            )?);
            r.convs2.push(Conv::load(
                w,
                ctx,
                &format!("{p}.convs2.{i}"),
                1,
                (k - 1) / 2,
                1,
                true,
            )?);
            r.a1.push(w.f32_buffer(ctx, &format!("{P}{p}.activations1.{i}.alpha"))?);
            r.a2.push(w.f32_buffer(ctx, &format!("{P}{p}.activations2.{i}.alpha"))?);
        }
        Ok(r)
    }

    fn fwd(&self, rec: &mut Recorder, x: &Tensor) -> Result<Tensor, OpError> {
        let mut x = x
            .view(&x.shape)
            .ok_or_else(|| super::layers::ops_shape("view", x))?;
        for i in 0..self.convs1.len() {
            let s1 = rec.scratch("snake", &x.shape);
            ops::snake(rec, &x, &self.a1[i], &s1)?;
            let c1 = self.convs1[i].fwd(rec, &s1)?;
            let s2 = rec.scratch("snake", &c1.shape);
            ops::snake(rec, &c1, &self.a2[i], &s2)?;
            let c2 = self.convs2[i].fwd(rec, &s2)?;
            ops::binary(rec, Binary::Add, &c2, &x, &c2)?;
            x = c2;
        }
        Ok(x)
    }
}

struct Up {
    w: ConvWeight,
    b: ops::ConvBias,
    spec: ConvTranspose1dSpec,
}

pub struct Hift {
    pub params: HiftParams,
    f0_convs: Vec<Conv>,
    f0_cls_w: Vec<f32>,
    f0_cls_b: f32,
    lin_w: Vec<f32>,
    lin_b: f32,
    conv_pre: Conv,
    ups: Vec<Up>,
    source_downs: Vec<Conv>,
    source_resblocks: Vec<ResBlock>,
    resblocks: Vec<ResBlock>,
    kernels: usize,
    conv_post: Conv,
    /// The F0 Linear's weight (f32) and the STFT's window-folded twiddles for the GPU source
    /// (`ops::hift_source_stft`).
    f0_cls_buf: wgpu::Buffer,
    twiddles: wgpu::Buffer,
    /// The source and its STFT on the host, as before (a knob for comparisons).
    host_source: bool,
}

/// The STFT's periodic Hann window folded into its twiddles, rounded to f32: `(2, nb, n_fft)`,
/// `w[n]·cos(2πkn/N)` rows, then `w[n]·sin(2πkn/N)` rows (what [`stft`] multiplies by).
pub fn stft_twiddles(n_fft: usize) -> Vec<f32> {
    let nb = n_fft / 2 + 1;
    let w = hann(n_fft);
    let (cos, sin) = twiddles(n_fft);
    let mut out = Vec::with_capacity(2 * nb * n_fft);
    for table in [&cos, &sin] {
        for k in 0..nb {
            for n in 0..n_fft {
                out.push((w[n] as f64 * table[k * n % n_fft]) as f32);
            }
        }
    }
    out
}

impl Hift {
    pub fn load(w: &Weights, ctx: &GpuContext) -> Result<Self, ModelError> {
        let d = crate::weights::hift::HiftConfig::default();
        let rates = d.upsample_rates.clone();
        let n_up = rates.len();
        let mut f0_convs = Vec::new();
        for j in 0..d.f0_layers {
            f0_convs.push(Conv::load(
                w,
                ctx,
                &format!("f0_predictor.condnet.{}", 2 * j),
                1,
                1,
                1,
                true,
            )?);
        }
        let cls = w.host(&format!("{P}f0_predictor.classifier.weight"))?;
        let cls_b = w.host(&format!("{P}f0_predictor.classifier.bias"))?;
        let lin = w.host(&format!("{P}m_source.l_linear.weight"))?;
        let lin_b = w.host(&format!("{P}m_source.l_linear.bias"))?;
        let n_fft = w
            .raw(ctx, &format!("{P}conv_post.weight"))?
            .shape
            .first()
            .copied()
            .unwrap_or(18)
            .saturating_sub(2);
        let mut ups = Vec::new();
        for (i, &u) in rates.iter().enumerate() {
            let t = w.raw(ctx, &format!("{P}ups.{i}.weight"))?;
            let [_, _, k] = t.shape[..] else {
                return Err(ModelError::input(format!("ups.{i}.weight is not 3-D")));
            };
            let mut rec = Recorder::new(ctx, "hift.ups.load");
            let uw = ConvWeight::conv_transpose1d_raw(&mut rec, "ups", &t, 1)?;
            rec.submit()?;
            ups.push(Up {
                w: uw,
                b: w.conv_bias(ctx, &format!("{P}ups.{i}.bias"))?,
                spec: ConvTranspose1dSpec {
                    stride: u,
                    padding: (k - u) / 2,
                    output_padding: 0,
                    dilation: 1,
                },
            });
        }
        let mut source_downs = Vec::new();
        let mut source_resblocks = Vec::new();
        for i in 0..n_up {
            let u: usize = rates[i + 1..].iter().product();
            let (stride, pad) = if u == 1 { (1, 0) } else { (u, u / 2) };
            source_downs.push(Conv::load(
                w,
                ctx,
                &format!("source_downs.{i}"),
                stride,
                pad,
                1,
                true,
            )?);
            source_resblocks.push(ResBlock::load(
                w,
                ctx,
                &format!("source_resblocks.{i}"),
                &d.source_resblock_dilation_sizes[i],
            )?);
        }
        let kernels = d.resblock_kernel_sizes.len();
        let mut resblocks = Vec::new();
        for i in 0..n_up * kernels {
            resblocks.push(ResBlock::load(
                w,
                ctx,
                &format!("resblocks.{i}"),
                &d.resblock_dilation_sizes[i % kernels],
            )?);
        }
        let hop = d.istft_hop;
        Ok(Hift {
            params: HiftParams {
                sampling_rate: d.sampling_rate as f32,
                harmonics: lin.data.len().saturating_sub(1),
                sine_amp: d.nsf_alpha as f32,
                noise_std: d.nsf_sigma as f32,
                voiced_threshold: d.nsf_voiced_threshold as f32,
                n_fft,
                hop,
                frame_samples: rates.iter().product::<usize>() * hop,
                lrelu_slope: d.lrelu_slope as f32,
                audio_limit: d.audio_limit as f32,
            },
            f0_convs,
            f0_cls_w: cls.data.clone(),
            f0_cls_b: cls_b.data.first().copied().unwrap_or(0.0),
            lin_w: lin.data.clone(),
            lin_b: lin_b.data.first().copied().unwrap_or(0.0),
            conv_pre: Conv::load(w, ctx, "conv_pre", 1, 3, 1, true)?,
            ups,
            source_downs,
            source_resblocks,
            resblocks,
            kernels,
            conv_post: Conv::load(w, ctx, "conv_post", 1, 3, 1, true)?,
            f0_cls_buf: ctx.upload("hift.f0_cls", bytemuck::cast_slice(&cls.data)),
            twiddles: ctx.upload(
                "hift.twiddles",
                bytemuck::cast_slice(&stft_twiddles(n_fft.max(2))),
            ),
            host_source: ctx.host_source,
        })
    }

    /// The F0 predictor's convolutions (5 × (conv k3 + ELU)): its features `(T, C)` before
    /// the `|Linear|`.
    fn f0_features(&self, rec: &mut Recorder, mel: &Tensor) -> Result<Tensor, ModelError> {
        let mut x = mel
            .view(&mel.shape)
            .ok_or_else(|| ModelError::input("mel view"))?;
        for c in &self.f0_convs {
            let y = c.fwd(rec, &x)?;
            ops::unary(rec, Unary::Elu, &y, &y)?;
            x = y;
        }
        Ok(x)
    }

    /// F0 (Hz) per mel frame: 5 × (conv k3 + ELU) on the GPU, `|Linear|` on the host.
    pub async fn f0(&self, ctx: &GpuContext, mel: &Tensor) -> Result<Vec<f32>, ModelError> {
        let mut rec = Recorder::new(ctx, "hift.f0");
        let x = self.f0_features(&mut rec, mel)?;
        rec.submit()?;
        let h = x.to_vec(ctx).await?;
        let ch = self.f0_cls_w.len();
        Ok(h.chunks(ch)
            .map(|r| {
                (r.iter()
                    .zip(&self.f0_cls_w)
                    .map(|(a, b)| a * b)
                    .sum::<f32>()
                    + self.f0_cls_b)
                    .abs()
            })
            .collect())
    }

    /// The source `s` (480·T samples) for per-frame F0 (nearest upsampling ×480).
    pub fn source(&self, f0: &[f32], noise: &SourceNoise) -> Result<Vec<f32>, ModelError> {
        let up: Vec<f32> = f0
            .iter()
            .flat_map(|&f| std::iter::repeat_n(f, self.params.frame_samples))
            .collect();
        sine_source(&self.params, &up, &self.lin_w, self.lin_b, noise)
    }

    /// The network after the source, then the iSTFT, both on the GPU: mel (T, 80) and source
    /// STFT `(120T+1, 18)` → PCM (480·T samples, clamped, NaN kept for the guard).
    pub async fn decode(
        &self,
        ctx: &GpuContext,
        mel: &Tensor,
        s_stft: &[f32],
    ) -> Result<Vec<f32>, ModelError> {
        let nb2 = self.params.n_fft + 2;
        let frames = s_stft.len() / nb2;
        let s = Tensor::from_f32(ctx, "hift.s_stft", &[frames, nb2], s_stft);
        let mut rec = Recorder::new(ctx, "hift");
        let spec = self.network(&mut rec, mel, &s)?;
        self.finish(ctx, rec, &spec).await
    }

    /// The iSTFT of conv_post's `spec` recorded after what `rec` holds, submitted, and the
    /// PCM read back.
    async fn finish(
        &self,
        ctx: &GpuContext,
        mut rec: Recorder<'_>,
        spec: &Tensor,
    ) -> Result<Vec<f32>, ModelError> {
        let p = &self.params;
        let frames = spec.shape[0];
        let samples = p.hop * frames.saturating_sub(1);
        let out = ctx.storage("hift.pcm", (samples.max(1) * 4) as u64);
        let n = ops::istft_hift(&mut rec, spec, p.n_fft, p.hop, p.audio_limit, &out)?;
        rec.submit()?;
        Ok(ctx.read_f32(&out, n).await?)
    }

    /// Records the source's STFT `(len/hop + 1, n_fft + 2)` on the GPU from the mel: the F0
    /// predictor, then `ops::hift_source_stft` (F0, the sine source, its STFT) with `noise`.
    pub fn source_stft_gpu(
        &self,
        rec: &mut Recorder,
        mel: &Tensor,
        noise: &SourceNoise,
    ) -> Result<Tensor, ModelError> {
        let ctx = rec.ctx();
        let p = &self.params;
        let h = p.harmonics + 1;
        let frames = mel.shape.first().copied().unwrap_or(0);
        let len = frames * p.frame_samples;
        noise.check(h, len)?;
        if self.lin_w.len() != h {
            return Err(ModelError::input(format!(
                "the source's Linear has {} weights for {h} harmonics",
                self.lin_w.len()
            )));
        }
        let feats = self.f0_features(rec, mel)?;
        let noise_buf = ctx.upload("hift.noise", bytemuck::cast_slice(&noise.noise));
        let phw: Vec<f32> = noise.phases.iter().chain(&self.lin_w).copied().collect();
        let phw = ctx.upload("hift.phw", bytemuck::cast_slice(&phw));
        let sframes = len / p.hop.max(1) + 1;
        let spec = rec.scratch("hift.s_stft", &[sframes, p.n_fft + 2]);
        ops::hift_source_stft(
            rec,
            &feats,
            ops::SourceInputs {
                cls_w: &self.f0_cls_buf,
                noise: &noise_buf,
                phw: &phw,
                twiddles: &self.twiddles,
            },
            p.source_spec(self.lin_b, self.f0_cls_b),
            &spec,
        )?;
        Ok(spec)
    }

    /// Records the network after the source: mel (T, 80) and source STFT `(120T+1, 18)` →
    /// conv_post output `(120T+1, 18)`.
    pub fn network(
        &self,
        rec: &mut Recorder,
        mel: &Tensor,
        s: &Tensor,
    ) -> Result<Tensor, ModelError> {
        let ctx = rec.ctx();
        let nb2 = self.params.n_fft + 2;
        if s.shape.get(1) != Some(&nb2) {
            return Err(ModelError::input(format!(
                "the source STFT is {:?}, want (frames, {nb2})",
                s.shape
            )));
        }
        let mut x = self.conv_pre.fwd(rec, mel)?;
        let n_up = self.ups.len();
        for i in 0..n_up {
            ops::unary(rec, Unary::LeakyRelu(self.params.lrelu_slope), &x, &x)?;
            let up = &self.ups[i];
            let t = up
                .spec
                .out_len(x.shape[0], up.w.k)
                .ok_or_else(|| ModelError::input("hift upsampling of an empty input"))?;
            let y = rec.scratch("hift.up", &[t, up.w.cout]);
            ops::conv_transpose1d(rec, &x, &up.w, Some(&up.b), up.spec, &y)?;
            x = if i == n_up - 1 {
                // ReflectionPad1d((1, 0)): frame 1 copied in front
                let c = up.w.cout;
                let sz = ctx.act().size();
                let padded = rec.scratch("hift.pad", &[t + 1, c]);
                let row = (c * sz) as u64;
                let enc = rec.encoder()?;
                enc.copy_buffer_to_buffer(&y.buf, 0, &padded.buf, row, row * t as u64);
                enc.copy_buffer_to_buffer(&y.buf, row, &padded.buf, 0, row);
                padded
            } else {
                y
            };
            let si = self.source_downs[i].fwd(rec, s)?;
            let si = self.source_resblocks[i].fwd(rec, &si)?;
            if si.shape != x.shape {
                return Err(ModelError::input(format!(
                    "source branch {:?} does not match the upsampled {:?}",
                    si.shape, x.shape
                )));
            }
            ops::binary(rec, Binary::Add, &x, &si, &x)?;
            let mut acc: Option<Tensor> = None;
            for j in 0..self.kernels {
                let r = self.resblocks[i * self.kernels + j].fwd(rec, &x)?;
                acc = Some(match acc {
                    None => r,
                    Some(a) => {
                        ops::binary(rec, Binary::Add, &a, &r, &a)?;
                        a
                    }
                });
            }
            let a = acc.ok_or_else(|| ModelError::input("HiFT has no resblocks"))?;
            ops::unary(rec, Unary::Scale(1.0 / self.kernels as f32), &a, &a)?;
            x = a;
        }
        ops::unary(rec, Unary::LeakyRelu(0.01), &x, &x)?;
        Ok(self.conv_post.fwd(rec, &x)?)
    }

    /// mel (T, 80) → PCM (480·T samples), clamped to ±0.99.
    pub async fn forward(
        &self,
        ctx: &GpuContext,
        mel: &Tensor,
        noise: &SourceNoise,
    ) -> Result<Vec<f32>, ModelError> {
        self.forward_marked(ctx, mel, noise, &mut |_| {}).await
    }

    /// [`Hift::forward`], calling `mark` after each stage ("f0", "source", "network+istft")
    /// so a benchmark can time them.
    pub async fn forward_marked(
        &self,
        ctx: &GpuContext,
        mel: &Tensor,
        noise: &SourceNoise,
        mark: &mut dyn FnMut(&'static str),
    ) -> Result<Vec<f32>, ModelError> {
        if self.host_source {
            let f0 = self.f0(ctx, mel).await?;
            mark("f0");
            let s = self.source(&f0, noise)?;
            let p = &self.params;
            let s_stft = stft(&s, p.n_fft, p.hop);
            mark("source");
            let y = self.decode(ctx, mel, &s_stft).await?;
            mark("network+istft");
            return Ok(y);
        }
        // everything on the GPU in one submission: one read-back (the PCM)
        let mut rec = Recorder::new(ctx, "hift");
        let s_stft = self.source_stft_gpu(&mut rec, mel, noise)?;
        let spec = self.network(&mut rec, mel, &s_stft)?;
        mark("record");
        let y = self.finish(ctx, rec, &spec).await?;
        mark("gpu");
        Ok(y)
    }
}

#[cfg(test)]
mod tests {
    use super::sin_f32;

    /// `sin_f32` against f64 `sin` over the source's argument range (2π·frac + phase, phase in
    /// [−π, π]) and beyond, on a dense grid plus seeded random points: |error| ≤ 4e-7.
    #[test]
    fn sin_f32_matches_f64() {
        let mut rng = crate::util::rng::Rng::new(5);
        let mut xs: Vec<f32> = (0..200_000).map(|i| -7.0 + i as f32 * 2e-4 * 7.0).collect();
        xs.extend(rng.uniform_vec(100_000, -1000.0, 1000.0));
        let worst = xs
            .iter()
            .map(|&x| (sin_f32(x) as f64 - (x as f64).sin()).abs())
            .fold(0f64, f64::max);
        assert!(worst <= 4e-7, "max error {worst}");
    }
}
