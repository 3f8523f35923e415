//! HiFT's source excitation and its STFT on the GPU (shaders/audio/hift_source.wgsl): the F0
//! predictor's last activations → F0 → the sine source (phase sums in fixed point) → the source
//! STFT the network fuses, with no read-back in between. The CPU references are
//! `model::audio_out::hift::{sine_source, stft}` (with the F0 `|Linear|` of `Hift::f0`).

use crate::gpu::{grid, Binding, KernelKey, Recorder};
use crate::tensor::Tensor;

use super::{check_act, check_len, shape_err, OpError};

const WG: u32 = 256;
/// Most harmonics (+ 1) the scan holds per invocation.
pub const SOURCE_MAX_H: usize = 16;
/// Longest STFT window.
pub const SOURCE_MAX_NFFT: usize = 32;

// Mirrors shaders/audio/hift_source.wgsl: f0, pre, params, hin, cls, noise, phw, src. Both
// entries get the whole layout (7 storage buffers, under the 8 every WebGPU device binds); what
// an entry does not touch is bound to the dummy.
const BINDINGS: &[Binding] = &[
    Binding::ReadWrite,
    Binding::ReadWrite,
    Binding::Uniform,
    Binding::Read,
    Binding::Read,
    Binding::Read,
    Binding::Read,
    Binding::ReadWrite,
];
// Mirrors shaders/audio/hift_stft.wgsl: src, tw, spec, params.
const STFT_BINDINGS: &[Binding] = &[
    Binding::Read,
    Binding::Read,
    Binding::ReadWrite,
    Binding::Uniform,
];

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    frames: u32,
    ch: u32,
    h: u32,
    fs: u32,
    len: u32,
    n_fft: u32,
    hop: u32,
    sframes: u32,
    sri: u32,
    thr: f32,
    sine_amp: f32,
    noise_std: f32,
    lin_b: f32,
    cls_b: f32,
    groups_x: u32,
    _pad: u32,
}

/// The source's constants (spec §9 step 2) and the STFT's shape.
#[derive(Clone, Copy, Debug)]
pub struct SourceSpec {
    pub sampling_rate: f32,
    /// Harmonics + 1.
    pub h: usize,
    pub sine_amp: f32,
    pub noise_std: f32,
    pub voiced_threshold: f32,
    /// Samples per frame.
    pub frame_samples: usize,
    pub n_fft: usize,
    pub hop: usize,
    /// The source's Linear bias, and the F0 Linear's.
    pub lin_b: f32,
    pub cls_b: f32,
}

/// The buffers the source reads: the F0 Linear's weight (ch f32), the noise (frames·fs·h f32,
/// sample-major), the phases then the source Linear's weight (2h f32) and the window-folded
/// twiddles (2 · (n_fft/2+1) · n_fft f32: cos rows, then sin rows).
pub struct SourceInputs<'a> {
    pub cls_w: &'a wgpu::Buffer,
    pub noise: &'a wgpu::Buffer,
    pub phw: &'a wgpu::Buffer,
    pub twiddles: &'a wgpu::Buffer,
}

/// `hin (T, ch)`, the F0 predictor's last activations → `spec (len/hop + 1, n_fft + 2)` (act),
/// the STFT of the source `s` (len = T·fs samples): three dispatches (F0 and the phase sums
/// in one workgroup, the source per sample, the STFT per frame).
pub fn hift_source_stft(
    rec: &mut Recorder,
    hin: &Tensor,
    inp: SourceInputs,
    s: SourceSpec,
    spec: &Tensor,
) -> Result<(), OpError> {
    const OP: &str = "hift_source";
    let ctx = rec.ctx();
    let [frames, ch] = hin.shape[..] else {
        return Err(shape_err(
            OP,
            format!("F0 features must be (T, C), got {:?}", hin.shape),
        ));
    };
    let len = frames * s.frame_samples;
    let nb = s.n_fft / 2 + 1;
    // samples per frame below 2⁹: the kernel's exact products j·v take j < 2⁹
    if frames == 0
        || ch == 0
        || s.h == 0
        || s.h > SOURCE_MAX_H
        || !(1..512).contains(&s.frame_samples)
    {
        return Err(shape_err(
            OP,
            format!(
                "{frames} frames × {ch} channels, {} harmonics (1..={SOURCE_MAX_H}), {} samples per frame (1..512)",
                s.h, s.frame_samples
            ),
        ));
    }
    if s.n_fft < 2 || s.n_fft > SOURCE_MAX_NFFT || s.hop == 0 || len <= s.n_fft / 2 {
        return Err(shape_err(
            OP,
            format!(
                "STFT n_fft {} (2..={SOURCE_MAX_NFFT}), hop {} over {len} samples",
                s.n_fft, s.hop
            ),
        ));
    }
    // the kernel divides by the rate as an integer below 2¹⁵ (exactly, as the reference's f32
    // division)
    let sr = s.sampling_rate;
    if !(1.0..32768.0).contains(&sr) || sr.fract() != 0.0 {
        return Err(shape_err(
            OP,
            format!("the sampling rate {sr} must be a whole number of Hz below 32768"),
        ));
    }
    let sframes = len / s.hop + 1;
    if len > (u32::MAX / 2) as usize || spec.shape != [sframes, 2 * nb] {
        return Err(shape_err(
            OP,
            format!(
                "spec is {:?}, want [{sframes}, {}] for {len} samples",
                spec.shape,
                2 * nb
            ),
        ));
    }
    check_act(OP, ctx, &[("F0 features", hin), ("spec", spec)])?;
    check_len(
        OP,
        "F0 features",
        &hin.buf,
        (hin.numel() * hin.dtype.size()) as u64,
    )?;
    check_len(OP, "F0 weight", inp.cls_w, (ch * 4) as u64)?;
    check_len(OP, "noise", inp.noise, (len * s.h * 4) as u64)?;
    check_len(OP, "phases and weight", inp.phw, (2 * s.h * 4) as u64)?;
    check_len(OP, "twiddles", inp.twiddles, (2 * nb * s.n_fft * 4) as u64)?;
    check_len(
        OP,
        "spec",
        &spec.buf,
        (spec.numel() * spec.dtype.size()) as u64,
    )?;
    let lim = ctx.limits.max_compute_workgroups_per_dimension;
    let gs = grid((len as u32).div_ceil(WG), lim);
    let gf = grid((sframes as u32).div_ceil(WG), lim);
    let params = |groups_x: u32| Params {
        frames: frames as u32,
        ch: ch as u32,
        h: s.h as u32,
        fs: s.frame_samples as u32,
        len: len as u32,
        n_fft: s.n_fft as u32,
        hop: s.hop as u32,
        sframes: sframes as u32,
        sri: sr as u32,
        thr: s.voiced_threshold,
        sine_amp: s.sine_amp,
        noise_std: s.noise_std,
        lin_b: s.lin_b,
        cls_b: s.cls_b,
        groups_x,
        _pad: 0,
    };
    let key = |family, entry| KernelKey {
        family,
        entry,
        act: ctx.act(),
        subgroups: false,
        constants: vec![],
    };
    let f0 = ctx.acquire((frames * 4) as u64);
    let pre = ctx.acquire((frames * s.h * 16) as u64);
    let src = ctx.acquire((len * 4) as u64);
    let d = &ctx.dummy;
    let r = (|| -> Result<(), OpError> {
        let p = ctx.pipeline(&key("hift_source", "hift_f0_scan"), BINDINGS)?;
        let u = rec.params(bytemuck::bytes_of(&params(1)));
        let g = rec.bind(
            &p,
            &crate::binds![
                &f0.buffer,
                &pre.buffer,
                &u,
                &hin.buf,
                inp.cls_w,
                d,
                d,
                &ctx.dummy_rw
            ],
        );
        rec.dispatch(&p, &g, [1, 1, 1])?;
        let p = ctx.pipeline(&key("hift_source", "hift_source"), BINDINGS)?;
        let u = rec.params(bytemuck::bytes_of(&params(gs[0])));
        let g = rec.bind(
            &p,
            &crate::binds![
                &f0.buffer,
                &pre.buffer,
                &u,
                d,
                d,
                inp.noise,
                inp.phw,
                &src.buffer
            ],
        );
        rec.dispatch(&p, &g, gs)?;
        let p = ctx.pipeline(&key("hift_stft", "hift_stft"), STFT_BINDINGS)?;
        let u = rec.params(bytemuck::bytes_of(&params(gf[0])));
        let g = rec.bind(&p, &crate::binds![&src.buffer, inp.twiddles, &spec.buf, &u]);
        rec.dispatch(&p, &g, gf)?;
        Ok(())
    })();
    ctx.release(f0);
    ctx.release(pre);
    ctx.release(src);
    r
}
