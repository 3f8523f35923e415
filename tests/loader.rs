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
