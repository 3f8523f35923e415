//! Sampling (spec §10.3): the CPU processors against transformers' logits processors
//! (scripts/goldens/sampling.py), and the GPU path (penalty + top-k on the GPU, temperature,
//! top-p and the draw on the CPU) against the CPU reference: the same ids for the same seeds.

mod common;

use bca::model::llm::sample::{draw, process_reference, GpuSampler, SamplingParams};
use bca::tensor::Tensor;
use bca::util::rng::Rng;
use common::{ctx, Path as GpuPath};

fn cases() -> Vec<serde_json::Value> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/goldens/sampling/processors.json");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p).expect("golden")).expect("json");
    v["cases"].as_array().unwrap().clone()
}

fn params(c: &serde_json::Value) -> SamplingParams {
    SamplingParams {
        temperature: c["temperature"].as_f64().unwrap() as f32,
        top_k: c["top_k"].as_u64().unwrap() as usize,
        top_p: c["top_p"].as_f64().unwrap() as f32,
        repetition_penalty: c["repetition_penalty"].as_f64().unwrap() as f32,
    }
}

fn logits(c: &serde_json::Value) -> Vec<f32> {
    c["logits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn history(c: &serde_json::Value) -> Vec<u32> {
    c["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn processors_match_transformers() {
    let cs = cases();
    assert!(cs.len() >= 20);
    for (n, c) in cs.iter().enumerate() {
        let got = process_reference(&logits(c), &history(c), &params(c));
        let want = c["processed"].as_array().unwrap();
        assert_eq!(got.len(), want.len());
        let mut kept = 0;
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            match w.as_f64() {
                None => assert!(
                    g.is_infinite() && *g < 0.0,
                    "case {n} id {i}: kept {g}, HF removed it"
                ),
                Some(w) => {
                    kept += 1;
                    assert!(
                        (*g as f64 - w).abs() <= 1e-5 * (1.0 + w.abs()),
                        "case {n} id {i}: {g} vs {w}"
                    );
                }
            }
        }
        assert!(kept >= 1);
    }
}

/// GPU top-k path vs the full CPU reference: the same candidates and therefore the same id
/// for the same uniform draws (both draw in descending-score order).
#[test]
fn gpu_sampler_matches_reference_draws() {
    let c = ctx(GpuPath::F32);
    let mut checked = 0;
    let mut diverse = 0;
    for (n, case) in cases().iter().enumerate() {
        let p = params(case);
        if p.top_k == 0 {
            continue; // the GPU path falls back to the reference itself
        }
        let l = logits(case);
        let h = history(case);
        let s = GpuSampler::new(c, l.len(), 1, 64);
        let mut seen = std::collections::HashSet::new();
        for seed in 0..12u64 {
            let t = Tensor::from_f32(c, "logits", &[l.len()], &l);
            let mut r1 = Rng::new(seed * 31 + n as u64);
            let mut r2 = Rng::new(seed * 31 + n as u64);
            let got = pollster::block_on(s.sample(c, &[(0, &t)], &h, &p, &mut r1)).expect("sample");
            let scores = process_reference(&l, &h, &p);
            let ids: Vec<u32> = (0..l.len() as u32).collect();
            let want = draw(&ids, &scores, &mut r2);
            assert_eq!(got, want, "case {n} seed {seed}");
            seen.insert(got);
            checked += 1;
        }
        diverse += usize::from(seen.len() > 1);
    }
    assert!(checked > 100);
    // the draws must actually vary, or equal ids would prove little
    assert!(diverse >= 8, "only {diverse} cases drew more than one id");
}

fn views(t: &[(usize, Tensor)]) -> Vec<(usize, &Tensor)> {
    t.iter().map(|(r0, t)| (*r0, t)).collect()
}

/// `GpuSampler::submit_draw` (penalty, top-k and the draw on the GPU, the id left in the
/// GPU-side history) against `GpuSampler::sample` (the draw on the CPU, the parts' candidates
/// merged there) on the golden cases, the logits whole and in three parts:
/// the same id, the RNG left in the same state, the id written at its position in the history,
/// and a second draw in flight (the next position) reading the first id as history.
#[test]
fn gpu_text_draw_matches_the_cpu_draw() {
    let c = ctx(GpuPath::F32);
    let (mut checked, mut diverse) = (0, 0);
    for (n, case) in cases().iter().enumerate() {
        let p = params(case);
        if p.gpu_k().is_none() {
            continue; // all logits to the CPU: no GPU draw
        }
        let l = logits(case);
        let h = history(case);
        // the logits as one tensor, and in three row parts (ragged), as an LM head too large
        // for one binding is stored
        for nparts in [1, 3] {
            let rows = l.len().div_ceil(nparts);
            let s = GpuSampler::new(c, rows, nparts, 64);
            assert!(s.draws_on_gpu(nparts, &p, h.len()) && !s.draws_on_gpu(nparts + 1, &p, 0));
            assert!(
                !s.draws_on_gpu(nparts, &p, 64),
                "the history has no room past 63 ids"
            );
            let split = |name: &str| -> Vec<(usize, Tensor)> {
                (0..l.len())
                    .step_by(rows)
                    .map(|r0| {
                        let r1 = (r0 + rows).min(l.len());
                        (r0, Tensor::from_f32(c, name, &[r1 - r0], &l[r0..r1]))
                    })
                    .collect()
            };
            let mut seen = std::collections::HashSet::new();
            for seed in 0..8u64 {
                let what = format!("case {n} seed {seed} in {nparts} parts");
                let (mut r1, mut r2) =
                    (Rng::new(seed * 7 + n as u64), Rng::new(seed * 7 + n as u64));
                let t = split("logits");
                let want = pollster::block_on(s.sample(c, &views(&t), &h, &p, &mut r1)).unwrap();
                // the sample's penalty worked on t in place: draw from fresh logits
                let t = split("logits");
                s.load_history(c, &h).unwrap();
                let f = s.submit_draw(c, &views(&t), h.len(), &p, &mut r2).unwrap();
                // the next draw is submitted before this one is read, as the pipelined loop
                // does
                let t2 = split("logits2");
                let f2 = s
                    .submit_draw(c, &views(&t2), h.len() + 1, &p, &mut r2)
                    .unwrap();
                let got = pollster::block_on(s.read_draw(c, &f)).unwrap();
                assert_eq!(got, want, "{what}");
                assert_eq!(f.pos(), h.len());
                let got2 = pollster::block_on(s.read_draw(c, &f2)).unwrap();
                // (before `sample` below, which writes the history buffer its own way)
                let hist = pollster::block_on(bca::gpu::read_buffer(
                    c,
                    s.history(),
                    0,
                    4 * (h.len() as u64 + 2),
                ))
                .unwrap();
                let hist: Vec<u32> = bytemuck::pod_collect_to_vec(&hist);
                assert_eq!(&hist[..h.len()], &h[..]);
                assert_eq!(&hist[h.len()..], &[got, got2]);
                // the second draw's history held the first id
                let mut h2 = h.clone();
                h2.push(got);
                let mut r3 = f2.rng_before().clone();
                let t3 = split("logits3");
                let want2 = pollster::block_on(s.sample(c, &views(&t3), &h2, &p, &mut r3)).unwrap();
                assert_eq!(got2, want2, "{what}: the draw after");
                assert_eq!(r1.clone().next_u64(), f2.rng_before().clone().next_u64());
                assert_eq!(r3.next_u64(), r2.clone().next_u64(), "{what}: RNG");
                seen.insert(got);
                checked += 1;
            }
            diverse += usize::from(seen.len() > 1);
        }
    }
    assert!(checked > 200, "{checked} draws");
    assert!(diverse >= 16, "only {diverse} cases drew more than one id");
}

/// Greedy = argmax after the penalty; logits split in two parts give the same ids.
#[test]
fn greedy_and_split_parts() {
    let c = ctx(GpuPath::F32);
    let mut rng = Rng::new(5);
    for _ in 0..6 {
        let l = rng.normal_vec(3000, 2.0);
        let h: Vec<u32> = (0..20).map(|_| rng.below(3000) as u32).collect();
        let p = SamplingParams::greedy(1.3);
        let s = GpuSampler::new(c, 3000, 2, 64);
        let whole = Tensor::from_f32(c, "l", &[3000], &l);
        let a = Tensor::from_f32(c, "a", &[1700], &l[..1700]);
        let b = Tensor::from_f32(c, "b", &[1300], &l[1700..]);
        let got1 = pollster::block_on(s.sample(c, &[(0, &whole)], &h, &p, &mut rng)).unwrap();
        let got2 =
            pollster::block_on(s.sample(c, &[(0, &a), (1700, &b)], &h, &p, &mut rng)).unwrap();
        let pen = bca::reference::sampling::repetition_penalty(&l, &h, 1.3);
        let want = bca::reference::sampling::argmax(&pen).0 as u32;
        assert_eq!(got1, want);
        assert_eq!(got2, want);
        // sampled with top-k across the split
        let ps = SamplingParams::AUDIO;
        let mut r1 = Rng::new(9);
        let mut r2 = Rng::new(9);
        let t1 = Tensor::from_f32(c, "l", &[3000], &l);
        let a = Tensor::from_f32(c, "a", &[1700], &l[..1700]);
        let b = Tensor::from_f32(c, "b", &[1300], &l[1700..]);
        let x = pollster::block_on(s.sample(c, &[(0, &t1)], &h, &ps, &mut r1)).unwrap();
        let y = pollster::block_on(s.sample(c, &[(0, &a), (1700, &b)], &h, &ps, &mut r2)).unwrap();
        assert_eq!(x, y);
    }
    assert!(SamplingParams {
        top_p: 0.0,
        ..SamplingParams::AUDIO
    }
    .validate()
    .is_err());
}

/// `sample_draw` (temperature, top-p and the draw on the GPU) against the CPU's
/// `sample_candidates` on seeded random sorted candidates, with the same uniform: the same id
/// in every case (k 1–64, greedy and sampled temperatures, top-p on and off). Exact ties only
/// without top-p: at a top-p cut a tie is decided below f32 rounding (GPU, like torch, in f32;
/// the CPU path in f64), see shaders/sampling/sample_draw.wgsl.
#[test]
fn gpu_draw_matches_cpu_candidates() {
    use bca::model::llm::sample::sample_candidates;
    let c = ctx(GpuPath::F32);
    let mut rng = Rng::new(77);
    let vals_buf = c.storage("draw.vals", 64 * 4);
    let idx_buf = c.storage("draw.idx", 64 * 4);
    let out = c.storage("draw.out", 8 * 4);
    let mut n = 0;
    for &k in &[1usize, 2, 3, 5, 20, 64] {
        for &t in &[0.0f32, 0.3, 0.8, 1.5] {
            for &top_p in &[1.0f32, 0.85, 0.5] {
                for rep in 0..6 {
                    // sorted descending, ties to the lower id (as topk delivers them)
                    let mut v: Vec<f32> = (0..k).map(|_| rng.normal() * 3.0).collect();
                    if rep == 0 && k > 2 && top_p == 1.0 {
                        v[2] = v[1]; // a tie
                    }
                    v.sort_by(|a, b| b.partial_cmp(a).unwrap());
                    let mut ids: Vec<u32> = (0..k).map(|_| rng.below(1000) as u32).collect();
                    ids.sort();
                    ids.dedup();
                    if ids.len() < k {
                        continue;
                    }
                    let cands: Vec<(u32, f32)> =
                        ids.iter().copied().zip(v.iter().copied()).collect();
                    let p = SamplingParams {
                        temperature: t,
                        top_k: k,
                        top_p,
                        repetition_penalty: 1.0,
                    };
                    let mut cpu_rng = rng.clone();
                    let u = rng.clone().f64();
                    let want = sample_candidates(&cands, &p, &mut cpu_rng);
                    rng.f64();
                    c.queue.write_buffer(&vals_buf, 0, bytemuck::cast_slice(&v));
                    c.queue
                        .write_buffer(&idx_buf, 0, bytemuck::cast_slice(&ids));
                    let slot = (n % 8) as usize;
                    let mut rec = bca::gpu::Recorder::new(c, "draw");
                    bca::ops::sample_draw(
                        &mut rec,
                        &vals_buf,
                        &idx_buf,
                        k,
                        (t, top_p, u),
                        &out,
                        slot,
                    )
                    .unwrap();
                    rec.submit().unwrap();
                    let got =
                        pollster::block_on(bca::gpu::read_buffer(c, &out, slot as u64 * 4, 4))
                            .unwrap();
                    let got = u32::from_le_bytes([got[0], got[1], got[2], got[3]]);
                    assert_eq!(got, want, "k {k} T {t} top-p {top_p} u {u}: {cands:?}");
                    n += 1;
                }
            }
        }
    }
    assert!(n > 300, "only {n} cases ran");
    // bad parameters are typed errors
    let mut rec = bca::gpu::Recorder::new(c, "draw");
    assert!(
        bca::ops::sample_draw(&mut rec, &vals_buf, &idx_buf, 65, (0.5, 1.0, 0.5), &out, 0).is_err()
    );
    assert!(
        bca::ops::sample_draw(&mut rec, &vals_buf, &idx_buf, 5, (0.5, 0.0, 0.5), &out, 0).is_err()
    );
    assert!(
        bca::ops::sample_draw(&mut rec, &vals_buf, &idx_buf, 5, (0.5, 1.0, 0.5), &out, 8).is_err()
    );
}

/// `topk_draw` (the draw in the pass that finishes the top-k) against `topk` then
/// `sample_draw`: the same id, the same top-k left in the buffers, one dispatch fewer. Logits
/// of one slice (300, 2048) and of several (2049, 8193, 152064: the merge pass draws), k 1–64,
/// greedy and sampled, top-p on and off, f16 and f32 activations.
#[test]
fn gpu_topk_draw_matches_topk_then_draw() {
    for path in [GpuPath::F16, GpuPath::F32] {
        let c = ctx(path);
        let mut rng = Rng::new(91);
        let scratch = bca::ops::TopkScratch::new(c, 152064);
        let (v1, i1, v2, i2) = (
            c.storage("v1", 256),
            c.storage("i1", 256),
            c.storage("v2", 256),
            c.storage("i2", 256),
        );
        let out = c.storage("out", 4 * 4);
        let mut n = 0;
        for &len in &[300usize, 2048, 2049, 8193, 152064] {
            let x: Vec<f32> = (0..len).map(|_| rng.normal() * 2.0).collect();
            let xt = bca::tensor::Tensor::from_f32(c, "logits", &[len], &x);
            for &(k, t, top_p) in &[
                (1usize, 0.7f32, 1.0f32),
                (5, 0.0, 1.0),
                (20, 0.8, 0.85),
                (64, 1.2, 0.5),
            ] {
                let u = rng.f64();
                let mut rec = bca::gpu::Recorder::new(c, "topk+draw");
                bca::ops::topk(&mut rec, &xt, k, &scratch, &v1, &i1).unwrap();
                bca::ops::sample_draw(&mut rec, &v1, &i1, k, (t, top_p, u), &out, 1).unwrap();
                let separate = rec.dispatches();
                bca::ops::topk_draw(
                    &mut rec,
                    &xt,
                    k,
                    &scratch,
                    (&v2, &i2),
                    (t, top_p, u),
                    &out,
                    2,
                )
                .unwrap();
                assert_eq!(
                    rec.dispatches() - separate + 1,
                    separate,
                    "one dispatch fewer"
                );
                rec.submit().unwrap();
                let read = |b: &bca::wgpu::Buffer, off: u64, len: u64| {
                    pollster::block_on(bca::gpu::read_buffer(c, b, off, len)).unwrap()
                };
                let ids = read(&out, 4, 8);
                assert_eq!(
                    ids[..4],
                    ids[4..],
                    "{path:?} N {len} k {k} T {t} top-p {top_p} u {u}"
                );
                let kb = (k * 4) as u64;
                assert_eq!(read(&v1, 0, kb), read(&v2, 0, kb));
                assert_eq!(read(&i1, 0, kb), read(&i2, 0, kb));
                n += 1;
            }
        }
        assert_eq!(n, 20);
        // bad draw parameters are typed errors
        let xt = bca::tensor::Tensor::from_f32(c, "logits", &[10], &[0.5; 10]);
        let mut rec = bca::gpu::Recorder::new(c, "bad");
        assert!(bca::ops::topk_draw(
            &mut rec,
            &xt,
            5,
            &scratch,
            (&v2, &i2),
            (0.5, 0.0, 0.5),
            &out,
            0
        )
        .is_err());
        assert!(bca::ops::topk_draw(
            &mut rec,
            &xt,
            5,
            &scratch,
            (&v2, &i2),
            (0.5, 1.0, 0.5),
            &out,
            4
        )
        .is_err());
    }
}
