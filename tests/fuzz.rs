//! Bounded fuzzing (proptest) of the three parsers that read untrusted bytes: the safetensors
//! header, the web manifest (parse + validate + adapter limits) and the torch pickle reader.
//! Random bytes and mutations of valid inputs must give `Ok` or `Err` — never a panic, and
//! never an allocation driven by a claimed size (a header claiming 2^60 elements is an error).
//! Case counts keep the whole file well under a minute on 2 cores (debug build).

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};

use bca::weights::dtype::DType;
use bca::weights::manifest::{
    check_limits, hift_web_specs, parse_manifest, part_lengths, quant_name, validate_manifest,
    Manifest, Part, ShardInfo, Span, TensorEntry, ALIGN, FORMAT_VERSION,
};
use bca::weights::safetensors::parse_header;
use bca::weights::spec::{model_tensors, web_format, Format, Quant, Role};
use bca::weights::tiny::{tiny_config_value, tiny_hift_config, Variant};
use bca::weights::torch::{pickle_state_dict, state_dict_from_pickle, TorchTensor};
use bca::weights::OmniConfig;

fn cfg(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        max_shrink_iters: 2000,
        ..Config::default()
    }
}

// ------------------------------------------------------------------ safetensors header

fn st_file(header: &str, data_len: usize) -> Vec<u8> {
    let mut b = (header.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(header.as_bytes());
    b.extend(std::iter::repeat_n(0u8, data_len));
    b
}

fn valid_st() -> Vec<u8> {
    st_file(
        r#"{"__metadata__":{"format":"pt"},"a":{"dtype":"BF16","shape":[2,3],"data_offsets":[0,12]},"b.weight":{"dtype":"F32","shape":[4],"data_offsets":[12,28]}}"#,
        28,
    )
}

/// A mutation: flip, overwrite, insert or delete a byte, or truncate.
fn mutate(mut b: Vec<u8>, ops: &[(u8, usize, u8)]) -> Vec<u8> {
    for &(kind, at, v) in ops {
        if b.is_empty() {
            b.push(v);
            continue;
        }
        let i = at % b.len();
        match kind % 5 {
            0 => b[i] ^= 1 << (v % 8),
            1 => b[i] = v,
            2 => b.insert(i, v),
            3 => {
                b.remove(i);
            }
            _ => b.truncate(i),
        }
    }
    b
}

proptest! {
    #![proptest_config(cfg(1500))]

    #[test]
    fn safetensors_random_bytes(b in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse_header(&b, "fuzz.safetensors");
    }

    #[test]
    fn safetensors_mutated(ops in proptest::collection::vec((any::<u8>(), any::<usize>(), any::<u8>()), 1..6)) {
        let _ = parse_header(&mutate(valid_st(), &ops), "fuzz.safetensors");
    }

    #[test]
    fn safetensors_absurd_shapes(dims in proptest::collection::vec(any::<u64>(), 0..5),
                                 a in any::<u64>(), b in any::<u64>(), len in any::<u64>()) {
        let shape = dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(",");
        let h = format!(r#"{{"t":{{"dtype":"F16","shape":[{shape}],"data_offsets":[{a},{b}]}}}}"#);
        let mut f = st_file(&h, 16);
        let r = parse_header(&f, "x");
        // a claimed size never passes unless the file really holds it
        if let Ok((_, es)) = r {
            for e in es {
                prop_assert!(e.end <= 16 && e.begin <= e.end);
            }
        }
        // a header length field pointing anywhere
        f[..8].copy_from_slice(&len.to_le_bytes());
        let _ = parse_header(&f, "x");
    }
}

// ------------------------------------------------------------------ manifest

/// A valid manifest of the tiny model laid out as `bca convert` would (hashes are not checked
/// here: they need the shard bytes).
fn tiny_manifest(quant: Quant) -> Manifest {
    let config = tiny_config_value(Variant::Instruct);
    let c = OmniConfig::from_value(config.clone(), "tiny").unwrap();
    let h = tiny_hift_config();
    let mut specs: Vec<_> = model_tensors(&c)
        .into_iter()
        .filter(|s| s.role != Role::TrainingOnly)
        .collect();
    specs.extend(hift_web_specs(&h));
    let (mut shard, mut off) = (0usize, 0u64);
    let max_shard = 4u64 << 20;
    let mut sizes = Vec::new();
    let mut put = |len: u64, shard: &mut usize, off: &mut u64| {
        let o = off.next_multiple_of(ALIGN);
        if o + len > max_shard && *off > 0 {
            sizes.push(*off);
            *shard += 1;
            *off = len;
            return Span {
                shard: *shard,
                offset: 0,
                length: len,
            };
        }
        *off = o + len;
        Span {
            shard: *shard,
            offset: o,
            length: len,
        }
    };
    let mut tensors = Vec::new();
    for s in &specs {
        let f = web_format(s, quant).unwrap_or(Format::F32);
        let rows = s.shape.first().copied().unwrap_or(1);
        let (d, sc) = part_lengths(f, &s.shape, 1);
        let step = ((1u64 << 20) / d.max(sc.unwrap_or(0)).max(1)).max(1) as usize;
        let mut parts = Vec::new();
        let mut r0 = 0;
        while r0 < rows {
            let r1 = (r0 + step).min(rows);
            let (dl, sl) = part_lengths(f, &s.shape, r1 - r0);
            let data = put(dl, &mut shard, &mut off);
            let scales = sl.map(|l| put(l, &mut shard, &mut off));
            parts.push(Part {
                rows: [r0, r1],
                data,
                scales,
            });
            r0 = r1;
        }
        tensors.push(TensorEntry {
            name: s.name.clone(),
            shape: s.shape.clone(),
            format: f.name().into(),
            parts,
        });
    }
    sizes.push(off);
    Manifest {
        format_version: FORMAT_VERSION,
        model_type: "omni".into(),
        quant: quant_name(quant).into(),
        config,
        hift_config: h,
        shards: sizes
            .iter()
            .enumerate()
            .map(|(i, &b)| ShardInfo {
                file: format!("shard-{i:05}.bin"),
                bytes: b,
                sha256: "0".repeat(64),
            })
            .collect(),
        tensors,
    }
}

fn manifest_json(q: Quant) -> &'static serde_json::Value {
    use std::sync::OnceLock;
    static V: [OnceLock<serde_json::Value>; 3] =
        [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    let i = match q {
        Quant::F16 => 0,
        Quant::Q8 => 1,
        Quant::Q4 => 2,
    };
    V[i].get_or_init(|| serde_json::to_value(tiny_manifest(q)).unwrap())
}

/// Roles of the model's tensors (which are GPU matrices, for the limits of joined parts).
fn roles(
    c: &bca::weights::OmniConfig,
) -> std::collections::HashMap<String, bca::weights::spec::Role> {
    bca::weights::spec::model_tensors(c)
        .into_iter()
        .map(|s| (s.name, s.role))
        .collect()
}

fn run_manifest(b: &[u8]) {
    if let Ok(m) = parse_manifest(b, "manifest.json") {
        if let Ok(v) = validate_manifest(&m, "manifest.json") {
            let _ = check_limits(&m, &roles(&v.config), 128 << 20, 1 << 30);
        }
    }
}

/// Every leaf of a JSON value, as a path of keys/indices.
fn leaves(
    v: &serde_json::Value,
    path: &mut Vec<serde_json::Value>,
    out: &mut Vec<Vec<serde_json::Value>>,
) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                path.push(k.clone().into());
                leaves(x, path, out);
                path.pop();
            }
        }
        serde_json::Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                path.push(i.into());
                leaves(x, path, out);
                path.pop();
            }
        }
        _ => out.push(path.clone()),
    }
    if !path.is_empty() && (v.is_object() || v.is_array()) {
        out.push(path.clone()); // containers can be replaced whole too
    }
}

fn at<'a>(v: &'a mut serde_json::Value, path: &[serde_json::Value]) -> &'a mut serde_json::Value {
    path.iter().fold(v, |v, k| match k {
        serde_json::Value::String(s) => &mut v[s.as_str()],
        serde_json::Value::Number(n) => &mut v[n.as_u64().unwrap_or(0) as usize],
        _ => v,
    })
}

fn replacement(kind: u8, n: u64) -> serde_json::Value {
    match kind % 9 {
        0 => n.into(),
        1 => (n % 1000).into(),
        2 => (1u64 << 60).into(),
        3 => (-(n as i64 % 1000)).into(),
        4 => 0.5.into(),
        5 => "q3_k".into(),
        6 => serde_json::Value::Null,
        7 => serde_json::json!([]),
        _ => serde_json::json!({}),
    }
}

#[test]
fn valid_layout_validates() {
    // the fuzzer's seed must itself be valid, or the mutations test nothing
    for q in [Quant::F16, Quant::Q8, Quant::Q4] {
        let m = tiny_manifest(q);
        let v = validate_manifest(&m, "manifest.json").unwrap();
        check_limits(&m, &roles(&v.config), 128 << 20, 1 << 30).unwrap();
        let b = serde_json::to_vec(&m).unwrap();
        validate_manifest(&parse_manifest(&b, "m").unwrap(), "m").unwrap();
    }
}

proptest! {
    #![proptest_config(cfg(1000))]

    #[test]
    fn manifest_random_bytes(b in proptest::collection::vec(any::<u8>(), 0..300)) {
        run_manifest(&b);
    }

    #[test]
    fn manifest_mutated_values(q in 0u8..3, edits in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u64>()), 1..4)) {
        mutated_values(q, &edits);
    }

    #[test]
    fn manifest_mutated_bytes(ops in proptest::collection::vec((any::<u8>(), any::<usize>(), any::<u8>()), 1..4)) {
        let b = serde_json::to_vec(manifest_json(Quant::Q4)).unwrap();
        run_manifest(&mutate(b, &ops));
    }
}

// ------------------------------------------------------------------ torch pickle

fn valid_pickle() -> Vec<u8> {
    let t = |name: &str, shape: Vec<usize>| TorchTensor {
        data: vec![0u8; shape.iter().product::<usize>() * 4],
        name: name.into(),
        shape,
        dtype: DType::F32,
    };
    pickle_state_dict(&[t("conv_pre.weight", vec![2, 3, 4]), t("f0.bias", vec![5])])
}

/// The valid pickle with its first tensor's (offset, shape, stride) replaced.
fn with_record(dims: &[u32], strides: &[u32], off: u32) -> Vec<u8> {
    let mut b = valid_pickle();
    let s = |xs: &[u32]| {
        let mut o = vec![b'('];
        for &x in xs {
            o.push(b'J');
            o.extend_from_slice(&(x as i32).to_le_bytes());
        }
        o.push(b't');
        o
    };
    // the record follows the storage's persistent id ('Q'): offset (K 0), shape, stride tuples
    if let Some(q) = b.iter().position(|&c| c == b'Q') {
        let tail = b.split_off(q + 1);
        b.push(b'J');
        b.extend_from_slice(&(off as i32).to_le_bytes());
        b.extend(s(dims));
        b.extend(s(strides));
        let mut i = 2;
        for _ in 0..2 {
            while i < tail.len() && tail[i] != b't' {
                i += 1;
            }
            i += 1;
        }
        b.extend_from_slice(tail.get(i..).unwrap_or(&[]));
    }
    b
}

#[test]
fn record_surgery_reaches_the_tensor_checks() {
    // the fuzzer's rebuilt records parse: sane values load, absurd ones are precise errors
    let mut st = |_: &str| -> Result<Vec<u8>, bca::weights::WeightError> { Ok(vec![1u8; 96]) };
    let ok =
        state_dict_from_pickle(&with_record(&[2, 3, 4], &[12, 4, 1], 0), "p", &mut st).unwrap();
    assert_eq!(ok[0].shape, vec![2, 3, 4]);
    let e = state_dict_from_pickle(
        &with_record(&[1 << 30, 1 << 30, 4], &[0, 0, 1], 0),
        "p",
        &mut st,
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        e,
        "p: pickle: conv_pre.weight: more elements than its storage holds"
    );
    let e = state_dict_from_pickle(&with_record(&[2, 3, 4], &[12, 4, 1], 1 << 30), "p", &mut st)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("p: tensor conv_pre.weight: bytes 4294967296.."),
        "{e}"
    );
}

fn run_pickle(p: &[u8]) {
    let mut storage = |key: &str| -> Result<Vec<u8>, bca::weights::WeightError> {
        match key.parse::<usize>() {
            Ok(k) if k < 4 => Ok(vec![7u8; 96 >> k]),
            _ => Err(bca::weights::WeightError::Invalid(format!(
                "no storage {key}"
            ))),
        }
    };
    if let Ok(ts) = state_dict_from_pickle(p, "hift.pt", &mut storage) {
        for t in ts {
            // what was read is never more than the storage holds
            assert!(t.data.len() <= 96);
        }
    }
}

#[test]
fn valid_pickle_reads() {
    let mut storage = |_: &str| -> Result<Vec<u8>, bca::weights::WeightError> { Ok(vec![1u8; 96]) };
    let ts = state_dict_from_pickle(&valid_pickle(), "hift.pt", &mut storage).unwrap();
    assert_eq!(ts.len(), 2);
    assert_eq!(ts[0].shape, vec![2, 3, 4]);
}

proptest! {
    #![proptest_config(cfg(1500))]

    #[test]
    fn pickle_random_bytes(b in proptest::collection::vec(any::<u8>(), 0..300)) {
        run_pickle(&b);
        let _ = bca::weights::torch::read_state_dict_bytes(&b, "hift.pt");
    }

    #[test]
    fn pickle_mutated(ops in proptest::collection::vec((any::<u8>(), any::<usize>(), any::<u8>()), 1..5)) {
        run_pickle(&mutate(valid_pickle(), &ops));
    }

    #[test]
    fn pickle_absurd_sizes(dims in proptest::collection::vec(any::<u32>(), 1..4), strides in proptest::collection::vec(0u32..4, 1..4), off in any::<u32>()) {
        run_pickle(&with_record(&dims, &strides, off));
    }
}

/// The case the fuzzer found as an out-of-memory kill: a config claiming 2^60 layers must be a
/// typed error before anything is sized from it.
#[test]
fn absurd_counts_in_the_config_are_errors() {
    for key in ["num_hidden_layers", "vocab_size"] {
        let mut v = bca::weights::tiny::real_config_value();
        v[key] = serde_json::json!(1u64 << 60);
        let e = bca::weights::OmniConfig::from_value(v, "config.json")
            .expect_err("absurd value accepted");
        assert!(e.to_string().contains(key), "{e}");
    }
    // the two overflows proptest found (max_audio_seconds · sampling_rate, d_model ·
    // avg_pooler), and a list entry
    for (block, key) in [
        ("audio_config", "max_audio_seconds"),
        ("audio_config", "sampling_rate"),
        ("audio_config", "avg_pooler"),
        ("flow_matching_config", "spk_emb_dim"),
    ] {
        let mut v = bca::weights::tiny::real_config_value();
        v[block][key] = serde_json::json!(1u64 << 60);
        let e = bca::weights::OmniConfig::from_value(v, "config.json")
            .expect_err("absurd value accepted");
        assert!(e.to_string().contains(key), "{e}");
    }
    {
        let mut v = bca::weights::tiny::real_config_value();
        v["audio_config"]["vq_config"]["codebook_sizes"][2] = serde_json::json!(1u64 << 60);
        let key = "codebook_sizes";
        let e = bca::weights::OmniConfig::from_value(v, "config.json")
            .expect_err("absurd value accepted");
        assert!(e.to_string().contains(key), "{e}");
    }
}

/// The manifest of quant `q` with leaf values replaced (`edits`: leaf index, replacement kind,
/// number), run through the validator and the loader.
fn mutated_values(q: u8, edits: &[(usize, u8, u64)]) {
    let q = [Quant::F16, Quant::Q8, Quant::Q4][q as usize];
    let mut v = manifest_json(q).clone();
    for &(i, kind, n) in edits {
        // paths are recomputed after each edit: an earlier one may have replaced a container
        let mut ls = Vec::new();
        leaves(&v, &mut Vec::new(), &mut ls);
        let p = &ls[i % ls.len()];
        *at(&mut v, p) = replacement(kind, n);
    }
    run_manifest(&serde_json::to_vec(&v).unwrap());
}

/// The case `manifest_mutated_values` found: one of the HiFT config's per-stage arrays emptied,
/// which the validator indexed past (a panic) before it checked the config's lengths.
#[test]
fn manifest_hift_config_emptied_array() {
    mutated_values(2, &[(12748250260030689744, 88, 0)]);
}

/// The second case it found: a HiFT upsample rate of 3·10¹⁸, whose product with the others
/// overflowed while the validator built the vocoder's tensor list (a panic) before the config's
/// sizes were bounded.
#[test]
fn manifest_hift_config_huge_rate() {
    mutated_values(0, &[(19194766825974954, 45, 3074457345618258603)]);
}
