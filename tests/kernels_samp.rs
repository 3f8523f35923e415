//! Native tests of the sampling helpers (argmax, topk, repetition_penalty) and the residual VQ
//! (rvq_norms, rvq_encode, rvq_decode) on the F16, F16Portable and F32 paths.

mod common;
use common::{assert_ok, ctx, Path, PATHS};

use bca::gpu::Recorder;
use bca::ops::{self, Codebooks, OpError, RVQ_LEVELS};
use bca::selftest::rvq::{self as rvq_cases, SMALL_SIZES};
use bca::selftest::sampling as cases;
use bca::tensor::Tensor;

const NS: [usize; 7] = [1, 63, 64, 1000, 2048, 2049, 152064];
const KS: [usize; 4] = [1, 5, 20, 64];

fn argmax_all(path: Path) {
    let c = ctx(path);
    for (i, &n) in NS.iter().enumerate() {
        for levels in [None, Some(1), Some(8)] {
            let r = pollster::block_on(cases::argmax_case(c, n, levels, 10 + i as u64));
            assert_ok(&format!("{path:?} argmax n={n} levels={levels:?}"), r);
        }
    }
}

fn topk_all(path: Path) {
    let c = ctx(path);
    for (i, &n) in NS.iter().enumerate() {
        for &k in KS.iter().filter(|&&k| k <= n) {
            for levels in [None, Some(2), Some(16)] {
                let r = pollster::block_on(cases::topk_case(c, n, k, levels, 20 + i as u64));
                assert_ok(&format!("{path:?} topk n={n} k={k} levels={levels:?}"), r);
            }
        }
    }
}

/// Logits in row parts (ragged: the last part shorter, parts not multiples of a slice, parts
/// smaller than k), penalised per part and drawn over all: the same as over the whole.
fn topk_parts_all(path: Path) {
    let c = ctx(path);
    for (i, &(n, part, k)) in [
        (100usize, 7usize, 20usize),
        (5000, 1999, 20),
        (5000, 2048, 64),
        (20000, 4097, 1),
        (152064, 53687, 64),
        (70, 70, 5),
    ]
    .iter()
    .enumerate()
    {
        for levels in [None, Some(2)] {
            let r =
                pollster::block_on(cases::topk_parts_case(c, n, k, part, levels, 60 + i as u64));
            assert_ok(
                &format!("{path:?} topk over parts n={n} part={part} k={k} levels={levels:?}"),
                r,
            );
        }
    }
}

fn penalty_all(path: Path) {
    let c = ctx(path);
    for (i, &(v, n_ids, p)) in [
        (1usize, 3usize, 1.3f32),
        (63, 40, 1.05),
        (1025, 1, 1.1),
        (8193, 700, 1.3),
        (152064, 3000, 1.1),
        (4097, 300, 0.8),
        // past PENALTY_ONE_MAX: the two-dispatch path
        (152064, 20000, 1.2),
    ]
    .iter()
    .enumerate()
    {
        let r = pollster::block_on(cases::repetition_penalty_case(
            c,
            v,
            n_ids,
            p,
            30 + i as u64,
        ));
        assert_ok(
            &format!("{path:?} repetition_penalty V={v} ids={n_ids} p={p}"),
            r,
        );
    }
}

fn rvq_all(path: Path) {
    let c = ctx(path);
    for (i, &t) in [1usize, 7, 40].iter().enumerate() {
        for (j, &dq) in [16usize, 40, 130].iter().enumerate() {
            let seed = 40 + (3 * i + j) as u64;
            let r = pollster::block_on(rvq_cases::rvq_encode_case(c, t, dq, &SMALL_SIZES, seed));
            assert_ok(&format!("{path:?} rvq_encode T={t} Dq={dq}"), r);
            let r = pollster::block_on(rvq_cases::rvq_known_codes_case(
                c,
                t,
                dq,
                &SMALL_SIZES,
                seed,
            ));
            assert_ok(&format!("{path:?} rvq_encode known codes T={t} Dq={dq}"), r);
            let r = pollster::block_on(rvq_cases::rvq_decode_case(c, t, dq, &SMALL_SIZES, seed));
            assert_ok(&format!("{path:?} rvq_decode T={t} Dq={dq}"), r);
        }
    }
    // bigger codebooks (several row blocks per workgroup grid, ragged sizes)
    let sizes = [300, 129, 64, 33, 17, 9, 8, 1];
    let r = pollster::block_on(rvq_cases::rvq_encode_case(c, 9, 67, &sizes, 77));
    assert_ok(&format!("{path:?} rvq_encode sizes={sizes:?}"), r);
    let r = pollster::block_on(rvq_cases::rvq_decode_case(c, 9, 67, &sizes, 78));
    assert_ok(&format!("{path:?} rvq_decode sizes={sizes:?}"), r);
    let r = pollster::block_on(rvq_cases::rvq_tied_codes_case(c, 9, 67, &sizes, 79));
    assert_ok(
        &format!("{path:?} rvq_encode tied level 0 sizes={sizes:?}"),
        r,
    );
}

#[test]
fn argmax_f16() {
    argmax_all(Path::F16);
}
#[test]
fn argmax_f16_portable() {
    argmax_all(Path::F16Portable);
}
#[test]
fn argmax_f32() {
    argmax_all(Path::F32);
}
#[test]
fn topk_f16() {
    topk_all(Path::F16);
}
#[test]
fn topk_f16_portable() {
    topk_all(Path::F16Portable);
}
#[test]
fn topk_f32() {
    topk_all(Path::F32);
}
#[test]
fn topk_parts_f16() {
    topk_parts_all(Path::F16);
}
#[test]
fn topk_parts_f32() {
    topk_parts_all(Path::F32);
}
#[test]
fn repetition_penalty_f16() {
    penalty_all(Path::F16);
}
#[test]
fn repetition_penalty_f16_portable() {
    penalty_all(Path::F16Portable);
}
#[test]
fn repetition_penalty_f32() {
    penalty_all(Path::F32);
}
#[test]
fn rvq_f16() {
    rvq_all(Path::F16);
}
#[test]
fn rvq_f16_portable() {
    rvq_all(Path::F16Portable);
}
#[test]
fn rvq_f32() {
    rvq_all(Path::F32);
}

/// Ties: the first maximum wins argmax; topk orders equal values by index.
#[test]
fn tie_rule_is_lowest_index_first() {
    for path in PATHS {
        let c = ctx(path);
        let mut x = vec![-1.0f32; 5000];
        for i in [4999, 2500, 777, 3000] {
            x[i] = 2.0;
        }
        x[10] = 1.5;
        let xt = Tensor::from_f32(c, "x", &[5000], &x);
        let s = ops::ArgmaxScratch::new(c, 5000);
        let out = c.storage("out", 8);
        let ts = ops::TopkScratch::new(c, 5000);
        let v = c.storage("v", 24);
        let ix = c.storage("i", 24);
        let mut rec = Recorder::new(c, "t");
        ops::argmax(&mut rec, &xt, &s, &out).unwrap();
        ops::topk(&mut rec, &xt, 6, &ts, &v, &ix).unwrap();
        assert_eq!(
            rec.dispatches(),
            4,
            "argmax and topk take two dispatches each"
        );
        rec.submit().unwrap();
        assert_eq!(
            pollster::block_on(ops::read_argmax(c, &out)).unwrap(),
            (777, 2.0)
        );
        let vals = pollster::block_on(c.read_f32(&v, 6)).unwrap();
        let idx = pollster::block_on(bca::gpu::read_buffer(c, &ix, 0, 24)).unwrap();
        let idx: Vec<u32> = bytemuck::pod_collect_to_vec(&idx);
        assert_eq!(vals, [2.0, 2.0, 2.0, 2.0, 1.5, -1.0], "{path:?}");
        assert_eq!(idx, [777, 2500, 3000, 4999, 10, 0], "{path:?}");
    }
}

/// -inf logits (masked tokens) are ordinary values: all -inf → index 0.
#[test]
fn all_masked_logits_pick_index_zero() {
    let c = ctx(Path::F32);
    let x = vec![f32::NEG_INFINITY; 300];
    let xt = Tensor::from_f32(c, "x", &[300], &x);
    let s = ops::ArgmaxScratch::new(c, 300);
    let out = c.storage("out", 8);
    let mut rec = Recorder::new(c, "t");
    ops::argmax(&mut rec, &xt, &s, &out).unwrap();
    rec.submit().unwrap();
    assert_eq!(
        pollster::block_on(ops::read_argmax(c, &out)).unwrap(),
        (0, f32::NEG_INFINITY)
    );
}

#[test]
fn rvq_encode_takes_two_dispatches_per_level() {
    let c = ctx(Path::F32);
    let cb = Codebooks::from_f32(c, "cb", &SMALL_SIZES, 16, &vec![0.5; 160 * 16]).unwrap();
    let x = c.storage("x", 3 * 16 * 4);
    let codes = c.storage("codes", 3 * 8 * 4);
    let mut rec = Recorder::new(c, "t");
    ops::rvq_norms(&mut rec, &cb).unwrap();
    ops::rvq_encode(&mut rec, &x, 3, &cb, &codes, None).unwrap();
    assert_eq!(rec.dispatches(), 1 + 2 * RVQ_LEVELS);
}

/// An out-of-range code is clamped in the kernel and flagged (bit = level); on the CPU,
/// check_codes gives a typed error first.
#[test]
fn rvq_decode_flags_bad_codes() {
    let c = ctx(Path::F32);
    let sizes = SMALL_SIZES;
    let dq = 5;
    let rows: usize = sizes.iter().sum();
    let data: Vec<f32> = (0..rows * dq).map(|i| i as f32 * 0.25).collect();
    let cb = Codebooks::from_f32(c, "cb", &sizes, dq, &data).unwrap();
    let mut codes = vec![0u32; 2 * 8];
    codes[8 + 3] = 16; // level 3 has 16 entries
    codes[8 + 6] = 99; // level 6 has 8
    let e = cb.check_codes(&codes).unwrap_err();
    assert_eq!(
        e.to_string(),
        "rvq_decode: code 16 of frame 1, level 3 is outside codebook 3 (16 entries)"
    );
    let cbuf = c.upload("codes", bytemuck::cast_slice(&codes));
    let out = c.storage("out", (2 * dq * 4) as u64);
    let flags = c.upload("flags", &[0u8; 4]);
    let mut rec = Recorder::new(c, "t");
    ops::rvq_decode(&mut rec, &cbuf, 2, &cb, &out, &flags).unwrap();
    rec.submit().unwrap();
    let f = pollster::block_on(bca::gpu::read_buffer(c, &flags, 0, 4)).unwrap();
    assert_eq!(
        u32::from_le_bytes([f[0], f[1], f[2], f[3]]),
        (1 << 3) | (1 << 6)
    );
    let mut clamped = codes.clone();
    clamped[8 + 3] = 15;
    clamped[8 + 6] = 7;
    let want = bca::reference::rvq::decode(&clamped, dq, &data, &sizes);
    let got = pollster::block_on(c.read_f32(&out, 2 * dq)).unwrap();
    assert_eq!(got, want);
}

#[test]
fn shape_errors_are_typed() {
    let c = ctx(Path::F32);
    let mut rec = Recorder::new(c, "t");
    let x = Tensor::from_f32(c, "x", &[100], &[0.5; 100]);
    let out = c.storage("out", 8);
    let small = ops::ArgmaxScratch::new(c, 10);
    let e = ops::argmax(&mut rec, &x, &small, &out).unwrap_err();
    assert_eq!(
        e.to_string(),
        "argmax: logits [100] exceed the scratch made for 10 logits"
    );
    let empty = Tensor::from_f32(c, "e", &[0], &[]);
    let s = ops::ArgmaxScratch::new(c, 100);
    assert!(matches!(
        ops::argmax(&mut rec, &empty, &s, &out),
        Err(OpError::Shape { op: "argmax", .. })
    ));

    let ts = ops::TopkScratch::new(c, 100);
    let v = c.storage("v", 256);
    let i = c.storage("i", 256);
    for k in [0, 65] {
        let e = ops::topk(&mut rec, &x, k, &ts, &v, &i).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("topk: k = {k} with logits [100]: needs 1 ≤ k ≤ min(64, 100)")
        );
    }
    let x5 = Tensor::from_f32(c, "x", &[5], &[0.5; 5]);
    assert!(ops::topk(&mut rec, &x5, 6, &ts, &v, &i).is_err(), "k > N");
    // logits in parts: contiguous from row 0, k within all of them, a scratch for every part
    let out = c.storage("drawn", 16);
    let draw = |rec: &mut Recorder, parts: &[(usize, &Tensor)], k: usize, ts| {
        ops::topk_draw_parts(rec, parts, k, ts, (&v, &i), (0.5, 1.0, 0.5), &out, 0)
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        draw(&mut rec, &[(0, &x5), (7, &x5)], 3, &ts),
        "topk: a logits part starts at row 7, after 5 rows"
    );
    assert_eq!(
        draw(&mut rec, &[(0, &x5), (5, &x5)], 11, &ts),
        "topk: k = 11 with 10 logits in 2 parts: needs 1 ≤ k ≤ min(64, 10)"
    );
    let parts: Vec<(usize, &Tensor)> = (0..3).map(|p| (100 * p, &x)).collect();
    assert_eq!(
        draw(&mut rec, &parts, 64, &ts),
        "topk: scratch buffer holds 256 bytes, needs 768"
    );
    let tiny = c.storage("tiny", 16);
    let e = ops::topk(&mut rec, &x, 20, &ts, &tiny, &i).unwrap_err();
    assert_eq!(
        e.to_string(),
        "topk: values buffer holds 16 bytes, needs 80"
    );

    let big = Tensor::from_f32(c, "x", &[1000], &[0.5; 1000]);
    let ids = c.upload("ids", bytemuck::cast_slice(&[1u32, 2, 3]));
    let e = ops::repetition_penalty(&mut rec, &big, &ids, 3, 1.1, &tiny).unwrap_err();
    assert_eq!(
        e.to_string(),
        "repetition_penalty: mask buffer holds 16 bytes, needs 128"
    );
    let mask = c.storage("mask", ops::penalty_mask_bytes(1000));
    let e = ops::repetition_penalty(&mut rec, &big, &ids, 5, 1.1, &mask).unwrap_err();
    assert_eq!(
        e.to_string(),
        "repetition_penalty: ids buffer holds 16 bytes, needs 20"
    );
    assert!(ops::repetition_penalty(&mut rec, &big, &ids, 3, 0.0, &mask).is_err());

    let e = Codebooks::from_f32(c, "cb", &SMALL_SIZES, 4, &[0.0; 10])
        .err()
        .unwrap();
    assert_eq!(
        e.to_string(),
        "rvq codebooks: data holds 10 values, codebooks [64, 32, 16, 16, 8, 8, 8, 8] × 4 need 640"
    );
    assert!(Codebooks::from_f32(c, "cb", &[4; 7], 4, &[0.0; 112]).is_err());
    let cb = Codebooks::from_f32(c, "cb", &SMALL_SIZES, 4, &[0.25; 640]).unwrap();
    let xb = c.storage("x", 16);
    let codes = c.storage("codes", 256);
    let e = ops::rvq_encode(&mut rec, &xb, 3, &cb, &codes, None).unwrap_err();
    assert_eq!(
        e.to_string(),
        "rvq_encode: x holds 16 bytes, (T, Dq) = (3, 4) f32 needs 48"
    );
    let e = ops::rvq_decode(&mut rec, &xb, 3, &cb, &codes, &out).unwrap_err();
    assert_eq!(
        e.to_string(),
        "rvq_decode: codes hold 16 bytes, (T, 8) = (3, 8) u32 needs 96"
    );
    assert_eq!(rec.dispatches(), 0, "nothing is recorded for a rejected op");
}

/// The tensor-core RVQ (`rvq_coop.wgsl`: f16 scores, exact f32 check of the candidates) where
/// the adapter has cooperative matrices: the same exact codes and residuals as the reference
/// for Dq multiples of 32, frames across 64-frame tiles, ragged codebook sizes, and all-tied
/// level-0 codebooks of more codewords than the candidate list (every one checked exactly).
/// Lavapipe has none: there the test says so; `BCA_REQUIRE_COOP=1` makes that a failure.
#[test]
fn rvq_coop_f16() {
    let opts = bca::gpu::GpuOptions {
        require_f16: true,
        ..Default::default()
    };
    let Some(c) = common::coop_ctx("rvq_coop_f16", &opts) else {
        return;
    };
    let big = [300, 129, 64, 33, 17, 9, 8, 1];
    for (i, &(t, dq, sizes)) in [
        (1usize, 32usize, &SMALL_SIZES),
        (7, 160, &SMALL_SIZES),
        (70, 64, &big),
        (130, 512, &big),
    ]
    .iter()
    .enumerate()
    {
        let seed = 900 + i as u64;
        let r = pollster::block_on(rvq_cases::rvq_encode_case(&c, t, dq, sizes, seed));
        assert_ok(&format!("coop rvq_encode T={t} Dq={dq} sizes={sizes:?}"), r);
        let r = pollster::block_on(rvq_cases::rvq_known_codes_case(&c, t, dq, sizes, seed));
        assert_ok(&format!("coop rvq_encode known codes T={t} Dq={dq}"), r);
        let r = pollster::block_on(rvq_cases::rvq_tied_codes_case(&c, t, dq, sizes, seed));
        assert_ok(&format!("coop rvq_encode tied level 0 T={t} Dq={dq}"), r);
    }
}
