//! Kernel tests on the native adapter (Mesa lavapipe in CI): every kernel against its CPU
//! reference on seeded random inputs, for the f16 path (with and without subgroups) and the
//! portable f32 path. No adapter, or no shader-f16 for the f16 tests, is a failure, not a skip.

mod common;
use common::{assert_ok, ctx, Path, PATHS};

use bca::gpu::{GpuContext, GpuError, GpuOptions, Recorder};
use bca::ops::{self, KvCache, OpError};
use bca::ops::{Activation, Epilogue};
use bca::selftest::{self, GemvCase, GEMV_SHAPES, ROW_SHAPES};
use bca::tensor::WeightFormat;
use bca::tensor::{Matrix, Tensor};
use bca::wgpu;

fn gemv_all(path: Path) {
    gemv_all_on(ctx(path), path);
}

fn gemv_all_on(c: &GpuContext, path: Path) {
    for format in [WeightFormat::F16, WeightFormat::Q8, WeightFormat::Q4] {
        for (i, &(m, k)) in GEMV_SHAPES.iter().enumerate() {
            for bias in [false, true] {
                let mut case = GemvCase::new(format, m, k);
                case.bias = bias;
                let r = pollster::block_on(selftest::gemv_case(c, case, 1000 + i as u64));
                assert_ok(&format!("{path:?} {case}"), r);
            }
        }
    }
}

/// Batches (N vectors: weights read once per group of 4), fused activations and residuals.
fn gemv_epilogues(path: Path) {
    let c = ctx(path);
    let mut seed = 5000;
    for format in [WeightFormat::F16, WeightFormat::Q8, WeightFormat::Q4] {
        for &(m, k) in &[(34usize, 100usize), (260, 3584), (8, 36)] {
            for (n, act, norm) in [
                (1, Activation::Silu, false),
                (3, Activation::Gelu, true),
                (6, Activation::None, false),
                (2, Activation::SwiGlu, true),
                (5, Activation::SwiGlu, false),
            ] {
                {
                    let case = GemvCase {
                        format,
                        n,
                        m,
                        k,
                        bias: n % 2 == 1 && act != Activation::SwiGlu,
                        residual: n > 1,
                        act,
                        norm,
                        // the normalised x written out too, where the norm folds into x's
                        // int8 quantisation
                        norm_out: norm && format != WeightFormat::F16 && c.int8 && n == 3,
                    };
                    seed += 1;
                    assert_ok(
                        &format!("{path:?} {case}"),
                        pollster::block_on(selftest::gemv_case(c, case, seed)),
                    );
                }
            }
        }
    }
}

#[test]
fn gpu_quantisation_matches_cpu() {
    let c = ctx(Path::F16);
    let mut seed = 900;
    for format in [WeightFormat::Q8, WeightFormat::Q4] {
        for &(r, n) in &[(1usize, 32usize), (3, 7), (5, 70), (64, 3584), (33, 1000)] {
            seed += 1;
            assert_ok(
                &format!("quantize {} {r}x{n}", format.name()),
                pollster::block_on(selftest::quantize_case(c, format, r, n, seed)),
            );
        }
    }
}

#[test]
fn rope_kv_all_paths() {
    for path in [Path::F16, Path::F32] {
        for (i, &(shape, tmax, pos)) in [
            ((28usize, 4usize, 128usize), 64usize, 0usize),
            ((28, 4, 128), 300, 299),
            ((6, 3, 6), 9, 5),
            ((2, 2, 64), 5000, 4097),
        ]
        .iter()
        .enumerate()
        {
            assert_ok(
                &format!("{path:?} rope_kv {shape:?} pos {pos}"),
                pollster::block_on(selftest::rope_kv_case(
                    ctx(path),
                    shape,
                    tmax,
                    pos,
                    70 + i as u64,
                )),
            );
        }
    }
}

/// Tall matrices (≥ 65536 rows, like the LM head) take the 4-rows-per-group variant.
#[test]
fn gemv_tall_matrices() {
    for path in [Path::F16, Path::F32] {
        for (i, format) in [WeightFormat::F16, WeightFormat::Q8, WeightFormat::Q4]
            .into_iter()
            .enumerate()
        {
            let mut case = GemvCase::new(format, 65539, 40);
            case.bias = i == 1;
            case.residual = i == 2;
            assert_ok(
                &format!("{path:?} {case}"),
                pollster::block_on(selftest::gemv_case(ctx(path), case, 60 + i as u64)),
            );
        }
    }
}

#[test]
fn gemv_epilogues_f16() {
    gemv_epilogues(Path::F16);
}

#[test]
fn gemv_epilogues_f32() {
    gemv_epilogues(Path::F32);
}

#[test]
fn quantised_products_are_close_to_f16() {
    // q8 within ~1 %, q4 within ~15 % relative RMS of the f16 product (measured: ARCHITECTURE.md)
    let c = ctx(Path::F32);
    for (format, bound) in [(WeightFormat::Q8, 0.012), (WeightFormat::Q4, 0.15)] {
        let r = pollster::block_on(selftest::gemv_case(c, GemvCase::new(format, 256, 3584), 77))
            .expect("gemv");
        let note = r.note.clone().unwrap_or_default();
        let rel: f64 = note
            .split("rel RMS ")
            .nth(1)
            .and_then(|v| v.split([' ', ';']).next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(1.0);
        assert!(rel < bound && rel > 0.0, "{note}");
        eprintln!("{note}");
    }
}

fn rows_all(path: Path) {
    let c = ctx(path);
    for (i, &(r, n)) in ROW_SHAPES.iter().enumerate() {
        let seed = 2000 + i as u64;
        assert_ok(
            &format!("{path:?} rmsnorm {r}x{n}"),
            pollster::block_on(selftest::rmsnorm_case(c, r, n, seed)),
        );
        assert_ok(
            &format!("{path:?} softmax {r}x{n}"),
            pollster::block_on(selftest::softmax_case(c, r, n, seed)),
        );
    }
}

#[test]
fn adapter_paths_are_what_they_claim() {
    let f16 = ctx(Path::F16);
    assert!(f16.caps.f16, "the f16 context computes in f16");
    let f32c = ctx(Path::F32);
    assert!(!f32c.caps.f16 && !f32c.caps.subgroups);
    assert!(!ctx(Path::F16Portable).caps.subgroups);
    // lavapipe has subgroups; if an adapter lacks them the F16 path is simply portable too.
    eprintln!(
        "adapter {} subgroups={} size={}",
        f16.info.name, f16.caps.subgroups, f16.caps.subgroup_size
    );
}

#[test]
fn gemv_f16() {
    gemv_all(Path::F16);
}

#[test]
fn gemv_f16_portable() {
    gemv_all(Path::F16Portable);
}

#[test]
fn gemv_f32() {
    gemv_all(Path::F32);
}

#[test]
fn norm_softmax_f16() {
    rows_all(Path::F16);
}

#[test]
fn norm_softmax_f32() {
    rows_all(Path::F32);
}

#[test]
fn selftest_suite_passes_on_both_paths() {
    for path in [Path::F16, Path::F32] {
        let results = pollster::block_on(selftest::run_all(ctx(path)));
        assert!(results.len() >= 19);
        for r in results {
            assert!(r.passed, "{path:?} {}: {}", r.name, r.detail);
        }
    }
}

#[test]
fn shape_errors_are_typed() {
    let c = ctx(Path::F32);
    let w = Matrix::f16_from_f32(c, "w", 4, 6, &[0.5; 24]);
    let x = Tensor::from_f32(c, "x", &[5], &[1.0; 5]);
    let y = Tensor::empty(c, "y", &[4]);
    let mut rec = Recorder::new(c, "t");
    let e = ops::gemv(&mut rec, &w, &x, &y, Epilogue::default()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "gemv: x is [5], W is 4×6",
        "a mismatched x names both shapes"
    );
    let x = Tensor::from_f32(c, "x", &[6], &[1.0; 6]);
    let y3 = Tensor::empty(c, "y", &[3]);
    assert!(matches!(
        ops::gemv(&mut rec, &w, &x, &y3, Epilogue::default()),
        Err(OpError::Shape { op: "gemv", .. })
    ));
    // the normalised x can only come out of a norm folded into x's int8 quantisation: never
    // for f16 weights, never without the norm, and it must hold x's shape
    let g = c.upload("g", bytemuck::cast_slice(&[1.0f32; 8]));
    let xo = Tensor::empty(c, "xo", &[6]);
    let y4 = Tensor::empty(c, "y", &[4]);
    let e = ops::gemv(
        &mut rec,
        &w,
        &x,
        &y4,
        Epilogue {
            norm: Some((&g, 1e-6)),
            norm_out: Some(&xo),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("folded norm"), "{e}");
    let wq = Matrix::from_f32(c, "wq", 4, 64, &[0.25; 256], bca::tensor::WeightFormat::Q4);
    let x64 = Tensor::from_f32(c, "x", &[64], &[0.5; 64]);
    let gq = c.upload("g", bytemuck::cast_slice(&[1.0f32; 64]));
    let xo64 = Tensor::empty(c, "xo", &[64]);
    let no_norm = Epilogue {
        norm_out: Some(&xo64),
        ..Default::default()
    };
    assert!(
        ops::gemv(&mut rec, &wq, &x64, &y4, no_norm).is_err(),
        "norm_out without a norm"
    );
    let short = Epilogue {
        norm: Some((&gq, 1e-6)),
        norm_out: Some(&xo),
        ..Default::default()
    };
    let e = ops::gemv(&mut rec, &wq, &x64, &y4, short).unwrap_err();
    assert!(e.to_string().contains("norm_out is [6]"), "{e}");
    let a = Tensor::empty(c, "a", &[2, 8]);
    let b = Tensor::empty(c, "b", &[8, 2]);
    assert!(ops::softmax(&mut rec, &a, &b).is_err());
    assert_eq!(rec.dispatches(), 0, "nothing is recorded for a rejected op");
}

#[test]
fn weight_over_binding_limit_is_refused_before_dispatch() {
    let c = ctx(Path::F32);
    // claims 2^20 rows of 128 columns (256 MiB of f16) with a tiny buffer: the op must say
    // the matrix exceeds the binding limit (and must not dispatch).
    let limit = c.limits.max_storage_buffer_binding_size as usize;
    let rows = limit / 256 + 1;
    let w = Matrix::F16 {
        buf: c.storage("w", 16),
        rows,
        cols: 128,
        stride: 128,
    };
    let x = Tensor::empty(c, "x", &[128]);
    let y = Tensor::empty(c, "y", &[rows]);
    let mut rec = Recorder::new(c, "t");
    let e = ops::gemv(&mut rec, &w, &x, &y, Epilogue::default()).unwrap_err();
    assert!(e.to_string().contains("binding limit"), "{e}");
}

#[test]
fn device_loss_is_a_typed_error() {
    // A private device, destroyed on purpose: later calls must fail with DeviceLost.
    let c = pollster::block_on(GpuContext::new(&GpuOptions::default())).expect("adapter");
    c.device.destroy();
    let _ = c.device.poll(wgpu::PollType::wait_indefinitely());
    let x = Tensor::from_f32(&c, "x", &[4], &[1.0, 2.0, 3.0, 4.0]);
    let e = pollster::block_on(x.to_vec(&c)).unwrap_err();
    assert!(
        matches!(e, GpuError::DeviceLost(_) | GpuError::Readback(_)),
        "{e:?}"
    );
}

#[test]
fn buffer_pool_reuses_released_buffers() {
    let c = ctx(Path::F32);
    let before = c.pool.idle();
    let a = c.acquire(1000);
    assert!(a.buffer.size() >= 1000 && a.len == 1000);
    let size = a.buffer.size();
    c.release(a);
    assert_eq!(c.pool.idle(), before + 1);
    let b = c.acquire(900); // same power-of-two bucket: the released buffer comes back
    assert_eq!(b.buffer.size(), size);
    assert_eq!(c.pool.idle(), before);
    c.release(b);
}

/// The tiled matrix-matrix path (N ≥ GEMM_MIN_N): ragged N, M and K (not multiples of the
/// 64×64×32 tile, K not a multiple of the q block), every format and epilogue. `split`: K
/// slices of the 64 tile (1: the one-pass kernel; 3: split-K, clamped to the K steps, so
/// K = 260 gets a ragged last slice).
fn gemm_cases(path: Path, tile: u32, split: usize) {
    let opts = match path {
        Path::F32 => GpuOptions {
            force_f32: true,
            no_subgroups: true,
            gemm_tile: Some(tile),
            gemm_split: Some(split),
            ..Default::default()
        },
        _ => GpuOptions {
            require_f16: true,
            gemm_tile: Some(tile),
            gemm_split: Some(split),
            ..Default::default()
        },
    };
    let owned = pollster::block_on(GpuContext::new(&opts)).expect("GPU adapter");
    gemm_cases_on(&owned, &format!("{path:?} tile {tile} split {split}"));
}

/// Epilogues of the product cases: (activation, fused RMSNorm, bias, residual).
type Epi = (Activation, bool, bool, bool);

/// Every format × shape × epilogue against the CPU reference, seeds from `seed0` on.
fn product_cases(
    c: &GpuContext,
    what: &str,
    formats: &[WeightFormat],
    shapes: &[(usize, usize, usize)],
    epilogues: &[Epi],
    seed0: u64,
) {
    let mut seed = seed0;
    for &format in formats {
        for &(n, m, k) in shapes {
            for &(act, norm, bias, residual) in epilogues {
                let case = GemvCase {
                    format,
                    n,
                    m,
                    k,
                    bias,
                    residual,
                    act,
                    norm,
                    norm_out: false,
                };
                seed += 1;
                assert_ok(
                    &format!("{what} {case}"),
                    pollster::block_on(selftest::gemv_case(c, case, seed)),
                );
            }
        }
    }
}

fn gemm_cases_on(c: &GpuContext, what: &str) {
    product_cases(
        c,
        what,
        &[WeightFormat::F16, WeightFormat::Q8, WeightFormat::Q4],
        &[
            (ops::GEMM_MIN_N, 34, 100),
            (67, 130, 36),
            (130, 70, 260),
            (64, 64, 64),
            (200, 134, 52),
        ],
        &[
            (Activation::None, false, false, false),
            (Activation::Gelu, false, true, true),
            (Activation::Silu, true, true, false),
            (Activation::SwiGlu, true, false, true),
        ],
        9000,
    );
}

#[test]
fn gemm_f16() {
    gemm_cases(Path::F16, 64, 1);
}

#[test]
fn gemm_f32() {
    gemm_cases(Path::F32, 64, 1);
}

#[test]
fn gemm_splitk_f16() {
    gemm_cases(Path::F16, 64, 3);
}

#[test]
fn gemm_splitk_f32() {
    gemm_cases(Path::F32, 64, 3);
}

/// The tensor-core product (`gemm_coop.wgsl`) on the same cases, where the adapter has
/// cooperative matrices (elsewhere skipped with a message: `common::coop_ctx`).
#[test]
fn gemm_coop_f16() {
    let opts = GpuOptions {
        require_f16: true,
        ..Default::default()
    };
    // the one-pass chunked kernel for few vectors (`gemm_coops.wgsl`) in each of its shapes,
    // over every shape below (N up to 300)
    if common::coop_ctx("gemm_coop_f16", &opts).is_some() {
        for shape in [(4, 1), (2, 2), (1, 4), (2, 1), (1, 1)] {
            let c = pollster::block_on(GpuContext::new(&GpuOptions {
                coops_max_n: Some(1024),
                coops_shape: Some(shape),
                ..opts.clone()
            }))
            .expect("GPU adapter");
            let what = format!("coops {shape:?}");
            gemm_cases_on(&c, &what);
            coop_direct_cases(&c, &what);
        }
    }
    // the other tensor-core kernels below: never the chunked one
    let opts = GpuOptions {
        coops_max_n: Some(0),
        ..opts
    };
    let Some(c) = common::coop_ctx("gemm_coop_f16", &opts) else {
        return;
    };
    gemm_cases_on(&c, "coop");
    coop_direct_cases(&c, "coop default");
    // the other K step, and split-K (3 slices, clamped to the steps: ragged last slices), for
    // each kernel of f16 weights
    use bca::gpu::CoopF16;
    for f16k in [CoopF16::Staged, CoopF16::Direct, CoopF16::Big] {
        for (tk, split) in [(32, None), (64, Some(3)), (32, Some(3))] {
            let c = pollster::block_on(GpuContext::new(&GpuOptions {
                coop_k_step: Some(tk),
                gemm_split: split,
                coop_f16: Some(f16k),
                ..opts.clone()
            }))
            .expect("GPU adapter");
            let what = format!("coop {f16k:?} K step {tk} split {split:?}");
            gemm_cases_on(&c, &what);
            coop_direct_cases(&c, &what);
        }
        // the kernels' own split-K choice with a large target (many slices)
        let c = pollster::block_on(GpuContext::new(&GpuOptions {
            coop_split_target: Some(4000),
            coop_f16: Some(f16k),
            ..opts.clone()
        }))
        .expect("GPU adapter");
        coop_direct_cases(&c, &format!("coop {f16k:?} target 4000"));
    }
    // other direct tiles: 64-row subgroup tiles, 2 × 2 and 1 × 2 subgroups per workgroup (edge
    // subgroups clamped), with and without split-K
    for shape in [[4, 2, 2], [2, 1, 2], [4, 1, 1]] {
        for target in [None, Some(4000)] {
            let c = pollster::block_on(GpuContext::new(&GpuOptions {
                coopd_shape: Some(shape),
                coop_split_target: target,
                coop_f16: Some(CoopF16::Direct),
                ..opts.clone()
            }))
            .expect("GPU adapter");
            coop_direct_cases(&c, &format!("coop direct {shape:?} target {target:?}"));
        }
    }
}

/// f16-weight shapes for the tensor-core kernels of f16 weights: the direct one's (N ≥ 16·FN,
/// M ≥ 64, K % 16 == 0) edge tiles clamped inside the matrices (N, M not multiples of the
/// tile), M % 4 ≠ 0 (no split-K), long K (split-K by default); K % 16 ≠ 0 and N < 16·FN take
/// the staged tile.
fn coop_direct_cases(c: &GpuContext, what: &str) {
    product_cases(
        c,
        what,
        &[WeightFormat::F16],
        &[
            (32, 64, 16),
            (33, 66, 48),
            (67, 130, 160),
            (200, 136, 320),
            (45, 256, 1024),
            (150, 200, 96),
            (130, 260, 100),
            (300, 130, 36),
        ],
        &[
            (Activation::None, false, false, false),
            (Activation::Gelu, false, true, true),
            (Activation::SwiGlu, true, false, true),
        ],
        9500,
    );
}

#[test]
fn gemm_big_f16() {
    gemm_cases(Path::F16, 128, 1);
}

#[test]
fn gemm_big_f32() {
    gemm_cases(Path::F32, 128, 1);
}

/// The dequantise-and-FMA q4/q8 kernels (`--no-int8`; the default decode path quantises x to
/// int8): still tested on both numeric paths, with epilogues.
#[test]
fn gemv_dequant_path() {
    for (path, f32) in [(Path::F16, false), (Path::F32, true)] {
        let opts = GpuOptions {
            force_f32: f32,
            require_f16: !f32,
            no_subgroups: f32,
            no_int8: true,
            ..Default::default()
        };
        let c = pollster::block_on(GpuContext::new(&opts)).expect("GPU adapter");
        assert!(!c.int8);
        gemv_all_on(&c, path);
        let mut seed = 7000;
        for format in [WeightFormat::Q8, WeightFormat::Q4] {
            for (n, act, norm) in [(3, Activation::Gelu, true), (2, Activation::SwiGlu, true)] {
                let case = GemvCase {
                    format,
                    n,
                    m: 260,
                    k: 3584,
                    bias: n == 3,
                    residual: true,
                    act,
                    norm,
                    norm_out: false,
                };
                seed += 1;
                assert_ok(
                    &format!("{path:?} no-int8 {case}"),
                    pollster::block_on(selftest::gemv_case(&c, case, seed)),
                );
            }
        }
    }
}

#[test]
fn gate_up_interleave_equals_two_products_and_swiglu() {
    use bca::selftest::relayout::interleave_case;
    use bca::tensor::WeightFormat;
    for path in PATHS {
        let c = ctx(path);
        // decode (n = 1) and the tiled prefill path (n = 12); ragged rows and columns
        for (i, (n, rows, cols)) in [(1, 37, 72), (1, 130, 256), (12, 33, 96), (2, 7, 40)]
            .into_iter()
            .enumerate()
        {
            for f in [WeightFormat::F16, WeightFormat::Q8, WeightFormat::Q4] {
                let what = format!("{path:?} interleave n {n} {rows}×{cols} {}", f.name());
                match pollster::block_on(interleave_case(c, n, rows, cols, f, 600 + i as u64)) {
                    Ok(Some(cmp)) => assert!(cmp.ok(), "{what}: {cmp}"),
                    // 72 / 32 → 3 blocks: q8's packed scales cannot be split by rows
                    Ok(None) => assert!(
                        f == WeightFormat::Q8 && cols.div_ceil(32) % 2 == 1,
                        "{what}: refused"
                    ),
                    Err(e) => panic!("{what}: {e}"),
                }
            }
        }
    }
}

/// The cooperative-matrix kernels (the product and the attention) compile through naga to
/// SPIR-V for every format, activation and mask (CI's lavapipe has no cooperative matrices, so
/// this is what CI can check of them; `gemm_coop_f16` and `attn_coop_f16` run them where the
/// adapter has them).
#[test]
fn coop_shaders_lower_to_spirv() {
    use bca::gpu::{ActDType, KernelKey};
    use bca::wgpu::naga;
    let mut keys = Vec::new();
    for fmt in 0..3u32 {
        for act in 0..4u32 {
            for tk in [32, 64] {
                keys.push(("gemm_coop", vec![("ACT", act), ("FMT", fmt), ("TK", tk)]));
            }
        }
        for tk in [32, 64] {
            keys.push(("gemm_coop_split", vec![("FMT", fmt), ("TK", tk)]));
        }
    }
    for (fnr, gn, gm) in [(2, 1, 1), (4, 2, 2), (2, 1, 2)] {
        let tile = vec![("FN", fnr), ("GN", gn), ("GM", gm)];
        for act in 0..4u32 {
            let mut c = tile.clone();
            c.push(("ACT", act));
            keys.push(("gemm_coopd", c));
        }
        keys.push(("gemm_coopd_split", tile));
    }
    for act in 0..4u32 {
        keys.push(("gemm_coopb", vec![("ACT", act)]));
    }
    keys.push(("gemm_coopb_split", vec![]));
    for sg in [1, 2, 4] {
        for act in 0..4u32 {
            keys.push(("gemm_coops", vec![("ACT", act), ("SG", sg), ("TR", 0)]));
        }
        for ks in [1, 2].into_iter().filter(|ks| sg * ks <= 4) {
            keys.push(("gemm_coops", vec![("SG", sg), ("KS", ks), ("TR", 1)]));
        }
    }

    for mode in 0..3u32 {
        keys.push(("mma_peak", vec![("MODE", mode)]));
    }
    for mode in 0..3u32 {
        for nsg in [1, 2, 4] {
            for pf in [0, 1] {
                keys.push((
                    "attn_coop",
                    vec![("MODE", mode), ("D", 64), ("NSG", nsg), ("PF", pf)],
                ));
            }
        }
    }
    keys.push(("rvq_coop", vec![]));
    let entries = |family: &'static str| -> Vec<&'static str> {
        match family {
            "rvq_coop" => vec!["rvq_coop_dist", "rvq_coop_pick"],
            "gemm_coop_split" => vec!["gemm_coop_part"],
            "gemm_coopd_split" => vec!["gemm_coopd_part"],
            "gemm_coopb_split" => vec!["gemm_coopb_part"],
            f => vec![f],
        }
    };
    for (family, constants) in keys {
        for entry in entries(family) {
            let key = KernelKey {
                family,
                entry,
                act: ActDType::F16,
                subgroups: true,
                constants: constants.clone(),
            };
            let (m2, i2) = common::specialised(&key);
            let opts = naga::back::spv::Options {
                lang_version: (1, 3),
                ..Default::default()
            };
            let pipe = naga::back::spv::PipelineOptions {
                shader_stage: naga::ShaderStage::Compute,
                entry_point: entry.into(),
            };
            let words = naga::back::spv::write_vec(&m2, &i2, &opts, Some(&pipe))
                .unwrap_or_else(|e| panic!("{key}: {e}"));
            assert!(words.len() > 100, "{key}: {} words", words.len());
        }
    }
}

/// The int8 kernels' tuning variants: rows spread over 32 to 256 invocations (`--gemv-tpr`:
/// one or several subgroups per row, or the portable tree), with one, two and four rows per
/// lane group, x quantised by either kernel (`--xq-loop`), and one subgroup per row. Block counts under one round, whole
/// rounds and ragged remainders (K = 3584 → 112 blocks, 18944 → 592, 1000 → 32 with a partial
/// last block), one and several vectors, SwiGLU, norms, bias and residual, q4 and q8.
#[test]
fn gemv_int8_variants() {
    let mut seed = 8800;
    let combos: &[(Option<u32>, Option<u32>, bool, bool)] = &[
        (None, Some(32), false, false),
        (Some(2), Some(64), false, true),
        (Some(4), None, false, false),
        (None, Some(256), false, false),
        (None, Some(64), true, false),
        (Some(2), Some(128), true, true),
    ];
    // one subgroup per row (the `_sg` kernels: the default only where the subgroup is 128 wide)
    let (has_sg, sg) = (
        ctx(Path::F16).caps.subgroups,
        ctx(Path::F16).caps.subgroup_size,
    );
    let mut combos = combos.to_vec();
    if has_sg && sg > 0 {
        combos.push((None, Some(sg), false, false));
    }
    for (rows, tpr, no_sg, xq_loop) in combos {
        let c = pollster::block_on(GpuContext::new(&GpuOptions {
            require_f16: true,
            no_subgroups: no_sg,
            gemv_rows: rows,
            gemv_tpr: tpr,
            xq_loop,
            ..Default::default()
        }))
        .expect("GPU adapter");
        assert!(c.int8, "int8 activations");
        assert_eq!(c.caps.subgroups, has_sg && !no_sg, "subgroups as asked");
        let formats = [WeightFormat::Q4, WeightFormat::Q8];
        for format in formats {
            for &(m, k) in &[
                (38usize, 3584usize),
                (10, 18944),
                (70, 1024),
                (6, 200),
                (66, 9600),
            ] {
                for (n, act, norm) in [
                    (1, Activation::None, false),
                    (1, Activation::SwiGlu, true),
                    (3, Activation::Gelu, true),
                ] {
                    // SwiGLU needs an even row count; the others take an odd one (ragged groups)
                    let m = if act == Activation::SwiGlu { m } else { m + 1 };
                    // q8's packed scales want an even block count per row
                    let k = if format == WeightFormat::Q8 {
                        k
                    } else {
                        k - 24
                    };
                    let case = GemvCase {
                        format,
                        n,
                        m,
                        k,
                        bias: n == 1 && act == Activation::None,
                        residual: n > 1 || act == Activation::SwiGlu,
                        act,
                        norm,
                        norm_out: false,
                    };
                    seed += 1;
                    assert_ok(
                        &format!(
                            "rows {rows:?} tpr {tpr:?} no-sg {no_sg} xq-loop {xq_loop} {case}"
                        ),
                        pollster::block_on(selftest::gemv_case(&c, case, seed)),
                    );
                }
            }
        }
    }
}

/// The W_pack product with RoPE and the KV-cache append in its epilogue (`Epilogue::rope`),
/// against the product followed by `rope_kv`: q and the whole cache, within one rounding of
/// the activation dtype (same bits on lavapipe; see `selftest::gemv_rope_case`). The LLM's shape
/// (28/4 heads of 128, θ = 1e6, at a late position), the audio head's (28 heads of 128 all
/// kinds, zero frequencies) and a tiny one (2/1 heads of 32, no bias, ragged K for q4; q8's
/// packed scales need K a multiple of 64), and a RoPE of more tokens than vectors refused;
/// q4 and q8; subgroups (four per row: one rotate-half pair per workgroup), the portable
/// kernels (four or eight lane groups: several pairs per workgroup), the f32 path, and
/// `--no-fused-rope` (rope_kv after the product).
#[test]
fn gemv_rope_epilogue() {
    let mut seed = 9950;
    // the shared f16, portable and f32 contexts, and two with knobs
    let knob = |o: GpuOptions| pollster::block_on(GpuContext::new(&o)).expect("GPU adapter");
    let tpr64 = knob(GpuOptions {
        require_f16: true,
        no_subgroups: true,
        gemv_tpr: Some(64),
        ..Default::default()
    });
    let unfused = knob(GpuOptions {
        require_f16: true,
        no_fused_rope: true,
        ..Default::default()
    });
    for (label, c, want_fused) in [
        ("f16", ctx(Path::F16), true),
        ("f16 portable", ctx(Path::F16Portable), true),
        ("f16 portable, 64 per row", &tpr64, true),
        ("f32", ctx(Path::F32), true),
        ("--no-fused-rope", &unfused, false),
    ] {
        for format in [WeightFormat::Q4, WeightFormat::Q8] {
            for (heads, k, pos, tmax, theta, bias) in [
                ((28, 4, 128), 256usize, 700, 701, 1e6, true),
                // θ = ∞: zero frequencies
                ((28, 28, 128), 256, 5, 8, f64::INFINITY, true),
                ((2, 1, 32), 200, 7, 9, 1e4, false),
            ] {
                // q8's packed scales want an even block count per row
                let k = if format == WeightFormat::Q8 {
                    k.next_multiple_of(64)
                } else {
                    k
                };
                seed += 1;
                assert_ok(
                    &format!("{label} {format:?} heads {heads:?} K {k} pos {pos}"),
                    pollster::block_on(selftest::gemv_rope_case(
                        c,
                        format,
                        heads,
                        k,
                        (pos, tmax),
                        (theta, bias),
                        want_fused,
                        seed,
                    )),
                );
            }
        }
    }
    // q for two tokens after a product of one vector: a clear error, nothing recorded
    let c = ctx(Path::F16);
    let (hq, hkv, d) = (2usize, 1usize, 32usize);
    let m = (hq + 2 * hkv) * d;
    let mut rec = Recorder::new(c, "rope refusal");
    let w = Matrix::random(&mut rec, m, 64, WeightFormat::Q4, 5).unwrap();
    let x = Tensor::empty(c, "x", &[64]);
    let y = Tensor::empty(c, "y", &[2 * m]);
    let q = Tensor::empty(c, "q", &[2, hq, d]);
    let cache = KvCache::new(c, "cache", hkv, 8, d).unwrap();
    let inv = c.upload("inv", bytemuck::cast_slice(&ops::rope_inv_freq(1e4, d)));
    let before = rec.dispatches();
    let epi = Epilogue {
        rope: Some(ops::RopeOut {
            inv_freq: &inv,
            pos: 0,
            q: &q,
            cache: &cache,
        }),
        ..Default::default()
    };
    let err = ops::gemv(&mut rec, &w, &x, &y, epi).expect_err("more tokens than vectors");
    assert!(err.to_string().contains("tokens"), "{err}");
    assert_eq!(rec.dispatches(), before);
}

/// A split-K product with its LayerNorm in the reduce pass (`Epilogue::layernorm`,
/// `gemm_reduce_ln.wgsl`): y and the normalised rows bit-equal to the product followed by
/// `layernorm`, and the norm within f16/f32 tolerance of the CPU's. The flow U-Net's o_proj
/// shape (200 rows: 2 s of mel with the CFG pair, 256 outputs over 512), a ragged one (37 rows,
/// 300 outputs: more than one round per invocation, not a multiple of 4 or of the workgroup),
/// and 1280 outputs (the audio decoder's width); f16, q8 and q4 weights; the f32 path; and
/// `--no-fused-ln` (a layernorm dispatch after the product).
#[test]
fn gemm_layernorm_epilogue() {
    let mut seed = 9990;
    let unfused = pollster::block_on(GpuContext::new(&GpuOptions {
        require_f16: true,
        no_fused_ln: true,
        ..Default::default()
    }))
    .expect("GPU adapter");
    for (label, c, want_fused) in [
        ("f16", ctx(Path::F16), true),
        ("f32", ctx(Path::F32), true),
        ("--no-fused-ln", &unfused, false),
    ] {
        for format in [WeightFormat::F16, WeightFormat::Q8, WeightFormat::Q4] {
            // where the adapter has tensor cores, products may take their kernels, whose
            // epilogues leave the LayerNorm to a dispatch of its own (an H100: f16 weights,
            // and q8 at 37 rows); the values are compared to the bit either way
            let want = want_fused && !c.caps.coop;
            for shape in [(200, 256, 512), (37, 300, 256), (24, 1280, 320)] {
                seed += 1;
                assert_ok(
                    &format!("{label} {format:?} {shape:?}"),
                    pollster::block_on(selftest::gemm_ln_case(c, format, shape, want, seed)),
                );
            }
        }
    }
}

/// A one-vector product that also writes its output as the next product's int8 x
/// (`Epilogue::xq_out`, `gemv_i8_xqo.wgsl`): y within a rounding step of the product alone, the
/// int8 y to the bit against quantising the y it wrote, and one dispatch fewer than the product
/// and `quantise_vector`. SwiGLU (the LLM's gate/up), GELU with a bias (the audio head's
/// linear1) and none; output counts that are and are not multiples of the 32-value block, and
/// K ragged against the block. Subgroup and portable lane-group reductions (the default, and two
/// outputs per lane group), three blocks in flight per lane, the f32 path; `--no-fused-xqo`
/// quantises in a dispatch after the product.
#[test]
fn gemv_xq_out_epilogue() {
    let mut seed = 10100;
    let knob = |o: GpuOptions| pollster::block_on(GpuContext::new(&o)).expect("GPU adapter");
    // (on lavapipe's 8-wide subgroups the default and any --xqo-wg come to 256 invocations
    // reducing by shuffles; two outputs per lane group take the workgroup-memory reduction)
    let two = knob(GpuOptions {
        require_f16: true,
        xqo_wg: Some(256),
        xqo_outs: Some(2),
        ..Default::default()
    });
    let unfused = knob(GpuOptions {
        require_f16: true,
        no_fused_xqo: true,
        ..Default::default()
    });
    // three blocks in flight per lane everywhere (`--xqo-xu 3`: the loop and its tail)
    let three = knob(GpuOptions {
        require_f16: true,
        xqo_xu: Some(3),
        ..Default::default()
    });
    for (label, c, want_fused) in [
        ("f16", ctx(Path::F16), true),
        ("f16, two outputs per lane group", &two, true),
        ("f16, three blocks in flight", &three, true),
        ("f16 portable", ctx(Path::F16Portable), true),
        ("f32", ctx(Path::F32), true),
        ("--no-fused-xqo", &unfused, false),
    ] {
        for format in [WeightFormat::Q4, WeightFormat::Q8] {
            for (shape, act, bias) in [
                ((96usize, 256usize), Activation::SwiGlu, false),
                ((200, 320), Activation::Gelu, true),
                ((1000, 200), Activation::None, false),
                ((37, 96), Activation::SwiGlu, false),
                // rows long enough for the four-blocks-in-flight loop and its tail
                ((64, 2080), Activation::SwiGlu, false),
                ((70, 2080), Activation::Gelu, true),
            ] {
                // q8's packed scales want an even block count per row
                let k = if format == WeightFormat::Q8 {
                    shape.1.next_multiple_of(64)
                } else {
                    shape.1
                };
                seed += 1;
                assert_ok(
                    &format!("{label} {format:?} {shape:?} {act:?}"),
                    pollster::block_on(selftest::gemv_xqo_case(
                        c,
                        format,
                        (shape.0, k),
                        (act, bias),
                        want_fused,
                        seed,
                    )),
                );
            }
        }
    }
    // two vectors: a clear error, nothing recorded
    let c = ctx(Path::F16);
    let mut rec = Recorder::new(c, "xq_out refusal");
    let w = Matrix::random(&mut rec, 64, 64, WeightFormat::Q4, 5).unwrap();
    let x = Tensor::empty(c, "x", &[2, 64]);
    let y = Tensor::empty(c, "y", &[2, 64]);
    let (lq, ld) = ops::xq_buffers_len(64);
    let (q, d) = (c.storage("q", 2 * lq), c.storage("d", 2 * ld));
    let before = rec.dispatches();
    let epi = Epilogue {
        xq_out: Some((&q, &d)),
        ..Default::default()
    };
    let err = ops::gemv(&mut rec, &w, &x, &y, epi).expect_err("two vectors");
    assert!(err.to_string().contains("one vector"), "{err}");
    assert_eq!(rec.dispatches(), before);
}

/// An RMSNorm deferred across two q4/q8 products (`Epilogue::xq_out_norm` →
/// `Epilogue::deferred_norm`, `defer_norm.wgsl`): the producer (o_proj / down-like, with a
/// residual) writes its output times the norm's g as int8 x and Σ y² per block, and the next
/// product scales by the norm it computes from them. Against the norm in its own quantisation
/// dispatch, for the three products that follow the LLM's norms: a plain product with a bias,
/// gate/up with SwiGLU writing int8 x itself, and W_pack with RoPE and the cache append.
/// Output counts that are and are not multiples of the 32-value block. The subgroup path must
/// defer it (one dispatch fewer); the portable and f32 paths and `--no-defer-norm` keep it.
#[test]
fn gemv_deferred_norm() {
    use bca::selftest::DeferNext;
    let mut seed = 10300;
    let off = pollster::block_on(GpuContext::new(&GpuOptions {
        require_f16: true,
        no_defer_norm: true,
        ..Default::default()
    }))
    .expect("GPU adapter");
    for (label, c, want_fused) in [
        ("f16", ctx(Path::F16), true),
        ("f16 portable", ctx(Path::F16Portable), false),
        ("f32", ctx(Path::F32), false),
        ("--no-defer-norm", &off, false),
    ] {
        for format in [WeightFormat::Q4, WeightFormat::Q8] {
            for (shape, next) in [
                ((256usize, 192usize, 96usize), DeferNext::Plain),
                ((320, 256, 200), DeferNext::SwiGluXq),
                ((256, 128, 0), DeferNext::Rope(2, 1, 32)),
                ((200, 64, 37), DeferNext::Plain),
                // a long producer row (the four-blocks-in-flight loop and its tail)
                ((96, 2112, 64), DeferNext::SwiGluXq),
            ] {
                seed += 1;
                assert_ok(
                    &format!("{label} {format:?} {shape:?} {next:?}"),
                    pollster::block_on(selftest::gemv_defer_case(
                        c, format, shape, next, want_fused, seed,
                    )),
                );
            }
        }
    }
}

/// The audio head's linear2 adding its normalised input as the residual
/// (`Epilogue::residual_norm`, the `_norm_rn` entries): against `rmsnorm` then a plain
/// residual, q4 and q8, output counts that are and are not multiples of the 32-value block,
/// short and long rows. Where the device cannot defer norms (the portable path), the case says
/// so and both sides take the plain residual.
#[test]
fn gemv_normalised_residual() {
    let mut seed = 10500;
    for (label, c) in [
        ("f16", ctx(Path::F16)),
        ("f16 portable", ctx(Path::F16Portable)),
    ] {
        for format in [WeightFormat::Q4, WeightFormat::Q8] {
            for shape in [
                (96usize, 128usize, 256usize),
                (200, 64, 2112),
                (37, 64, 128),
            ] {
                seed += 1;
                let r = pollster::block_on(selftest::gemv_rn_case(c, format, shape, seed))
                    .expect("case");
                let fused = r.note.as_deref() == Some("residual normalised in the epilogue");
                assert_eq!(fused, label == "f16", "{label}: {r}");
                assert!(r.ok(), "{label} {format:?} {shape:?}: {r}");
            }
        }
    }
}

/// The shape knobs feed shader overrides whose workgroup arrays are sized for the values the
/// CLI accepts; a library caller passing others gets a clear error, not a corrupt kernel.
#[test]
fn bad_shape_knobs_are_refused() {
    for (opts, what) in [
        (
            GpuOptions {
                coops_shape: Some((4, 2)),
                ..Default::default()
            },
            "coops_shape 4x2",
        ),
        (
            GpuOptions {
                coops_shape: Some((3, 1)),
                ..Default::default()
            },
            "coops_shape 3x1",
        ),
        (
            GpuOptions {
                attn_coop_sg: Some(8),
                ..Default::default()
            },
            "attn_coop_sg 8",
        ),
        (
            GpuOptions {
                coopd_shape: Some([3, 1, 1]),
                ..Default::default()
            },
            "coopd_shape 3x1x1",
        ),
    ] {
        match pollster::block_on(GpuContext::new(&opts)) {
            Err(e) => assert!(e.to_string().contains(what), "{what}: {e}"),
            Ok(_) => panic!("{what} was accepted"),
        }
    }
}
