//! The streaming loader (`model::stream`, what the browser runs) fed natively: every converted
//! format (f16, q8, q4; one and several shards; split parts) streamed in random chunk sizes
//! must give a store whose every tensor — read back from the GPU — is bit-identical to the
//! converted bytes (`bca check --digests`) and to the native folder load (`Weights::open`);
//! bad shards give their exact errors; the staging memory stays bounded.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use bca::gpu::GpuContext;
use bca::model::stream::{StreamLoader, StreamOptions, FLUSH};
use bca::model::Weights;
use bca::tensor::WeightFormat;
use bca::util::rng::Rng;
use bca::weights::check::digests;
use bca::weights::convert::{convert, ConvertOptions};
use bca::weights::manifest::{gpu_bytes, row_elems, Manifest};
use bca::weights::spec::Quant;
use bca::weights::tiny::{write_tiny, TinyOptions, Variant};

fn ctx() -> &'static GpuContext {
    common::ctx(common::Path::F16)
}

fn root() -> PathBuf {
    let r = std::env::temp_dir().join(format!("bca-loader-test-{}", std::process::id()));
    std::fs::create_dir_all(&r).unwrap();
    r
}

fn tiny() -> &'static Path {
    static T: OnceLock<PathBuf> = OnceLock::new();
    T.get_or_init(|| {
        let tok = Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/assets/tokenizer-qwen3.json");
        if !tok.exists() {
            let st = std::process::Command::new("bash")
                .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/fetch-assets.sh"))
                .status()
                .expect("run scripts/fetch-assets.sh");
            assert!(st.success(), "scripts/fetch-assets.sh failed");
        }
        let out = root().join("tiny");
        write_tiny(&TinyOptions {
            out: out.clone(),
            seed: 3,
            variant: Variant::Instruct,
            tokenizer: tok,
        })
        .expect("bca tiny");
        out
    })
}

/// (quant, max binding, max shard) → converted folder, made once.
fn web(quant: Quant, max_binding: u64, max_shard: u64) -> PathBuf {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _g = LOCK.lock().unwrap();
    let out = root().join(format!("web-{quant:?}-{max_binding}-{max_shard}"));
    if !out.join("manifest.json").exists() {
        convert(
            tiny(),
            &out,
            &ConvertOptions {
                quant,
                max_binding,
                max_shard,
                progress: false,
            },
        )
        .expect("convert");
    }
    out
}

fn read_manifest(dir: &Path) -> (Vec<u8>, Manifest) {
    let b = std::fs::read(dir.join("manifest.json")).unwrap();
    let m = serde_json::from_slice(&b).unwrap();
    (b, m)
}

/// Streams every shard of `dir` in random chunk sizes (1 byte … 3 MiB, seeded).
fn stream(dir: &Path, seed: u64) -> (Weights, usize) {
    let (mb, m) = read_manifest(dir);
    let cfg = std::fs::read(dir.join("config.json")).unwrap();
    let mut l = StreamLoader::new(
        ctx(),
        &mb,
        Some(&cfg),
        "manifest.json",
        &StreamOptions::default(),
    )
    .unwrap();
    let mut rng = Rng::new(seed);
    for (i, s) in m.shards.iter().enumerate() {
        let bytes = std::fs::read(dir.join(&s.file)).unwrap();
        l.begin_shard(i).unwrap();
        let mut o = 0;
        while o < bytes.len() {
            let n = match rng.below(4) {
                0 => 1 + rng.below(7) as usize,
                1 => 1 + rng.below(4096) as usize,
                _ => 1 + rng.below(3 << 20) as usize,
            };
            let e = (o + n).min(bytes.len());
            l.push(ctx(), &bytes[o..e]).unwrap();
            o = e;
        }
        l.end_shard().unwrap();
    }
    let peak = l.peak_stage;
    (l.finish().unwrap(), peak)
}

fn store_digests(w: &Weights, names: impl Iterator<Item = String>) -> BTreeMap<String, String> {
    names
        .map(|n| {
            let d = pollster::block_on(w.digest(ctx(), &n)).unwrap();
            (n, d)
        })
        .collect()
}

fn round_trip(dir: &Path, seed: u64) {
    let want = digests(dir).unwrap();
    let (w, peak) = stream(dir, seed);
    assert_eq!(w.names().len(), want.len(), "tensor count");
    let got = store_digests(&w, want.keys().cloned());
    let bad: Vec<_> = want.keys().filter(|k| got[*k] != want[*k]).collect();
    assert!(
        bad.is_empty(),
        "{} of {} tensors differ from the converted bytes, e.g. {:?}",
        bad.len(),
        want.len(),
        bad.first()
    );
    // the native folder load holds the same bits
    let native = Weights::open(dir, WeightFormat::F16).unwrap();
    let nat = store_digests(&native, want.keys().cloned());
    assert_eq!(
        nat, want,
        "native Weights::open differs from the converted bytes"
    );
    // memory bound: one flush plus one row of the widest matrix
    let (_, m) = read_manifest(dir);
    let widest = m
        .tensors
        .iter()
        .map(|t| row_elems(&t.shape) * 2)
        .max()
        .unwrap();
    assert!(peak <= FLUSH + widest, "staged {peak} bytes at once");
    assert!(peak > 0);
}

#[test]
fn streams_f16_bit_exact() {
    round_trip(&web(Quant::F16, 128 << 20, 128 << 20), 1);
}

#[test]
fn streams_q8_split_parts_several_shards_bit_exact() {
    let d = web(Quant::Q8, 1 << 20, 4 << 20);
    let (_, m) = read_manifest(&d);
    assert!(m.shards.len() > 2, "{} shards", m.shards.len());
    assert!(m.tensors.iter().any(|t| t.parts.len() > 1));
    round_trip(&d, 2);
}

#[test]
fn streams_q4_bit_exact() {
    round_trip(&web(Quant::Q4, 4 << 20, 8 << 20), 3);
}

fn loader(dir: &Path) -> (StreamLoader, Manifest) {
    let (mb, m) = read_manifest(dir);
    (
        StreamLoader::new(ctx(), &mb, None, "manifest.json", &StreamOptions::default()).unwrap(),
        m,
    )
}

#[test]
fn bad_shards_have_exact_errors_and_a_shard_can_be_retried() {
    let d = web(Quant::Q8, 1 << 20, 4 << 20);
    let (mut l, m) = loader(&d);
    let s0 = std::fs::read(d.join(&m.shards[0].file)).unwrap();
    // flipped byte
    let mut bad = s0.clone();
    bad[1000] ^= 0x40;
    l.begin_shard(0).unwrap();
    l.push(ctx(), &bad).unwrap();
    let e = l.end_shard().unwrap_err().to_string();
    assert!(
        e.starts_with("shard-00000.bin: sha256 ")
            && e.ends_with(&format!(
                "does not match the manifest's {}",
                m.shards[0].sha256
            )),
        "{e}"
    );
    // truncated (a connection cut that ended the stream cleanly)
    l.begin_shard(0).unwrap();
    l.push(ctx(), &s0[..s0.len() - 10]).unwrap();
    assert_eq!(
        l.end_shard().unwrap_err().to_string(),
        format!(
            "shard-00000.bin: truncated: {} bytes of data, {} expected",
            s0.len() - 10,
            s0.len()
        )
    );
    // longer than the manifest says
    l.begin_shard(0).unwrap();
    let mut long = s0.clone();
    long.push(0);
    assert_eq!(
        l.push(ctx(), &long).unwrap_err().to_string(),
        format!(
            "shard-00000.bin: size {} does not match the manifest's {}",
            s0.len() + 1,
            s0.len()
        )
    );
    // a retry with good bytes succeeds; a shard never loaded is named at the end
    l.begin_shard(0).unwrap();
    l.push(ctx(), &s0).unwrap();
    l.end_shard().unwrap();
    let e = match l.finish() {
        Err(e) => e.to_string(),
        Ok(_) => panic!("finish without every shard"),
    };
    assert_eq!(e, "shard-00001.bin was not loaded");
    // pushing before a shard began is an error, not a panic
    let (mut l, _) = loader(&d);
    assert_eq!(
        l.push(ctx(), &[1, 2, 3]).unwrap_err().to_string(),
        "push before begin_shard"
    );
    assert_eq!(
        l.begin_shard(99).unwrap_err().to_string(),
        format!("shard 99 of {}", m.shards.len())
    );
}

#[test]
fn manifest_refusals_come_before_any_shard() {
    let d = web(Quant::Q4, 4 << 20, 8 << 20);
    let (mb, m) = read_manifest(&d);
    let new = |b: &[u8], cfg: Option<&[u8]>, o: &StreamOptions| match StreamLoader::new(
        ctx(),
        b,
        cfg,
        "manifest.json",
        o,
    ) {
        Ok(_) => panic!("accepted"),
        Err(e) => e.to_string(),
    };
    let mut v: serde_json::Value = serde_json::from_slice(&mb).unwrap();
    // too big for the adapter (binding limit lowered to 1 MiB)
    let limit = 1u64 << 20;
    let (t, p, need) = m
        .tensors
        .iter()
        .flat_map(|t| t.parts.iter().map(move |p| (t, p)))
        .find_map(|(t, p)| {
            let n = gpu_bytes(t, p, &p.data);
            (n > limit).then_some((t, p, n))
        })
        .expect("a part over 1 MiB");
    assert_eq!(
        new(&mb, None, &StreamOptions { max_binding: Some(limit) }),
        format!(
            "model too big for this GPU: tensor {} rows {}..{} needs a {need}-byte buffer, the adapter allows {limit} (maxStorageBufferBindingSize)",
            t.name, p.rows[0], p.rows[1]
        )
    );
    let o = StreamOptions::default();
    // newer format version
    v["format_version"] = 2.into();
    assert_eq!(
        new(&serde_json::to_vec(&v).unwrap(), None, &o),
        "manifest.json: format_version 2 is newer than this build supports (1)"
    );
    v["format_version"] = 1.into();
    // unknown quant, unknown tensor format
    v["quant"] = "q3".into();
    assert_eq!(
        new(&serde_json::to_vec(&v).unwrap(), None, &o),
        "manifest.json: unknown quant \"q3\""
    );
    v["quant"] = "q4".into();
    let name = v["tensors"][0]["name"].as_str().unwrap().to_string();
    v["tensors"][0]["format"] = "q3_k".into();
    assert_eq!(
        new(&serde_json::to_vec(&v).unwrap(), None, &o),
        format!("tensor {name}: unknown format q3_k")
    );
    // config.json disagreeing with the manifest
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("config.json")).unwrap()).unwrap();
    cfg["vocab_size"] = 12.into();
    assert_eq!(
        new(&mb, Some(&serde_json::to_vec(&cfg).unwrap()), &o),
        "config mismatch: config.json differs from the manifest's config"
    );
    // empty / not JSON
    assert_eq!(new(b"", None, &o), "manifest.json: empty file");
    assert!(new(b"{", None, &o).starts_with("manifest.json: header is not valid JSON: "));
}

#[test]
fn config_comparison_is_by_value() {
    use bca::weights::manifest::same_json;
    use serde_json::json;
    assert!(same_json(
        &json!({"a": 1.0, "b": [2, 3e-6]}),
        &json!({"b": [2.0, 0.000003], "a": 1})
    ));
    assert!(!same_json(&json!({"a": 1}), &json!({"a": 1, "b": null})));
    assert!(!same_json(&json!({"a": 1.5}), &json!({"a": 1})));
}

/// The loader's wasm memory for the real model: matrices stream through ≤ FLUSH + one row;
/// what stays in wasm memory is the store's host tensors (norms, biases, conv kernels,
/// codebooks, tables, HiFT) as f32. Computed from the real config (spec §12/§13).
/// KNOWN FAILURE: 770 MiB (RVQ codebooks 380 MiB, bridge conv 200 MiB, HiFT 79 MiB, …) — the
/// store's "non-matrix tensors live on the host as f32" rule, not the stream, breaks the budget
/// for the real model. Run with `--ignored` to see the breakdown; ARCHITECTURE.md has the fix.
#[test]
fn real_model_host_tensors_fit_the_wasm_budget() {
    // What the streaming loader keeps in wasm memory for the real model: the non-matrix
    // tensors that are not raw GPU tensors (`is_gpu_raw`: conv kernels and codebooks go to
    // the GPU), HiFT's likewise, plus the staging bound.
    use bca::model::weights::{is_gpu_raw, is_matrix};
    use bca::weights::hift::HiftConfig;
    use bca::weights::manifest::hift_web_specs;
    use bca::weights::spec::{model_tensors, Role};
    use bca::weights::tiny::real_config_value;
    let cfg = bca::weights::OmniConfig::from_value(real_config_value(), "real").unwrap();
    let specs = model_tensors(&cfg);
    let numel = |s: &bca::weights::spec::TensorSpec| s.shape.iter().product::<usize>() as u64;
    let on_host = |s: &&bca::weights::spec::TensorSpec| {
        s.role != Role::TrainingOnly && !is_matrix(s.role) && !is_gpu_raw(s.role)
    };
    let host: u64 = specs.iter().filter(on_host).map(|s| numel(s) * 4).sum();
    let raw: u64 = specs
        .iter()
        .filter(|s| is_gpu_raw(s.role))
        .map(|s| numel(s) * 4)
        .sum();
    let hift_specs = hift_web_specs(&HiftConfig::default());
    let hift: u64 = hift_specs
        .iter()
        .filter(|s| !is_gpu_raw(s.role))
        .map(|s| numel(s) * 4)
        .sum();
    let mut by: std::collections::BTreeMap<String, u64> = Default::default();
    for s in specs.iter().filter(on_host) {
        *by.entry(format!("{:?}/{:?}", s.stage, s.role)).or_default() += numel(s) * 4;
    }
    println!("host f32 bytes by stage/role: {by:?}");
    let widest = specs.iter().map(|s| row_elems(&s.shape) * 2).max().unwrap() as u64;
    let staging = FLUSH as u64 + widest + (1 << 20);
    let total = host + hift + staging;
    let mib = |b: u64| b as f64 / 1048576.0;
    println!(
        "real model: host tensors {:.1} MiB + HiFT {:.1} MiB + staging {:.1} MiB = {:.1} MiB of \
         wasm memory for the weights ({:.1} MiB of conv kernels and codebooks stay on the GPU)",
        mib(host),
        mib(hift),
        mib(staging),
        mib(total),
        mib(raw)
    );
    // the raw rule must be what keeps it small: without it this is ≈ 770 MiB
    assert!(raw > 500 << 20, "{raw} bytes raw");
    assert!(total < 64 << 20, "{total} bytes on the host");
}

#[test]
fn check_digests_cli_writes_the_store_digests() {
    let d = web(Quant::Q4, 4 << 20, 8 << 20);
    let out = root().join("digests.json");
    let st = std::process::Command::new(env!("CARGO_BIN_EXE_bca"))
        .arg("check")
        .arg(&d)
        .arg("--digests")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stdout)
    );
    let got: BTreeMap<String, String> =
        serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let want = digests(&d).unwrap();
    assert_eq!(got.len(), 620);
    assert_eq!(got, want);
    // a tensor's digest changes when its bytes do: the digests are not constants
    let distinct: std::collections::HashSet<_> = got.values().collect();
    assert!(distinct.len() > 600, "{} distinct digests", distinct.len());
}

/// The manifest's roles (which tensors the store keeps as GPU matrices).
fn roles_of(m: &Manifest) -> std::collections::HashMap<String, bca::weights::spec::Role> {
    let cfg = bca::weights::convert::manifest_config(m).unwrap();
    bca::weights::spec::model_tensors(&cfg)
        .into_iter()
        .map(|s| (s.name, s.role))
        .collect()
}

/// `(data, scales)` bytes of a matrix as the kernels read them.
fn matrix_bytes(m: &bca::tensor::Matrix) -> (Vec<u8>, Vec<u8>) {
    let read = |b: &wgpu::Buffer, n: u64| pollster::block_on(bca::gpu::read_buffer(ctx(), b, 0, n));
    let d = read(m.data(), m.data_bytes()).unwrap();
    let s = match m.scales() {
        Some(s) => read(s, m.scale_bytes()).unwrap(),
        None => Vec::new(),
    };
    (d, s)
}

/// A matrix cut into row parts at `cuts` (first rows of the parts after the first), each
/// part in buffers of its own, laid out as a conversion with a small `--max-binding` stores
/// them.
fn cut_rows(m: &bca::tensor::Matrix, cuts: &[usize]) -> Vec<bca::model::weights::MatrixPart> {
    use bca::tensor::Matrix;
    let (d, s) = matrix_bytes(m);
    let nb = m.blocks_per_row();
    // byte offset of row r in (data, scales), also where q8's scales start mid-word (the
    // refusal cases need such parts, which Matrix::row_offsets declines)
    let at = |r: usize| -> (usize, usize) {
        match m {
            Matrix::F16 { .. } => (r * nb * 16, 0),
            Matrix::Q8 { .. } => (r * nb * 32, r * nb * 2),
            Matrix::Q4 { .. } => (r * nb * 16, r * nb * 4),
        }
    };
    let mut bounds = vec![0];
    bounds.extend_from_slice(cuts);
    bounds.push(m.rows());
    bounds
        .windows(2)
        .map(|w| {
            let (r0, r1) = (w[0], w[1]);
            let ((d0, s0), (d1, s1)) = (at(r0), at(r1));
            let s1 = if r1 == m.rows() { s.len() } else { s1 };
            let rows = r1 - r0;
            let cols = m.cols();
            let up = |b: &[u8]| ctx().upload("part", b);
            let matrix = match m {
                Matrix::F16 { stride, .. } => Matrix::F16 {
                    buf: up(&d[d0..d1]),
                    rows,
                    cols,
                    stride: *stride,
                },
                Matrix::Q8 { .. } => Matrix::Q8 {
                    data: up(&d[d0..d1]),
                    scales: up(&s[s0..s1]),
                    rows,
                    cols,
                },
                Matrix::Q4 { .. } => Matrix::Q4 {
                    data: up(&d[d0..d1]),
                    scales: up(&s[s0..s1]),
                    rows,
                    cols,
                },
            };
            bca::model::weights::MatrixPart {
                row_start: r0,
                matrix,
            }
        })
        .collect()
}

/// A matrix the engine reads in one binding but stored in row parts (a conversion whose
/// `--max-binding` is below its size, as the real model's gate/up/down at f16 and the default
/// 128 MiB) converts, streams and is joined on the GPU at load into the bytes the one-part
/// conversion holds; its digest stays `bca check --digests`'s; an adapter that cannot bind
/// the whole hears so before any shard, naming the tensor.
#[test]
fn matrices_stored_in_row_parts_are_joined_at_load() {
    let split = web(Quant::F16, 8 << 10, 8 << 20);
    let whole = Weights::open(&web(Quant::F16, 128 << 20, 128 << 20), WeightFormat::F16).unwrap();
    let (mb, m) = read_manifest(&split);
    let roles = roles_of(&m);
    let joined: Vec<_> = m
        .tensors
        .iter()
        .filter(|t| bca::weights::manifest::joined(t, &roles))
        .collect();
    for name in [
        "model.layers.0.mlp.gate_proj.weight",
        "model.layers.1.mlp.up_proj.weight",
        "model.layers.1.mlp.down_proj.weight",
    ] {
        assert!(
            joined.iter().any(|t| t.name == name),
            "{name} is not stored in parts at 8 KiB bindings"
        );
    }
    let want = digests(&split).unwrap();
    let (w, _) = stream(&split, 5);
    for t in &joined {
        let parts = w.matrix_parts(ctx(), &t.name).unwrap().len();
        assert_eq!(parts, t.parts.len(), "{}", t.name);
        let got = w.matrix(ctx(), &t.name).unwrap();
        assert_eq!(
            w.matrix_parts(ctx(), &t.name).unwrap().len(),
            1,
            "{}",
            t.name
        );
        let one = whole.matrix(ctx(), &t.name).unwrap();
        assert_eq!(
            (got.rows(), got.cols()),
            (one.rows(), one.cols()),
            "{}",
            t.name
        );
        assert!(
            matrix_bytes(&got) == matrix_bytes(&one),
            "{} joined from {} parts differs from the one-part conversion",
            t.name,
            t.parts.len()
        );
        let d = pollster::block_on(w.digest(ctx(), &t.name)).unwrap();
        assert_eq!(d, want[&t.name], "{} digest after the join", t.name);
    }
    // an adapter that binds every part but not the largest joined whole
    let (big, need) = joined
        .iter()
        .map(|t| {
            let n: u64 = t.parts.iter().map(|p| gpu_bytes(t, p, &p.data)).sum();
            (t, n)
        })
        .max_by_key(|(_, n)| *n)
        .unwrap();
    // what `bca convert` prints: the largest buffer, here a joined whole
    let (lname, lneed) = bca::weights::manifest::largest_binding(&m, &roles).unwrap();
    assert_eq!(lneed, need, "largest binding named {lname}");
    assert!(
        joined.iter().any(|t| t.name == lname),
        "{lname} is not joined"
    );
    let limit = need - 1;
    let largest_part = m
        .tensors
        .iter()
        .flat_map(|t| t.parts.iter().map(move |p| gpu_bytes(t, p, &p.data)))
        .max()
        .unwrap();
    assert!(
        largest_part <= limit,
        "a part is larger than the joined matrix"
    );
    let e = StreamLoader::new(
        ctx(),
        &mb,
        None,
        "manifest.json",
        &StreamOptions {
            max_binding: Some(limit),
        },
    )
    .err()
    .expect("accepted")
    .to_string();
    let rows = big.parts.last().unwrap().rows[1];
    assert!(
        e.starts_with(&format!(
            "model too big for this GPU: tensor {} rows 0..{rows} needs a {need}-byte buffer, \
             the adapter allows {limit} (maxStorageBufferBindingSize; the engine reads this \
             matrix in one binding",
            big.name
        )),
        "{e}"
    );
}

/// The decoder on a store whose every layer matrix is in ragged row parts (joined by
/// `Llm::load`): the same logits, bit for bit, as on the one-part store, at f16, q8 and q4.
#[test]
fn llm_on_joined_parts_gives_the_same_logits() {
    use bca::model::llm::{Input, Llm, Session};
    let inputs: Vec<Input> = [151644u32, 872, 198, 9707, 11, 1879, 0, 151645]
        .iter()
        .map(|&t| Input::Text(t))
        .collect();
    for (quant, format) in [
        (Quant::F16, WeightFormat::F16),
        (Quant::Q8, WeightFormat::Q8),
        (Quant::Q4, WeightFormat::Q4),
    ] {
        let dir = web(quant, 128 << 20, 128 << 20);
        let logits = |w: &Weights| {
            let llm = Llm::load(ctx(), w).unwrap();
            let mut s = Session::new(ctx(), &llm, 32, 3).unwrap();
            pollster::block_on(s.all_logits(ctx(), &llm, &inputs)).unwrap()
        };
        let want = logits(&Weights::open(&dir, format).unwrap());
        let w = Weights::open(&dir, format).unwrap();
        let layers = w.config.llm.num_hidden_layers;
        let mut cut = 0;
        for l in 0..layers {
            for m in [
                "self_attn.W_pack.weight",
                "self_attn.o_proj.weight",
                "mlp.gate_proj.weight",
                "mlp.up_proj.weight",
                "mlp.down_proj.weight",
            ] {
                let name = format!("model.layers.{l}.{m}");
                let one = w.matrix(ctx(), &name).unwrap();
                let r = one.rows();
                // two or three parts of uneven sizes, even first rows (q8 scale words)
                let cuts: Vec<usize> = match cut % 3 {
                    0 => vec![2],
                    1 => vec![(r / 2) & !1, r - 2],
                    _ => vec![r - 4],
                };
                cut += 1;
                w.insert_matrix(&name, cut_rows(&one, &cuts));
            }
        }
        // the digests of parts (what `bca check --digests` hashes) survive the join
        let digest = |n: &str| pollster::block_on(w.digest(ctx(), n)).unwrap();
        let kept: Vec<String> = (0..layers)
            .flat_map(|l| {
                ["self_attn.W_pack.weight", "mlp.down_proj.weight"]
                    .map(|m| format!("model.layers.{l}.{m}"))
            })
            .collect();
        let before: Vec<String> = kept.iter().map(|n| digest(n)).collect();
        let got = logits(&w);
        for (n, d) in kept.iter().zip(&before) {
            assert_eq!(w.matrix_parts(ctx(), n).unwrap().len(), 1, "{n} not joined");
            assert_eq!(&digest(n), d, "{quant:?}: {n} digest changed by the join");
        }
        assert_eq!(got.len(), want.len());
        let bad = got
            .iter()
            .zip(&want)
            .filter(|(a, b)| a.to_bits() != b.to_bits())
            .count();
        assert_eq!(bad, 0, "{quant:?}: {bad} of {} logits differ", got.len());
        assert!(want.iter().any(|v| v.abs() > 1e-3), "{quant:?}: logits ~0");
    }
}

/// Joining refuses parts that do not tile the rows, and q8 parts whose scales would start
/// mid-word (an odd block count before them); parts that do tile join to the same bytes.
#[test]
fn joining_refuses_parts_it_cannot_join() {
    use bca::tensor::Matrix;
    let (_, m) = read_manifest(&web(Quant::Q4, 4 << 20, 8 << 20));
    let cfg = bca::weights::convert::manifest_config(&m).unwrap();
    let mut rng = Rng::new(11);
    // 96 columns: 3 blocks per row, an odd count
    let (rows, cols) = (7, 96);
    let vals: Vec<f32> = (0..rows * cols).map(|_| rng.normal() * 0.1).collect();
    let name = "model.layers.0.mlp.down_proj.weight";
    for format in [WeightFormat::F16, WeightFormat::Q8, WeightFormat::Q4] {
        let one = Matrix::from_f32(ctx(), "m", rows, cols, &vals, format);
        let w = Weights::empty(cfg.clone(), format);
        w.insert_matrix(name, cut_rows(&one, &[2, 6]));
        let d3 = pollster::block_on(w.digest(ctx(), name)).unwrap();
        let j = w.matrix(ctx(), name).unwrap();
        assert!(matrix_bytes(&j) == matrix_bytes(&one), "{format:?}");
        assert_eq!(pollster::block_on(w.digest(ctx(), name)).unwrap(), d3);
        // the same name stored again in other parts: hashed by those, not the joined ones
        w.insert_matrix(name, cut_rows(&one, &[4]));
        let w2 = Weights::empty(cfg.clone(), format);
        w2.insert_matrix(name, cut_rows(&one, &[4]));
        let d2 = pollster::block_on(w2.digest(ctx(), name)).unwrap();
        assert_eq!(
            pollster::block_on(w.digest(ctx(), name)).unwrap(),
            d2,
            "{format:?}"
        );
        // a part starting at row 3 (after 9 blocks)
        let w = Weights::empty(cfg.clone(), format);
        w.insert_matrix(name, cut_rows(&one, &[3]));
        let r = w.matrix(ctx(), name).map(|_| ());
        if format == WeightFormat::Q8 {
            let e = r.unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("{name}: row parts cannot be joined: q8 scales of a part starting at row 3 begin mid-word")),
                "{e}"
            );
        } else {
            r.unwrap();
        }
        // a gap: parts of rows 0..2 and 3..7
        let w = Weights::empty(cfg.clone(), format);
        let mut parts = cut_rows(&one, &[2, 4]);
        parts.remove(1);
        parts[1].row_start = 3;
        w.insert_matrix(name, parts);
        let e = w.matrix(ctx(), name).map(|_| ()).unwrap_err().to_string();
        assert_eq!(
            e,
            format!("{name}: row parts do not tile the rows: a part starts at row 3 after 2 rows")
        );
    }
}

/// On a GPU whose bindings are smaller than a derived matrix (the real gate/up interleaved at
/// f16: 272 MB against 256 MiB), the relayouts decline (`None`: the caller keeps separate
/// products) instead of creating a buffer the device cannot bind; and a matrix joined from
/// parts that would not fit is refused with its size (a context requesting a 1 MiB limit).
#[test]
fn relayouts_and_joins_respect_a_small_binding_limit() {
    use bca::gpu::{GpuOptions, Recorder};
    use bca::tensor::Matrix;
    let small = pollster::block_on(GpuContext::new(&GpuOptions {
        max_binding: Some(1 << 20),
        ..Default::default()
    }))
    .unwrap();
    assert_eq!(small.limits.max_storage_buffer_binding_size, 1 << 20);
    let mut rng = Rng::new(5);
    // 1100 × 256 f16: 563200 bytes each, 1126400 together (over 1 MiB); 900 rows fit
    for (rows, fits) in [(1100, false), (900, true)] {
        let a = Matrix::f16_from_f32(&small, "a", rows, 256, &rng.normal_vec(rows * 256, 0.1));
        let b = Matrix::f16_from_f32(&small, "b", rows, 256, &rng.normal_vec(rows * 256, 0.1));
        let mut rec = Recorder::new(&small, "t");
        let i = bca::ops::interleave_rows(&mut rec, &a, &b).unwrap();
        let c = bca::ops::concat_rows(&mut rec, &[&a, &b]).unwrap();
        rec.submit().unwrap();
        assert_eq!((i.is_some(), c.is_some()), (fits, fits), "{rows} rows");
        small.check().unwrap();
    }
    // a join over the limit: parts of 600 KB, the whole 1.2 MB
    let (_, m) = read_manifest(&web(Quant::Q4, 4 << 20, 8 << 20));
    let cfg = bca::weights::convert::manifest_config(&m).unwrap();
    let part = |r0: usize, r1: usize, rng: &mut Rng| bca::model::weights::MatrixPart {
        row_start: r0,
        matrix: Matrix::f16_from_f32(
            &small,
            "p",
            r1 - r0,
            256,
            &rng.normal_vec((r1 - r0) * 256, 0.1),
        ),
    };
    let w = Weights::empty(cfg, WeightFormat::F16);
    let name = "model.layers.0.mlp.down_proj.weight";
    w.insert_matrix(
        name,
        vec![part(0, 1200, &mut rng), part(1200, 2400, &mut rng)],
    );
    let e = w.matrix(&small, name).map(|_| ()).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "model too big for this GPU: tensor {name} rows 0..2400 needs a 1228800-byte buffer, \
             the adapter allows 1048576 (maxStorageBufferBindingSize; the engine reads this \
             matrix in one binding, and q8 or q4 take less)"
        )
    );
    assert_eq!(
        w.matrix_parts(&small, name).unwrap().len(),
        2,
        "the parts are kept"
    );
}
