use crate::gpu::{grid, Binding, KernelKey, Recorder};

use super::{check_len, OpError};

// Mirrors shaders/util/fill.wgsl and shaders/util/copy.wgsl.
const FILL_BINDINGS: &[Binding] = &[Binding::ReadWrite, Binding::Uniform];
const COPY_BINDINGS: &[Binding] = &[Binding::Read, Binding::ReadWrite, Binding::Uniform];
/// `read_sink`: the copy's bindings (src, the sink as dst, params), then src_b.
const READ_SINK_BINDINGS: &[Binding] = &[
    Binding::Read,
    Binding::ReadWrite,
    Binding::Uniform,
    Binding::Read,
];

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct FillParams {
    n: u32,
    seed: u32,
    groups_x: u32,
    _pad: u32,
    lo_amp: f32,
    lo_off: f32,
    hi_amp: f32,
    hi_off: f32,
}

/// What to write: random bits, or f16 pairs `(U(−½,½)·amp + off)` for the low/high half.
#[derive(Clone, Copy, Debug)]
pub enum Fill {
    Bits,
    F16 { lo: (f32, f32), hi: (f32, f32) },
}

/// Fills the first `n` u32 words of `buf` with seeded pseudo-random data on the GPU.
pub fn fill(
    rec: &mut Recorder,
    buf: &wgpu::Buffer,
    n: usize,
    seed: u32,
    what: Fill,
) -> Result<(), OpError> {
    let ctx = rec.ctx();
    check_len("fill", "target", buf, n as u64 * 4)?;
    let (entry, (lo, hi)) = match what {
        Fill::Bits => ("fill_bits", ((0.0, 0.0), (0.0, 0.0))),
        Fill::F16 { lo, hi } => ("fill_f16", (lo, hi)),
    };
    let key = KernelKey {
        family: "fill",
        entry,
        act: ctx.act(),
        subgroups: false,
        constants: vec![("WG", 256)],
    };
    let p = ctx.pipeline(&key, FILL_BINDINGS)?;
    let g = grid(
        (n as u32).div_ceil(256),
        ctx.limits.max_compute_workgroups_per_dimension,
    );
    let params = FillParams {
        n: n as u32,
        seed,
        groups_x: g[0],
        _pad: 0,
        lo_amp: lo.0,
        lo_off: lo.1,
        hi_amp: hi.0,
        hi_off: hi.1,
    };
    let u = rec.params(bytemuck::bytes_of(&params));
    let group = rec.bind(&p, &crate::binds![buf, &u]);
    rec.dispatch(&p, &group, g)?;
    Ok(())
}

/// `dst[..bytes] = src[..bytes]` with a vec4 kernel (`bytes` a multiple of 16): the
/// bandwidth reference of the benchmarks.
pub fn copy(
    rec: &mut Recorder,
    src: &wgpu::Buffer,
    dst: &wgpu::Buffer,
    bytes: u64,
) -> Result<(), OpError> {
    copy_with(rec, src, dst, bytes, false)
}

/// [`copy`], with its size and grid as pipeline constants where `fixed` (a pipeline per size),
/// so that its load waits on no params.
pub fn copy_with(
    rec: &mut Recorder,
    src: &wgpu::Buffer,
    dst: &wgpu::Buffer,
    bytes: u64,
    fixed: bool,
) -> Result<(), OpError> {
    let ctx = rec.ctx();
    check_len("copy", "src", src, bytes)?;
    check_len("copy", "dst", dst, bytes)?;
    let n = (bytes / 16) as u32;
    let g = grid(
        n.div_ceil(256),
        ctx.limits.max_compute_workgroups_per_dimension,
    );
    let mut constants = vec![("WG", 256)];
    if fixed {
        constants.extend([("FN", n), ("FGX", g[0])]);
    }
    let key = KernelKey {
        family: "copy",
        entry: "copy",
        act: ctx.act(),
        subgroups: false,
        constants,
    };
    let p = ctx.pipeline(&key, COPY_BINDINGS)?;
    let params: [u32; 4] = [n, g[0], 0, 0];
    let u = rec.params(bytemuck::cast_slice(&params));
    let group = rec.bind(&p, &crate::binds![src, dst, &u]);
    rec.dispatch(&p, &group, g)?;
    Ok(())
}

/// `copy.wgsl`'s `read_sink`: reads the first `a_bytes` of `a`, then the first `b_bytes` of
/// `b` (whole vec4s), in one dispatch with its sizes as pipeline constants, writing only to
/// `sink` (≥ 16 bytes; in practice never), `ru` (1 to 8) vec4s per invocation. A stream of
/// plain reads: the decode benchmark chains one per stage, through one sink, to measure what a
/// dispatch per stage allows at best.
pub fn read_sink(
    rec: &mut Recorder,
    (a, a_bytes): (&wgpu::Buffer, u64),
    (b, b_bytes): (&wgpu::Buffer, u64),
    sink: &wgpu::Buffer,
    ru: u32,
) -> Result<(), OpError> {
    let ctx = rec.ctx();
    check_len("read_sink", "a", a, a_bytes)?;
    check_len("read_sink", "b", b, b_bytes)?;
    check_len("read_sink", "sink", sink, 16)?;
    let (na, nb) = ((a_bytes / 16) as u32, (b_bytes / 16) as u32);
    if na == 0 {
        return Err(super::shape_err("read_sink", "nothing to read from a"));
    }
    if !(1..=8).contains(&ru) {
        return Err(super::shape_err(
            "read_sink",
            format!("{ru} vec4s per invocation, not 1 to 8"),
        ));
    }
    let g = grid(
        (na + nb).div_ceil(256 * ru),
        ctx.limits.max_compute_workgroups_per_dimension,
    );
    let key = KernelKey {
        family: "copy",
        entry: "read_sink",
        act: ctx.act(),
        subgroups: false,
        constants: vec![
            ("WG", 256),
            ("FN", na),
            ("FGX", g[0]),
            ("FNB", nb),
            ("RU", ru),
        ],
    };
    let p = ctx.pipeline(&key, READ_SINK_BINDINGS)?;
    let params: [u32; 4] = [na, g[0], 0, 0];
    let u = rec.params(bytemuck::cast_slice(&params));
    let group = rec.bind(&p, &crate::binds![a, sink, &u, b]);
    rec.dispatch(&p, &group, g)?;
    Ok(())
}

/// `mma_peak.wgsl`: `groups` subgroups each run `reps` rounds of 8 tensor-core multiply-adds
/// (16×16×16) on fragments held in registers (mode 0) or reloaded every round from a storage
/// buffer (1) or workgroup memory (2). `x` holds ≥ 512 vec4<f16>, `y` ≥ groups · 8 KB.
/// Native, tensor cores only (Caps::coop); the benchmarks' compute limit.
pub fn mma_peak(
    rec: &mut Recorder,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    (groups, reps, mode): (u32, u32, u32),
) -> Result<(), OpError> {
    let ctx = rec.ctx();
    if !ctx.caps.coop {
        return Err(OpError::Shape {
            op: "mma_peak",
            detail: "the adapter has no cooperative matrices".into(),
        });
    }
    check_len("mma_peak", "x", x, 512 * 8)?;
    check_len("mma_peak", "y", y, groups as u64 * 8192)?;
    let key = KernelKey {
        family: "mma_peak",
        entry: "mma_peak",
        act: ctx.act(),
        subgroups: false,
        constants: vec![("MODE", mode)],
    };
    let p = ctx.pipeline(&key, COPY_BINDINGS)?;
    let params: [u32; 4] = [reps, 0, 0, 0];
    let u = rec.params(bytemuck::cast_slice(&params));
    let group = rec.bind(&p, &crate::binds![x, y, &u]);
    rec.dispatch(&p, &group, [groups, 1, 1])?;
    Ok(())
}
