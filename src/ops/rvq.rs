//! Residual VQ of the audio tokenizer's bridge (spec §4): `rvq_norms` (once, at load),
//! `rvq_encode` (frames → 8 codes each) and `rvq_decode` (codes → Σ codewords).
//!
//! All eight codebooks live in ONE f32 buffer, level after level, with per-level row offsets
//! in the params (so a kernel needs one binding for all levels). The real model's codebooks
//! (19456 × 5120 f32 = 380 MiB) need a `maxStorageBufferBindingSize` that large; a smaller
//! device gets a typed error here.

use crate::gpu::{grid, Binding, GpuContext, KernelKey, Recorder};

use super::relayout::{relayout, Strided};
use super::{check_len, shape_err, OpError};
use crate::tensor::{RawDType, RawTensor};

/// Codebook levels of the bridge's residual VQ.
pub const RVQ_LEVELS: usize = 8;

const WG: u32 = 256;
/// Codewords and frames per workgroup of `rvq_encode_dist`.
const ROWS: u32 = 64;
const FT: u32 = 16;

/// The 8 codebooks `C_i (N_i, Dq)` f32 in one buffer, and their squared norms (filled by
/// [`rvq_norms`]).
pub struct Codebooks {
    /// (ΣN_i, Dq) f32, level after level.
    pub buf: wgpu::Buffer,
    /// (ΣN_i,) f32 ‖c‖², valid after [`rvq_norms`] ran.
    pub norms: wgpu::Buffer,
    /// N_i.
    pub sizes: [usize; RVQ_LEVELS],
    /// First row of level i.
    pub row0: [usize; RVQ_LEVELS],
    /// Dq.
    pub dim: usize,
}

impl Codebooks {
    /// Checks sizes and dim against the device and returns `(sizes, row0)`.
    fn layout(
        ctx: &GpuContext,
        sizes: &[usize],
        dim: usize,
    ) -> Result<([usize; RVQ_LEVELS], [usize; RVQ_LEVELS]), OpError> {
        const OP: &str = "rvq codebooks";
        let sizes: [usize; RVQ_LEVELS] = sizes.try_into().map_err(|_| {
            shape_err(
                OP,
                format!("{} codebook sizes given, {RVQ_LEVELS} needed", sizes.len()),
            )
        })?;
        if dim == 0 || sizes.contains(&0) {
            return Err(shape_err(
                OP,
                format!("empty codebook: sizes {sizes:?}, dim {dim}"),
            ));
        }
        let rows: usize = sizes.iter().sum();
        let bytes = (rows * dim * 4) as u64;
        if bytes > ctx.limits.max_storage_buffer_binding_size || rows * dim >= u32::MAX as usize {
            return Err(shape_err(
                OP,
                format!(
                    "codebooks {sizes:?} × {dim} are {bytes} bytes, over the device's \
                     {}-byte binding limit",
                    ctx.limits.max_storage_buffer_binding_size
                ),
            ));
        }
        let mut row0 = [0; RVQ_LEVELS];
        for i in 1..RVQ_LEVELS {
            row0[i] = row0[i - 1] + sizes[i - 1];
        }
        Ok((sizes, row0))
    }

    /// Uploads `data` = the 8 row-major codebooks concatenated (ΣN_i·Dq f32).
    pub fn from_f32(
        ctx: &GpuContext,
        label: &str,
        sizes: &[usize],
        dim: usize,
        data: &[f32],
    ) -> Result<Codebooks, OpError> {
        let (sizes, row0) = Self::layout(ctx, sizes, dim)?;
        let rows: usize = sizes.iter().sum();
        if data.len() != rows * dim {
            return Err(shape_err(
                "rvq codebooks",
                format!(
                    "data holds {} values, codebooks {sizes:?} × {dim} need {}",
                    data.len(),
                    rows * dim
                ),
            ));
        }
        Ok(Codebooks {
            buf: ctx.upload(label, bytemuck::cast_slice(data)),
            norms: ctx.storage("rvq.norms", (rows * 4) as u64),
            sizes,
            row0,
            dim,
        })
    }

    /// Assembles the 8 codebooks `(N_i, Dq)` from raw GPU tensors (f16 or f32, as loaded)
    /// into the f32 buffer on the GPU, one [`relayout`] per level, and records
    /// [`rvq_norms`]. The codebooks never pass through host memory.
    pub fn from_raw(
        rec: &mut Recorder,
        label: &str,
        levels: &[&RawTensor],
    ) -> Result<Codebooks, OpError> {
        let ctx = rec.ctx();
        let dim = levels
            .first()
            .and_then(|l| l.shape.get(1))
            .copied()
            .unwrap_or(0);
        let mut sizes = Vec::new();
        for (i, l) in levels.iter().enumerate() {
            match l.shape[..] {
                [n, d] if d == dim => sizes.push(n),
                _ => {
                    return Err(shape_err(
                        "rvq codebooks",
                        format!("codebook {i} is {:?}, want [N, {dim}]", l.shape),
                    ))
                }
            }
        }
        let (sizes, row0) = Self::layout(ctx, &sizes, dim)?;
        let rows: usize = sizes.iter().sum();
        let buf = ctx.storage(label, (rows * dim * 4) as u64);
        for (i, l) in levels.iter().enumerate() {
            let s = Strided {
                x: sizes[i],
                y: 1,
                z: dim,
                zvalid: dim,
                sbase: 0,
                sx: dim,
                sy: 0,
                sz: 1,
                dbase: row0[i] * dim,
                dx: dim,
                dy: 0,
            };
            relayout(rec, &l.buf, l.dtype, &buf, RawDType::F32, &s)?;
        }
        let cb = Codebooks {
            buf,
            norms: ctx.storage("rvq.norms", (rows * 4) as u64),
            sizes,
            row0,
            dim,
        };
        rvq_norms(rec, &cb)?;
        Ok(cb)
    }

    /// ΣN_i.
    pub fn rows(&self) -> usize {
        self.sizes.iter().sum()
    }

    /// Typed check of codes (T, 8) on the CPU before they are uploaded for [`rvq_decode`].
    pub fn check_codes(&self, codes: &[u32]) -> Result<(), OpError> {
        if !codes.len().is_multiple_of(RVQ_LEVELS) {
            return Err(shape_err(
                "rvq_decode",
                format!("{} codes are not (T, {RVQ_LEVELS})", codes.len()),
            ));
        }
        for (e, &c) in codes.iter().enumerate() {
            let (t, i) = (e / RVQ_LEVELS, e % RVQ_LEVELS);
            if c as usize >= self.sizes[i] {
                return Err(shape_err(
                    "rvq_decode",
                    format!(
                        "code {c} of frame {t}, level {i} is outside codebook {i} ({} entries)",
                        self.sizes[i]
                    ),
                ));
            }
        }
        Ok(())
    }
}

// Mirrors shaders/rvq/rvq_norms.wgsl: cb, norms, params.
const NORMS_BINDINGS: &[Binding] = &[Binding::Read, Binding::ReadWrite, Binding::Uniform];

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct NormsParams {
    rows: u32,
    dq: u32,
    groups_x: u32,
    _pad: u32,
}

/// Fills `cb.norms` with ‖c‖² (f32) of every codeword. One dispatch; run once after loading.
pub fn rvq_norms(rec: &mut Recorder, cb: &Codebooks) -> Result<(), OpError> {
    let ctx = rec.ctx();
    let rows = cb.rows() as u32;
    let g = grid(
        rows.div_ceil(WG),
        ctx.limits.max_compute_workgroups_per_dimension,
    );
    let key = KernelKey {
        family: "rvq_norms",
        entry: "rvq_norms",
        act: ctx.act(),
        subgroups: false,
        constants: vec![("WG", WG)],
    };
    let p = ctx.pipeline(&key, NORMS_BINDINGS)?;
    let params = NormsParams {
        rows,
        dq: cb.dim as u32,
        groups_x: g[0],
        _pad: 0,
    };
    let ubuf = rec.params(bytemuck::bytes_of(&params));
    let group = rec.bind(&p, &crate::binds![&cb.buf, &cb.norms, &ubuf]);
    rec.dispatch(&p, &group, g)?;
    Ok(())
}

// Mirrors shaders/rvq/rvq_encode.wgsl: x, r, cb, norms, partial, codes, res, params.
const ENCODE_BINDINGS: &[Binding] = &[
    Binding::Read,
    Binding::ReadWrite,
    Binding::Read,
    Binding::Read,
    Binding::ReadWrite,
    Binding::ReadWrite,
    Binding::ReadWrite,
    Binding::Uniform,
];

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct EncodeParams {
    t: u32,
    dq: u32,
    n: u32,
    row0: u32,
    level: u32,
    gx: u32,
    flags: u32,
    _pad: u32,
}

/// Residual VQ of `t` frames `x (T, Dq)` f32: `codes (T, 8)` u32 and, when given,
/// `residuals (8, T, Dq)` f32 (level i's residual after subtracting its codeword).
/// Per level: `code = argmin_j sqrt(max(‖r‖² + ‖c_j‖² − 2 r·c_j, 0))` (ties → lowest index),
/// `r ← r − c_code`, all in f32. Deviation: the reference casts `r` to bf16 between levels;
/// we keep f32. Two dispatches per level (distances + per-block argmin; final argmin +
/// residual update). Needs [`rvq_norms`] to have run on `cb`. Allocates its scratch
/// (residual and partials) per call: this runs once per utterance, not per token.
pub fn rvq_encode(
    rec: &mut Recorder,
    x: &wgpu::Buffer,
    t: usize,
    cb: &Codebooks,
    codes: &wgpu::Buffer,
    residuals: Option<&wgpu::Buffer>,
) -> Result<(), OpError> {
    const OP: &str = "rvq_encode";
    let ctx = rec.ctx();
    let dq = cb.dim;
    if t == 0 {
        return Err(shape_err(OP, format!("x (0, {dq}) has no frames")));
    }
    let max_dim = ctx.limits.max_compute_workgroups_per_dimension as usize;
    if t > max_dim || t.div_ceil(FT as usize) > max_dim {
        return Err(shape_err(
            OP,
            format!("x ({t}, {dq}) has more frames than one dispatch allows ({max_dim})"),
        ));
    }
    let gx_max = cb
        .sizes
        .iter()
        .map(|n| n.div_ceil(ROWS as usize))
        .max()
        .unwrap_or(1);
    if gx_max > max_dim {
        return Err(shape_err(
            OP,
            format!(
                "codebooks {:?} have too many rows for one dispatch",
                cb.sizes
            ),
        ));
    }
    let x_bytes = (t * dq * 4) as u64;
    if x.size() < x_bytes {
        return Err(shape_err(
            OP,
            format!(
                "x holds {} bytes, (T, Dq) = ({t}, {dq}) f32 needs {x_bytes}",
                x.size()
            ),
        ));
    }
    check_len(OP, "codes (T, 8) u32", codes, (t * RVQ_LEVELS * 4) as u64)?;
    if let Some(res) = residuals {
        check_len(
            OP,
            "residuals (8, T, Dq) f32",
            res,
            x_bytes * RVQ_LEVELS as u64,
        )?;
    }
    let limit = ctx.limits.max_storage_buffer_binding_size;
    let res_bytes = residuals.map_or(0, |_| x_bytes * RVQ_LEVELS as u64);
    if x_bytes.max(res_bytes) > limit || t * dq * RVQ_LEVELS >= u32::MAX as usize {
        return Err(shape_err(
            OP,
            format!(
                "x ({t}, {dq}) or its residuals exceed the device's {limit}-byte binding limit"
            ),
        ));
    }

    let r = ctx.storage("rvq.residual", x_bytes);
    let n_max = cb.sizes.iter().copied().max().unwrap_or(1);
    // tensor cores where the adapter has them (rvq_coop.wgsl): f16 scores (T, n) f32 in the
    // scratch, then an exact f32 check of the codewords they cannot rule out (the same codes);
    // else rvq_encode.wgsl, whose scratch holds the per-row-block best (T, GX, 2)
    let coop = ctx.caps.coop && dq.is_multiple_of(32) && (t * n_max * 4) as u64 <= limit;
    let (family, dist_entry, pick_entry, scratch_bytes) = if coop {
        ("rvq_coop", "rvq_coop_dist", "rvq_coop_pick", t * n_max * 4)
    } else {
        (
            "rvq_encode",
            "rvq_encode_dist",
            "rvq_encode_pick",
            t * gx_max * 8,
        )
    };
    let partial = ctx.storage("rvq.partial", scratch_bytes as u64);
    let res_buf = residuals.unwrap_or(&ctx.dummy);
    let key = |entry| KernelKey {
        family,
        entry,
        act: ctx.act(),
        subgroups: coop,
        constants: if coop { vec![] } else { vec![("WG", WG)] },
    };
    let dist = ctx.pipeline(&key(dist_entry), ENCODE_BINDINGS)?;
    let pick = ctx.pipeline(&key(pick_entry), ENCODE_BINDINGS)?;
    for level in 0..RVQ_LEVELS {
        let n = cb.sizes[level];
        let gx = n.div_ceil(ROWS as usize) as u32;
        let params = EncodeParams {
            t: t as u32,
            dq: dq as u32,
            n: n as u32,
            row0: cb.row0[level] as u32,
            level: level as u32,
            gx,
            flags: (level == 0) as u32 | (residuals.is_some() as u32) << 1,
            _pad: 0,
        };
        let ubuf = rec.params(bytemuck::bytes_of(&params));
        let bufs = crate::binds![x, &r, &cb.buf, &cb.norms, &partial, codes, res_buf, &ubuf];
        let g = rec.bind(&dist, &bufs);
        let grid = if coop {
            [n.div_ceil(64) as u32, t.div_ceil(64) as u32, 1]
        } else {
            [gx, (t as u32).div_ceil(FT), 1]
        };
        rec.dispatch(&dist, &g, grid)?;
        let g = rec.bind(&pick, &bufs);
        rec.dispatch(&pick, &g, [t as u32, 1, 1])?;
    }
    Ok(())
}

// Mirrors shaders/rvq/rvq_decode.wgsl: codes, cb, out, flags, params.
const DECODE_BINDINGS: &[Binding] = &[
    Binding::Read,
    Binding::Read,
    Binding::ReadWrite,
    Binding::ReadWrite,
    Binding::Uniform,
];

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct DecodeParams {
    t: u32,
    dq: u32,
    groups_x: u32,
    _pad: u32,
    sizes: [u32; RVQ_LEVELS],
    row0: [u32; RVQ_LEVELS],
}

/// `out (T, Dq) = Σ_{i=7..0} C_i[codes[t, i]]`, f32, summed in the order 7 → 0 (spec §4).
/// A code ≥ N_i is clamped to N_i − 1 in the kernel and sets bit i of `flags` (one u32): the
/// caller zeroes `flags` before (e.g. `queue.write_buffer`) and treats a non-zero value after
/// as an error. Codes that come from the CPU can be checked first with
/// [`Codebooks::check_codes`] (a typed error). One dispatch.
pub fn rvq_decode(
    rec: &mut Recorder,
    codes: &wgpu::Buffer,
    t: usize,
    cb: &Codebooks,
    out: &wgpu::Buffer,
    flags: &wgpu::Buffer,
) -> Result<(), OpError> {
    const OP: &str = "rvq_decode";
    let ctx = rec.ctx();
    let dq = cb.dim;
    if t == 0 {
        return Err(shape_err(
            OP,
            format!("codes (0, {RVQ_LEVELS}) have no frames"),
        ));
    }
    let need = (t * RVQ_LEVELS * 4) as u64;
    if codes.size() < need {
        return Err(shape_err(
            OP,
            format!(
                "codes hold {} bytes, (T, 8) = ({t}, 8) u32 needs {need}",
                codes.size()
            ),
        ));
    }
    let out_bytes = (t * dq * 4) as u64;
    check_len(OP, "out (T, Dq) f32", out, out_bytes)?;
    check_len(OP, "flags", flags, 4)?;
    if out_bytes > ctx.limits.max_storage_buffer_binding_size || t * dq >= u32::MAX as usize {
        return Err(shape_err(
            OP,
            format!("out ({t}, {dq}) is over the device's binding limit"),
        ));
    }
    let g = grid(
        ((t * dq) as u32).div_ceil(WG),
        ctx.limits.max_compute_workgroups_per_dimension,
    );
    let key = KernelKey {
        family: "rvq_decode",
        entry: "rvq_decode",
        act: ctx.act(),
        subgroups: false,
        constants: vec![("WG", WG)],
    };
    let p = ctx.pipeline(&key, DECODE_BINDINGS)?;
    let params = DecodeParams {
        t: t as u32,
        dq: dq as u32,
        groups_x: g[0],
        _pad: 0,
        sizes: cb.sizes.map(|n| n as u32),
        row0: cb.row0.map(|n| n as u32),
    };
    let ubuf = rec.params(bytemuck::bytes_of(&params));
    let group = rec.bind(&p, &crate::binds![codes, &cb.buf, out, flags, &ubuf]);
    rec.dispatch(&p, &group, g)?;
    Ok(())
}
