//! GPU helpers for token selection, so a decode step never reads all logits back:
//! `argmax` (greedy), `topk` (≤ 64 candidates for the CPU sampler) and `repetition_penalty`.
//!
//! Order used by argmax and topk: a beats b when a.value > b.value, or the values are equal
//! and a.index < b.index (torch.argmax on CPU returns the first maximum; torch.topk leaves the
//! order of ties unspecified, we fix it to the lower index first). NaN logits are unsupported.

use crate::gpu::{grid, Binding, GpuContext, GpuError, KernelKey, Recorder};
use crate::tensor::Tensor;

use super::{check_len, shape_err, OpError};

/// Largest `k` [`topk`] accepts.
pub const TOPK_MAX: usize = 64;

const WG: u32 = 256;
/// argmax stage 1: elements per thread before another workgroup is added (and a cap on G).
const ARGMAX_PER_THREAD: u32 = 4;
const ARGMAX_MAX_GROUPS: u32 = 1024;
/// topk stage 1: elements per thread of one slice (SLICE = WG·ITEMS).
const TOPK_ITEMS: u32 = 8;

fn check_logits(op: &'static str, ctx: &GpuContext, x: &Tensor) -> Result<usize, OpError> {
    let n = x.numel();
    if n == 0 {
        return Err(shape_err(op, format!("logits {:?} are empty", x.shape)));
    }
    if n >= u32::MAX as usize {
        return Err(shape_err(op, format!("logits {:?} are too long", x.shape)));
    }
    if x.dtype != ctx.act() {
        return Err(shape_err(
            op,
            format!(
                "logits are {}, the device computes in {}",
                x.dtype.name(),
                ctx.act().name()
            ),
        ));
    }
    check_len(op, "logits", &x.buf, (n * x.dtype.size()) as u64)?;
    Ok(n)
}

fn argmax_groups(n: usize) -> u32 {
    (n as u32)
        .div_ceil(WG * ARGMAX_PER_THREAD)
        .clamp(1, ARGMAX_MAX_GROUPS)
}

fn topk_groups(n: usize) -> u32 {
    (n as u32).div_ceil(WG * TOPK_ITEMS).max(1)
}

// Mirrors shaders/sampling/argmax.wgsl: x, partial, out, params.
const ARGMAX_BINDINGS: &[Binding] = &[
    Binding::Read,
    Binding::ReadWrite,
    Binding::ReadWrite,
    Binding::Uniform,
];

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ArgmaxParams {
    n: u32,
    groups: u32,
    groups_x: u32,
    _pad: u32,
}

/// Scratch for [`argmax`] over up to `n_max` logits (allocate once per session).
pub struct ArgmaxScratch {
    pub partial: wgpu::Buffer,
    pub n_max: usize,
}

impl ArgmaxScratch {
    pub fn new(ctx: &GpuContext, n_max: usize) -> Self {
        let g = argmax_groups(n_max.max(1)) as u64;
        ArgmaxScratch {
            partial: ctx.storage("argmax.partial", g * 8),
            n_max,
        }
    }
}

/// `out = [index u32, value f32 bits]` of the largest logit (ties → lowest index).
/// Two dispatches: per-workgroup partials, then one workgroup reduces them.
/// `out` needs at least 8 bytes (and COPY_SRC to be read back, see [`read_argmax`]).
pub fn argmax(
    rec: &mut Recorder,
    logits: &Tensor,
    scratch: &ArgmaxScratch,
    out: &wgpu::Buffer,
) -> Result<(), OpError> {
    const OP: &str = "argmax";
    let ctx = rec.ctx();
    let n = check_logits(OP, ctx, logits)?;
    if n > scratch.n_max {
        return Err(shape_err(
            OP,
            format!(
                "logits {:?} exceed the scratch made for {} logits",
                logits.shape, scratch.n_max
            ),
        ));
    }
    check_len(OP, "out", out, 8)?;
    let groups = argmax_groups(n);
    check_len(OP, "scratch", &scratch.partial, groups as u64 * 8)?;
    let g = grid(groups, ctx.limits.max_compute_workgroups_per_dimension);
    let params = ArgmaxParams {
        n: n as u32,
        groups,
        groups_x: g[0],
        _pad: 0,
    };
    let ubuf = rec.params(bytemuck::bytes_of(&params));
    for (entry, wgs) in [("argmax_partial", g), ("argmax_final", [1, 1, 1])] {
        let key = KernelKey {
            family: "argmax",
            entry,
            act: ctx.act(),
            subgroups: false,
            constants: vec![("WG", WG)],
        };
        let p = ctx.pipeline(&key, ARGMAX_BINDINGS)?;
        let group = rec.bind(
            &p,
            &crate::binds![&logits.buf, &scratch.partial, out, &ubuf],
        );
        rec.dispatch(&p, &group, wgs)?;
    }
    Ok(())
}

/// Reads an [`argmax`] result back: `(index, value)`.
pub async fn read_argmax(ctx: &GpuContext, out: &wgpu::Buffer) -> Result<(u32, f32), GpuError> {
    let bytes = crate::gpu::read_buffer(ctx, out, 0, 8).await?;
    let w: Vec<u32> = bytemuck::pod_collect_to_vec(&bytes);
    match w[..] {
        [i, v] => Ok((i, f32::from_bits(v))),
        _ => Err(GpuError::Readback("argmax result is not 8 bytes".into())),
    }
}

// Mirrors shaders/sampling/topk.wgsl: x, pv, pi, outv, outi, params.
const TOPK_BINDINGS: &[Binding] = &[
    Binding::Read,
    Binding::ReadWrite,
    Binding::ReadWrite,
    Binding::ReadWrite,
    Binding::ReadWrite,
    Binding::Uniform,
];

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct TopkParams {
    n: u32,
    k: u32,
    groups: u32,
    groups_x: u32,
    slot: u32,
    temperature: f32,
    top_p: f32,
    u: f32,
    first: u32,
    base: u32,
    direct: u32,
    _pad: u32,
}

/// The `_draw` entries' bindings: [`TOPK_BINDINGS`], then where the drawn id goes.
const TOPK_DRAW_BINDINGS: &[Binding] = &[
    Binding::Read,
    Binding::ReadWrite,
    Binding::ReadWrite,
    Binding::ReadWrite,
    Binding::ReadWrite,
    Binding::Uniform,
    Binding::ReadWrite,
];

/// A draw in the pass that finishes the top-k ([`topk_draw`]).
struct Draw<'a> {
    temperature: f32,
    top_p: f32,
    u: f64,
    out: &'a wgpu::Buffer,
    slot: usize,
}

/// Scratch for [`topk`] over up to `n_max` logits with `k ≤ TOPK_MAX`.
pub struct TopkScratch {
    pub values: wgpu::Buffer,
    pub indices: wgpu::Buffer,
    pub n_max: usize,
}

impl TopkScratch {
    pub fn new(ctx: &GpuContext, n_max: usize) -> Self {
        Self::for_parts(ctx, n_max, 1)
    }

    /// For [`topk_draw_parts`] over up to `parts` parts of up to `n_max` logits each.
    pub fn for_parts(ctx: &GpuContext, n_max: usize, parts: usize) -> Self {
        let groups = topk_groups(n_max.max(1)) as u64 * parts.max(1) as u64;
        let bytes = groups * TOPK_MAX as u64 * 4;
        TopkScratch {
            values: ctx.storage("topk.values", bytes),
            indices: ctx.storage("topk.indices", bytes),
            n_max,
        }
    }
}

/// The `k` largest logits, sorted descending (ties: lower index first), as `values` (k) f32
/// and `indices` (k) u32. `1 ≤ k ≤ min(TOPK_MAX, N)`. Two dispatches: the top-k of each
/// 2048-logit slice, then one workgroup merges the ⌈N/2048⌉·k candidates.
pub fn topk(
    rec: &mut Recorder,
    logits: &Tensor,
    k: usize,
    scratch: &TopkScratch,
    values: &wgpu::Buffer,
    indices: &wgpu::Buffer,
) -> Result<(), OpError> {
    topk_parts_impl(rec, &[(0, logits)], k, scratch, values, indices, None)
}

/// [`topk`] then [`sample_draw`] over its result, with the draw done by the pass that finishes
/// the top-k (`topk.wgsl`'s `_draw` entries): one dispatch fewer, the same id. `values` and
/// `indices` hold the top-k afterwards as with [`topk`].
#[allow(clippy::too_many_arguments)]
pub fn topk_draw(
    rec: &mut Recorder,
    logits: &Tensor,
    k: usize,
    scratch: &TopkScratch,
    (values, indices): (&wgpu::Buffer, &wgpu::Buffer),
    (temperature, top_p, u): (f32, f32, f64),
    out: &wgpu::Buffer,
    slot: usize,
) -> Result<(), OpError> {
    let bufs = (values, indices);
    let draw = (temperature, top_p, u);
    topk_draw_parts(rec, &[(0, logits)], k, scratch, bufs, draw, out, slot)
}

fn check_draw(
    op: &'static str,
    temperature: f32,
    top_p: f32,
    out: &wgpu::Buffer,
    slot: usize,
) -> Result<(), OpError> {
    if !(temperature >= 0.0 && temperature.is_finite() && top_p > 0.0 && top_p <= 1.0) {
        return Err(shape_err(
            op,
            format!("temperature {temperature} / top-p {top_p} out of range"),
        ));
    }
    check_len(op, "out", out, (slot as u64 + 1) * 4)
}

/// [`topk_draw`] over logits stored in row parts (an LM head too large for one binding):
/// `parts` = (first vocabulary row, logits of its rows), in order and contiguous. The same
/// top-k, indices in the whole vocabulary, and the same id as over one tensor of all the
/// logits: each part's slices leave their candidates side by side in the scratch (which
/// must hold every part's slices: [`TopkScratch::for_parts`]), and one merge pass draws.
#[allow(clippy::too_many_arguments)]
pub fn topk_draw_parts(
    rec: &mut Recorder,
    parts: &[(usize, &Tensor)],
    k: usize,
    scratch: &TopkScratch,
    (values, indices): (&wgpu::Buffer, &wgpu::Buffer),
    (temperature, top_p, u): (f32, f32, f64),
    out: &wgpu::Buffer,
    slot: usize,
) -> Result<(), OpError> {
    check_draw("topk_draw", temperature, top_p, out, slot)?;
    let draw = Draw {
        temperature,
        top_p,
        u,
        out,
        slot,
    };
    topk_parts_impl(rec, parts, k, scratch, values, indices, Some(draw))
}

fn topk_parts_impl(
    rec: &mut Recorder,
    parts: &[(usize, &Tensor)],
    k: usize,
    scratch: &TopkScratch,
    values: &wgpu::Buffer,
    indices: &wgpu::Buffer,
    draw: Option<Draw>,
) -> Result<(), OpError> {
    const OP: &str = "topk";
    let ctx = rec.ctx();
    // each part: (first row, rows, its first slice in the scratch, its slices)
    let mut layout = Vec::with_capacity(parts.len());
    let (mut next_row, mut groups) = (0usize, 0u32);
    for (first, logits) in parts {
        let n = check_logits(OP, ctx, logits)?;
        if *first != next_row {
            return Err(shape_err(
                OP,
                format!("a logits part starts at row {first}, after {next_row} rows"),
            ));
        }
        if n > scratch.n_max {
            return Err(shape_err(
                OP,
                format!(
                    "logits {:?} exceed the scratch made for {} logits",
                    logits.shape, scratch.n_max
                ),
            ));
        }
        let g = topk_groups(n);
        layout.push((*first, n, groups, g));
        next_row += n;
        groups += g;
    }
    let n = next_row;
    if n == 0 || n >= u32::MAX as usize {
        return Err(shape_err(
            OP,
            format!("{} logits in {} parts", n, parts.len()),
        ));
    }
    if k == 0 || k > TOPK_MAX || k > n {
        let what = match parts {
            [(_, one)] => format!("logits {:?}", one.shape),
            _ => format!("{n} logits in {} parts", parts.len()),
        };
        return Err(shape_err(
            OP,
            format!("k = {k} with {what}: needs 1 ≤ k ≤ min({TOPK_MAX}, {n})"),
        ));
    }
    check_len(OP, "values", values, (k * 4) as u64)?;
    check_len(OP, "indices", indices, (k * 4) as u64)?;
    check_len(OP, "scratch", &scratch.values, groups as u64 * k as u64 * 4)?;
    check_len(
        OP,
        "scratch",
        &scratch.indices,
        groups as u64 * k as u64 * 4,
    )?;
    // one slice in all: topk_partial writes the result (no merge pass)
    let direct = groups == 1;
    let base = TopkParams {
        n: 0,
        k: k as u32,
        groups,
        groups_x: 0,
        slot: draw.as_ref().map_or(0, |d| d.slot as u32),
        temperature: draw.as_ref().map_or(0.0, |d| d.temperature),
        top_p: draw.as_ref().map_or(1.0, |d| d.top_p),
        u: draw.as_ref().map_or(0.0, |d| d.u as f32),
        first: 0,
        base: 0,
        direct: u32::from(direct),
        _pad: 0,
    };
    let bind = |rec: &mut Recorder,
                entry: &'static str,
                logits: &Tensor,
                params: &TopkParams,
                wgs: [u32; 3]|
     -> Result<(), OpError> {
        let ctx = rec.ctx();
        let d = draw.as_ref().filter(|_| entry.ends_with("_draw"));
        let key = KernelKey {
            family: "topk",
            entry,
            act: ctx.act(),
            subgroups: false,
            constants: vec![("WG", WG), ("ITEMS", TOPK_ITEMS)],
        };
        let ubuf = rec.params(bytemuck::bytes_of(params));
        let [b0, b1, b2, b3, b4] = [
            &logits.buf,
            &scratch.values,
            &scratch.indices,
            values,
            indices,
        ];
        let (p, group) = match d {
            Some(d) => {
                let p = ctx.pipeline(&key, TOPK_DRAW_BINDINGS)?;
                let group = rec.bind(&p, &crate::binds![b0, b1, b2, b3, b4, &ubuf, d.out]);
                (p, group)
            }
            None => {
                let p = ctx.pipeline(&key, TOPK_BINDINGS)?;
                let group = rec.bind(&p, &crate::binds![b0, b1, b2, b3, b4, &ubuf]);
                (p, group)
            }
        };
        rec.dispatch(&p, &group, wgs)?;
        Ok(())
    };
    // the slices of each part, then (past one slice in all) the merge; the last pass draws
    // too when asked (`_draw`)
    for (&(first, rows, at, g), (_, logits)) in layout.iter().zip(parts) {
        let wgs = grid(g, ctx.limits.max_compute_workgroups_per_dimension);
        let params = TopkParams {
            n: rows as u32,
            groups: g,
            groups_x: wgs[0],
            first: first as u32,
            base: at,
            ..base
        };
        let entry = if direct && draw.is_some() {
            "topk_partial_draw"
        } else {
            "topk_partial"
        };
        bind(rec, entry, logits, &params, wgs)?;
    }
    if !direct {
        let entry = if draw.is_some() {
            "topk_merge_draw"
        } else {
            "topk_merge"
        };
        // the merge reads no logits; any part's buffer fills the binding
        bind(rec, entry, parts[0].1, &base, [1, 1, 1])?;
    }
    Ok(())
}

// Mirrors shaders/sampling/repetition_penalty.wgsl: logits, ids, mask, params.
const PENALTY_BINDINGS: &[Binding] = &[
    Binding::ReadWrite,
    Binding::Read,
    Binding::ReadWrite,
    Binding::Uniform,
];

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct PenaltyParams {
    n_ids: u32,
    vocab: u32,
    penalty: f32,
    groups_x: u32,
    first: u32,
    _pad: [u32; 3],
}

/// Bytes of the bitmask scratch [`repetition_penalty`] needs for a vocabulary of `vocab`.
pub fn penalty_mask_bytes(vocab: usize) -> u64 {
    vocab.div_ceil(32) as u64 * 4
}

/// HF `RepetitionPenaltyLogitsProcessor` in place on `logits` (V): for each distinct id among
/// the first `n_ids` u32 of `ids`, `s = s·p` if `s < 0` else `s / p`. Duplicates are penalised
/// once (HF gathers then scatters); the kernel guarantees this itself with an atomic bitmask
/// in `mask` (≥ [`penalty_mask_bytes`], any contents: the first dispatch clears the words it
/// uses). Ids ≥ V are ignored (HF would raise). One dispatch up to [`PENALTY_ONE_MAX`] ids
/// (one workgroup), two above; none when `n_ids == 0`.
/// The longest history [`repetition_penalty`] handles in one workgroup and one dispatch.
pub const PENALTY_ONE_MAX: usize = 16384;

pub fn repetition_penalty(
    rec: &mut Recorder,
    logits: &Tensor,
    ids: &wgpu::Buffer,
    n_ids: usize,
    penalty: f32,
    mask: &wgpu::Buffer,
) -> Result<(), OpError> {
    repetition_penalty_part(rec, logits, ids, n_ids, penalty, mask, 0)
}

/// [`repetition_penalty`] on the row part of the logits that starts at vocabulary row `first`
/// (an LM head stored in parts): `ids` are ids of the whole vocabulary, and those outside the
/// part are ignored.
pub fn repetition_penalty_part(
    rec: &mut Recorder,
    logits: &Tensor,
    ids: &wgpu::Buffer,
    n_ids: usize,
    penalty: f32,
    mask: &wgpu::Buffer,
    first: usize,
) -> Result<(), OpError> {
    const OP: &str = "repetition_penalty";
    let ctx = rec.ctx();
    let vocab = check_logits(OP, ctx, logits)?;
    if !(penalty.is_finite() && penalty > 0.0) {
        return Err(shape_err(
            OP,
            format!("penalty {penalty} must be finite and > 0"),
        ));
    }
    check_len(OP, "ids", ids, (n_ids * 4) as u64)?;
    check_len(OP, "mask", mask, penalty_mask_bytes(vocab))?;
    if n_ids == 0 {
        return Ok(());
    }
    let groups = (n_ids as u32).div_ceil(WG);
    let g = grid(groups, ctx.limits.max_compute_workgroups_per_dimension);
    let first = u32::try_from(first)
        .map_err(|_| shape_err(OP, format!("logits from vocabulary row {first}")))?;
    let params = PenaltyParams {
        n_ids: n_ids as u32,
        vocab: vocab as u32,
        penalty,
        groups_x: g[0],
        first,
        _pad: [0; 3],
    };
    let ubuf = rec.params(bytemuck::bytes_of(&params));
    // short lists (an audio segment's codes, most text histories): one workgroup, one dispatch
    let (entries, g): (&[&str], _) = if n_ids <= PENALTY_ONE_MAX {
        (&["repetition_penalty_one"], [1, 1, 1])
    } else {
        (&["repetition_penalty_clear", "repetition_penalty"], g)
    };
    for &entry in entries {
        let key = KernelKey {
            family: "repetition_penalty",
            entry,
            act: ctx.act(),
            subgroups: false,
            constants: vec![("WG", WG)],
        };
        let p = ctx.pipeline(&key, PENALTY_BINDINGS)?;
        let group = rec.bind(&p, &crate::binds![&logits.buf, ids, mask, &ubuf]);
        rec.dispatch(&p, &group, g)?;
    }
    Ok(())
}

// Mirrors shaders/sampling/sample_draw.wgsl: vals, idx, out, params.
const DRAW_BINDINGS: &[Binding] = &[
    Binding::Read,
    Binding::Read,
    Binding::ReadWrite,
    Binding::Uniform,
];

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct DrawParams {
    k: u32,
    slot: u32,
    temperature: f32,
    top_p: f32,
    u: f32,
    _pad: [u32; 3],
}

/// Temperature, top-p and the draw with uniform `u` (as the RNG gives it; used in f32) over the
/// `k` sorted candidates of
/// [`topk`] (`values`, `indices`), on the GPU: writes the id to `out[slot]` (u32). The rules of
/// `model::llm::sample::sample_candidates`, in f32 where that sums in f64
/// (they differ only within f32 rounding of a boundary, e.g. exact ties at a top-p cut). One
/// dispatch.
#[allow(clippy::too_many_arguments)]
pub fn sample_draw(
    rec: &mut Recorder,
    values: &wgpu::Buffer,
    indices: &wgpu::Buffer,
    k: usize,
    (temperature, top_p, u): (f32, f32, f64),
    out: &wgpu::Buffer,
    slot: usize,
) -> Result<(), OpError> {
    const OP: &str = "sample_draw";
    let ctx = rec.ctx();
    if k == 0 || k > TOPK_MAX {
        return Err(shape_err(OP, format!("k = {k} must be in 1..={TOPK_MAX}")));
    }
    check_draw(OP, temperature, top_p, out, slot)?;
    check_len(OP, "values", values, (k * 4) as u64)?;
    check_len(OP, "indices", indices, (k * 4) as u64)?;
    let key = KernelKey {
        family: "sample_draw",
        entry: "sample_draw",
        act: ctx.act(),
        subgroups: false,
        constants: vec![],
    };
    let p = ctx.pipeline(&key, DRAW_BINDINGS)?;
    let params = DrawParams {
        k: k as u32,
        slot: slot as u32,
        temperature,
        top_p,
        u: u as f32,
        _pad: [0; 3],
    };
    let ubuf = rec.params(bytemuck::bytes_of(&params));
    let group = rec.bind(&p, &crate::binds![values, indices, out, &ubuf]);
    rec.dispatch(&p, &group, [1, 1, 1])?;
    Ok(())
}
