//! Embedding cases. The gather is exact (f16 table values, written as f16 or f32), so the
//! embedding tolerance is 0; audio_embed sums 8 f16 values in f32 (exact to ≈1e-7 relative):
//! f32 path atol 1e-6, rtol 1e-6; f16 path output rounding: atol 1e-3, rtol 1e-3.

use super::{compare, tol, Comparison};
use crate::gpu::{GpuContext, Recorder};
use crate::ops::{self, OpError, CODEBOOKS};
use crate::reference;
use crate::tensor::{Matrix, Tensor};
use crate::util::rng::Rng;

fn f16_round(v: &[f32]) -> Vec<f32> {
    v.iter().map(|x| half::f16::from_f32(*x).to_f32()).collect()
}

/// A seeded (v, c) f16 table, `t` ids into it with every 5th one out of range, and the
/// reference gather (a zero row for those).
fn table_and_ids(rng: &mut Rng, v: usize, c: usize, t: usize) -> (Vec<f32>, Vec<u32>, Vec<f32>) {
    let table = f16_round(&rng.normal_vec(v * c, 0.5));
    let ids: Vec<u32> = (0..t)
        .map(|i| {
            if i % 5 == 3 {
                (v as u64 + rng.below(1000)) as u32
            } else {
                rng.below(v as u64) as u32
            }
        })
        .collect();
    let want = reference::embedding::embedding(&table, v, c, &ids);
    (table, ids, want)
}

/// `t` ids into a (v, c) table; every 5th id is out of range (must give a zero row).
pub async fn embedding_case(
    ctx: &GpuContext,
    v: usize,
    c: usize,
    t: usize,
    seed: u64,
) -> Result<Comparison, OpError> {
    let mut rng = Rng::new(seed);
    let (table, ids, want) = table_and_ids(&mut rng, v, c, t);
    let m = Matrix::f16_from_f32(ctx, "table", v, c, &table);
    let ib = ctx.upload("ids", bytemuck::cast_slice(&ids));
    let yt = Tensor::empty(ctx, "y", &[t, c]);
    let mut rec = Recorder::new(ctx, "embedding test");
    ops::embedding(&mut rec, &m, &ib, &yt)?;
    rec.submit()?;
    let got = yt.to_vec(ctx).await?;
    Ok(compare(&got, &want, 0.0, 0.0))
}

/// A (v, c) table stored in row parts of `rows` each (the last one shorter), gathered part by
/// part with [`ops::embedding_part`] (the first part writes every row, the others keep what
/// is there unless they hold the id), against the gather from the whole table; every 5th id
/// is past the table (a zero row) and y starts as seeded garbage.
pub async fn embedding_parts_case(
    ctx: &GpuContext,
    v: usize,
    c: usize,
    t: usize,
    rows: usize,
    seed: u64,
) -> Result<Comparison, OpError> {
    let mut rng = Rng::new(seed);
    let (table, ids, want) = table_and_ids(&mut rng, v, c, t);
    let ib = ctx.upload("ids", bytemuck::cast_slice(&ids));
    let yt = Tensor::from_f32(ctx, "y", &[t, c], &rng.normal_vec(t * c, 3.0));
    let mut rec = Recorder::new(ctx, "embedding parts test");
    let mut parts = Vec::new();
    for (i, r0) in (0..v).step_by(rows.max(1)).enumerate() {
        let r1 = (r0 + rows).min(v);
        let m = Matrix::f16_from_f32(ctx, "part", r1 - r0, c, &table[r0 * c..r1 * c]);
        ops::embedding_part(&mut rec, &m, &ib, &yt, r0, i > 0)?;
        parts.push(m);
    }
    rec.submit()?;
    let got = yt.to_vec(ctx).await?;
    Ok(compare(&got, &want, 0.0, 0.0))
}

/// 8 tables of `rows[i]` × c stacked in one matrix, `t` frames of codes; a few codes are out
/// of range (they must add nothing).
pub async fn audio_embed_case(
    ctx: &GpuContext,
    rows: [usize; CODEBOOKS],
    c: usize,
    t: usize,
    seed: u64,
) -> Result<Comparison, OpError> {
    let mut rng = Rng::new(seed);
    let tables: Vec<Vec<f32>> = rows
        .iter()
        .map(|r| f16_round(&rng.normal_vec(r * c, 0.3)))
        .collect();
    let codes: Vec<u32> = (0..t * CODEBOOKS)
        .map(|i| {
            let r = rows[i % CODEBOOKS] as u64;
            if i % 13 == 5 {
                (r + rng.below(3)) as u32
            } else {
                rng.below(r) as u32
            }
        })
        .collect();
    let want = reference::embedding::audio_embed(&tables, c, &codes);
    let stacked: Vec<f32> = tables.concat();
    let total: usize = rows.iter().sum();
    let m = Matrix::f16_from_f32(ctx, "tables", total, c, &stacked);
    let cb = ctx.upload("codes", bytemuck::cast_slice(&codes));
    let yt = Tensor::empty(ctx, "y", &[t, c]);
    let mut rec = Recorder::new(ctx, "audio_embed test");
    ops::audio_embed(&mut rec, &m, &rows, &cb, &yt)?;
    rec.submit()?;
    let got = yt.to_vec(ctx).await?;
    let (atol, rtol) = tol(ctx, (1e-6, 1e-6), (1e-3, 1e-3));
    Ok(compare(&got, &want, atol, rtol))
}
