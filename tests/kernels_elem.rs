//! Native tests of the norm, RoPE, elementwise, embedding and conv kernels: every kernel
//! against its CPU reference on seeded random inputs on the f16 (subgroups where available),
//! f16 portable and f32 paths, over ragged shapes; plus one typed shape error per op.

mod common;
use common::{assert_ok, ctx, Path, PATHS};

use bca::gpu::Recorder;
use bca::ops::{self, OpError};
use bca::selftest;
use bca::tensor::Tensor;

fn shape_msg(r: Result<(), OpError>, op: &str) -> String {
    match r {
        Err(OpError::Shape { op: o, detail }) => {
            assert_eq!(o, op);
            detail
        }
        Err(e) => panic!("{op}: expected a shape error, got {e}"),
        Ok(()) => panic!("{op}: expected a shape error, got Ok"),
    }
}

// ---------------------------------------------------------------------------------------------
// Norms

#[test]
fn layernorm_all_paths() {
    for path in PATHS {
        let c = ctx(path);
        for (i, &(r, n)) in [
            (1, 1),
            (3, 7),
            (5, 64),
            (2, 1000),
            (7, 1280),
            (1, 5120),
            (3, 5003),
        ]
        .iter()
        .enumerate()
        {
            assert_ok(
                &format!("{path:?} layernorm {r}x{n}"),
                pollster::block_on(selftest::norm::layernorm_case(c, r, n, 10 + i as u64)),
            );
        }
    }
}

#[test]
fn groupnorm_all_paths() {
    for path in PATHS {
        let c = ctx(path);
        for (i, &(t, ch, g)) in [
            (1, 1, 1),
            (7, 12, 3),
            (13, 256, 1),
            (33, 64, 8),
            (31, 1280, 1),
            (301, 96, 32),
            (1001, 80, 1),
        ]
        .iter()
        .enumerate()
        {
            assert_ok(
                &format!("{path:?} groupnorm {t}x{ch} G={g}"),
                pollster::block_on(selftest::norm::groupnorm_case(c, t, ch, g, 20 + i as u64)),
            );
        }
    }
}

/// The audio decoder's GroupNorm(1, 1280) over a whole 60 s segment: 2999 × 1280 elements.
#[test]
fn groupnorm_decoder_segment() {
    for path in [Path::F16, Path::F32] {
        assert_ok(
            &format!("{path:?} groupnorm 2999x1280 G=1"),
            pollster::block_on(selftest::norm::groupnorm_case(ctx(path), 2999, 1280, 1, 29)),
        );
    }
}

#[test]
fn norm_shape_errors() {
    let c = ctx(Path::F32);
    let mut rec = Recorder::new(c, "t");
    let x = Tensor::empty(c, "x", &[4, 6]);
    let y = Tensor::empty(c, "y", &[4, 5]);
    let w = c.storage("w", 64);
    let m = shape_msg(ops::layernorm(&mut rec, &x, &w, &w, 1e-5, &y), "layernorm");
    assert!(m.contains("[4, 5]") && m.contains("[4, 6]"), "{m}");
    let m = shape_msg(
        ops::groupnorm(&mut rec, &x, 4, &w, &w, 1e-5, &y),
        "groupnorm",
    );
    assert!(m.contains("6 channels") && m.contains("[4, 6]"), "{m}");
    let y = Tensor::empty(c, "y", &[4, 5]);
    let m = shape_msg(
        ops::groupnorm(&mut rec, &x, 2, &w, &w, 1e-5, &y),
        "groupnorm",
    );
    assert!(m.contains("[4, 5]") && m.contains("[4, 6]"), "{m}");
    assert_eq!(rec.dispatches(), 0);
}

// ---------------------------------------------------------------------------------------------
// RoPE

#[test]
fn rope_all_paths() {
    for path in PATHS {
        let c = ctx(path);
        // (T, H, D, θ, p0, in place)
        for (i, &(t, h, d, theta, p0, inplace)) in [
            (1, 28, 128, 1e6, 0, false),
            (7, 4, 128, 1e6, 1, true),
            (3, 28, 128, 1e6, 8000, false),
            (5, 3, 64, 1e4, 1500, false),
            (9, 5, 64, 1e4, 37, true),
            (11, 3, 6, 1e4, 3, false),
            (2, 1, 2, 1e6, 4097, true),
            (300, 4, 128, 1e6, 0, false),
        ]
        .iter()
        .enumerate()
        {
            assert_ok(
                &format!("{path:?} rope T{t} H{h} D{d} θ{theta} p0 {p0} inplace={inplace}"),
                pollster::block_on(selftest::rope::rope_case(
                    c,
                    t,
                    h,
                    d,
                    theta,
                    p0,
                    inplace,
                    40 + i as u64,
                )),
            );
        }
    }
}

#[test]
fn rope_shape_errors() {
    let c = ctx(Path::F32);
    let mut rec = Recorder::new(c, "t");
    let inv = c.storage("inv", 256);
    let x = Tensor::empty(c, "x", &[2, 3, 5]);
    let m = shape_msg(ops::rope(&mut rec, &x, &inv, 0, &x), "rope");
    assert!(m.contains("[2, 3, 5]") && m.contains("even"), "{m}");
    let x = Tensor::empty(c, "x", &[2, 3, 8]);
    let y = Tensor::empty(c, "y", &[2, 8, 3]);
    let m = shape_msg(ops::rope(&mut rec, &x, &inv, 0, &y), "rope");
    assert!(m.contains("[2, 3, 8]") && m.contains("[2, 8, 3]"), "{m}");
    assert_eq!(rec.dispatches(), 0);
}

// ---------------------------------------------------------------------------------------------
// Elementwise

use bca::ops::{Binary, Unary};

const UNARIES: [Unary; 7] = [
    Unary::Gelu,
    Unary::Silu,
    Unary::Tanh,
    Unary::Mish,
    Unary::Elu,
    Unary::LeakyRelu(0.1),
    Unary::Scale(-0.37),
];

#[test]
fn unary_all_paths() {
    for path in PATHS {
        let c = ctx(path);
        for (j, f) in UNARIES.iter().enumerate() {
            for (i, &(r, n, inplace)) in [
                (1, 1, false),
                (3, 77, true),
                (17, 1280, false),
                (301, 257, true),
            ]
            .iter()
            .enumerate()
            {
                assert_ok(
                    &format!("{path:?} {f:?} {r}x{n} inplace={inplace}"),
                    pollster::block_on(selftest::elementwise::unary_case(
                        c,
                        *f,
                        r,
                        n,
                        inplace,
                        (60 + 10 * j + i) as u64,
                    )),
                );
            }
        }
    }
}

/// More than 65535 workgroups of 256: the 2-D grid path.
#[test]
fn unary_large_grid() {
    assert_ok(
        "F32 silu 4100x4100",
        pollster::block_on(selftest::elementwise::unary_case(
            ctx(Path::F32),
            Unary::Silu,
            4100,
            4100,
            false,
            69,
        )),
    );
}

#[test]
fn binary_all_paths() {
    for path in PATHS {
        let c = ctx(path);
        for f in [Binary::Add, Binary::Mul] {
            for (i, &(r, n, bc, inplace)) in [
                (1, 1, false, false),
                (5, 33, true, false),
                (7, 1280, false, true),
                (301, 80, true, true),
            ]
            .iter()
            .enumerate()
            {
                assert_ok(
                    &format!("{path:?} {f:?} {r}x{n} broadcast={bc} inplace={inplace}"),
                    pollster::block_on(selftest::elementwise::binary_case(
                        c,
                        f,
                        r,
                        n,
                        bc,
                        inplace,
                        80 + i as u64,
                    )),
                );
            }
        }
    }
}

#[test]
fn snake_swiglu_all_paths() {
    for path in PATHS {
        let c = ctx(path);
        for (i, &(t, ch)) in [(1, 1), (7, 64), (301, 33), (40, 512)].iter().enumerate() {
            assert_ok(
                &format!("{path:?} snake {t}x{ch}"),
                pollster::block_on(selftest::elementwise::snake_case(c, t, ch, 90 + i as u64)),
            );
        }
        for (i, &(t, n)) in [(1, 1), (3, 37), (5, 18944), (33, 300)].iter().enumerate() {
            for fused in [false, true] {
                assert_ok(
                    &format!("{path:?} swiglu {t}x{n} fused={fused}"),
                    pollster::block_on(selftest::elementwise::swiglu_case(
                        c,
                        t,
                        n,
                        fused,
                        100 + i as u64,
                    )),
                );
            }
        }
    }
}

#[test]
fn elementwise_shape_errors() {
    let c = ctx(Path::F32);
    let mut rec = Recorder::new(c, "t");
    let a = Tensor::empty(c, "a", &[4, 6]);
    let y = Tensor::empty(c, "y", &[6, 4]);
    let m = shape_msg(ops::unary(&mut rec, Unary::Gelu, &a, &y), "unary");
    assert!(m.contains("[4, 6]") && m.contains("[6, 4]"), "{m}");
    let b = Tensor::empty(c, "b", &[4]);
    let y = Tensor::empty(c, "y", &[4, 6]);
    let m = shape_msg(ops::binary(&mut rec, Binary::Add, &a, &b, &y), "binary");
    assert!(m.contains("[4]") && m.contains("[4, 6]"), "{m}");
    let gu = Tensor::empty(c, "gu", &[4, 12]);
    let y5 = Tensor::empty(c, "y5", &[4, 5]);
    let m = shape_msg(ops::swiglu_fused(&mut rec, &gu, &y5), "swiglu_fused");
    assert!(m.contains("[4, 12]") && m.contains("[4, 5]"), "{m}");
    let up = Tensor::empty(c, "up", &[4, 5]);
    let m = shape_msg(ops::swiglu(&mut rec, &a, &up, &y), "swiglu");
    assert!(m.contains("[4, 5]") && m.contains("[4, 6]"), "{m}");
    let x3 = Tensor::empty(c, "x3", &[4, 6, 1]);
    let m = shape_msg(
        ops::snake(&mut rec, &x3, &c.storage("al", 64), &x3),
        "snake",
    );
    assert!(m.contains("[4, 6, 1]"), "{m}");
    assert_eq!(rec.dispatches(), 0);
}

// ---------------------------------------------------------------------------------------------
// Embedding

#[test]
fn embedding_all_paths() {
    for path in PATHS {
        let c = ctx(path);
        for (i, &(v, ch, t)) in [
            (1, 1, 1),
            (10, 7, 5),
            (1000, 64, 33),
            (517, 3584, 9),
            (300, 1281, 40),
        ]
        .iter()
        .enumerate()
        {
            assert_ok(
                &format!("{path:?} embedding V{v} C{ch} T{t}"),
                pollster::block_on(selftest::embedding::embedding_case(
                    c,
                    v,
                    ch,
                    t,
                    120 + i as u64,
                )),
            );
        }
        // a table in row parts (the LM embedding past a binding), ids gathered on the GPU
        for (i, &(v, ch, t, rows)) in [(10, 7, 9, 3), (1000, 64, 33, 257), (517, 3584, 12, 100)]
            .iter()
            .enumerate()
        {
            assert_ok(
                &format!("{path:?} embedding in parts of {rows}: V{v} C{ch} T{t}"),
                pollster::block_on(selftest::embedding::embedding_parts_case(
                    c,
                    v,
                    ch,
                    t,
                    rows,
                    140 + i as u64,
                )),
            );
        }
        for (i, &(ch, t)) in [(8, 1), (13, 7), (3584, 5), (1280, 33)].iter().enumerate() {
            let rows = [1025, 129, 257, 65, 33, 17, 9, 5];
            assert_ok(
                &format!("{path:?} audio_embed C{ch} T{t}"),
                pollster::block_on(selftest::embedding::audio_embed_case(
                    c,
                    rows,
                    ch,
                    t,
                    130 + i as u64,
                )),
            );
        }
    }
}

#[test]
fn embedding_shape_errors() {
    let c = ctx(Path::F32);
    let mut rec = Recorder::new(c, "t");
    let table = bca::tensor::Matrix::f16_from_f32(c, "t", 10, 6, &[0.25; 60]);
    let ids = c.storage("ids", 64);
    let y = Tensor::empty(c, "y", &[4, 5]);
    let m = shape_msg(ops::embedding(&mut rec, &table, &ids, &y), "embedding");
    assert!(m.contains("[4, 5]") && m.contains("10×6"), "{m}");
    let y = Tensor::empty(c, "y", &[4, 6]);
    let m = shape_msg(
        ops::audio_embed(&mut rec, &table, &[1, 1, 1, 1, 1, 1, 1, 1], &ids, &y),
        "audio_embed",
    );
    assert!(m.contains("sum to 8") && m.contains("10×6"), "{m}");
    assert_eq!(rec.dispatches(), 0);
}

// ---------------------------------------------------------------------------------------------
// Conv

use bca::ops::{Conv1dSpec, ConvTranspose1dSpec};
use bca::selftest::conv::ConvShape;

fn shape(tin: usize, cin: usize, cout: usize, k: usize, groups: usize, bias: bool) -> ConvShape {
    ConvShape {
        batch: 1,
        tin,
        cin,
        cout,
        k,
        groups,
        bias,
    }
}

fn batched(batch: usize, s: ConvShape) -> ConvShape {
    ConvShape { batch, ..s }
}

fn spec(stride: usize, pad_left: usize, pad_right: usize, dilation: usize) -> Conv1dSpec {
    Conv1dSpec {
        stride,
        pad_left,
        pad_right,
        dilation,
    }
}

#[test]
fn conv1d_all_paths() {
    let cases = [
        // Whisper conv1 (k3 pad 1) and conv2 (stride 2), small channel counts, ragged T
        (shape(7, 8, 24, 3, 1, true), spec(1, 1, 1, 1)),
        (shape(30, 16, 24, 3, 1, true), spec(1, 1, 1, 1)),
        (shape(13, 24, 24, 3, 1, true), spec(2, 1, 1, 1)),
        (shape(30, 24, 24, 3, 1, false), spec(2, 1, 1, 1)),
        // HiFT resblock convs: dilation 3 and 5, "same" padding d·(k−1)/2
        (shape(41, 16, 16, 3, 1, true), spec(1, 3, 3, 3)),
        (shape(37, 12, 12, 7, 1, true), spec(1, 15, 15, 5)),
        (shape(29, 10, 10, 11, 1, true), spec(1, 5, 5, 1)),
        // grouped conv, odd channels per group (the padded pair path)
        (shape(19, 12, 8, 3, 4, true), spec(1, 1, 1, 1)),
        (shape(16, 20, 12, 5, 4, false), spec(2, 2, 2, 1)),
        // causal: left pad K−1
        (shape(23, 9, 11, 3, 1, true), spec(1, 2, 0, 1)),
        (shape(23, 16, 16, 3, 1, true), spec(1, 6, 0, 3)),
        // bridge-style k4 s4 no padding, and k1 (pointwise)
        (shape(17, 16, 40, 4, 1, false), spec(4, 0, 0, 1)),
        (shape(9, 33, 7, 1, 1, true), spec(1, 0, 0, 1)),
        // HiFT source_downs-style k30 s15 pad 7
        (shape(121, 18, 16, 30, 1, true), spec(15, 7, 7, 1)),
        // im2col + tiled product (one group, Cin a multiple of 8, ≥ 16 output frames):
        // stride 2 with right padding, dilated causal, and no padding at all
        (shape(70, 24, 24, 3, 1, false), spec(2, 1, 1, 1)),
        (shape(50, 32, 40, 7, 1, true), spec(1, 18, 0, 3)),
        (shape(40, 8, 72, 5, 1, true), spec(1, 0, 0, 1)),
        // 1×1, stride 1, no padding: the product on x itself
        (shape(20, 16, 24, 1, 1, true), spec(1, 0, 0, 1)),
        // batches of sequences (the flow's CFG pair), each padded on its own: direct kernel
        // (grouped, short), im2col (causal k3, strided), 1×1
        (batched(2, shape(9, 12, 8, 3, 4, true)), spec(1, 2, 0, 1)),
        (batched(3, shape(7, 9, 11, 3, 1, true)), spec(2, 1, 1, 1)),
        (batched(2, shape(23, 16, 24, 3, 1, true)), spec(1, 2, 0, 1)),
        (batched(3, shape(41, 24, 16, 5, 1, false)), spec(2, 4, 1, 2)),
        (batched(2, shape(17, 32, 8, 1, 1, true)), spec(1, 0, 0, 1)),
    ];
    for path in PATHS {
        let c = ctx(path);
        for (i, (s, sp)) in cases.iter().enumerate() {
            assert_ok(
                &format!("{path:?} conv1d {s:?} {sp:?}"),
                pollster::block_on(selftest::conv::conv1d_case(c, *s, *sp, 150 + i as u64)),
            );
        }
    }
}

#[test]
fn conv_transpose1d_all_paths() {
    let tspec = |stride, padding, output_padding, dilation| ConvTranspose1dSpec {
        stride,
        padding,
        output_padding,
        dilation,
    };
    let cases = [
        // audio decoder dconv1: k3 s4 no padding → 4N − 1 frames
        (shape(1, 16, 16, 3, 1, true), tspec(4, 0, 0, 1)),
        (shape(9, 24, 24, 3, 1, true), tspec(4, 0, 0, 1)),
        // HiFT ups: k16 s8 pad 4, k11 s5 pad 3, k7 s3 pad 2
        (shape(7, 32, 16, 16, 1, true), tspec(8, 4, 0, 1)),
        (shape(5, 16, 8, 11, 1, true), tspec(5, 3, 0, 1)),
        (shape(6, 8, 4, 7, 1, true), tspec(3, 2, 0, 1)),
        // dconv2 k3 s2, output padding, dilation, groups
        (shape(10, 12, 5, 3, 1, false), tspec(2, 0, 0, 1)),
        (shape(8, 6, 9, 4, 1, true), tspec(3, 1, 2, 1)),
        (shape(8, 6, 6, 3, 1, true), tspec(2, 1, 0, 2)),
        (shape(11, 12, 8, 5, 4, true), tspec(2, 1, 1, 1)),
        (shape(11, 10, 6, 3, 2, true), tspec(3, 0, 0, 1)),
    ];
    for path in PATHS {
        let c = ctx(path);
        for (i, (s, sp)) in cases.iter().enumerate() {
            assert_ok(
                &format!("{path:?} conv_transpose1d {s:?} {sp:?}"),
                pollster::block_on(selftest::conv::conv_transpose1d_case(
                    c,
                    *s,
                    *sp,
                    170 + i as u64,
                )),
            );
        }
    }
}

#[test]
fn avgpool1d_all_paths() {
    for path in PATHS {
        let c = ctx(path);
        for (i, &(t, ch, k)) in [(1, 1, 1), (9, 7, 4), (30, 1280, 4), (257, 33, 3), (8, 5, 8)]
            .iter()
            .enumerate()
        {
            assert_ok(
                &format!("{path:?} avgpool1d T{t} C{ch} k{k}"),
                pollster::block_on(selftest::conv::avgpool1d_case(c, t, ch, k, 190 + i as u64)),
            );
        }
    }
}

#[test]
fn conv_shape_errors() {
    let c = ctx(Path::F32);
    let mut rec = Recorder::new(c, "t");
    let w = ops::ConvWeight::conv1d(c, "w", &[0.5; 24 * 8 * 3], 24, 8, 3, 1).unwrap();
    let x = Tensor::empty(c, "x", &[10, 9]);
    let y = Tensor::empty(c, "y", &[10, 24]);
    let m = shape_msg(
        ops::conv1d(&mut rec, &x, &w, None, spec(1, 1, 1, 1), &y),
        "conv1d",
    );
    assert!(m.contains("[10, 9]") && m.contains("Cout 24"), "{m}");
    let x = Tensor::empty(c, "x", &[10, 8]);
    let y = Tensor::empty(c, "y", &[9, 24]);
    let m = shape_msg(
        ops::conv1d(&mut rec, &x, &w, None, spec(1, 1, 1, 1), &y),
        "conv1d",
    );
    assert!(
        m.contains("[9, 24]") && m.contains("[10, 24]") && m.contains("[10, 8]"),
        "{m}"
    );
    let wt = ops::ConvWeight::conv_transpose1d(c, "w", &[0.5; 8 * 4 * 3], 8, 4, 3, 1).unwrap();
    let y = Tensor::empty(c, "y", &[10, 4]);
    let ts = ConvTranspose1dSpec {
        stride: 4,
        padding: 0,
        output_padding: 0,
        dilation: 1,
    };
    let m = shape_msg(
        ops::conv_transpose1d(&mut rec, &x, &wt, None, ts, &y),
        "conv_transpose1d",
    );
    assert!(m.contains("[39, 4]") && m.contains("[10, 4]"), "{m}");
    let y = Tensor::empty(c, "y", &[3, 7]);
    let m = shape_msg(ops::avgpool1d(&mut rec, &x, 4, &y), "avgpool1d");
    assert!(m.contains("[2, 8]") && m.contains("[3, 7]"), "{m}");
    assert!(ops::ConvWeight::conv1d(c, "w", &[0.5; 10], 24, 8, 3, 1).is_err());
    assert_eq!(rec.dispatches(), 0);
}

/// The GELU kernel's erf, measured on a dense grid on the f32 path: the error of the implied
/// erf, |GELU_gpu − GELU_ref| / (|x|/2), stays below 2.5e-7 — this includes the
/// f32 rounding of GELU's own output (≈1.2e-7·(1 + erf)); the erf itself is better.
#[test]
fn gelu_erf_accuracy() {
    let c = ctx(Path::F32);
    let x: Vec<f32> = (0..16001).map(|i| -8.0 + i as f32 * 0.001).collect();
    let xt = Tensor::from_f32(c, "x", &[x.len()], &x);
    let yt = Tensor::empty(c, "y", &[x.len()]);
    let mut rec = Recorder::new(c, "gelu grid");
    ops::unary(&mut rec, Unary::Gelu, &xt, &yt).unwrap();
    rec.submit().unwrap();
    let got = pollster::block_on(yt.to_vec(c)).unwrap();
    let mut worst = (0.0f64, 0.0f32);
    for (v, g) in x.iter().zip(&got) {
        if v.abs() < 1e-3 {
            continue;
        }
        let want = bca::reference::elementwise::gelu(*v as f64);
        let e = (*g as f64 - want).abs() / (0.5 * v.abs() as f64);
        if e > worst.0 {
            worst = (e, *v);
        }
    }
    eprintln!("max implied erf error {:.3e} at x = {}", worst.0, worst.1);
    assert!(
        worst.0 < 2.5e-7,
        "erf error {:.3e} at x = {}",
        worst.0,
        worst.1
    );
}

// ---- load-time relayout (raw GPU weights → kernel layouts) ----

use bca::ops::Strided;
use bca::selftest::relayout::{self as rl, ConvKind};
use bca::tensor::RawDType;

fn boxed(x: usize, y: usize, z: usize, zvalid: usize, s: [usize; 4], d: [usize; 3]) -> Strided {
    Strided {
        x,
        y,
        z,
        zvalid,
        sbase: s[0],
        sx: s[1],
        sy: s[2],
        sz: s[3],
        dbase: d[0],
        dx: d[1],
        dy: d[2],
    }
}

#[test]
fn relayout_all_dtypes_and_shapes() {
    let c = ctx(Path::F32);
    let cases = [
        // a transpose of (7, 5) into (5, 7)
        boxed(5, 1, 8, 7, [0, 1, 0, 5], [0, 8, 0]),
        // the bridge's gate/up interleave, ragged: (co 9, ci 6, k 3) → rows 2co, cols k·6+ci
        boxed(9, 3, 6, 6, [0, 18, 1, 3], [0, 2 * 18, 6]),
        // a 1-D cast with an odd tail padded
        boxed(1, 1, 1002, 1001, [3, 0, 0, 1], [2, 0, 0]),
        // a large grid (> 65535 workgroups of 256 would need 2-D): 300 × 257 × 10
        boxed(300, 257, 10, 9, [0, 257 * 9, 9, 1], [0, 257 * 10, 10]),
    ];
    for (i, s) in cases.iter().enumerate() {
        for (sd, dd) in [
            (RawDType::F16, RawDType::F16),
            (RawDType::F32, RawDType::F16),
            (RawDType::F16, RawDType::F32),
            (RawDType::F32, RawDType::F32),
        ] {
            let src_len = s.src_end() + 3;
            let dst_len = s.dst_end() + 5;
            assert_ok(
                &format!("relayout {s:?} {sd:?}→{dd:?}"),
                pollster::block_on(rl::relayout_case(
                    c,
                    *s,
                    src_len,
                    dst_len,
                    sd,
                    dd,
                    500 + i as u64,
                )),
            );
        }
    }
}

#[test]
fn relayout_refuses_bad_boxes() {
    let c = ctx(Path::F32);
    let src = c.upload("s", &[0u8; 64]);
    let dst = c.upload("d", &[0u8; 64]);
    let mut rec = Recorder::new(c, "t");
    let mut err =
        |sd, dd, b: Strided| shape_msg(ops::relayout(&mut rec, &src, sd, &dst, dd, &b), "relayout");
    // odd z for an f16 output
    let b = boxed(1, 1, 3, 3, [0, 0, 0, 1], [0, 0, 0]);
    assert!(err(RawDType::F16, RawDType::F16, b).contains("even z"));
    // reads past the source
    let b = boxed(1, 1, 8, 8, [10, 0, 0, 1], [0, 0, 0]);
    assert!(err(RawDType::F32, RawDType::F32, b).contains("src buffer holds 64 bytes, needs 72"));
    // writes past the destination
    let b = boxed(1, 1, 8, 8, [0, 0, 0, 1], [12, 0, 0]);
    assert!(err(RawDType::F32, RawDType::F32, b).contains("dst buffer holds 64 bytes, needs 80"));
}

#[test]
fn conv_weights_from_raw_equal_the_cpu_packed_ones() {
    let kinds = [
        // Whisper conv1/conv2-like, odd Cin (the zero pad)
        ConvKind::Conv1d {
            cout: 24,
            cin_g: 13,
            k: 3,
            groups: 1,
        },
        // grouped, odd channels per group
        ConvKind::Conv1d {
            cout: 12,
            cin_g: 3,
            k: 5,
            groups: 4,
        },
        // decoder dconv1 / HiFT ups
        ConvKind::Transpose {
            cin: 16,
            cout_g: 10,
            k: 3,
            groups: 1,
        },
        ConvKind::Transpose {
            cin: 9,
            cout_g: 4,
            k: 7,
            groups: 3,
        },
        // the flow estimator's split convs: the second input's channels
        ConvKind::Inputs {
            cout: 8,
            cin: 21,
            k: 3,
            c0: 10,
            c: 11,
        },
        ConvKind::Inputs {
            cout: 8,
            cin: 21,
            k: 3,
            c0: 0,
            c: 10,
        },
    ];
    for path in PATHS {
        let c = ctx(path);
        for (i, k) in kinds.iter().enumerate() {
            for dt in [RawDType::F16, RawDType::F32] {
                assert_ok(
                    &format!("{path:?} conv raw {k:?} {dt:?}"),
                    pollster::block_on(rl::conv_raw_case(c, *k, dt, 520 + i as u64)),
                );
            }
        }
    }
}

#[test]
fn codebooks_from_raw_and_f32_to_act() {
    for path in PATHS {
        let c = ctx(path);
        for dt in [RawDType::F16, RawDType::F32] {
            assert_ok(
                &format!("{path:?} codebooks raw {dt:?}"),
                pollster::block_on(rl::codebooks_raw_case(
                    c,
                    &[33, 17, 9, 5, 5, 5, 5, 5],
                    40,
                    dt,
                    540,
                )),
            );
        }
        for n in [1, 2, 1001, 70000] {
            assert_ok(
                &format!("{path:?} f32_to_act {n}"),
                pollster::block_on(rl::f32_to_act_case(c, n, 550 + n as u64)),
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Recorder: param ring and bind-group cache

/// Thousands of dispatches in one recorder (their params span several rings), each with its
/// own params; then the same step again with other params through the same bind-group cache,
/// which must reuse every bind group and still see the new params, this time flushed to the
/// GPU every 1000 dispatches.
#[test]
fn recorder_param_ring_and_bind_cache() {
    use bca::gpu::BindCache;
    use bca::ops::Strided;
    let c = ctx(Path::F32);
    let n = 6000;
    let mut rng = bca::util::rng::Rng::new(41);
    let words: Vec<u32> = (0..n).map(|_| rng.next_u64() as u32).collect();
    let src = c.upload("ring.src", bytemuck::cast_slice(&words));
    let dst = c.storage("ring.dst", (n * 4) as u64);
    let cache = BindCache::default();
    let mut sizes = Vec::new();
    for round in 0..2 {
        // a seeded permutation: dst[i] = src[perm[i]], one dispatch per word
        let mut perm: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            perm.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let mut rec = Recorder::new(c, "ring").with_cache(&cache);
        for (i, &p) in perm.iter().enumerate() {
            let s = Strided {
                x: 1,
                y: 1,
                z: 1,
                zvalid: 1,
                sbase: p,
                sz: 1,
                dbase: i,
                ..Default::default()
            };
            ops::relayout_words(&mut rec, &src, &dst, &s).expect("relayout_words");
            // the second round submits part-way (params written in pieces, rings kept)
            if round == 1 && i % 1000 == 999 {
                rec.flush().expect("flush");
            }
        }
        rec.submit().expect("submit");
        let got = pollster::block_on(bca::gpu::read_buffer(c, &dst, 0, (n * 4) as u64))
            .expect("read back");
        let got: Vec<u32> = bytemuck::pod_collect_to_vec(&got);
        let bad: Vec<usize> = (0..n).filter(|&i| got[i] != words[perm[i]]).collect();
        assert!(
            bad.is_empty(),
            "round {round}: {} of {n} words wrong, first at {:?}",
            bad.len(),
            bad.first()
        );
        sizes.push(cache.len());
    }
    // one bind group per params slot, all reused by the second round
    assert_eq!(sizes[0], n, "bind groups after the first round");
    assert_eq!(
        sizes[1], n,
        "the second round created bind groups instead of reusing them"
    );
}

/// `conv1d_batch_res`: the residual added in the product's epilogue (a 1×1 conv, and a k3 conv
/// long enough for the product) and by an add after the direct kernel (a short grouped conv),
/// against the CPU convolution plus the residual; two sequences. A residual aliasing y is
/// refused before anything is recorded.
#[test]
fn conv1d_residual_all_paths() {
    use bca::ops::ConvWeight;
    use bca::reference;
    use bca::util::rng::Rng;
    for path in PATHS {
        let c = ctx(path);
        // (tin, cin, cout, k, groups, pad_left)
        for (i, &(tin, cin, cout, k, groups, pad)) in [
            (40, 32, 24, 1, 1, 0),
            (40, 16, 24, 3, 1, 2),
            (5, 8, 12, 3, 2, 1),
        ]
        .iter()
        .enumerate()
        {
            let mut rng = Rng::new(970 + i as u64);
            let batch = 2;
            let cin_g = cin / groups;
            let x = bca::tensor::round_act(c.act(), &rng.normal_vec(batch * tin * cin, 1.0));
            let w: Vec<f32> = rng
                .normal_vec(cout * cin_g * k, 0.3)
                .iter()
                .map(|v| half::f16::from_f32(*v).to_f32())
                .collect();
            let b = rng.uniform_vec(cout, -0.5, 0.5);
            let tout = tin + pad - (k - 1);
            let r =
                bca::tensor::round_act(c.act(), &rng.uniform_vec(batch * tout * cout, -1.0, 1.0));
            let mut want = Vec::new();
            for xs in x.chunks(tin * cin) {
                want.extend(reference::conv::conv1d(
                    xs,
                    tin,
                    cin,
                    &w,
                    cout,
                    k,
                    Some(&b),
                    1,
                    pad,
                    0,
                    1,
                    groups,
                ));
            }
            for (v, rv) in want.iter_mut().zip(&r) {
                *v += rv;
            }
            let wt = ConvWeight::conv1d(c, "w", &w, cout, cin_g, k, groups).unwrap();
            let xt = Tensor::from_f32(c, "x", &[batch * tin, cin], &x);
            let rt = Tensor::from_f32(c, "r", &[batch * tout, cout], &r);
            let yt = Tensor::empty(c, "y", &[batch * tout, cout]);
            let sp = spec(1, pad, 0, 1);
            let mut rec = Recorder::new(c, "conv residual test");
            let bb = ops::ConvBias::upload(&mut rec, "b", &b).unwrap();
            ops::conv1d_batch_res(&mut rec, &xt, &wt, Some(&bb), sp, batch, &yt, Some(&rt))
                .unwrap();
            rec.submit().unwrap();
            let got = pollster::block_on(yt.to_vec(c)).unwrap();
            let (atol, rtol) = match path {
                Path::F32 => (1e-4, 1e-4),
                _ => (2e-3, 2e-3),
            };
            let cmp = bca::selftest::compare(&got, &want, atol, rtol);
            assert!(cmp.ok(), "{path:?} conv {i} with residual: {cmp}");
            // the residual must not be y
            let mut rec = Recorder::new(c, "conv residual alias");
            let e = ops::conv1d_batch_res(&mut rec, &xt, &wt, Some(&bb), sp, batch, &yt, Some(&yt))
                .unwrap_err();
            assert!(e.to_string().contains("residual"), "{e}");
            assert_eq!(rec.dispatches(), 0);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The copy kernel (the benchmarks' bandwidth reference and dispatch-latency chain)

/// `ops::copy_with`, with the size from the params and as pipeline constants: random words of
/// ragged lengths copied exactly, the destination's words past the length untouched.
#[test]
fn copy_both_ways() {
    use bca::util::rng::Rng;
    let c = ctx(Path::F32);
    let mut rng = Rng::new(77);
    for (i, &words) in [4usize, 1028, 70_004, 262_148].iter().enumerate() {
        for fixed in [false, true] {
            let src: Vec<u32> = (0..words).map(|_| rng.next_u64() as u32).collect();
            let old: Vec<u32> = (0..words + 64).map(|_| rng.next_u64() as u32).collect();
            let s = c.upload("src", bytemuck::cast_slice(&src));
            let d = c.upload("dst", bytemuck::cast_slice(&old));
            let mut rec = Recorder::new(c, "copy test");
            ops::copy_with(&mut rec, &s, &d, (words * 4) as u64, fixed).unwrap();
            rec.submit().unwrap();
            let got = pollster::block_on(bca::gpu::read_buffer(c, &d, 0, d.size())).unwrap();
            let got: &[u32] = bytemuck::cast_slice(&got);
            let bad = (0..words).filter(|&j| got[j] != src[j]).count();
            assert_eq!(
                bad, 0,
                "copy {i} ({words} words, fixed {fixed}): {bad} words differ"
            );
            assert_eq!(&got[words..], &old[words..], "copy {i}: past the length");
        }
    }
    // a length past the buffers is a typed error, not a copy
    let s = c.upload("src", &[0u8; 16]);
    let d = c.upload("dst", &[0u8; 16]);
    let mut rec = Recorder::new(c, "copy short");
    let e = ops::copy_with(&mut rec, &s, &d, 32, true).unwrap_err();
    assert!(e.to_string().contains("copy"), "{e}");
    assert_eq!(rec.dispatches(), 0);
}

/// `ops::read_sink` (the decode benchmark's stream bound) reads every vec4 it is given: two
/// buffers of random words and one vec4 planted with the kernel's pattern, at the start, the
/// end or past the first buffer (in the second), are read with 1, 2, 4 and 8 vec4s per
/// invocation; the sink receives the pattern (XOR-folded with the planted vec4's neighbours,
/// which are zero around it) exactly when the planted vec4 lies within the lengths read, and
/// random words alone leave it untouched.
#[test]
fn read_sink_reads_what_it_is_given() {
    use bca::util::rng::Rng;
    const PAT: [u32; 4] = [0x7f4a_7c15, 0x1234_5678, 0x9abc_def0, 0];
    // the kernel's condition: x ^ y ^ z ^ w == 0x9e3779b9 and x == 0x7f4a7c15
    let last = 0x9e37_79b9 ^ PAT[0] ^ PAT[1] ^ PAT[2];
    let pat = [PAT[0], PAT[1], PAT[2], last];
    let c = ctx(Path::F32);
    let mut rng = Rng::new(91);
    let (na, nb) = (4100usize, 1030usize); // vec4s: not multiples of 256 · RU
    let random = |rng: &mut Rng, n: usize| -> Vec<u32> {
        (0..4 * n).map(|_| rng.next_u64() as u32).collect()
    };
    for ru in [1u32, 2, 4, 8] {
        // (where: None = nowhere, Some((in b, index)); b's vec4s read)
        for (plant, nb_read) in [
            (None, nb),
            (Some((false, 0usize)), nb),
            (Some((false, na - 1)), 0),
            (Some((true, nb - 1)), nb),
            (Some((true, nb - 1)), nb - 1),
        ] {
            let mut a = random(&mut rng, na);
            let mut b = random(&mut rng, nb);
            if let Some((in_b, i)) = plant {
                let buf = if in_b { &mut b } else { &mut a };
                // zero the vec4s an invocation folds with the planted one, then plant it
                let lo = i.saturating_sub(8 * 256);
                let hi = (i + 8 * 256 + 1).min(buf.len() / 4);
                for j in lo..hi {
                    buf[4 * j..4 * j + 4].copy_from_slice(&[0; 4]);
                }
                buf[4 * i..4 * i + 4].copy_from_slice(&pat);
            }
            let (ab, bb) = (
                c.upload("a", bytemuck::cast_slice(&a)),
                c.upload("b", bytemuck::cast_slice(&b)),
            );
            let sink = c.upload("sink", bytemuck::cast_slice(&[1u32, 2, 3, 4]));
            let mut rec = Recorder::new(c, "read_sink test");
            ops::read_sink(
                &mut rec,
                (&ab, (na * 16) as u64),
                (&bb, (nb_read * 16) as u64),
                &sink,
                ru,
            )
            .unwrap();
            rec.submit().unwrap();
            let got = pollster::block_on(bca::gpu::read_buffer(c, &sink, 0, 16)).unwrap();
            let got: &[u32] = bytemuck::cast_slice(&got);
            let read = match plant {
                None => false,
                Some((true, i)) => i < nb_read,
                Some((false, _)) => true,
            };
            let want: [u32; 4] = if read { pat } else { [1, 2, 3, 4] };
            assert_eq!(got, want, "RU {ru}, planted {plant:?}, {nb_read} of b read");
        }
    }
    // bad arguments are typed errors before anything is recorded
    let s = c.upload("s", &[0u8; 64]);
    let mut rec = Recorder::new(c, "read_sink bad");
    for (a, ru) in [(128u64, 1u32), (64, 9), (0, 1)] {
        let e = ops::read_sink(&mut rec, (&s, a), (&s, 0), &s, ru).unwrap_err();
        assert!(e.to_string().contains("read_sink"), "{e}");
    }
    assert_eq!(rec.dispatches(), 0);
}

/// `bench kernels`' raw-Vulkan barrier benchmark records real dependent chains: after timing,
/// it runs one with wgpu's barrier on seeded random data and fails unless every value is the
/// data plus the number of links. On lavapipe (Vulkan) it must run, not return `None`.
#[cfg(not(target_vendor = "apple"))]
#[test]
fn raw_vulkan_barrier_chain_is_a_real_chain() {
    use bca::bench::vk_barriers::{barrier_costs, Flavour, FLAVOURS};
    let c = common::ctx(common::Path::F16);
    for (links, groups) in [(6, 1), (9, 3)] {
        let costs = pollster::block_on(barrier_costs(c, links, groups, &FLAVOURS))
            .unwrap_or_else(|e| panic!("{links} links of {groups} workgroups: {e}"))
            .unwrap_or_else(|| panic!("{} is a Vulkan adapter here", c.info.name));
        let kinds: Vec<Flavour> = costs.iter().map(|c| c.0).collect();
        assert_eq!(kinds, FLAVOURS);
        for (f, us) in costs {
            assert!(us.is_finite() && us > 0.0, "{f:?}: {us} us per link");
        }
    }
}

/// `bench decode --pipeline-stats` writes each kernel's SPIR-V again as wgpu does for the
/// engine (constants substituted, checks off): that must work for every kernel compiled, and
/// the statistics, where the driver reports them (not on lavapipe), must come without errors.
#[cfg(not(target_vendor = "apple"))]
#[test]
fn pipeline_statistics_rebuild_every_kernel() {
    use bca::bench::vk_stats::{pipeline_stats, spirv_for};
    let c = common::ctx(common::Path::F16);
    // make sure a few kernels with and without constants are compiled
    let mut rec = Recorder::new(c, "stats");
    let a = c.storage("stats.a", 1 << 16);
    ops::fill(&mut rec, &a, 1 << 14, 7, ops::Fill::Bits).unwrap();
    let sink = c.storage("stats.sink", 16);
    ops::read_sink(&mut rec, (&a, 1 << 16), (&a, 4096), &sink, 4).unwrap();
    rec.submit().unwrap();
    // finished before the process can exit (lavapipe crashed now and then at exit with the
    // work still in flight)
    c.device.poll(wgpu::PollType::wait_indefinitely()).unwrap();
    let keys = c.pipelines.keys();
    assert!(keys.len() >= 2, "{} pipelines compiled", keys.len());
    for key in &keys {
        let words = spirv_for(key, (1, 6)).unwrap_or_else(|e| panic!("{key}: {e}"));
        assert_eq!(words.first(), Some(&0x0723_0203), "{key}: not SPIR-V");
    }
    match pipeline_stats(c, "").unwrap() {
        None => eprintln!("{}: no pipeline statistics from this driver", c.info.name),
        Some(all) => {
            assert!(!all.is_empty());
            for k in all {
                assert!(
                    !k.stats.is_empty() && k.stats.iter().all(|(n, _)| n != "error"),
                    "{}: {:?}",
                    k.kernel,
                    k.stats
                );
            }
        }
    }
}
