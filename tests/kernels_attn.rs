//! Attention kernels on the native adapter (Mesa lavapipe in CI): kv_append, attn_decode,
//! attn_prefill, attn_varlen and attn_chunk_causal against the dense f64 reference, on the
//! f16 path (with and without subgroups: these kernels have no subgroup variant, so both must
//! agree) and the portable f32 path, plus typed shape errors for every op.

mod common;
use common::{assert_ok, ctx, Path, PATHS};

use bca::gpu::{GpuContext, GpuOptions, Recorder};
use bca::ops::{self, KvCache, OpError};
use bca::selftest::attention as st;
use bca::tensor::Tensor;

/// LLM (GQA 7), encoder-like (no GQA), and a ragged odd head dim.
const LLM: (usize, usize, usize) = (28, 4, 128);
const ENC: (usize, usize, usize) = (20, 20, 64);
const ODD: (usize, usize, usize) = (6, 2, 20);

#[test]
fn kv_append_all_paths() {
    for path in PATHS {
        let c = ctx(path);
        for (i, &((h, d), tmax, t, p0)) in [
            ((4, 128), 50, 7, 0),
            ((4, 128), 50, 1, 49),
            ((3, 20), 33, 13, 20),
            ((20, 64), 300, 257, 1),
        ]
        .iter()
        .enumerate()
        {
            assert_ok(
                &format!("{path:?} kv_append h={h} d={d} tmax={tmax} t={t} p0={p0}"),
                pollster::block_on(st::kv_append_case(c, (h, d), tmax, t, p0, 10 + i as u64)),
            );
        }
    }
}

#[test]
fn attn_decode_all_paths() {
    for path in PATHS {
        let c = ctx(path);
        for (hs, lens) in [
            (LLM, &[1usize, 7, 64, 65, 100, 1000, 4099][..]),
            (ENC, &[1, 7, 100, 1000, 4099][..]),
            (ODD, &[1, 255, 256, 257, 513][..]),
            // head dim not a multiple of 4: the per-query-head kernel (attn_decode.wgsl)
            ((6, 3, 18), &[1, 65, 300][..]),
        ] {
            for (i, &len) in lens.iter().enumerate() {
                assert_ok(
                    &format!("{path:?} attn_decode heads {hs:?} L={len}"),
                    pollster::block_on(st::attn_decode_case(c, hs, len, 100 + i as u64)),
                );
            }
        }
    }
}

/// Over 1024 splits of 64 keys, the combine pass takes its splits in two passes and rescales
/// the first (the second pass's keys are larger): the GQA kernel (head dim 4) and the
/// per-query-head one (head dim 6).
#[test]
fn attn_decode_combine_passes() {
    for path in PATHS {
        let c = ctx(path);
        for hs in [(2, 1, 4), (2, 1, 6)] {
            assert_ok(
                &format!("{path:?} attn_decode heads {hs:?} L=70000"),
                pollster::block_on(st::attn_decode_long_case(c, hs, 70_000, 140)),
            );
        }
    }
}

/// The decode attention's kernels fit the 16 KiB of workgroup memory the engine asks of a device
/// (`GpuContext` refuses less; lavapipe and the H100 offer more, so running them would not tell):
/// every entry, split length and output mode, both activation dtypes, sized by naga.
#[test]
fn decode_kernels_fit_16k_of_workgroup_memory() {
    use bca::gpu::{ActDType, KernelKey};
    use bca::wgpu::naga;
    let mut keys = Vec::new();
    for ch in [32u32, 64] {
        for (xq, entry) in [0u32, 1]
            .into_iter()
            .flat_map(|x| [(x, "attn_decode_gqa"), (x, "attn_decode_gqa_sg")])
        {
            keys.push((
                "attn_decode_gqa",
                entry,
                vec![
                    ("G", 7),
                    ("D", 128),
                    ("CH", ch),
                    ("XQ", xq),
                    ("TM", 4096),
                    ("HKV", 4),
                ],
            ));
        }
    }
    keys.push(("attn_decode", "attn_decode", vec![("G", 7), ("D", 128)]));
    for xq in [0u32, 1] {
        keys.push((
            "attn_decode",
            "attn_decode_combine",
            vec![("G", 7), ("D", 128), ("XQ", xq)],
        ));
        for nk in [256, 384] {
            keys.push((
                "attn_decode_head",
                "attn_decode_head",
                vec![("G", 7), ("XQ", xq), ("TM", 4096), ("HKV", 4), ("NK", nk)],
            ));
        }
    }
    for act in [ActDType::F16, ActDType::F32] {
        for (family, entry, constants) in &keys {
            let key = KernelKey {
                family,
                entry,
                act,
                subgroups: *family == "attn_decode_head" || entry.ends_with("_sg"),
                constants: constants.clone(),
            };
            let (m, i) = common::specialised(&key);
            let ep = m
                .entry_points
                .iter()
                .position(|e| e.name == *entry)
                .expect("entry");
            let mut layouter = naga::proc::Layouter::default();
            layouter.update(m.to_ctx()).expect("layout");
            let bytes: u32 = m
                .global_variables
                .iter()
                .filter(|(h, g)| {
                    g.space == naga::AddressSpace::WorkGroup
                        && !i.get_entry_point(ep)[*h].is_empty()
                })
                .map(|(_, g)| layouter[g.ty].size)
                .sum();
            assert!(
                bytes > 0 && bytes <= 16384,
                "{key} ({act:?}): {bytes} bytes of workgroup memory"
            );
        }
    }
}

/// The GQA decode kernel with either split forced (`--attn-decode-keys`; by default 32 keys up
/// to 1024, 64 beyond): 32-key splits (8 invocations per key, twice the workgroups) and 64-key
/// ones at short lengths; lengths inside one split, at and past its end, ragged and long, head
/// dims 128 and 64 and 20, on both numeric paths.
#[test]
fn attn_decode_forced_splits() {
    for (keys, f32) in [(32, false), (32, true), (64, false), (64, true)] {
        let c = pollster::block_on(GpuContext::new(&GpuOptions {
            attn_decode_keys: Some(keys),
            force_f32: f32,
            no_subgroups: f32,
            ..Default::default()
        }))
        .expect("GPU adapter");
        for (hs, lens) in [
            (LLM, &[1usize, 31, 32, 33, 100, 1000, 4099][..]),
            (ENC, &[7, 65][..]),
            (ODD, &[1, 257][..]),
            ((16, 2, 128), &[8][..]),
        ] {
            for (i, &len) in lens.iter().enumerate() {
                assert_ok(
                    &format!("f32 {f32} {keys}-key splits heads {hs:?} L={len}"),
                    pollster::block_on(st::attn_decode_case(&c, hs, len, 900 + i as u64)),
                );
            }
        }
    }
}

/// The decode attention's int8 output (`attn_decode_xq`): one split (written by the GQA pass)
/// and several (by the combine pass), 32- and 64-key splits (the latter forced, so short
/// lengths take it too), G = 7, 1 and 2, on the f16 path and the f32 path; the next product must not tell it from quantising the output itself.
#[test]
fn attn_decode_int8_output() {
    let long = pollster::block_on(GpuContext::new(&GpuOptions {
        attn_decode_keys: Some(64),
        ..Default::default()
    }))
    .expect("GPU adapter");
    let contexts = PATHS
        .iter()
        .map(|&p| (format!("{p:?}"), ctx(p)))
        .chain(std::iter::once(("64-key splits".to_string(), &long)));
    for (path, c) in contexts {
        assert!(c.int8);
        for (hs, lens) in [
            (LLM, &[1usize, 7, 32, 33, 100, 600][..]),
            ((4, 4, 128), &[3, 70][..]),
            ((8, 4, 64), &[1, 65][..]),
        ] {
            for (i, &len) in lens.iter().enumerate() {
                assert_ok(
                    &format!("{path} attn_decode_xq heads {hs:?} L={len}"),
                    pollster::block_on(st::attn_decode_xq_case(c, hs, len, 1200 + i as u64)),
                );
            }
        }
    }
}

#[test]
fn attn_prefill_all_paths() {
    for path in PATHS {
        let c = ctx(path);
        for (hs, p0, tq) in [
            (LLM, 0, 1),
            (LLM, 0, 5),
            (LLM, 0, 33),
            (LLM, 37, 1),
            (LLM, 37, 5),
            (LLM, 37, 33),
            ((14, 2, 128), 0, 130),
            ((14, 2, 128), 261, 130),
            (ENC, 3, 17),
            (ODD, 9, 11),
        ] {
            assert_ok(
                &format!("{path:?} attn_prefill heads {hs:?} p0={p0} tq={tq}"),
                pollster::block_on(st::attn_prefill_case(
                    c,
                    hs,
                    p0,
                    tq,
                    (p0 * 1000 + tq) as u64,
                )),
            );
        }
    }
}

#[test]
fn attn_varlen_all_paths() {
    for path in PATHS {
        let c = ctx(path);
        for (i, (hs, lens)) in [
            (ENC, &[7usize][..]),
            (ENC, &[3, 50, 1][..]),
            ((16, 16, 64), &[150, 149][..]),
            (ODD, &[5, 0, 9, 1][..]),
            ((8, 2, 64), &[100, 100, 33][..]),
            // head dim 128: attn_tiled (≤ 64 takes attn_rows)
            ((4, 2, 128), &[70, 3][..]),
        ]
        .iter()
        .enumerate()
        {
            assert_ok(
                &format!("{path:?} attn_varlen heads {hs:?} lens {lens:?}"),
                pollster::block_on(st::attn_varlen_case(c, *hs, lens, 300 + i as u64)),
            );
        }
    }
}

#[test]
fn attn_chunk_causal_all_paths() {
    const UNET: (usize, usize, usize) = (8, 8, 64);
    for path in PATHS {
        let c = ctx(path);
        let mut cases = Vec::new();
        for t in [5, 100, 101, 250] {
            cases.push((UNET, (1, t), 100));
            cases.push((UNET, (1, t), 1));
        }
        cases.push((UNET, (1, 50), 7));
        cases.push((ODD, (1, 23), 7));
        cases.push(((16, 16, 64), (1, 37), 1));
        cases.push(((4, 4, 128), (1, 130), 50));
        // the flow's CFG pair and ragged batches: sequences must not see each other
        cases.push((UNET, (2, 101), 100));
        cases.push((UNET, (3, 23), 7));
        cases.push((ODD, (2, 19), 1));
        cases.push(((4, 4, 128), (2, 70), 50));
        for (i, &(hs, bt, chunk)) in cases.iter().enumerate() {
            assert_ok(
                &format!("{path:?} attn_chunk_causal heads {hs:?} (B, T)={bt:?} C={chunk}"),
                pollster::block_on(st::attn_chunk_causal_case(c, hs, bt, chunk, 400 + i as u64)),
            );
        }
    }
}

/// The fused-projection entries (`[q | k | v]` rows): chunk-causal with head dims 64
/// (`attn_rows`) and 128 (`attn_tiled`), one and two sequences, chunk 100 and causal; and
/// varlen (the encoder's).
#[test]
fn attn_chunk_causal_fused_qkv() {
    // the portable f16 path runs the same attention kernels as F16
    for path in [Path::F16, Path::F32] {
        let c = ctx(path);
        // the encoder's varlen mask from fused rows too: head dims 64 and 20, empty sequences
        for (i, (hd, lens)) in [((20, 64), &[37usize, 5][..]), ((3, 20), &[9, 0, 30][..])]
            .iter()
            .enumerate()
        {
            assert_ok(
                &format!("{path:?} attn_varlen_qkv (H, D)={hd:?} lens {lens:?}"),
                pollster::block_on(st::attn_varlen_qkv_case(c, *hd, lens, 470 + i as u64)),
            );
        }
        for (i, &(hd, bt, chunk)) in [
            ((8, 64), (2, 101), 100),
            ((8, 64), (1, 37), 1),
            ((2, 20), (3, 23), 7),
            ((4, 128), (2, 45), 100),
        ]
        .iter()
        .enumerate()
        {
            assert_ok(
                &format!("{path:?} attn_chunk_causal_qkv (H, D)={hd:?} (B, T)={bt:?} C={chunk}"),
                pollster::block_on(st::attn_chunk_causal_qkv_case(
                    c,
                    hd,
                    bt,
                    chunk,
                    460 + i as u64,
                )),
            );
        }
    }
}

/// `attn_rows` with forced row blocks and key-range splits (by default these small grids are
/// always split): chunk-causal, batched and varlen masks, head dims 64 and 20. Splits of a
/// block's key range leave some rows no key in a split (the chunk and sequence masks), which
/// the combine must skip.
#[test]
fn attn_rows_every_block() {
    for (rb, splits) in [(16u32, 1u32), (64, 1), (64, 3), (16, 8)] {
        let opts = GpuOptions {
            require_f16: true,
            attn_rows_block: Some(rb),
            attn_splits: Some(splits),
            ..Default::default()
        };
        let c = pollster::block_on(GpuContext::new(&opts)).expect("GPU adapter");
        for (i, &(hs, bt, chunk)) in [((8, 8, 64), (2, 101), 100), ((6, 2, 20), (3, 37), 1)]
            .iter()
            .enumerate()
        {
            assert_ok(
                &format!("rows {rb} splits {splits} attn_chunk_causal heads {hs:?} (B, T)={bt:?} C={chunk}"),
                pollster::block_on(st::attn_chunk_causal_case(
                    &c,
                    hs,
                    bt,
                    chunk,
                    480 + i as u64,
                )),
            );
        }
        assert_ok(
            &format!("rows {rb} splits {splits} attn_varlen"),
            pollster::block_on(st::attn_varlen_case(&c, (4, 4, 64), &[70, 3, 0, 90], 490)),
        );
    }
}

/// The one-pass decode attention (`attn_decode_head.wgsl`: 33 to 384 keys, head dim 128, where
/// there are subgroups) against the f64 reference and, for its int8 output, against the next
/// product's own quantisation: at the ends of its range and between, both of its pipelines
/// (256 keys loaded up to 256, 384 above), GQA 7, 4 and 1, on the f16 path and on an f32 path
/// with subgroups (the shared contexts' f32 path has none). One dispatch where it applies, two
/// past its bound, with `no_attn_one_pass` or with a split length forced.
#[test]
fn attn_decode_one_pass() {
    let f32s = pollster::block_on(GpuContext::new(&GpuOptions {
        force_f32: true,
        ..Default::default()
    }))
    .expect("GPU adapter");
    for (name, c) in [("f16", ctx(Path::F16)), ("f32", &f32s)] {
        assert!(c.caps.subgroups, "{name}: lavapipe has subgroups");
        for (hs, lens) in [
            (LLM, &[33usize, 64, 127, 200, 256, 257, 300, 384][..]),
            ((8, 2, 128), &[40, 255, 290][..]),
            ((3, 3, 128), &[100, 383][..]),
        ] {
            for (i, &len) in lens.iter().enumerate() {
                assert!(ops::decode_one_pass(c, 128, len));
                let seed = 1500 + i as u64;
                assert_ok(
                    &format!("{name} one-pass attn_decode heads {hs:?} L={len}"),
                    pollster::block_on(st::attn_decode_case(c, hs, len, seed)),
                );
                assert_ok(
                    &format!("{name} one-pass attn_decode_xq heads {hs:?} L={len}"),
                    pollster::block_on(st::attn_decode_xq_case(c, hs, len, seed)),
                );
            }
        }
    }
    let two = pollster::block_on(GpuContext::new(&GpuOptions {
        require_f16: true,
        no_attn_one_pass: true,
        ..Default::default()
    }))
    .expect("GPU adapter");
    let forced = pollster::block_on(GpuContext::new(&GpuOptions {
        require_f16: true,
        attn_decode_keys: Some(32),
        ..Default::default()
    }))
    .expect("GPU adapter");
    for (c, len, n) in [
        (ctx(Path::F16), 33, 1),
        (ctx(Path::F16), ops::ONE_PASS_MAX_KEYS, 1),
        (ctx(Path::F16), ops::ONE_PASS_MAX_KEYS + 1, 2),
        (ctx(Path::F16Portable), 100, 2),
        (&two, 100, 2),
        (&forced, 100, 2),
    ] {
        let cache = KvCache::new(c, "cache", 4, 512, 128).unwrap();
        let q = Tensor::empty(c, "q", &[28, 128]);
        let out = Tensor::empty(c, "out", &[28, 128]);
        let scratch = c.storage("s", ops::decode_scratch_bytes(28, 128, 512));
        let mut rec = Recorder::new(c, "t");
        ops::attn_decode(&mut rec, &q, &cache, len, 0.1, &scratch, &out).unwrap();
        assert_eq!(rec.dispatches(), n, "L={len}");
    }
}

#[test]
fn decode_is_two_dispatches() {
    let c = ctx(Path::F32);
    let cache = KvCache::new(c, "cache", 4, 8192, 128).unwrap();
    let q = Tensor::empty(c, "q", &[28, 128]);
    let out = Tensor::empty(c, "out", &[28, 128]);
    let scratch = c.storage("s", ops::decode_scratch_bytes(28, 128, 8192));
    let mut rec = Recorder::new(c, "t");
    ops::attn_decode(&mut rec, &q, &cache, 8192, 0.1, &scratch, &out).unwrap();
    assert_eq!(rec.dispatches(), 2);
}

fn shape_err(r: Result<(), OpError>, op: &str, needles: &[&str]) {
    match r {
        Err(OpError::Shape { op: o, detail }) => {
            assert_eq!(o, op);
            for n in needles {
                assert!(detail.contains(n), "{op}: `{detail}` lacks `{n}`");
            }
        }
        other => panic!("{op}: expected a shape error, got {other:?}"),
    }
}

#[test]
fn shape_errors_are_typed() {
    let c = ctx(Path::F32);
    let cache = KvCache::new(c, "cache", 4, 16, 8).unwrap();
    let mut rec = Recorder::new(c, "t");

    // kv_append: wrong heads, overflow, k/v mismatch
    let k = Tensor::empty(c, "k", &[3, 5, 8]);
    shape_err(
        ops::kv_append(&mut rec, &cache, &k, &k, 0),
        "kv_append",
        &["[3, 5, 8]", "(2, 4, 16, 8)"],
    );
    let k = Tensor::empty(c, "k", &[3, 4, 8]);
    shape_err(
        ops::kv_append(&mut rec, &cache, &k, &k, 14),
        "kv_append",
        &["14..17", "[3, 4, 8]", "(2, 4, 16, 8)"],
    );
    let v = Tensor::empty(c, "v", &[2, 4, 8]);
    shape_err(
        ops::kv_append(&mut rec, &cache, &k, &v, 0),
        "kv_append",
        &["[2, 4, 8]", "[3, 4, 8]"],
    );

    // attn_decode: head dim mismatch, bad GQA ratio, length past the cache, small scratch
    let scratch = c.storage("s", ops::decode_scratch_bytes(8, 8, 16));
    let q = Tensor::empty(c, "q", &[8, 6]);
    let out = Tensor::empty(c, "o", &[8, 6]);
    shape_err(
        ops::attn_decode(&mut rec, &q, &cache, 4, 1.0, &scratch, &out),
        "attn_decode",
        &["[8, 6]", "(2, 4, 16, 8)"],
    );
    let q = Tensor::empty(c, "q", &[6, 8]);
    let out = Tensor::empty(c, "o", &[6, 8]);
    shape_err(
        ops::attn_decode(&mut rec, &q, &cache, 4, 1.0, &scratch, &out),
        "attn_decode",
        &["6 query heads", "4 kv heads"],
    );
    let q = Tensor::empty(c, "q", &[8, 8]);
    let out = Tensor::empty(c, "o", &[8, 8]);
    shape_err(
        ops::attn_decode(&mut rec, &q, &cache, 17, 1.0, &scratch, &out),
        "attn_decode",
        &["17", "(2, 4, 16, 8)"],
    );
    let out2 = Tensor::empty(c, "o", &[8, 4]);
    shape_err(
        ops::attn_decode(&mut rec, &q, &cache, 4, 1.0, &scratch, &out2),
        "attn_decode",
        &["[8, 4]", "[8, 8]"],
    );
    let q36 = Tensor::empty(c, "q", &[36, 8]);
    let o36 = Tensor::empty(c, "o", &[36, 8]);
    shape_err(
        ops::attn_decode(&mut rec, &q36, &cache, 4, 1.0, &scratch, &o36),
        "attn_decode",
        &["[36, 8]", "(2, 4, 16, 8)", "9 query heads per kv head"],
    );
    let tiny = c.storage("s", 16);
    shape_err(
        ops::attn_decode(&mut rec, &q, &cache, 4, 1.0, &tiny, &out),
        "attn_decode",
        &["scratch"],
    );

    // attn_prefill: overflow and head dim mismatch
    let q = Tensor::empty(c, "q", &[5, 8, 8]);
    let out = Tensor::empty(c, "o", &[5, 8, 8]);
    shape_err(
        ops::attn_prefill(&mut rec, &q, &cache, 12, 1.0, &out),
        "attn_prefill",
        &["12..17", "[5, 8, 8]", "(2, 4, 16, 8)"],
    );
    let q2 = Tensor::empty(c, "q", &[5, 8, 16]);
    let out2 = Tensor::empty(c, "o", &[5, 8, 16]);
    shape_err(
        ops::attn_prefill(&mut rec, &q2, &cache, 0, 1.0, &out2),
        "attn_prefill",
        &["[5, 8, 16]", "(2, 4, 16, 8)"],
    );

    // attn_varlen: k rows differ from q, cu_seqlens not ending at T
    let q = Tensor::empty(c, "q", &[10, 4, 8]);
    let out = Tensor::empty(c, "o", &[10, 4, 8]);
    let k9 = Tensor::empty(c, "k", &[9, 4, 8]);
    shape_err(
        ops::attn_varlen(&mut rec, &q, &k9, &k9, &[0, 9], 1.0, &out),
        "attn_varlen",
        &["[9, 4, 8]", "[10, 4, 8]"],
    );
    let k = Tensor::empty(c, "k", &[10, 4, 8]);
    shape_err(
        ops::attn_varlen(&mut rec, &q, &k, &k, &[0, 4, 9], 1.0, &out),
        "attn_varlen",
        &["[0, 4, 9]", "[10, 4, 8]"],
    );
    shape_err(
        ops::attn_varlen(&mut rec, &q, &k, &k, &[0, 6, 4, 10], 1.0, &out),
        "attn_varlen",
        &["[0, 6, 4, 10]"],
    );

    // attn_chunk_causal: chunk 0, head dim over the limit, 3 kv heads for 4 query heads
    shape_err(
        ops::attn_chunk_causal(&mut rec, &q, &k, &k, 0, 1.0, &out),
        "attn_chunk_causal",
        &["chunk 0", "[10, 4, 8]"],
    );
    let big = Tensor::empty(c, "q", &[2, 1, 256]);
    shape_err(
        ops::attn_chunk_causal(&mut rec, &big, &big, &big, 1, 1.0, &big),
        "attn_chunk_causal",
        &["head dim 256"],
    );
    let k3 = Tensor::empty(c, "k", &[10, 3, 8]);
    shape_err(
        ops::attn_chunk_causal(&mut rec, &q, &k3, &k3, 1, 1.0, &out),
        "attn_chunk_causal",
        &["4 query heads", "3 kv heads"],
    );
    assert_eq!(rec.dispatches(), 0, "nothing is recorded for a rejected op");
}

/// Head dim 64 on tensor cores (`attn_coop.wgsl`), where the adapter has cooperative
/// matrices: varlen (empty and one-row sequences, GQA), chunk-causal single and batched,
/// plain causal, the fused-q/k/v entry and the causal prefix. Lavapipe has none: there the
/// test says so; `BCA_REQUIRE_COOP=1` (set on the lent GPU) makes that a failure.
#[test]
fn attn_coop_f16() {
    let opts = GpuOptions {
        require_f16: true,
        ..Default::default()
    };
    let Some(c) = common::coop_ctx("attn_coop_f16", &opts) else {
        return;
    };
    attn_coop_cases(&c);
    // 16 and 32 query rows per workgroup (`--attn-coop-sg`), and no prefetch
    for (sg, pf) in [(Some(1), true), (Some(2), true), (None, false)] {
        let c = pollster::block_on(GpuContext::new(&GpuOptions {
            attn_coop_sg: sg,
            no_attn_prefetch: !pf,
            ..opts.clone()
        }))
        .expect("GPU adapter");
        attn_coop_cases(&c);
    }
}

fn attn_coop_cases(c: &GpuContext) {
    for (i, (hs, lens)) in [
        (ENC, &[500usize][..]),
        (ENC, &[3, 50, 1][..]),
        ((16, 16, 64), &[150, 149][..]),
        ((8, 2, 64), &[100, 100, 33][..]),
        ((4, 4, 64), &[70, 3, 0, 90][..]),
    ]
    .iter()
    .enumerate()
    {
        assert_ok(
            &format!("coop attn_varlen heads {hs:?} lens {lens:?}"),
            pollster::block_on(st::attn_varlen_case(c, *hs, lens, 700 + i as u64)),
        );
    }
    const UNET: (usize, usize, usize) = (8, 8, 64);
    for (i, &(hs, bt, chunk)) in [
        (UNET, (1, 250), 100),
        (UNET, (1, 101), 1),
        (UNET, (2, 101), 100),
        (UNET, (3, 23), 7),
        ((16, 16, 64), (1, 37), 1),
    ]
    .iter()
    .enumerate()
    {
        assert_ok(
            &format!("coop attn_chunk_causal heads {hs:?} (B, T)={bt:?} C={chunk}"),
            pollster::block_on(st::attn_chunk_causal_case(c, hs, bt, chunk, 720 + i as u64)),
        );
    }
    for (i, &(hd, bt, chunk)) in [((8, 64), (2, 101), 100), ((8, 64), (1, 37), 1)]
        .iter()
        .enumerate()
    {
        assert_ok(
            &format!("coop attn_varlen_qkv (H, D)={hd:?} T={}", bt.1),
            pollster::block_on(st::attn_varlen_qkv_case(c, hd, &[bt.1, 7], 750 + i as u64)),
        );
        assert_ok(
            &format!("coop attn_chunk_causal_qkv (H, D)={hd:?} (B, T)={bt:?} C={chunk}"),
            pollster::block_on(st::attn_chunk_causal_qkv_case(
                c,
                hd,
                bt,
                chunk,
                740 + i as u64,
            )),
        );
    }
    for (hs, p0, tq) in [(ENC, 3, 17), (ENC, 40, 70), ((8, 2, 64), 0, 129)] {
        assert_ok(
            &format!("coop attn_prefill heads {hs:?} p0={p0} tq={tq}"),
            pollster::block_on(st::attn_prefill_case(c, hs, p0, tq, (p0 * 77 + tq) as u64)),
        );
    }
}
