//! Attention: the KV cache append, single-token decode (split-K), and the tiled online-softmax
//! kernel behind chunked prefill, packed variable-length sequences and chunk-causal masks.
//!
//! Layouts: activations are time-major, `q (T, Hq, D)`, `k`/`v (T, Hkv, D)`, in `act`.
//! GQA everywhere: query head `h` uses kv head `h / (Hq / Hkv)`. Softmax, scores and
//! accumulators are f32 in every kernel; only inputs and outputs are `act`.

use crate::gpu::{grid, ActDType, Binding, GpuContext, KernelKey, Recorder};
use crate::tensor::Tensor;

use super::{check_act, check_len, shape_err, OpError};

/// Largest head dim the attention kernels hold in workgroup memory.
pub const MAX_HEAD_DIM: usize = 128;
/// Largest number of query heads per kv head `attn_decode` serves in one workgroup.
pub const MAX_GQA_GROUP: usize = 8;
/// Keys per split of `attn_decode.wgsl` (its workgroup size), and the default of
/// `attn_decode_gqa.wgsl` (see [`GpuOptions::attn_decode_keys`](crate::gpu::GpuOptions)).
const DECODE_SPLIT: usize = 64;
/// The shortest split any decode kernel takes (sizes the scratch).
const DECODE_SPLIT_MIN: usize = 32;
/// Queries per workgroup of `attn_tiled`.
const TILE_Q: usize = 8;
/// Query rows per workgroup of `attn_rows` (head dims ≤ [`ROWS_MAX_D`], multiples of 4): the
/// first is the default; the others can be forced (`GpuOptions::attn_rows_block`). Picking a
/// smaller block to get more workgroups for the flow's few hundred rows measured slower on an
/// H100 (2 s vocode: mel 150 ms with 64 rows, 164 ms with 16).
const ROWS_Q: [usize; 3] = [64, 32, 16];
/// `attn_rows` splits the key range over workgroups until the grid has this many…
const ROWS_SPLIT_TARGET: usize = 256;
/// … in at most this many splits.
const ROWS_MAX_SPLITS: usize = 8;
const ROWS_MAX_D: usize = 64;

/// One layer's KV cache, allocated once per session.
///
/// Layout `(2, Hkv, Tmax, D)` in `act`: index 0 holds keys, 1 values; within each, one kv
/// head's positions are contiguous, so a decode step reads a head's `L` keys (and values) as
/// one run of `L·D` elements. Positions `≥` what was appended are undefined and never read.
pub struct KvCache {
    pub buf: wgpu::Buffer,
    /// kv heads
    pub heads: usize,
    /// capacity in positions
    pub tmax: usize,
    /// head dim
    pub dim: usize,
    pub dtype: ActDType,
}

impl KvCache {
    /// An uninitialised cache in the context's activation dtype.
    pub fn new(
        ctx: &GpuContext,
        label: &str,
        heads: usize,
        tmax: usize,
        dim: usize,
    ) -> Result<KvCache, OpError> {
        const OP: &str = "KvCache::new";
        if heads == 0 || tmax == 0 || dim == 0 {
            return Err(shape_err(
                OP,
                format!("empty cache (heads {heads}, tmax {tmax}, dim {dim})"),
            ));
        }
        let dtype = ctx.act();
        let bytes = (2 * heads * tmax * dim * dtype.size()) as u64;
        if bytes > ctx.limits.max_storage_buffer_binding_size {
            return Err(shape_err(
                OP,
                format!(
                    "cache (2, {heads}, {tmax}, {dim}) is {bytes} bytes, over the device's \
                     {}-byte binding limit",
                    ctx.limits.max_storage_buffer_binding_size
                ),
            ));
        }
        Ok(KvCache {
            buf: ctx.storage(label, bytes),
            heads,
            tmax,
            dim,
            dtype,
        })
    }

    /// Elements in the buffer: `2·Hkv·Tmax·D`.
    pub fn numel(&self) -> usize {
        2 * self.heads * self.tmax * self.dim
    }

    fn shape(&self) -> String {
        format!("(2, {}, {}, {})", self.heads, self.tmax, self.dim)
    }
}

fn check_cache(op: &'static str, ctx: &GpuContext, cache: &KvCache) -> Result<(), OpError> {
    if cache.dtype != ctx.act() {
        return Err(shape_err(
            op,
            format!(
                "cache is {}, the device computes in {}",
                cache.dtype.name(),
                ctx.act().name()
            ),
        ));
    }
    check_len(
        op,
        "cache",
        &cache.buf,
        (cache.numel() * cache.dtype.size()) as u64,
    )
}

/// `(T, H, D)` of a rank-3 tensor, or a shape error.
fn dims3(op: &'static str, name: &str, t: &Tensor) -> Result<(usize, usize, usize), OpError> {
    match t.shape[..] {
        [a, b, c] if a > 0 && b > 0 && c > 0 => Ok((a, b, c)),
        _ => Err(shape_err(
            op,
            format!("{name} is {:?}, expected a non-empty (T, H, D)", t.shape),
        )),
    }
}

fn check_heads(op: &'static str, hq: usize, hkv: usize, d: usize) -> Result<(), OpError> {
    if !hq.is_multiple_of(hkv) {
        return Err(shape_err(
            op,
            format!("{hq} query heads are not a multiple of {hkv} kv heads"),
        ));
    }
    if d > MAX_HEAD_DIM {
        return Err(shape_err(
            op,
            format!("head dim {d} exceeds the kernels' {MAX_HEAD_DIM}"),
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// kv_append

// Mirrors shaders/attention/kv_append.wgsl: k, v, cache, params.
const APPEND_BINDINGS: &[Binding] = &[
    Binding::Read,
    Binding::Read,
    Binding::ReadWrite,
    Binding::Uniform,
];

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct AppendParams {
    t: u32,
    h: u32,
    d: u32,
    tmax: u32,
    p0: u32,
    groups_x: u32,
    _pad: [u32; 2],
}

/// Writes `k`, `v (T, Hkv, D)` of `T` new tokens into `cache` at positions `p0 .. p0+T`
/// (one dispatch for both). Requires `p0 + T ≤ Tmax`.
pub fn kv_append(
    rec: &mut Recorder,
    cache: &KvCache,
    k: &Tensor,
    v: &Tensor,
    p0: usize,
) -> Result<(), OpError> {
    const OP: &str = "kv_append";
    let ctx = rec.ctx();
    let (t, h, d) = dims3(OP, "k", k)?;
    if v.shape != k.shape {
        return Err(shape_err(
            OP,
            format!("v is {:?}, k is {:?}", v.shape, k.shape),
        ));
    }
    if h != cache.heads || d != cache.dim {
        return Err(shape_err(
            OP,
            format!("k is {:?}, cache is {}", k.shape, cache.shape()),
        ));
    }
    if p0 + t > cache.tmax {
        return Err(shape_err(
            OP,
            format!(
                "positions {p0}..{} of k {:?} overflow cache {}",
                p0 + t,
                k.shape,
                cache.shape()
            ),
        ));
    }
    check_act(OP, ctx, &[("k", k), ("v", v)])?;
    check_cache(OP, ctx, cache)?;
    let n = t * h * d;
    check_len(OP, "k", &k.buf, (n * k.dtype.size()) as u64)?;
    check_len(OP, "v", &v.buf, (n * v.dtype.size()) as u64)?;

    const WG: u32 = 256;
    let key = KernelKey {
        family: "kv_append",
        entry: "kv_append",
        act: ctx.act(),
        subgroups: false,
        constants: vec![("WG", WG)],
    };
    let p = ctx.pipeline(&key, APPEND_BINDINGS)?;
    let g = grid(
        ((2 * n) as u32).div_ceil(WG),
        ctx.limits.max_compute_workgroups_per_dimension,
    );
    let params = AppendParams {
        t: t as u32,
        h: h as u32,
        d: d as u32,
        tmax: cache.tmax as u32,
        p0: p0 as u32,
        groups_x: g[0],
        _pad: [0; 2],
    };
    let ubuf = rec.params(bytemuck::bytes_of(&params));
    let group = rec.bind(&p, &crate::binds![&k.buf, &v.buf, &cache.buf, &ubuf]);
    rec.dispatch(&p, &group, g)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// attn_decode

// Mirrors shaders/attention/attn_decode.wgsl: q, cache, part, out, params.
const DECODE_BINDINGS: &[Binding] = &[
    Binding::Read,
    Binding::Read,
    Binding::ReadWrite,
    Binding::ReadWrite,
    Binding::Uniform,
];

/// The GQA pass and the combine pass: the same plus the int8 x they write with XQ = 1.
const DECODE_XQ_BINDINGS: &[Binding] = &[
    Binding::Read,
    Binding::Read,
    Binding::ReadWrite,
    Binding::ReadWrite,
    Binding::Uniform,
    Binding::ReadWrite,
    Binding::ReadWrite,
];

/// Longest context the one-pass decode attention takes. One workgroup per query head reads all
/// of its keys and values, so its time grows with the length faster than the split passes'
/// (128 workgroups at 1024 keys). On an H100 (q4 step, µs per token, against the split
/// passes): 256 keys 2131 against 2200–2203, 288 keys 2223 against 2249–2251, 384 keys 2228–2229
/// against 2247–2249; a pipeline loading 512 keys was even at 512 and lost at 1024 (2386 against
/// 2269) (BENCHMARKS.md, sixteenth session). The kernel's `NK` (the keys a pipeline loads) is
/// [`ONE_PASS_SHORT_KEYS`] up to that many keys and this above.
pub const ONE_PASS_MAX_KEYS: usize = 384;

/// Up to this many keys the one-pass kernel's pipeline loads only this many (`NK`: two rounds
/// of keys, one of values): 2164–2169 → 2131 µs per q4 token at 256 keys against loading 512.
const ONE_PASS_SHORT_KEYS: usize = 256;

/// Whether the decode attention over `len` keys of head dim `d` takes the one-pass kernel
/// (`attn_decode_head.wgsl`, one dispatch instead of two): head dim 128, 33 to
/// [`ONE_PASS_MAX_KEYS`] keys (up to 32 the GQA pass is one dispatch already), subgroups of at
/// least 8 laid out in order, workgroups of 1024, no split length forced
/// (`GpuOptions::attn_decode_keys`), and not `GpuOptions::no_attn_one_pass`.
pub fn decode_one_pass(ctx: &GpuContext, d: usize, len: usize) -> bool {
    d == 128
        && (33..=ONE_PASS_MAX_KEYS).contains(&len)
        && ctx.caps.subgroups
        && ctx.caps.subgroup_size >= 8
        && ctx.limits.max_compute_invocations_per_workgroup >= 1024
        && ctx.limits.max_compute_workgroup_size_x >= 1024
        && ctx.attn_decode_keys.is_none()
        && !ctx.no_attn_one_pass
}

/// Whether [`attn_decode_xq`] can write its output as int8 x for these head dims.
pub fn decode_quantises(d: usize) -> bool {
    d.is_multiple_of(32) && d <= 128
}

/// Whether a decode step should have its attention (head dim `d`) write the int8 x of the
/// product `w` after it: that product takes int8 x ([`super::norm_folds`]), the head dim
/// allows it, and `GpuOptions::no_attn_xq` is off.
pub fn attn_feeds_int8(ctx: &GpuContext, w: &crate::tensor::Matrix, d: usize) -> bool {
    super::norm_folds(ctx, w, 1) && decode_quantises(d) && !ctx.no_attn_xq
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct DecodeParams {
    hq: u32,
    hkv: u32,
    len: u32,
    tmax: u32,
    nsplit: u32,
    scale: f32,
    _pad: [u32; 2],
}

/// Bytes of f32 scratch `attn_decode` needs for `hq` query heads of dim `dim` over a cache
/// of `tmax` positions: per split (sized for the shortest, 32 keys), an accumulator per head
/// and dim plus (max, sum).
/// Allocate it once per session (it can be shared by all layers).
pub fn decode_scratch_bytes(hq: usize, dim: usize, tmax: usize) -> u64 {
    (tmax.div_ceil(DECODE_SPLIT_MIN).max(1) * hq * (dim + 2) * 4) as u64
}

/// `out (Hq, D) = softmax(scale · q kᵀ) v` of one query token `q (Hq, D)` over cache positions
/// `[0, len)`. Two dispatches: ⌈len/64⌉ splits × Hq workgroups write f32 partials to
/// `scratch` (see [`decode_scratch_bytes`]), then one workgroup per head combines them.
pub fn attn_decode(
    rec: &mut Recorder,
    q: &Tensor,
    cache: &KvCache,
    len: usize,
    scale: f32,
    scratch: &wgpu::Buffer,
    out: &Tensor,
) -> Result<(), OpError> {
    attn_decode_xq(rec, q, cache, len, scale, scratch, out, None)
}

/// [`attn_decode`] that, given `Some((xq, xd))`, also writes `out` as the int8 x of a q4/q8
/// product (`xq` `(Hq·D/32, 8)` u32, `xd` `(Hq·D/32)` vec2<f32>, the layout of
/// `gemv_xq.wgsl`) from the dispatch that writes `out`: the product after it takes the same
/// pair as [`Epilogue::prequantised`](super::Epilogue) and skips its own quantisation
/// dispatch. Head dims must allow it ([`decode_quantises`]; callers ask [`attn_feeds_int8`]).
#[allow(clippy::too_many_arguments)]
pub fn attn_decode_xq(
    rec: &mut Recorder,
    q: &Tensor,
    cache: &KvCache,
    len: usize,
    scale: f32,
    scratch: &wgpu::Buffer,
    out: &Tensor,
    quant: Option<(&wgpu::Buffer, &wgpu::Buffer)>,
) -> Result<(), OpError> {
    const OP: &str = "attn_decode";
    let ctx = rec.ctx();
    let (hq, d) = match q.shape[..] {
        [a, b] if a > 0 && b > 0 => (a, b),
        _ => {
            return Err(shape_err(
                OP,
                format!("q is {:?}, expected (Hq, D)", q.shape),
            ))
        }
    };
    if out.shape != q.shape {
        return Err(shape_err(
            OP,
            format!("out is {:?}, q is {:?}", out.shape, q.shape),
        ));
    }
    if d != cache.dim {
        return Err(shape_err(
            OP,
            format!("q is {:?}, cache is {}", q.shape, cache.shape()),
        ));
    }
    check_heads(OP, hq, cache.heads, d)?;
    let group = hq / cache.heads;
    if group > MAX_GQA_GROUP {
        return Err(shape_err(
            OP,
            format!(
                "q is {:?}, cache is {}: {group} query heads per kv head exceed {MAX_GQA_GROUP}",
                q.shape,
                cache.shape()
            ),
        ));
    }
    if len == 0 || len > cache.tmax {
        return Err(shape_err(
            OP,
            format!(
                "length {len} is outside 1..={} of cache {}",
                cache.tmax,
                cache.shape()
            ),
        ));
    }
    check_act(OP, ctx, &[("q", q), ("out", out)])?;
    check_cache(OP, ctx, cache)?;
    check_len(OP, "q", &q.buf, (hq * d * q.dtype.size()) as u64)?;
    check_len(OP, "out", &out.buf, (hq * d * out.dtype.size()) as u64)?;
    check_len(OP, "scratch", scratch, decode_scratch_bytes(hq, d, len))?;
    if let Some((xq, xd)) = quant {
        if !decode_quantises(d) {
            return Err(shape_err(
                OP,
                format!(
                    "int8 output needs a head dim that is a multiple of 32 up to 128, q is {:?}",
                    q.shape
                ),
            ));
        }
        check_len(OP, "xq", xq, (hq * d) as u64)?;
        check_len(OP, "xd", xd, (hq * d / 32 * 8) as u64)?;
    }
    let xq_flag = quant.is_some() as u32;
    let (xqb, xdb) = quant.unwrap_or((&ctx.dummy_rw, &ctx.dummy_rw2));

    let gqa = d % 4 == 0 && d <= 128;
    // 32-key splits up to 1024 keys (twice the workgroups: 282 → 260 µs per q4 token at 256
    // on an H100; at 1024, since the combine pass is one round of loads, 2427 → 2403 µs per
    // token), 64 beyond (at 2048, 2463 against 2477 µs)
    let split = match ctx.attn_decode_keys {
        Some(k @ (32 | 64)) if gqa => k as usize,
        _ if gqa && len <= 1024 => DECODE_SPLIT_MIN,
        _ => DECODE_SPLIT,
    };
    let nsplit = len.div_ceil(split);
    let params = DecodeParams {
        hq: hq as u32,
        hkv: cache.heads as u32,
        len: len as u32,
        tmax: cache.tmax as u32,
        nsplit: nsplit as u32,
        scale,
        _pad: [0; 2],
    };
    let ubuf = rec.params(bytemuck::bytes_of(&params));
    // what the one-pass kernel, the GQA pass and the combine pass bind
    let xq_binds = crate::binds![&q.buf, &cache.buf, scratch, &out.buf, &ubuf, xqb, xdb];
    if decode_one_pass(ctx, d, len) {
        // one workgroup of 1024 per query head over every key: no partials, no combine
        let nk = if len <= ONE_PASS_SHORT_KEYS {
            ONE_PASS_SHORT_KEYS
        } else {
            ONE_PASS_MAX_KEYS
        };
        let ph = ctx.pipeline(
            &KernelKey {
                family: "attn_decode_head",
                entry: "attn_decode_head",
                act: ctx.act(),
                subgroups: true,
                constants: vec![
                    ("G", group as u32),
                    ("XQ", xq_flag),
                    ("TM", cache.tmax as u32),
                    ("HKV", cache.heads as u32),
                    ("NK", nk as u32),
                ],
            },
            DECODE_XQ_BINDINGS,
        )?;
        let g = rec.bind(&ph, &xq_binds);
        rec.dispatch(&ph, &g, [hq as u32, 1, 1])?;
        return Ok(());
    }
    let consts = vec![("G", group as u32), ("D", d as u32)];
    if gqa {
        // one workgroup per (split, KV head): keys and values read once for the whole group
        let mut constants = consts.clone();
        constants.push(("CH", split as u32));
        constants.push(("XQ", xq_flag));
        // the cache's shape as pipeline constants: the loads wait on no params
        constants.push(("TM", cache.tmax as u32));
        constants.push(("HKV", cache.heads as u32));
        // its reductions by subgroup shuffles for 64-key splits (past 1024 keys) where the
        // adapter has subgroups of at least 4: on an H100 the q4 step at 2k 2369–2377 → 2360–2362
        // µs per token, at 4k 2479–2480 → 2457–2464; with 32-key splits it gained nothing
        // (1k: 2295 against 2299; BENCHMARKS.md, seventeenth session)
        let sg =
            split == 64 && ctx.caps.subgroups && ctx.caps.subgroup_size >= 4 && !ctx.no_attn_sg;
        let pg = ctx.pipeline(
            &KernelKey {
                family: "attn_decode_gqa",
                entry: if sg {
                    "attn_decode_gqa_sg"
                } else {
                    "attn_decode_gqa"
                },
                act: ctx.act(),
                subgroups: sg,
                constants,
            },
            DECODE_XQ_BINDINGS,
        )?;
        let g1 = rec.bind(&pg, &xq_binds);
        rec.dispatch(&pg, &g1, [nsplit as u32, cache.heads as u32, 1])?;
        if nsplit == 1 {
            // one split (the audio head's depth steps have ≤ 8 keys): the kernel wrote `out`
            return Ok(());
        }
    } else {
        let p1 = ctx.pipeline(
            &KernelKey {
                family: "attn_decode",
                entry: "attn_decode",
                act: ctx.act(),
                subgroups: false,
                constants: consts.clone(),
            },
            DECODE_BINDINGS,
        )?;
        let g1 = rec.bind(
            &p1,
            &crate::binds![&q.buf, &cache.buf, scratch, &out.buf, &ubuf],
        );
        rec.dispatch(&p1, &g1, [nsplit as u32, hq as u32, 1])?;
    }
    let mut combine_consts = consts;
    combine_consts.push(("XQ", xq_flag));
    let p2 = ctx.pipeline(
        &KernelKey {
            family: "attn_decode",
            entry: "attn_decode_combine",
            act: ctx.act(),
            subgroups: false,
            constants: combine_consts,
        },
        DECODE_XQ_BINDINGS,
    )?;
    let g2 = rec.bind(&p2, &xq_binds);
    rec.dispatch(&p2, &g2, [hq as u32, 1, 1])?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// attn_tiled: prefill, varlen, chunk-causal

// Mirrors shaders/attention/attn_tiled.wgsl: q, k, v, cu, out, params.
const TILED_BINDINGS: &[Binding] = &[
    Binding::Read,
    Binding::Read,
    Binding::Read,
    Binding::Read,
    Binding::ReadWrite,
    Binding::Uniform,
    Binding::ReadWrite,
];

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct TiledParams {
    tq: u32,
    hq: u32,
    group: u32,
    tk: u32,
    pos0: u32,
    chunk: u32,
    nseq: u32,
    /// MODE 2: rows per sequence (sequences of equal length, packed one after another).
    seq: u32,
    k_off: u32,
    k_st: u32,
    k_sh: u32,
    /// Elements between query rows.
    q_st: u32,
    v_off: u32,
    v_st: u32,
    v_sh: u32,
    scale: f32,
}

/// `attn_coop.wgsl`: its head dim, query rows per workgroup and workgroup memory.
const COOP_D: usize = 64;
/// Subgroups per workgroup of the tensor-core attention (16 query rows each).
const ATTN_COOP_SG: u32 = 4;
const COOP_WG_BYTES: u32 = (2 * 576 * 4 + 640 * 4) * 2 + (576 + 1088) * 16;

/// The three masks of `attn_tiled` (its MODE override).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mask {
    CausalPrefix = 0,
    Varlen = 1,
    ChunkCausal = 2,
}

#[allow(clippy::too_many_arguments)]
fn tiled(
    rec: &mut Recorder,
    op: &'static str,
    mask: Mask,
    q: &Tensor,
    (k, v): (&wgpu::Buffer, &wgpu::Buffer),
    cu: Option<&wgpu::Buffer>,
    d: usize,
    params: TiledParams,
    out: &Tensor,
) -> Result<(), OpError> {
    let ctx = rec.ctx();
    let tq = params.tq as usize;
    // head dim 64 on tensor cores where the adapter has them (unless a knob picks a kernel)
    let aligned = [
        params.q_st,
        params.k_off,
        params.k_st,
        params.k_sh,
        params.v_off,
        params.v_st,
        params.v_sh,
    ]
    .iter()
    .all(|x| x % 4 == 0);
    let coop = d == COOP_D
        && aligned
        && ctx.caps.coop
        && ctx.attn_rows_block.is_none()
        && ctx.attn_splits.is_none()
        && ctx.limits.max_compute_workgroup_storage_size >= COOP_WG_BYTES;
    // else head dims ≤ 64 (encoder, flow U-Net): one query row per invocation (attn_rows), the
    // key range split over workgroups while the grid is small; `attn_rows_block = 0` forces the
    // general kernel
    let rows = !coop && d <= ROWS_MAX_D && d.is_multiple_of(4) && ctx.attn_rows_block != Some(0);
    let rb = match ctx.attn_rows_block {
        Some(b) if ROWS_Q.contains(&(b as usize)) => b as usize,
        Some(0) | None => ROWS_Q[0],
        Some(b) => {
            return Err(shape_err(
                op,
                format!("attention row block {b} is not one of {ROWS_Q:?}"),
            ))
        }
    };
    // tensor cores: 16 query rows per subgroup, 4 subgroups per workgroup (fewer, for more
    // workgroups over short sequences, were slower on an H100 at 2 s and 10 s of flow)
    let nsg = ctx.attn_coop_sg.unwrap_or(ATTN_COOP_SG);
    let seq = params.seq as usize;
    let blocks = if coop && mask == Mask::ChunkCausal && seq > 0 {
        // attn_coop gives each sequence blocks of its own under this mask
        tq.div_ceil(seq) * seq.div_ceil(16 * nsg as usize)
    } else {
        tq.div_ceil(if coop {
            16 * nsg as usize
        } else if rows {
            rb
        } else {
            TILE_Q
        })
    };
    let max_groups = ctx.limits.max_compute_workgroups_per_dimension as usize;
    if blocks > max_groups || params.hq as usize > max_groups {
        return Err(shape_err(
            op,
            format!(
                "q is {:?}: too many query blocks or heads to dispatch",
                q.shape
            ),
        ));
    }
    let outputs = tq * params.hq as usize * d;
    let splits = if !rows {
        1
    } else {
        let want = match ctx.attn_splits {
            Some(s) => s as usize,
            None => ROWS_SPLIT_TARGET.div_ceil(blocks * params.hq as usize),
        };
        // each split at least two key tiles; the combine's grid within one dimension
        let most = (params.tk as usize).div_ceil(32).max(1);
        if outputs.div_ceil(256) > 65535 {
            1
        } else {
            want.clamp(1, ROWS_MAX_SPLITS.min(most))
        }
    };
    let key = if coop {
        KernelKey {
            family: "attn_coop",
            entry: "attn_coop",
            act: ctx.act(),
            subgroups: true,
            constants: vec![
                ("MODE", mask as u32),
                ("D", d as u32),
                ("NSG", nsg),
                ("PF", !ctx.no_attn_prefetch as u32),
            ],
        }
    } else {
        KernelKey {
            family: "attn_tiled",
            entry: if rows { "attn_rows" } else { "attn_tiled" },
            act: ctx.act(),
            subgroups: false,
            constants: if rows {
                vec![
                    ("MODE", mask as u32),
                    ("D", d as u32),
                    ("RB", rb as u32),
                    ("SPLITS", splits as u32),
                ]
            } else {
                vec![("MODE", mask as u32), ("D", d as u32)]
            },
        }
    };
    let p = ctx.pipeline(&key, TILED_BINDINGS)?;
    let ubuf = rec.params(bytemuck::bytes_of(&params));
    let cu = cu.unwrap_or(&ctx.dummy);
    if splits == 1 {
        let group = rec.bind(
            &p,
            &crate::binds![&q.buf, k, v, cu, &out.buf, &ubuf, &ctx.dummy_rw],
        );
        rec.dispatch(&p, &group, [blocks as u32, params.hq, 1])?;
        return Ok(());
    }
    let part = ctx.acquire((splits * outputs.div_ceil(d) * (d + 2) * 4) as u64);
    let group = rec.bind(
        &p,
        &crate::binds![&q.buf, k, v, cu, &out.buf, &ubuf, &part.buffer],
    );
    rec.dispatch(&p, &group, [blocks as u32, params.hq, splits as u32])?;
    let ckey = KernelKey {
        entry: "attn_combine",
        ..key
    };
    let pc = ctx.pipeline(&ckey, TILED_BINDINGS)?;
    let group = rec.bind(
        &pc,
        &crate::binds![&q.buf, k, v, cu, &out.buf, &ubuf, &part.buffer],
    );
    rec.dispatch(&pc, &group, [outputs.div_ceil(256) as u32, 1, 1])?;
    ctx.release(part);
    Ok(())
}

/// Checks q, k, v, out `(T, H, D)` for the packed ops; returns `(T, Hq, Hkv, D)`.
fn check_packed(
    op: &'static str,
    ctx: &GpuContext,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    out: &Tensor,
) -> Result<(usize, usize, usize, usize), OpError> {
    let (t, hq, d) = dims3(op, "q", q)?;
    let (tk, hkv, dk) = dims3(op, "k", k)?;
    if tk != t || dk != d {
        return Err(shape_err(
            op,
            format!("k is {:?}, q is {:?}", k.shape, q.shape),
        ));
    }
    if v.shape != k.shape {
        return Err(shape_err(
            op,
            format!("v is {:?}, k is {:?}", v.shape, k.shape),
        ));
    }
    if out.shape != q.shape {
        return Err(shape_err(
            op,
            format!("out is {:?}, q is {:?}", out.shape, q.shape),
        ));
    }
    check_heads(op, hq, hkv, d)?;
    check_act(op, ctx, &[("q", q), ("k", k), ("v", v), ("out", out)])?;
    let sz = ctx.act().size();
    check_len(op, "q", &q.buf, (t * hq * d * sz) as u64)?;
    check_len(op, "k", &k.buf, (t * hkv * d * sz) as u64)?;
    check_len(op, "v", &v.buf, (t * hkv * d * sz) as u64)?;
    check_len(op, "out", &out.buf, (t * hq * d * sz) as u64)?;
    Ok((t, hq, hkv, d))
}

/// Chunked causal prefill: queries `q (Tq, Hq, D)` at positions `p0 .. p0+Tq` attend to cache
/// positions `[0, p0 + i]` (query `i`). The cache must already hold positions `< p0 + Tq`
/// (append this chunk's k, v first). `out (Tq, Hq, D)`.
pub fn attn_prefill(
    rec: &mut Recorder,
    q: &Tensor,
    cache: &KvCache,
    p0: usize,
    scale: f32,
    out: &Tensor,
) -> Result<(), OpError> {
    const OP: &str = "attn_prefill";
    let ctx = rec.ctx();
    let (tq, hq, d) = dims3(OP, "q", q)?;
    if out.shape != q.shape {
        return Err(shape_err(
            OP,
            format!("out is {:?}, q is {:?}", out.shape, q.shape),
        ));
    }
    if d != cache.dim {
        return Err(shape_err(
            OP,
            format!("q is {:?}, cache is {}", q.shape, cache.shape()),
        ));
    }
    check_heads(OP, hq, cache.heads, d)?;
    if p0 + tq > cache.tmax {
        return Err(shape_err(
            OP,
            format!(
                "positions {p0}..{} of q {:?} overflow cache {}",
                p0 + tq,
                q.shape,
                cache.shape()
            ),
        ));
    }
    check_act(OP, ctx, &[("q", q), ("out", out)])?;
    check_cache(OP, ctx, cache)?;
    let sz = ctx.act().size();
    check_len(OP, "q", &q.buf, (tq * hq * d * sz) as u64)?;
    check_len(OP, "out", &out.buf, (tq * hq * d * sz) as u64)?;
    let plane = cache.heads * cache.tmax * d;
    let params = TiledParams {
        tq: tq as u32,
        hq: hq as u32,
        q_st: (hq * d) as u32,
        group: (hq / cache.heads) as u32,
        tk: (p0 + tq) as u32,
        pos0: p0 as u32,
        k_off: 0,
        k_st: d as u32,
        k_sh: (cache.tmax * d) as u32,
        v_off: plane as u32,
        v_st: d as u32,
        v_sh: (cache.tmax * d) as u32,
        scale,
        ..Default::default()
    };
    tiled(
        rec,
        OP,
        Mask::CausalPrefix,
        q,
        (&cache.buf, &cache.buf),
        None,
        d,
        params,
        out,
    )
}

fn packed_params(t: usize, hq: usize, hkv: usize, d: usize, scale: f32) -> TiledParams {
    TiledParams {
        tq: t as u32,
        hq: hq as u32,
        q_st: (hq * d) as u32,
        group: (hq / hkv) as u32,
        tk: t as u32,
        k_st: (hkv * d) as u32,
        k_sh: d as u32,
        v_st: (hkv * d) as u32,
        v_sh: d as u32,
        scale,
        ..Default::default()
    }
}

/// Non-causal attention over packed variable-length sequences (the audio encoder's chunks in
/// one batch, no padding): `q (Ttotal, Hq, D)`, `k`, `v (Ttotal, Hkv, D)`; sequence `s` is rows
/// `cu_seqlens[s] .. cu_seqlens[s+1]` and its tokens attend only within it. `cu_seqlens`
/// (nseq + 1 entries, 0 first, non-decreasing, Ttotal last) is uploaded as a small buffer.
pub fn attn_varlen(
    rec: &mut Recorder,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    cu_seqlens: &[u32],
    scale: f32,
    out: &Tensor,
) -> Result<(), OpError> {
    const OP: &str = "attn_varlen";
    let ctx = rec.ctx();
    let (t, hq, hkv, d) = check_packed(OP, ctx, q, k, v, out)?;
    let cu = varlen_cu(OP, ctx, cu_seqlens, t, &q.shape)?;
    let params = TiledParams {
        nseq: (cu_seqlens.len() - 1) as u32,
        ..packed_params(t, hq, hkv, d, scale)
    };
    tiled(
        rec,
        OP,
        Mask::Varlen,
        q,
        (&k.buf, &v.buf),
        Some(&cu),
        d,
        params,
        out,
    )
}

/// Checks `cu_seqlens` against the `t` rows of q and uploads it.
fn varlen_cu(
    op: &'static str,
    ctx: &GpuContext,
    cu_seqlens: &[u32],
    t: usize,
    q_shape: &[usize],
) -> Result<wgpu::Buffer, OpError> {
    let ok = cu_seqlens.len() >= 2
        && cu_seqlens[0] == 0
        && cu_seqlens.windows(2).all(|w| w[0] <= w[1])
        && cu_seqlens.last() == Some(&(t as u32));
    if !ok {
        return Err(shape_err(
            op,
            format!("cu_seqlens {cu_seqlens:?} must rise from 0 to the {t} rows of q {q_shape:?}"),
        ));
    }
    Ok(ctx.upload("attn_varlen.cu", bytemuck::cast_slice(cu_seqlens)))
}

/// Chunk-causal attention of one sequence `q (T, Hq, D)`, `k`, `v (T, Hkv, D)`: key `j` is
/// visible to query `i` iff `j < (⌊i/C⌋ + 1)·C` (and `j < T`). `chunk = 1` is plain causal
/// attention (audio decoder, Pre-Net); `chunk = 100` is the flow-matching U-Net's mask.
pub fn attn_chunk_causal(
    rec: &mut Recorder,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    chunk: usize,
    scale: f32,
    out: &Tensor,
) -> Result<(), OpError> {
    attn_chunk_causal_batch(rec, q, k, v, 1, chunk, scale, out)
}

/// [`attn_chunk_causal`] over `batch` sequences of equal length packed one after another
/// (`q (batch·T, Hq, D)`): each sequence attends only within itself, with the chunk mask
/// counted from its own start (the flow's conditional and unconditional passes in one call).
#[allow(clippy::too_many_arguments)]
pub fn attn_chunk_causal_batch(
    rec: &mut Recorder,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    batch: usize,
    chunk: usize,
    scale: f32,
    out: &Tensor,
) -> Result<(), OpError> {
    const OP: &str = "attn_chunk_causal";
    let ctx = rec.ctx();
    let (t, hq, hkv, d) = check_packed(OP, ctx, q, k, v, out)?;
    let params = chunk_params(OP, &q.shape, t, batch, chunk)?
        .with_packed(packed_params(t, hq, hkv, d, scale));
    tiled(
        rec,
        OP,
        Mask::ChunkCausal,
        q,
        (&k.buf, &v.buf),
        None,
        d,
        params,
        out,
    )
}

/// The chunk-causal mask's `(chunk, seq)` for `t` rows in `batch` equal sequences (checked).
struct ChunkMask {
    chunk: u32,
    seq: u32,
}

impl ChunkMask {
    /// `p` with this mask.
    fn with_packed(self, p: TiledParams) -> TiledParams {
        TiledParams {
            chunk: self.chunk,
            seq: self.seq,
            ..p
        }
    }
}

fn chunk_params(
    op: &'static str,
    shape: &[usize],
    t: usize,
    batch: usize,
    chunk: usize,
) -> Result<ChunkMask, OpError> {
    if chunk == 0 || chunk > u32::MAX as usize / 2 {
        return Err(shape_err(
            op,
            format!("chunk {chunk} for {shape:?} must be ≥ 1"),
        ));
    }
    if batch == 0 || !t.is_multiple_of(batch) {
        return Err(shape_err(
            op,
            format!("{t} rows of {shape:?} are not {batch} equal sequences"),
        ));
    }
    Ok(ChunkMask {
        chunk: chunk as u32,
        seq: (t / batch) as u32,
    })
}

/// [`attn_chunk_causal_batch`] reading q, k and v from one fused projection `qkv (B·T, 3·H·D)`
/// (row `[q | k | v]`, heads contiguous in each), as one product over `[Wq; Wk; Wv]` leaves
/// them. `out (B·T, H, D)`.
#[allow(clippy::too_many_arguments)]
pub fn attn_chunk_causal_qkv(
    rec: &mut Recorder,
    qkv: &Tensor,
    heads: usize,
    batch: usize,
    chunk: usize,
    scale: f32,
    out: &Tensor,
) -> Result<(), OpError> {
    const OP: &str = "attn_chunk_causal";
    let (t, d, params) = qkv_params(OP, rec.ctx(), qkv, heads, scale, out)?;
    let mask = chunk_params(OP, &qkv.shape, t, batch, chunk)?;
    tiled(
        rec,
        OP,
        Mask::ChunkCausal,
        qkv,
        (&qkv.buf, &qkv.buf),
        None,
        d,
        mask.with_packed(params),
        out,
    )
}

/// [`attn_varlen`] reading q, k and v from one fused projection `qkv (T, 3·H·D)` (row
/// `[q | k | v]`), as the encoder's one product over `[Wq; Wk; Wv]` leaves them. `out (T, H, D)`.
pub fn attn_varlen_qkv(
    rec: &mut Recorder,
    qkv: &Tensor,
    heads: usize,
    cu_seqlens: &[u32],
    scale: f32,
    out: &Tensor,
) -> Result<(), OpError> {
    const OP: &str = "attn_varlen";
    let ctx = rec.ctx();
    let (t, d, params) = qkv_params(OP, ctx, qkv, heads, scale, out)?;
    let cu = varlen_cu(OP, ctx, cu_seqlens, t, &qkv.shape)?;
    let params = TiledParams {
        nseq: (cu_seqlens.len() - 1) as u32,
        ..params
    };
    tiled(
        rec,
        OP,
        Mask::Varlen,
        qkv,
        (&qkv.buf, &qkv.buf),
        Some(&cu),
        d,
        params,
        out,
    )
}

/// Checks a fused `qkv (T, 3·H·D)` and `out (T, H, D)`; returns T, D and the packed params
/// with q, k and v read from the fused rows.
fn qkv_params(
    op: &'static str,
    ctx: &GpuContext,
    qkv: &Tensor,
    heads: usize,
    scale: f32,
    out: &Tensor,
) -> Result<(usize, usize, TiledParams), OpError> {
    let [t, w] = qkv.shape[..] else {
        return Err(shape_err(
            op,
            format!("qkv must be (T, 3·H·D), got {:?}", qkv.shape),
        ));
    };
    if heads == 0 || !w.is_multiple_of(3 * heads) {
        return Err(shape_err(
            op,
            format!("qkv {:?} does not split into 3 × {heads} heads", qkv.shape),
        ));
    }
    let d = w / (3 * heads);
    if out.shape != [t, heads, d] {
        return Err(shape_err(
            op,
            format!("out is {:?}, want [{t}, {heads}, {d}]", out.shape),
        ));
    }
    check_heads(op, heads, heads, d)?;
    check_act(op, ctx, &[("qkv", qkv), ("out", out)])?;
    let sz = ctx.act().size();
    check_len(op, "qkv", &qkv.buf, (t * w * sz) as u64)?;
    check_len(op, "out", &out.buf, (t * heads * d * sz) as u64)?;
    let hd = heads * d;
    Ok((
        t,
        d,
        TiledParams {
            q_st: w as u32,
            k_off: hd as u32,
            k_st: w as u32,
            v_off: (2 * hd) as u32,
            v_st: w as u32,
            ..packed_params(t, heads, heads, d, scale)
        },
    ))
}
