//! HiFT's inverse STFT on the GPU (shaders/audio/istft.wgsl): conv_post's log-magnitude and
//! phase logits → clamped PCM, so the vocoder reads back samples instead of spectra.

use crate::gpu::{grid, Binding, KernelKey, Recorder};
use crate::tensor::Tensor;

use super::{check_act, check_len, shape_err, OpError};

// Mirrors shaders/audio/istft.wgsl: spec, out, params.
const BINDINGS: &[Binding] = &[Binding::Read, Binding::ReadWrite, Binding::Uniform];
const WG: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    frames: u32,
    nb: u32,
    n_fft: u32,
    hop: u32,
    len: u32,
    limit: f32,
    groups_x: u32,
    _pad: u32,
}

/// `spec (frames, n_fft + 2)` rows `[log-mag logits (nb), phase logits (nb)]` → `out`, an f32
/// buffer of `hop·(frames − 1)` samples clamped to ±`limit` (the CPU reference is
/// `model::audio_out::hift::istft_hift`). Returns the sample count.
pub fn istft_hift(
    rec: &mut Recorder,
    spec: &Tensor,
    n_fft: usize,
    hop: usize,
    limit: f32,
    out: &wgpu::Buffer,
) -> Result<usize, OpError> {
    const OP: &str = "istft_hift";
    let ctx = rec.ctx();
    let [frames, width] = spec.shape[..] else {
        return Err(shape_err(
            OP,
            format!("spec must be (frames, n_fft + 2), got {:?}", spec.shape),
        ));
    };
    if n_fft < 4 || !n_fft.is_multiple_of(2) || width != n_fft + 2 || hop == 0 || hop > n_fft {
        return Err(shape_err(
            OP,
            format!(
                "spec {:?} does not fit n_fft {n_fft} (even, ≥ 4), hop {hop} (1..=n_fft)",
                spec.shape
            ),
        ));
    }
    if frames < 2 {
        return Err(shape_err(OP, format!("{frames} frames give no samples")));
    }
    let len = hop * (frames - 1);
    if len > u32::MAX as usize / 2 {
        return Err(shape_err(OP, format!("{len} samples are too many")));
    }
    check_act(OP, ctx, &[("spec", spec)])?;
    check_len(
        OP,
        "spec",
        &spec.buf,
        (spec.numel() * spec.dtype.size()) as u64,
    )?;
    check_len(OP, "out", out, (len * 4) as u64)?;
    let key = KernelKey {
        family: "istft",
        entry: "istft_hift",
        act: ctx.act(),
        subgroups: false,
        constants: vec![("WG", WG)],
    };
    let p = ctx.pipeline(&key, BINDINGS)?;
    let g = grid(
        (len as u32).div_ceil(WG),
        ctx.limits.max_compute_workgroups_per_dimension,
    );
    let params = Params {
        frames: frames as u32,
        nb: (n_fft / 2 + 1) as u32,
        n_fft: n_fft as u32,
        hop: hop as u32,
        len: len as u32,
        limit,
        groups_x: g[0],
        _pad: 0,
    };
    let u = rec.params(bytemuck::bytes_of(&params));
    let group = rec.bind(&p, &crate::binds![&spec.buf, out, &u]);
    rec.dispatch(&p, &group, g)?;
    Ok(len)
}
