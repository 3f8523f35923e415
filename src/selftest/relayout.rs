//! Load-time relayout cases: the strided gather against its reference (bit-exact where no
//! rounding happens; f32 → f16 within half an f16 ulp, rtol 1e-3), every ConvWeight and the
//! codebooks built on the GPU from raw tensors against the CPU-packed ones (byte-equal: the
//! raw values are f16-representable), and the f32 → activation cast.

use super::{compare, Comparison};
use crate::gpu::{read_buffer, GpuContext, Recorder};
use crate::ops::{self, Codebooks, ConvWeight, OpError, Strided};
use crate::reference;
use crate::tensor::{RawDType, RawTensor};
use crate::util::rng::Rng;

fn f16_round(v: &[f32]) -> Vec<f32> {
    v.iter().map(|x| half::f16::from_f32(*x).to_f32()).collect()
}

fn to_bytes(v: &[f32], dt: RawDType) -> Vec<u8> {
    match dt {
        RawDType::F32 => bytemuck::cast_slice(v).to_vec(),
        RawDType::F16 => v
            .iter()
            .flat_map(|x| half::f16::from_f32(*x).to_le_bytes())
            .collect(),
    }
}

fn from_bytes(b: &[u8], dt: RawDType, n: usize) -> Vec<f32> {
    match dt {
        RawDType::F32 => b
            .chunks_exact(4)
            .take(n)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        RawDType::F16 => b
            .chunks_exact(2)
            .take(n)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
    }
}

/// A raw tensor of seeded values (f16-representable when `dt` is f16).
fn raw(ctx: &GpuContext, rng: &mut Rng, shape: &[usize], dt: RawDType) -> (RawTensor, Vec<f32>) {
    let n: usize = shape.iter().product();
    let mut v = rng.normal_vec(n, 1.0);
    if dt == RawDType::F16 {
        v = f16_round(&v);
    }
    let t = RawTensor {
        buf: ctx.upload("raw", &to_bytes(&v, dt)),
        shape: shape.to_vec(),
        dtype: dt,
    };
    (t, v)
}

/// `relayout` of box `s` from a random source of `src_len` elements into a destination of
/// `dst_len` elements pre-filled with other random values (which must survive outside the box).
pub async fn relayout_case(
    ctx: &GpuContext,
    s: Strided,
    src_len: usize,
    dst_len: usize,
    src_dt: RawDType,
    dst_dt: RawDType,
    seed: u64,
) -> Result<Comparison, OpError> {
    let mut rng = Rng::new(seed);
    let (src, sv) = raw(ctx, &mut rng, &[src_len], src_dt);
    let mut want = rng.normal_vec(dst_len, 3.0);
    if dst_dt == RawDType::F16 {
        want = f16_round(&want);
    }
    let dst = ctx.upload("dst", &to_bytes(&want, dst_dt));
    reference::relayout(&sv, &mut want, &s);
    if dst_dt == RawDType::F16 {
        want = f16_round(&want);
    }
    let mut rec = Recorder::new(ctx, "relayout test");
    ops::relayout(&mut rec, &src.buf, src_dt, &dst, dst_dt, &s)?;
    rec.submit()?;
    let size = if dst_dt == RawDType::F16 { 2 } else { 4 };
    let b = read_buffer(ctx, &dst, 0, ((dst_len * size).div_ceil(4) * 4) as u64).await?;
    let got = from_bytes(&b, dst_dt, dst_len);
    let rtol = if src_dt == RawDType::F32 && dst_dt == RawDType::F16 {
        1e-3
    } else {
        0.0
    };
    Ok(compare(&got, &want, 0.0, rtol))
}

async fn weight_bytes(ctx: &GpuContext, w: &ConvWeight) -> Result<Vec<f32>, OpError> {
    let n = w.cout * w.k * w.cin_g.div_ceil(2) * 2;
    let b = read_buffer(ctx, &w.buf, 0, ((n * 2).div_ceil(4) * 4) as u64).await?;
    Ok(from_bytes(&b, RawDType::F16, n))
}

/// Which conv weight layout a [`conv_raw_case`] builds.
#[derive(Clone, Copy, Debug)]
pub enum ConvKind {
    /// `Conv1d` (Cout, Cin/g, K) with groups.
    Conv1d {
        cout: usize,
        cin_g: usize,
        k: usize,
        groups: usize,
    },
    /// `ConvTranspose1d` (Cin, Cout/g, K) with groups.
    Transpose {
        cin: usize,
        cout_g: usize,
        k: usize,
        groups: usize,
    },
    /// Input channels `c0..c0+c` of a `Conv1d` (Cout, Cin, K).
    Inputs {
        cout: usize,
        cin: usize,
        k: usize,
        c0: usize,
        c: usize,
    },
}

/// A ConvWeight laid out on the GPU from a raw tensor equals the CPU-packed one, value for
/// value (both are f16 of f16-representable inputs: exact).
pub async fn conv_raw_case(
    ctx: &GpuContext,
    kind: ConvKind,
    dt: RawDType,
    seed: u64,
) -> Result<Comparison, OpError> {
    let mut rng = Rng::new(seed);
    let mut rec = Recorder::new(ctx, "conv raw test");
    let (gpu, cpu) = match kind {
        ConvKind::Conv1d {
            cout,
            cin_g,
            k,
            groups,
        } => {
            let (t, v) = raw(ctx, &mut rng, &[cout, cin_g, k], dt);
            (
                ConvWeight::conv1d_raw(&mut rec, "w", &t, groups)?,
                ConvWeight::conv1d(ctx, "w", &f16_round(&v), cout, cin_g, k, groups)?,
            )
        }
        ConvKind::Transpose {
            cin,
            cout_g,
            k,
            groups,
        } => {
            let (t, v) = raw(ctx, &mut rng, &[cin, cout_g, k], dt);
            (
                ConvWeight::conv_transpose1d_raw(&mut rec, "w", &t, groups)?,
                ConvWeight::conv_transpose1d(ctx, "w", &f16_round(&v), cin, cout_g, k, groups)?,
            )
        }
        ConvKind::Inputs {
            cout,
            cin,
            k,
            c0,
            c,
        } => {
            let (t, v) = raw(ctx, &mut rng, &[cout, cin, k], dt);
            let mut sub = vec![0f32; cout * c * k];
            for o in 0..cout {
                for i in 0..c {
                    for kk in 0..k {
                        sub[(o * c + i) * k + kk] = v[(o * cin + c0 + i) * k + kk];
                    }
                }
            }
            (
                ConvWeight::conv1d_raw_inputs(&mut rec, "w", &t, c0, c)?,
                ConvWeight::conv1d(ctx, "w", &f16_round(&sub), cout, c, k, 1)?,
            )
        }
    };
    rec.submit()?;
    if (gpu.cout, gpu.cin_g, gpu.k, gpu.groups) != (cpu.cout, cpu.cin_g, cpu.k, cpu.groups) {
        return Err(ops::shape_err(
            "conv raw",
            format!(
                "GPU weight is {:?}, CPU {:?}",
                (gpu.cout, gpu.cin_g, gpu.k, gpu.groups),
                (cpu.cout, cpu.cin_g, cpu.k, cpu.groups)
            ),
        ));
    }
    let got = weight_bytes(ctx, &gpu).await?;
    let want = weight_bytes(ctx, &cpu).await?;
    Ok(compare(&got, &want, 0.0, 0.0))
}

/// Codebooks assembled on the GPU from raw levels (and their norms) equal the uploaded ones
/// with norms from `rvq_norms`.
pub async fn codebooks_raw_case(
    ctx: &GpuContext,
    sizes: &[usize],
    dim: usize,
    dt: RawDType,
    seed: u64,
) -> Result<Comparison, OpError> {
    let mut rng = Rng::new(seed);
    let mut levels = Vec::new();
    let mut all = Vec::new();
    for &n in sizes {
        let (t, v) = raw(ctx, &mut rng, &[n, dim], dt);
        levels.push(t);
        all.extend(v);
    }
    let refs: Vec<&RawTensor> = levels.iter().collect();
    let mut rec = Recorder::new(ctx, "codebooks raw test");
    let got = Codebooks::from_raw(&mut rec, "cb", &refs)?;
    let want = Codebooks::from_f32(ctx, "cb", sizes, dim, &all)?;
    ops::rvq_norms(&mut rec, &want)?;
    rec.submit()?;
    let rows: usize = sizes.iter().sum();
    let mut g = ctx.read_f32(&got.buf, rows * dim).await?;
    g.extend(ctx.read_f32(&got.norms, rows).await?);
    let mut w = ctx.read_f32(&want.buf, rows * dim).await?;
    w.extend(ctx.read_f32(&want.norms, rows).await?);
    if got.row0 != want.row0 || got.sizes != want.sizes {
        return Err(ops::shape_err("codebooks raw", "row offsets differ"));
    }
    Ok(compare(&g, &w, 0.0, 0.0))
}

/// `f32_to_act` of `n` random values: the activation dtype's rounding of each (odd `n` too).
pub async fn f32_to_act_case(ctx: &GpuContext, n: usize, seed: u64) -> Result<Comparison, OpError> {
    let mut rng = Rng::new(seed);
    let v = rng.normal_vec(n, 2.0);
    let src = ctx.upload("src", bytemuck::cast_slice(&v));
    let mut rec = Recorder::new(ctx, "f32_to_act test");
    let t = ops::f32_to_act(&mut rec, &src, &[n])?;
    rec.submit()?;
    let got = t.to_vec(ctx).await?;
    let want = crate::tensor::round_act(ctx.act(), &v);
    let rtol = if ctx.caps.f16 { 1e-3 } else { 0.0 };
    Ok(compare(&got, &want, 0.0, rtol))
}

/// The raw-layout cases of the browser subset.
pub async fn subset(ctx: &GpuContext) -> Vec<(String, Result<Comparison, OpError>)> {
    let s = Strided {
        x: 5,
        y: 3,
        z: 8,
        zvalid: 7,
        sbase: 2,
        sx: 21,
        sy: 1,
        sz: 3,
        dbase: 4,
        dx: 26,
        dy: 8,
    };
    vec![
        (
            "relayout f16→f16 5×3×8 (pad 1)".into(),
            relayout_case(
                ctx,
                s,
                2 + 4 * 21 + 2 + 6 * 3 + 1,
                4 + 4 * 26 + 2 * 8 + 8 + 6,
                RawDType::F16,
                RawDType::F16,
                431,
            )
            .await,
        ),
        (
            "conv_transpose1d from raw, 2 groups".into(),
            conv_raw_case(
                ctx,
                ConvKind::Transpose {
                    cin: 6,
                    cout_g: 5,
                    k: 3,
                    groups: 2,
                },
                RawDType::F16,
                432,
            )
            .await,
        ),
        (
            "codebooks from raw f16".into(),
            codebooks_raw_case(ctx, &[9, 7, 5, 3, 3, 3, 3, 3], 12, RawDType::F16, 433).await,
        ),
    ]
}

/// Rows of gate and up interleaved on the GPU: the buffers hold exactly the two matrices'
/// rows alternately (bit-exact), and the SwiGLU product of the interleaved matrix equals the
/// two products and a SwiGLU (within the f16 output rounding; the int8 path quantises x the
/// same way for both). `Ok(None)`: the format cannot be interleaved (q8 with odd blocks).
pub async fn interleave_case(
    ctx: &GpuContext,
    n: usize,
    rows: usize,
    cols: usize,
    format: crate::tensor::WeightFormat,
    seed: u64,
) -> Result<Option<Comparison>, OpError> {
    use crate::ops::{Activation, Epilogue};
    use crate::tensor::{Matrix, Tensor};
    let mut rng = Rng::new(seed);
    let g = rng.normal_vec(rows * cols, 0.05);
    let u = rng.normal_vec(rows * cols, 0.05);
    let x = crate::tensor::round_act(ctx.act(), &rng.normal_vec(n * cols, 1.0));
    let (gm, um) = (
        Matrix::from_f32(ctx, "gate", rows, cols, &g, format),
        Matrix::from_f32(ctx, "up", rows, cols, &u, format),
    );
    let mut rec = Recorder::new(ctx, "interleave test");
    let Some(fused) = ops::interleave_rows(&mut rec, &gm, &um)? else {
        return Ok(None);
    };
    let xt = Tensor::from_f32(ctx, "x", &[n, cols], &x);
    let (yg, yu, want, got) = (
        Tensor::empty(ctx, "g", &[n, rows]),
        Tensor::empty(ctx, "u", &[n, rows]),
        Tensor::empty(ctx, "want", &[n, rows]),
        Tensor::empty(ctx, "got", &[n, rows]),
    );
    ops::gemv(&mut rec, &gm, &xt, &yg, Epilogue::default())?;
    ops::gemv(&mut rec, &um, &xt, &yu, Epilogue::default())?;
    ops::swiglu(&mut rec, &yg, &yu, &want)?;
    let epi = Epilogue {
        act: Activation::SwiGlu,
        ..Default::default()
    };
    ops::gemv(&mut rec, &fused, &xt, &got, epi)?;
    // and the plain product of the interleaved matrix + SwiGLU over its pairs (the prefill)
    let (pairs_in, pairs) = (
        Tensor::empty(ctx, "gu", &[n, 2 * rows]),
        Tensor::empty(ctx, "pairs", &[n, rows]),
    );
    ops::gemv(&mut rec, &fused, &xt, &pairs_in, Epilogue::default())?;
    ops::swiglu_pairs(&mut rec, &pairs_in, &pairs)?;
    rec.submit()?;
    // the words: row 2i of the fused buffers is gate's row i, row 2i+1 up's
    let (dw, sw) = gm.row_words().unwrap_or_default();
    let mut bad_words = 0usize;
    for (w, fa, fb, ff) in [
        (dw, Some(gm.data()), Some(um.data()), Some(fused.data())),
        (sw, gm.scales(), um.scales(), fused.scales()),
    ] {
        let (Some(fa), Some(fb), Some(ff)) = (fa, fb, ff) else {
            continue;
        };
        let a = read_buffer(ctx, fa, 0, (rows * w * 4) as u64).await?;
        let b = read_buffer(ctx, fb, 0, (rows * w * 4) as u64).await?;
        let f = read_buffer(ctx, ff, 0, (2 * rows * w * 4) as u64).await?;
        for r in 0..rows {
            let row = |v: &[u8], i: usize| v[i * w * 4..(i + 1) * w * 4].to_vec();
            bad_words += usize::from(row(&f, 2 * r) != row(&a, r));
            bad_words += usize::from(row(&f, 2 * r + 1) != row(&b, r));
        }
    }
    if bad_words > 0 {
        return Err(ops::shape_err(
            "interleave_rows",
            format!("{bad_words} interleaved rows differ from their source rows"),
        ));
    }
    let w = want.to_vec(ctx).await?;
    let mut w2 = w.clone();
    w2.extend_from_slice(&w);
    let mut g = got.to_vec(ctx).await?;
    g.extend(pairs.to_vec(ctx).await?);
    let w = w2;
    let (atol, rtol) = if ctx.caps.f16 {
        (2e-3, 2e-3)
    } else {
        (1e-5, 1e-4)
    };
    Ok(Some(compare(&g, &w, atol, rtol)))
}
