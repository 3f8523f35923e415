//! Self-test cases of the residual VQ (rvq_norms + rvq_encode, rvq_decode).
//! RVQ runs in f32 on every path (the activation dtype does not enter), and codes must match
//! the reference exactly: inputs are redrawn per frame until the reference's relative margin
//! between the best and second-best distance is ≥ [`MIN_MARGIN`] at every level, so that f32
//! rounding (GPU) vs f64 (reference) cannot flip a choice.

use crate::gpu::{GpuContext, Recorder};
use crate::ops::{self, Codebooks, OpError, RVQ_LEVELS};
use crate::reference::rvq as reference;
use crate::util::rng::Rng;

use super::{compare, Comparison};

/// Smallest relative margin (second − best) / second accepted for a test frame.
pub const MIN_MARGIN: f64 = 1e-3;
/// Codebook sizes of the tests (the real model: 8192, 4096, 2048, 1024 × 5).
pub const SMALL_SIZES: [usize; RVQ_LEVELS] = [64, 32, 16, 16, 8, 8, 8, 8];

/// Codebooks ~ N(0, scale_i²) with scale_i = ratio^i (ratio 1: all unit scale).
fn codebooks(rng: &mut Rng, sizes: &[usize], dq: usize, ratio: f32) -> Vec<f32> {
    let mut out = Vec::new();
    let mut scale = 1.0;
    for &n in sizes {
        out.extend(rng.normal_vec(n * dq, scale));
        scale *= ratio;
    }
    out
}

/// Frames x ~ N(0, 1), each redrawn (≤ 100 times) until every level's margin ≥ MIN_MARGIN.
fn frames_with_margin(
    rng: &mut Rng,
    t: usize,
    dq: usize,
    cb: &[f32],
    sizes: &[usize],
) -> Result<Vec<f32>, OpError> {
    let mut x = Vec::with_capacity(t * dq);
    for f in 0..t {
        let mut tries = 0;
        loop {
            let frame = rng.normal_vec(dq, 1.0);
            let enc = reference::encode(&frame, dq, cb, sizes);
            if enc.margins.iter().all(|m| *m >= MIN_MARGIN) {
                x.extend(frame);
                break;
            }
            tries += 1;
            if tries == 100 {
                return Err(crate::ops::OpError::Shape {
                    op: "rvq test",
                    detail: format!("no frame {f} with margin ≥ {MIN_MARGIN} in 100 draws"),
                });
            }
        }
    }
    Ok(x)
}

/// Runs rvq_norms + rvq_encode; returns (codes, residuals (8, T, Dq)).
async fn gpu_encode(
    ctx: &GpuContext,
    x: &[f32],
    t: usize,
    dq: usize,
    cb: &[f32],
    sizes: &[usize],
) -> Result<(Vec<u32>, Vec<f32>), OpError> {
    let books = Codebooks::from_f32(ctx, "codebooks", sizes, dq, cb)?;
    let xb = ctx.upload("x", bytemuck::cast_slice(x));
    let codes = ctx.storage("codes", (t * RVQ_LEVELS * 4) as u64);
    let res = ctx.storage("residuals", (RVQ_LEVELS * t * dq * 4) as u64);
    let mut rec = Recorder::new(ctx, "rvq_encode test");
    ops::rvq_norms(&mut rec, &books)?;
    ops::rvq_encode(&mut rec, &xb, t, &books, &codes, Some(&res))?;
    rec.submit()?;
    let c = crate::gpu::read_buffer(ctx, &codes, 0, (t * RVQ_LEVELS * 4) as u64).await?;
    let r = ctx.read_f32(&res, RVQ_LEVELS * t * dq).await?;
    Ok((bytemuck::pod_collect_to_vec(&c), r))
}

/// Random codebooks and frames: codes and per-level residuals against the reference.
/// Codes exactly; residuals exactly too (given equal codes they are the same sequence of f32
/// subtractions).
pub async fn rvq_encode_case(
    ctx: &GpuContext,
    t: usize,
    dq: usize,
    sizes: &[usize],
    seed: u64,
) -> Result<Comparison, OpError> {
    let mut rng = Rng::new(seed);
    let cb = codebooks(&mut rng, sizes, dq, 1.0);
    let x = frames_with_margin(&mut rng, t, dq, &cb, sizes)?;
    let want = reference::encode(&x, dq, &cb, sizes);
    let (codes, res) = gpu_encode(ctx, &x, t, dq, &cb, sizes).await?;
    let mut got: Vec<f32> = codes.iter().map(|&c| c as f32).collect();
    got.extend(res);
    let mut exp: Vec<f32> = want.codes.iter().map(|&c| c as f32).collect();
    exp.extend(want.residuals);
    Ok(compare(&got, &exp, 0.0, 0.0))
}

/// Frames built as Σ_i C_i[k_i] + N(0, 1e-7²) noise with codebook scales 0.2^i, so the
/// codes k are known. A frame is redrawn when the reference does not recover its k with
/// margin ≥ MIN_MARGIN (random small codebooks can place two codewords too close). The GPU
/// codes are compared with the known k (exactly).
pub async fn rvq_known_codes_case(
    ctx: &GpuContext,
    t: usize,
    dq: usize,
    sizes: &[usize],
    seed: u64,
) -> Result<Comparison, OpError> {
    known_codes(ctx, t, dq, sizes, seed, false).await
}

/// [`rvq_known_codes_case`] with every level-0 codeword equal: all level-0 distances tie, so
/// the code must be 0 (ties → lowest index). With more codewords than the tensor-core path's
/// candidate list holds, that path must check every codeword exactly.
pub async fn rvq_tied_codes_case(
    ctx: &GpuContext,
    t: usize,
    dq: usize,
    sizes: &[usize],
    seed: u64,
) -> Result<Comparison, OpError> {
    known_codes(ctx, t, dq, sizes, seed, true).await
}

async fn known_codes(
    ctx: &GpuContext,
    t: usize,
    dq: usize,
    sizes: &[usize],
    seed: u64,
    tied: bool,
) -> Result<Comparison, OpError> {
    let mut rng = Rng::new(seed);
    let mut cb = codebooks(&mut rng, sizes, dq, 0.2);
    if tied {
        let first = cb[..dq].to_vec();
        for c in cb[..sizes[0] * dq].chunks_mut(dq) {
            c.copy_from_slice(&first);
        }
    }
    let row0: Vec<usize> = sizes
        .iter()
        .scan(0, |a, &n| {
            let r = *a;
            *a += n;
            Some(r)
        })
        .collect();
    let mut x = Vec::with_capacity(t * dq);
    let mut known = Vec::with_capacity(t * RVQ_LEVELS);
    for f in 0..t {
        let mut tries = 0;
        loop {
            let mut k: Vec<u32> = sizes.iter().map(|&n| rng.below(n as u64) as u32).collect();
            if tied {
                k[0] = 0;
            }
            let mut frame: Vec<f32> = rng.normal_vec(dq, 1e-7);
            for i in (0..RVQ_LEVELS).rev() {
                let c = &cb[(row0[i] + k[i] as usize) * dq..][..dq];
                for (a, b) in frame.iter_mut().zip(c) {
                    *a += *b;
                }
            }
            let enc = reference::encode(&frame, dq, &cb, sizes);
            let skip = tied as usize; // level 0's margin is 0 by construction
            if enc.codes == k && enc.margins[skip..].iter().all(|m| *m >= MIN_MARGIN) {
                x.extend(frame);
                known.extend(k);
                break;
            }
            tries += 1;
            if tries == 100 {
                return Err(OpError::Shape {
                    op: "rvq test",
                    detail: format!("no recoverable frame {f} in 100 draws"),
                });
            }
        }
    }
    let (codes, _) = gpu_encode(ctx, &x, t, dq, &cb, sizes).await?;
    let got: Vec<f32> = codes.iter().map(|&c| c as f32).collect();
    let want: Vec<f32> = known.iter().map(|&c| c as f32).collect();
    Ok(compare(&got, &want, 0.0, 0.0))
}

/// Random valid codes → Σ_{i=7..0} C_i[code_i] against the reference (same f32 order: exact),
/// plus the error flag (must stay 0) as the last element.
pub async fn rvq_decode_case(
    ctx: &GpuContext,
    t: usize,
    dq: usize,
    sizes: &[usize],
    seed: u64,
) -> Result<Comparison, OpError> {
    let mut rng = Rng::new(seed);
    let cb = codebooks(&mut rng, sizes, dq, 0.5);
    let codes: Vec<u32> = (0..t * RVQ_LEVELS)
        .map(|e| rng.below(sizes[e % RVQ_LEVELS] as u64) as u32)
        .collect();
    let mut want = reference::decode(&codes, dq, &cb, sizes);
    want.push(0.0);
    let books = Codebooks::from_f32(ctx, "codebooks", sizes, dq, &cb)?;
    books.check_codes(&codes)?;
    let cbuf = ctx.upload("codes", bytemuck::cast_slice(&codes));
    let out = ctx.storage("e", (t * dq * 4) as u64);
    let flags = ctx.upload("flags", &[0u8; 4]);
    let mut rec = Recorder::new(ctx, "rvq_decode test");
    ops::rvq_decode(&mut rec, &cbuf, t, &books, &out, &flags)?;
    rec.submit()?;
    let mut got = ctx.read_f32(&out, t * dq).await?;
    let f = crate::gpu::read_buffer(ctx, &flags, 0, 4).await?;
    got.push(u32::from_le_bytes([f[0], f[1], f[2], f[3]]) as f32);
    Ok(compare(&got, &want, 0.0, 0.0))
}
