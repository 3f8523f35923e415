//! Self-test cases of the sampling helpers (argmax, topk, repetition_penalty).
//! Selection is exact on every path (the GPU compares the same f16/f32 values the reference
//! sees), so argmax/topk compare with zero tolerance.

use crate::gpu::{GpuContext, Recorder};
use crate::ops::{self, OpError};
use crate::reference::sampling as reference;
use crate::tensor::{round_act, Tensor};
use crate::util::rng::Rng;

use super::{compare, tol, Comparison};

/// Logits ~ N(0, 3²); with `levels = Some(q)`, rounded to multiples of 1/q and clamped to
/// ±2, so there are only 4q + 1 distinct values and many exact ties (the tie rule is tested).
fn logits(rng: &mut Rng, n: usize, levels: Option<u32>) -> Vec<f32> {
    let v = rng.normal_vec(n, 3.0);
    match levels {
        None => v,
        Some(q) => v
            .into_iter()
            .map(|x| (x.clamp(-2.0, 2.0) * q as f32).round() / q as f32)
            .collect(),
    }
}

/// `(index, value)` against [`reference::argmax`], as `[index, value]`, exactly.
pub async fn argmax_case(
    ctx: &GpuContext,
    n: usize,
    levels: Option<u32>,
    seed: u64,
) -> Result<Comparison, OpError> {
    let mut rng = Rng::new(seed);
    let x = round_act(ctx.act(), &logits(&mut rng, n, levels));
    let (wi, wv) = reference::argmax(&x);
    let xt = Tensor::from_f32(ctx, "logits", &[n], &x);
    let scratch = ops::ArgmaxScratch::new(ctx, n);
    let out = ctx.storage("argmax.out", 8);
    let mut rec = Recorder::new(ctx, "argmax test");
    ops::argmax(&mut rec, &xt, &scratch, &out)?;
    rec.submit()?;
    let (gi, gv) = ops::read_argmax(ctx, &out).await?;
    Ok(compare(&[gi as f32, gv], &[wi as f32, wv], 0.0, 0.0))
}

/// Top-k values and indices against [`reference::topk`], as `[v0.., i0..]`, exactly.
pub async fn topk_case(
    ctx: &GpuContext,
    n: usize,
    k: usize,
    levels: Option<u32>,
    seed: u64,
) -> Result<Comparison, OpError> {
    let mut rng = Rng::new(seed);
    let x = round_act(ctx.act(), &logits(&mut rng, n, levels));
    let want_pairs = reference::topk(&x, k);
    let xt = Tensor::from_f32(ctx, "logits", &[n], &x);
    let scratch = ops::TopkScratch::new(ctx, n);
    let values = ctx.storage("topk.values", (k * 4) as u64);
    let indices = ctx.storage("topk.indices", (k * 4) as u64);
    let mut rec = Recorder::new(ctx, "topk test");
    ops::topk(&mut rec, &xt, k, &scratch, &values, &indices)?;
    rec.submit()?;
    let mut got = ctx.read_f32(&values, k).await?;
    let idx = crate::gpu::read_buffer(ctx, &indices, 0, (k * 4) as u64).await?;
    let idx: Vec<u32> = bytemuck::pod_collect_to_vec(&idx);
    got.extend(idx.iter().map(|&i| i as f32));
    let mut want: Vec<f32> = want_pairs.iter().map(|p| p.1).collect();
    want.extend(want_pairs.iter().map(|p| p.0 as f32));
    Ok(compare(&got, &want, 0.0, 0.0))
}

/// In-place repetition penalty on `vocab` logits with `n_ids` history ids drawn from a small
/// pool (so most ids repeat, some several times), plus one id ≥ vocab (ignored). The mask
/// scratch starts with random bits: the op must not depend on its contents. A duplicate that
/// compounded would be off by a factor p, far outside the tolerance.
pub async fn repetition_penalty_case(
    ctx: &GpuContext,
    vocab: usize,
    n_ids: usize,
    penalty: f32,
    seed: u64,
) -> Result<Comparison, OpError> {
    let mut rng = Rng::new(seed);
    let x = round_act(ctx.act(), &rng.normal_vec(vocab, 3.0));
    let pool: Vec<u32> = (0..n_ids.div_ceil(3).max(1))
        .map(|_| rng.below(vocab as u64) as u32)
        .collect();
    let mut ids: Vec<u32> = (0..n_ids)
        .map(|_| pool[rng.below(pool.len() as u64) as usize])
        .collect();
    if let Some(last) = ids.last_mut() {
        *last = vocab as u32 + 5;
    }
    let want = round_act(ctx.act(), &reference::repetition_penalty(&x, &ids, penalty));
    let xt = Tensor::from_f32(ctx, "logits", &[vocab], &x);
    let idb = ctx.upload("ids", bytemuck::cast_slice(&ids));
    let garbage: Vec<u32> = (0..ops::penalty_mask_bytes(vocab) / 4)
        .map(|_| rng.next_u64() as u32)
        .collect();
    let mask = ctx.upload("mask", bytemuck::cast_slice(&garbage));
    let mut rec = Recorder::new(ctx, "repetition_penalty test");
    ops::repetition_penalty(&mut rec, &xt, &idb, ids.len(), penalty, &mask)?;
    rec.submit()?;
    let got = xt.to_vec(ctx).await?;
    // f32: one division/multiplication (WGSL allows 2.5 ulp for division); f16: plus one
    // rounding to f16, which may land one f16 ulp (≤ 2⁻¹⁰ relative) away.
    let (atol, rtol) = tol(ctx, (0.0, 1e-6), (1e-6, 2e-3));
    Ok(compare(&got, &want, atol, rtol))
}

/// Logits of `n` rows stored in parts of `part_rows` (the last one shorter, as an LM head too
/// large for one binding is stored): the repetition penalty on each part
/// ([`ops::repetition_penalty_part`], history ids of the whole vocabulary from every part,
/// repeated, and one past it), then the top-k and a greedy draw over all the parts
/// ([`ops::topk_draw_parts`]), against the reference penalty and top-k over the whole: as
/// `[v0.., i0.., drawn id]`, exactly (the penalised values within the penalty's rounding).
pub async fn topk_parts_case(
    ctx: &GpuContext,
    n: usize,
    k: usize,
    part_rows: usize,
    levels: Option<u32>,
    seed: u64,
) -> Result<Comparison, OpError> {
    let mut rng = Rng::new(seed);
    let x = round_act(ctx.act(), &logits(&mut rng, n, levels));
    let mut ids: Vec<u32> = (0..40).map(|_| rng.below(n as u64) as u32).collect();
    ids.extend_from_slice(&ids.clone()[..10]);
    ids.push(n as u32 + 3);
    let penalty = 1.3;
    let pen = round_act(ctx.act(), &reference::repetition_penalty(&x, &ids, penalty));
    let want_pairs = reference::topk(&pen, k);
    let idb = ctx.upload("ids", bytemuck::cast_slice(&ids));
    let mask = ctx.storage("mask", ops::penalty_mask_bytes(part_rows));
    let mut parts = Vec::new();
    for r0 in (0..n).step_by(part_rows.max(1)) {
        let r1 = (r0 + part_rows).min(n);
        parts.push((r0, Tensor::from_f32(ctx, "logits", &[r1 - r0], &x[r0..r1])));
    }
    let scratch = ops::TopkScratch::for_parts(ctx, part_rows, parts.len());
    let values = ctx.storage("topk.values", (k * 4) as u64);
    let indices = ctx.storage("topk.indices", (k * 4) as u64);
    let out = ctx.storage("drawn", 8);
    let mut rec = Recorder::new(ctx, "topk parts test");
    for (r0, t) in &parts {
        ops::repetition_penalty_part(&mut rec, t, &idb, ids.len(), penalty, &mask, *r0)?;
    }
    let views: Vec<(usize, &Tensor)> = parts.iter().map(|(r0, t)| (*r0, t)).collect();
    ops::topk_draw_parts(
        &mut rec,
        &views,
        k,
        &scratch,
        (&values, &indices),
        (0.0, 1.0, 0.5),
        &out,
        1,
    )?;
    rec.submit()?;
    let mut got = ctx.read_f32(&values, k).await?;
    let idx = crate::gpu::read_buffer(ctx, &indices, 0, (k * 4) as u64).await?;
    let idx: Vec<u32> = bytemuck::pod_collect_to_vec(&idx);
    got.extend(idx.iter().map(|&i| i as f32));
    let drawn = crate::gpu::read_buffer(ctx, &out, 4, 4).await?;
    got.push(bytemuck::pod_collect_to_vec::<u8, u32>(&drawn)[0] as f32);
    let mut want: Vec<f32> = want_pairs.iter().map(|p| p.1).collect();
    want.extend(want_pairs.iter().map(|p| p.0 as f32));
    want.push(want_pairs[0].0 as f32);
    Ok(compare(&got, &want, 0.0, 0.0))
}
