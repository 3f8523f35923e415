use crate::gpu::{grid, Binding, KernelKey, Recorder};
use crate::tensor::Tensor;

use super::{check_len, shape_err, KvCache, OpError};

// Mirrors shaders/attention/rope_kv.wgsl: qkv, inv_freq, q, cache, params.
const BINDINGS: &[Binding] = &[
    Binding::Read,
    Binding::Read,
    Binding::ReadWrite,
    Binding::ReadWrite,
    Binding::Uniform,
];

const WG: u32 = 256;

/// [`rope_kv`]'s argument checks: (tokens, Hq, D).
pub(crate) fn rope_kv_check(
    ctx: &crate::gpu::GpuContext,
    qkv: &Tensor,
    inv_freq: &wgpu::Buffer,
    pos: usize,
    q: &Tensor,
    cache: &KvCache,
) -> Result<(usize, usize, usize), OpError> {
    const OP: &str = "rope_kv";
    let (tokens, hq, d) = match q.shape[..] {
        [hq, d] => (1, hq, d),
        [t, hq, d] if t > 0 => (t, hq, d),
        _ => {
            return Err(shape_err(
                OP,
                format!("q is {:?}, expected (Hq, D) or (T, Hq, D)", q.shape),
            ))
        }
    };
    let hkv = cache.heads;
    if d != cache.dim || d % 2 != 0 || hkv == 0 || hq % hkv != 0 {
        return Err(shape_err(
            OP,
            format!(
                "q is {:?}, the cache has {hkv} heads of {}: need the same even D and Hq a multiple of Hkv",
                q.shape, cache.dim
            ),
        ));
    }
    if qkv.numel() != tokens * (hq + 2 * hkv) * d {
        return Err(shape_err(
            OP,
            format!(
                "qkv is {:?}, expected ({tokens}, {}) for q {:?}",
                qkv.shape,
                (hq + 2 * hkv) * d,
                q.shape
            ),
        ));
    }
    if pos + tokens > cache.tmax {
        return Err(shape_err(
            OP,
            format!(
                "positions {pos}..{} are past the cache's {} positions",
                pos + tokens,
                cache.tmax
            ),
        ));
    }
    if qkv.dtype != ctx.act() || q.dtype != ctx.act() || cache.dtype != ctx.act() {
        return Err(shape_err(
            OP,
            "qkv, q and the cache must be in the activation dtype",
        ));
    }
    check_len(OP, "inv_freq", inv_freq, (d / 2 * 4) as u64)?;
    let sz = ctx.act().size() as u64;
    check_len(OP, "qkv", &qkv.buf, qkv.numel() as u64 * sz)?;
    check_len(OP, "q", &q.buf, q.numel() as u64 * sz)?;
    Ok((tokens, hq, d))
}

/// The QKV epilogue: `qkv ((Hq + 2·Hkv)·D)` = [q | k | v] → RoPE'd `q (Hq, D)`, and RoPE'd k
/// plus v appended to `cache` at position `pos`. `inv_freq` is f32 (D/2). For a chunk of T
/// tokens (prefill) pass `qkv (T, (Hq + 2·Hkv)·D)` and `q (T, Hq, D)`: token t goes to
/// position `pos + t`.
pub fn rope_kv(
    rec: &mut Recorder,
    qkv: &Tensor,
    inv_freq: &wgpu::Buffer,
    pos: usize,
    q: &Tensor,
    cache: &KvCache,
) -> Result<(), OpError> {
    let ctx = rec.ctx();
    let (tokens, hq, d) = rope_kv_check(ctx, qkv, inv_freq, pos, q, cache)?;
    let hkv = cache.heads;
    let key = KernelKey {
        family: "rope_kv",
        entry: "rope_kv",
        act: ctx.act(),
        subgroups: false,
        constants: vec![("WG", WG)],
    };
    let p = ctx.pipeline(&key, BINDINGS)?;
    let threads = tokens * ((hq + hkv) * d / 2 + hkv * d);
    let g = grid(
        threads.div_ceil(WG as usize) as u32,
        ctx.limits.max_compute_workgroups_per_dimension,
    );
    let params: [u32; 8] = [
        hq as u32,
        hkv as u32,
        d as u32,
        cache.tmax as u32,
        pos as u32,
        tokens as u32,
        g[0],
        0,
    ];
    let u = rec.params(bytemuck::cast_slice(&params));
    let group = rec.bind(
        &p,
        &crate::binds![&qkv.buf, inv_freq, &q.buf, &cache.buf, &u],
    );
    rec.dispatch(&p, &group, g)?;
    Ok(())
}
