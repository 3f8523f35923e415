//! The audio LLM (spec §5) against transformers' `Qwen2ForCausalLM` on the tiny checkpoint
//! (`bca tiny --seed 0`; goldens from scripts/goldens/llm.py): logits at every position, the
//! audio splice of §5.1, a 32-token greedy continuation, chunked prefill == one-token steps,
//! and the session's input errors.

mod common;

use std::path::{Path, PathBuf};

use bca::model::llm::{Input, Llm, Session};
use bca::model::Weights;
use bca::tensor::WeightFormat;
use bca::weights::tiny::Variant;
use common::{ctx, Path as GpuPath};

fn tiny(variant: Variant) -> PathBuf {
    common::tiny_checkpoint("bca-llm-test-", variant)
}

fn golden() -> serde_json::Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/goldens/llm/logits.json");
    serde_json::from_str(&std::fs::read_to_string(p).expect("golden")).expect("json")
}

fn u32s(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn f64s(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// The golden case's inputs: ids with pads replaced by their frames.
fn inputs(case: &serde_json::Value) -> Vec<Input> {
    let codes: Vec<[u32; 8]> = case["codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| u32s(f).try_into().unwrap())
        .collect();
    let mut k = 0;
    u32s(&case["ids"])
        .into_iter()
        .map(|id| {
            if id == 151678 {
                k += 1;
                Input::Audio(codes[k - 1])
            } else {
                Input::Text(id)
            }
        })
        .collect()
}

fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best as u32
}

/// Max abs error of our logits against the golden summaries of one case.
fn compare_case(case: &serde_json::Value, got: &[f32], vocab: usize) -> (f64, f64, usize) {
    let n = case["ids"].as_array().unwrap().len();
    let (mut err_vals, mut err_stats, mut top1_diff) = (0f64, 0f64, 0usize);
    for t in 0..n {
        let row = &got[t * vocab..(t + 1) * vocab];
        for (i, w) in f64s(&case["first16"][t]).iter().enumerate() {
            err_vals = err_vals.max((row[i] as f64 - w).abs());
        }
        let ids = u32s(&case["top_ids"][t]);
        let vals = f64s(&case["top_vals"][t]);
        for (id, w) in ids.iter().zip(&vals) {
            err_vals = err_vals.max((row[*id as usize] as f64 - w).abs());
        }
        if argmax(row) != ids[0] {
            top1_diff += 1;
        }
        let sum: f64 = row.iter().map(|x| *x as f64).sum();
        let sumsq: f64 = row.iter().map(|x| (*x as f64) * (*x as f64)).sum();
        // per-element mean error of the sums (the sums run over 152064 values)
        err_stats = err_stats
            .max((sum - case["sum"][t].as_f64().unwrap()).abs() / vocab as f64)
            .max((sumsq - case["sumsq"][t].as_f64().unwrap()).abs() / vocab as f64);
    }
    (err_vals, err_stats, top1_diff)
}

fn run_path(path: GpuPath, format: WeightFormat, chunk: usize) -> Vec<(String, f64, f64, usize)> {
    run_on(ctx(path), format, chunk)
}

fn run_on(
    c: &bca::gpu::GpuContext,
    format: WeightFormat,
    chunk: usize,
) -> Vec<(String, f64, f64, usize)> {
    let w = Weights::open(&tiny(Variant::Instruct), format).expect("open");
    let llm = Llm::load(c, &w).expect("load");
    let fused = llm.fused_mlp_layers();
    assert!(
        fused == if c.no_fused_mlp { 0 } else { llm.dims.layers },
        "{fused} of {} layers fused",
        llm.dims.layers
    );
    let g = golden();
    let mut out = Vec::new();
    for case in g["cases"].as_array().unwrap() {
        let inp = inputs(case);
        let mut s = Session::new(c, &llm, 128, chunk).expect("session");
        let got = pollster::block_on(s.all_logits(c, &llm, &inp)).expect("logits");
        let (ev, es, t1) = compare_case(case, &got, llm.dims.vocab);
        out.push((case["name"].as_str().unwrap().to_string(), ev, es, t1));
    }
    out
}

/// f32 path: every position's logits within 1e-3 of transformers (f16 weights of the bf16
/// checkpoint; the reference runs the same values in f32).
#[test]
fn logits_match_transformers_f32() {
    for chunk in [64, 7] {
        for (name, ev, es, t1) in run_path(GpuPath::F32, WeightFormat::F16, chunk) {
            eprintln!("f32 chunk {chunk} {name}: max |Δlogit| {ev:.2e}, mean-stat Δ {es:.2e}, top-1 differs at {t1}");
            assert!(ev < 1e-3, "{name}: max error {ev}");
            assert!(es < 1e-4, "{name}: sum statistics off by {es}");
            assert_eq!(t1, 0, "{name}: top-1 differs at {t1} positions");
        }
    }
}

/// f16 activations (with and without subgroups) and quantised weights: stated bounds.
#[test]
fn logits_bounds_f16_q8_q4() {
    // chunks of 16 (prefill products), and of 1 at q4: every position a decode step, whose
    // RMSNorms are deferred into the products after them where the device can (see
    // decode_steps_defer_their_norms; q8's deferral is checked by the audio head's golden)
    for (path, format, bound, chunk) in [
        (GpuPath::F16, WeightFormat::F16, 5e-3, 16),
        (GpuPath::F16, WeightFormat::Q8, 2e-2, 16),
        (GpuPath::F16, WeightFormat::Q4, 1.5e-1, 16),
        (GpuPath::F16, WeightFormat::Q4, 1.5e-1, 1),
    ] {
        for (name, ev, _, t1) in run_path(path, format, chunk) {
            eprintln!(
                "{path:?} {} chunk {chunk} {name}: max |Δlogit| {ev:.2e}, top-1 differs at {t1}",
                format.name()
            );
            assert!(
                ev < bound,
                "{path:?} {}: {name}: max error {ev} ≥ {bound}",
                format.name()
            );
        }
    }
}

/// gate and up as two products and a SwiGLU dispatch (`GpuOptions::no_fused_mlp`), the path of
/// a GPU that cannot bind the interleaved matrix (the real gate/up at f16 need 272 MB): the
/// same bounds against transformers as the fused path, in prefill chunks and decode steps.
#[test]
fn logits_with_gate_and_up_unfused() {
    use bca::gpu::{GpuContext, GpuOptions};
    for (force_f32, format, bound, chunk) in [
        (true, WeightFormat::F16, 1e-3, 7),
        (true, WeightFormat::F16, 1e-3, 1),
        (false, WeightFormat::Q4, 1.5e-1, 1),
    ] {
        let c = pollster::block_on(GpuContext::new(&GpuOptions {
            force_f32,
            no_fused_mlp: true,
            ..Default::default()
        }))
        .expect("context");
        for (name, ev, _, t1) in run_on(&c, format, chunk) {
            eprintln!(
                "unfused f32 {force_f32} {} chunk {chunk} {name}: max |Δlogit| {ev:.2e}, top-1 differs at {t1}",
                format.name()
            );
            assert!(
                ev < bound,
                "{}: {name}: max error {ev} ≥ {bound}",
                format.name()
            );
            if force_f32 {
                assert_eq!(t1, 0, "{name}: top-1 differs at {t1} positions");
            }
        }
    }
}

/// A decode step defers its RMSNorms into the products after them on this device (o_proj →
/// gate/up, down → the next W_pack; the audio head's linear2 → in_proj and the classifier):
/// the shapes of the tiny checkpoint take the deferred kernels (one dispatch fewer each), whose
/// values logits_bounds_f16_q8_q4 (chunk 1) and audio_head_matches_numpy_reference (q8) check
/// against the goldens.
#[test]
fn decode_steps_defer_their_norms() {
    use bca::selftest::{gemv_defer_case, DeferNext};
    let c = ctx(GpuPath::F16);
    let w = Weights::open(&tiny(Variant::Instruct), WeightFormat::Q4).expect("open");
    let llm = Llm::load(c, &w).expect("load");
    let (h, inter) = (llm.dims.hidden, llm.dims.inter);
    for (shape, next) in [
        ((h, h, inter), DeferNext::SwiGluXq),
        ((h, inter, 0), DeferNext::Rope(2, 1, 32)),
        ((h, 2 * h, 96), DeferNext::Plain),
    ] {
        let r = pollster::block_on(gemv_defer_case(c, WeightFormat::Q4, shape, next, true, 3))
            .expect("case");
        assert!(r.ok(), "{shape:?} {next:?}: {r}");
    }
}

/// Prefill of the prompt then 32 greedy one-token steps: the same ids as transformers.
#[test]
fn greedy_continuation_matches_transformers() {
    let c = ctx(GpuPath::F32);
    let w = Weights::open(&tiny(Variant::Instruct), WeightFormat::F16).expect("open");
    let llm = Llm::load(c, &w).expect("load");
    for case in golden()["cases"].as_array().unwrap() {
        let want = u32s(&case["greedy"]);
        let mut s = Session::new(c, &llm, 256, 8).expect("session");
        s.feed(c, &llm, &inputs(case)).expect("feed");
        let mut got = Vec::new();
        for i in 0..want.len() {
            let lg = pollster::block_on(s.read_logits(c, &llm)).expect("read");
            let id = argmax(&lg);
            got.push(id);
            if i + 1 < want.len() {
                s.step(c, &llm, Input::Text(id)).expect("step");
            }
        }
        assert_eq!(got, want, "{}", case["name"]);
    }
}

/// Chunked prefill with the last position as a decode step leaves the same cache as feeding
/// every position one by one: the next token's logits agree.
#[test]
fn chunked_prefill_equals_token_steps() {
    let c = ctx(GpuPath::F32);
    let w = Weights::open(&tiny(Variant::Instruct), WeightFormat::F16).expect("open");
    let llm = Llm::load(c, &w).expect("load");
    let g = golden();
    let inp = inputs(&g["cases"][2]);
    let mut a = Session::new(c, &llm, 64, 4).expect("session");
    a.feed(c, &llm, &inp).expect("feed");
    a.step(c, &llm, Input::Text(872)).expect("step");
    let la = pollster::block_on(a.read_logits(c, &llm)).unwrap();
    let mut b = Session::new(c, &llm, 64, 1).expect("session");
    for i in &inp {
        b.step(c, &llm, *i).expect("step");
    }
    b.step(c, &llm, Input::Text(872)).expect("step");
    let lb = pollster::block_on(b.read_logits(c, &llm)).unwrap();
    let err = la
        .iter()
        .zip(&lb)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(err < 1e-5, "chunked vs stepwise: {err}");
    assert_eq!(a.len, inp.len() + 1);
}

#[test]
fn session_input_errors() {
    let c = ctx(GpuPath::F32);
    let w = Weights::open(&tiny(Variant::Instruct), WeightFormat::F16).expect("open");
    let llm = Llm::load(c, &w).expect("load");
    assert!(
        Session::new(c, &llm, 9000, 8).is_err(),
        "past max_position_embeddings"
    );
    let mut s = Session::new(c, &llm, 4, 8).expect("session");
    let e = s
        .feed(c, &llm, &[Input::Text(1); 5])
        .unwrap_err()
        .to_string();
    assert!(e.contains("context length"), "{e}");
    let e = s
        .feed(c, &llm, &[Input::Text(152064)])
        .unwrap_err()
        .to_string();
    assert!(e.contains("outside the vocabulary"), "{e}");
    let e = s
        .feed(c, &llm, &[Input::Text(151678)])
        .unwrap_err()
        .to_string();
    assert!(e.contains("audio codes"), "{e}");
    let e = s
        .feed(c, &llm, &[Input::Audio([65, 0, 0, 0, 0, 0, 0, 0])])
        .unwrap_err()
        .to_string();
    assert!(e.contains("codebook 0"), "{e}");
    let e = s.feed(c, &llm, &[]).unwrap_err().to_string();
    assert!(e.contains("no input"), "{e}");
    assert_eq!(s.len, 0, "failed feeds leave the session untouched");
}

/// The audio head (spec §6) and the hidden state it reads, against the NumPy reference written
/// from the spec (scripts/goldens/llm.py, float64): step i's logits of codebook i.
#[test]
fn audio_head_matches_numpy_reference() {
    use bca::model::llm::head::{AudioHead, HeadState};
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/goldens/llm/head.json");
    let g: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p).expect("golden")).expect("json");
    for (path, format, tol_h, tol_l) in [
        (GpuPath::F32, WeightFormat::F16, 2e-4, 1e-3),
        (GpuPath::F16, WeightFormat::F16, 2e-2, 2e-2),
        (GpuPath::F16, WeightFormat::Q8, 5e-2, 5e-2),
    ] {
        let c = ctx(path);
        let w = Weights::open(&tiny(Variant::Instruct), format).expect("open");
        let llm = Llm::load(c, &w).expect("load");
        let head = AudioHead::load(c, &w, &llm).expect("head");
        let mut st = HeadState::new(c, &head).expect("state");
        for case in g["cases"].as_array().unwrap() {
            let mut case_in = case.clone();
            case_in["codes"] = case["codes_in"].clone();
            let mut s = Session::new(c, &llm, 128, 16).expect("session");
            s.feed(c, &llm, &inputs(&case_in)).expect("feed");
            let hid = pollster::block_on(s.hidden.to_vec(c)).unwrap();
            let eh = hid
                .iter()
                .zip(f64s(&case["hidden"]))
                .map(|(a, b)| (*a as f64 - b).abs())
                .fold(0f64, f64::max);
            let codes = u32s(&case["codes"]);
            let mut el = 0f64;
            for i in 0..8 {
                st.step(c, &head, &llm, &s.hidden, &codes, i)
                    .expect("head step");
                let got = pollster::block_on(st.logits[i].to_vec(c)).unwrap();
                let want = f64s(&case["logits"][i]);
                assert_eq!(got.len(), want.len(), "codebook {i} classes");
                for (a, b) in got.iter().zip(&want) {
                    el = el.max((*a as f64 - b).abs());
                }
            }
            eprintln!(
                "{path:?} {} head {}: hidden Δ {eh:.2e}, logits Δ {el:.2e}",
                format.name(),
                case["name"]
            );
            assert!(eh < tol_h, "hidden state off by {eh}");
            assert!(el < tol_l, "audio head logits off by {el}");
        }
    }
}

/// `rope_kv` over a prefill chunk (T tokens at positions pos..pos+T) against the reference
/// RoPE + append, on every path, ragged shapes included.
#[test]
fn rope_kv_chunk_all_paths() {
    for path in common::PATHS {
        for (i, &(shape, t, tmax, pos)) in [
            ((4usize, 2usize, 16usize), 5usize, 40usize, 3usize),
            ((28, 4, 128), 9, 64, 50),
            ((6, 3, 6), 7, 20, 0),
            ((2, 2, 64), 33, 5000, 4000),
        ]
        .iter()
        .enumerate()
        {
            common::assert_ok(
                &format!("{path:?} rope_kv chunk {shape:?} T {t} pos {pos}"),
                pollster::block_on(bca::selftest::rope_kv_chunk_case(
                    ctx(path),
                    shape,
                    t,
                    tmax,
                    pos,
                    90 + i as u64,
                )),
            );
        }
    }
}

/// The audio head's per-position FFN blocks (column slices of linear1/linear2) from a matrix
/// stored in row parts, as a converted checkpoint stores the real q8 and f16 FFN matrices in
/// 128 MiB bindings: the same bytes as the blocks of the matrix in one part, in every format,
/// with ragged parts; parts that are not contiguous, or of different widths, are refused.
#[test]
fn audio_head_blocks_from_row_parts() {
    use bca::model::llm::head::column_block;
    use bca::model::weights::MatrixPart;
    use bca::tensor::Matrix;
    let c = ctx(GpuPath::F32);
    let bytes = |m: &Matrix| -> Vec<u8> {
        let read = |b: &wgpu::Buffer| {
            pollster::block_on(bca::gpu::read_buffer(c, b, 0, b.size())).unwrap()
        };
        match m {
            Matrix::F16 { buf, .. } => read(buf),
            Matrix::Q8 { data, scales, .. } | Matrix::Q4 { data, scales, .. } => {
                [read(data), read(scales)].concat()
            }
        }
    };
    let (rows, cols) = (37, 8 * 64);
    let mut rng = bca::util::rng::Rng::new(77);
    let data = rng.normal_vec(rows * cols, 0.5);
    for fmt in [WeightFormat::F16, WeightFormat::Q8, WeightFormat::Q4] {
        let whole = [MatrixPart {
            row_start: 0,
            matrix: Matrix::from_f32(c, "whole", rows, cols, &data, fmt),
        }];
        let parts: Vec<MatrixPart> = [(0, 10), (10, 25), (25, 37)]
            .iter()
            .map(|&(r0, r1)| MatrixPart {
                row_start: r0,
                matrix: Matrix::from_f32(
                    c,
                    "part",
                    r1 - r0,
                    cols,
                    &data[r0 * cols..r1 * cols],
                    fmt,
                ),
            })
            .collect();
        for i in [0, 3, 7] {
            let a = column_block(c, "block", &whole, i * 64, 64).unwrap();
            let b = column_block(c, "block", &parts, i * 64, 64).unwrap();
            assert_eq!((b.rows(), b.cols()), (rows, 64));
            assert_eq!(bytes(&a), bytes(&b), "{fmt:?} block {i}");
        }
        let gap = [
            MatrixPart {
                row_start: 0,
                matrix: parts[0].matrix.clone(),
            },
            MatrixPart {
                row_start: 25,
                matrix: parts[2].matrix.clone(),
            },
        ];
        let e = match column_block(c, "block", &gap, 0, 64) {
            Ok(_) => panic!("{fmt:?}: a gap between parts was taken"),
            Err(e) => e.to_string(),
        };
        assert!(e.contains("not contiguous"), "{e}");
    }
}
