//! Checkpoint tooling: `bca tiny` → check → convert (f16/q8/q4) → read back, and bad inputs,
//! each with its exact expected error.
//!
//! One tiny folder and one converted folder are made per test process (OnceLock) and copied
//! into a fresh temp folder by each test that damages it.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use bca::tensor::quant::{dequantize_q4, dequantize_q8, quantize_q4, quantize_q8};
use bca::weights::check::{check_hf, check_web};
use bca::weights::config::ConfigError;
use bca::weights::convert::{convert, load_hift, ConvertOptions, WebSource};
use bca::weights::dtype::{self, DType};
use bca::weights::manifest::{parse_format, row_elems, Manifest};
use bca::weights::safetensors::{parse_header, write_file, SafetensorsSource};
use bca::weights::spec::{Format, Quant};
use bca::weights::tiny::{write_tiny, TinyOptions, Variant};
use bca::weights::torch::{read_state_dict, write_state_dict};
use bca::weights::{TensorInfo, WeightError, WeightSource};

fn root() -> PathBuf {
    // Test binaries have no teardown: each run removes the folders of runs that have exited.
    static SWEEP: std::sync::Once = std::sync::Once::new();
    SWEEP.call_once(|| {
        let Ok(rd) = std::fs::read_dir(std::env::temp_dir()) else {
            return;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if let Some(pid) = name.strip_prefix("bca-ckpt-test-") {
                if pid != std::process::id().to_string() && !Path::new("/proc").join(pid).exists() {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
    });
    std::env::temp_dir().join(format!("bca-ckpt-test-{}", std::process::id()))
}

fn tokenizer() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/assets/tokenizer-qwen3.json");
    if !p.exists() {
        let st = std::process::Command::new("bash")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/fetch-assets.sh"))
            .status()
            .expect("run scripts/fetch-assets.sh");
        assert!(
            st.success(),
            "scripts/fetch-assets.sh failed: the tokenizer is needed"
        );
    }
    p
}

fn tiny() -> &'static Path {
    static T: OnceLock<PathBuf> = OnceLock::new();
    T.get_or_init(|| {
        let out = root().join("tiny");
        write_tiny(&TinyOptions {
            out: out.clone(),
            seed: 7,
            variant: Variant::Instruct,
            tokenizer: tokenizer(),
        })
        .expect("bca tiny");
        out
    })
}

fn web_q4() -> &'static Path {
    static T: OnceLock<PathBuf> = OnceLock::new();
    T.get_or_init(|| {
        let out = root().join("web-q4");
        let o = ConvertOptions {
            quant: Quant::Q4,
            max_binding: 1 << 20, // force row splitting of the 152064-row tables
            max_shard: 8 << 20,   // and several shards
            progress: false,
        };
        convert(tiny(), &out, &o).expect("convert q4");
        out
    })
}

/// A fresh copy of `src` to damage.
fn copy_of(src: &Path, tag: &str) -> PathBuf {
    let dst = root().join(format!("case-{tag}"));
    let _ = std::fs::remove_dir_all(&dst);
    std::fs::create_dir_all(&dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
    }
    dst
}

fn manifest(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap()
}

fn put_manifest(dir: &Path, v: &serde_json::Value) {
    std::fs::write(dir.join("manifest.json"), serde_json::to_vec(v).unwrap()).unwrap();
}

fn st_file(header: &[u8], data_len: usize) -> Vec<u8> {
    let mut b = (header.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(header);
    b.extend(std::iter::repeat_n(0u8, data_len));
    b
}

// ---------------------------------------------------------------- the happy path

#[test]
fn tiny_is_a_faithful_small_copy() {
    let dir = tiny();
    for f in [
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "model.safetensors.index.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "hift.pt",
    ] {
        assert!(dir.join(f).exists(), "{f} missing");
    }
    let total: u64 = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(total < 60 << 20, "tiny folder is {total} bytes");
    let s = check_hf(dir).unwrap();
    assert_eq!(s.config.llm.vocab_size, 152064);
    assert_eq!(s.config.llm.hidden_size, 64);
    let src = SafetensorsSource::open_dir(dir).unwrap();
    let w = src.info("model.layers.1.self_attn.W_pack.weight").unwrap();
    assert_eq!(w.shape, vec![(4 + 2 * 2) * 16, 64]);
    assert_eq!(w.dtype, DType::BF16);
    // seeded weights: ~N(0, 0.02²), norms ~1, not constant
    let v = src.read_f32("model.layers.0.mlp.up_proj.weight").unwrap();
    let sd = (v.iter().map(|x| x * x).sum::<f32>() / v.len() as f32).sqrt();
    assert!((sd - 0.02).abs() < 0.002, "sd {sd}");
    let n = src.read_f32("model.norm.weight").unwrap();
    assert!(n.iter().all(|x| (x - 1.0).abs() < 0.1) && n.iter().any(|x| *x != 1.0));
    // hift.pt keeps the legacy weight-norm names
    let h = read_state_dict(&dir.join("hift.pt")).unwrap();
    assert!(h.iter().any(|t| t.name == "conv_pre.weight_g"));
    assert!(h
        .iter()
        .any(|t| t.name == "resblocks.8.activations2.2.alpha"));
    // the same seed gives the same bytes, another seed other bytes
    let again = root().join("tiny-again");
    write_tiny(&TinyOptions {
        out: again.clone(),
        seed: 7,
        variant: Variant::Instruct,
        tokenizer: tokenizer(),
    })
    .unwrap();
    let a = std::fs::read(dir.join("model-00001-of-00002.safetensors")).unwrap();
    let b = std::fs::read(again.join("model-00001-of-00002.safetensors")).unwrap();
    assert!(a == b, "tiny is not deterministic");
}

#[test]
fn tiny_tokenizer_has_baichuan_tokens_at_real_ids() {
    let tok = tokenizers::Tokenizer::from_file(tiny().join("tokenizer.json")).unwrap();
    for (id, name) in [
        (151643, "<|endoftext|>"),
        (151665, "<B_SYS>"),
        (151667, "<C_Q>"),
        (151668, "<C_A>"),
        (151676, "<audio_start_baichuan>"),
        (151678, "<audio_pad_baichuan>"),
        (151697, "<audiotext_start_baichuan>"),
        (151700, "<audiogen_start_baichuan>"),
        (151701, "<audiogen_end_baichuan>"),
    ] {
        assert_eq!(tok.token_to_id(name), Some(id), "{name}");
    }
    // Qwen3's own 151665–151668 (<tool_response> …) are gone
    assert_eq!(tok.token_to_id("<tool_response>"), None);
    let enc = tok
        .encode(
            "<C_Q>你好<audio_start_baichuan><audio_pad_baichuan><audio_end_baichuan>",
            false,
        )
        .unwrap();
    let ids = enc.get_ids();
    assert_eq!(ids[0], 151667);
    assert_eq!(&ids[ids.len() - 3..], &[151676, 151678, 151677]);
    assert!(tok.get_vocab_size(true) >= 151702);
}

/// tiny → convert (f16, q8, q4) → every tensor read back equals the documented transform of
/// the source: f16 bit-exact with bf16→f16, q8/q4 equal to tensor::quant's dequantisation,
/// f32 exact, HiFT equal to the folded weight norm.
#[test]
fn round_trip_every_tensor() {
    let src = SafetensorsSource::open_dir(tiny()).unwrap();
    let (_, hift) = load_hift(&tiny().join("hift.pt")).unwrap();
    for (quant, dir) in [
        (Quant::F16, None),
        (Quant::Q8, None),
        (Quant::Q4, Some(web_q4().to_path_buf())),
    ] {
        let dir = dir.unwrap_or_else(|| {
            let out = root().join(format!("web-{quant:?}"));
            convert(
                tiny(),
                &out,
                &ConvertOptions {
                    quant,
                    ..Default::default()
                },
            )
            .unwrap();
            out
        });
        let web = WebSource::open(&dir).unwrap();
        let mut counts = [0usize; 4];
        for t in &web.manifest.tensors {
            let fmt = parse_format(&t.format).unwrap();
            if let Some(h) = t.name.strip_prefix("hift.") {
                let want = &hift.iter().find(|x| x.name == t.name).unwrap().data;
                let got = web.read_f32(&t.name).unwrap();
                let want: Vec<f32> = match fmt {
                    Format::F16 => want
                        .iter()
                        .map(|x| half::f16::from_f32(*x).to_f32())
                        .collect(),
                    _ => want.clone(),
                };
                assert_eq!(got, want, "hift {h}");
                continue;
            }
            let info = src.info(&t.name).unwrap();
            let raw = src.read(&t.name).unwrap();
            match fmt {
                Format::F16 => {
                    let want = dtype::f16_bytes(&dtype::to_f16(info.dtype, &raw));
                    assert!(
                        web.raw(&t.name).unwrap() == want,
                        "{} f16 not bit-exact",
                        t.name
                    );
                }
                Format::F32 => {
                    let want = dtype::to_f32(info.dtype, &raw);
                    assert_eq!(web.read_f32(&t.name).unwrap(), want, "{}", t.name);
                }
                Format::Q8 | Format::Q4 => {
                    let w = dtype::to_f32(info.dtype, &raw);
                    let (r, c) = (t.shape[0], row_elems(&t.shape));
                    let want = if fmt == Format::Q8 {
                        dequantize_q8(&quantize_q8(&w, r, c))
                    } else {
                        dequantize_q4(&quantize_q4(&w, r, c))
                    };
                    assert!(web.read_f32(&t.name).unwrap() == want, "{} {fmt:?}", t.name);
                }
            }
            counts[fmt as usize] += 1;
        }
        match quant {
            Quant::F16 => assert_eq!(counts[2] + counts[3], 0),
            Quant::Q8 => assert!(counts[2] > 20 && counts[3] == 0),
            Quant::Q4 => assert!(counts[3] > 20 && counts[2] == 0),
        }
        // the split: no part larger than the binding limit; lm_head in several parts for q4
        let m: &Manifest = &web.manifest;
        if quant == Quant::Q4 {
            assert!(m.shards.len() > 1);
            let lm = m
                .tensors
                .iter()
                .find(|t| t.name == "lm_head.weight")
                .unwrap();
            assert!(lm.parts.len() > 1);
            for t in &m.tensors {
                for p in &t.parts {
                    assert!(p.data.length <= 1 << 20 && p.data.offset % 256 == 0);
                }
            }
        }
    }
}

// ---------------------------------------------------------------- safetensors headers

#[test]
fn empty_safetensors_file() {
    let e = parse_header(&[], "x.safetensors").unwrap_err();
    assert!(
        matches!(e, WeightError::EmptyFile { ref file } if file == "x.safetensors"),
        "{e}"
    );
}

#[test]
fn header_length_overflow() {
    let mut b = u64::MAX.to_le_bytes().to_vec();
    b.extend_from_slice(b"{}");
    let e = parse_header(&b, "x").unwrap_err();
    assert!(
        matches!(
            e,
            WeightError::HeaderLength {
                len: u64::MAX,
                file_len: 10,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn header_not_json() {
    let e = parse_header(&st_file(b"{\"a\": [1, 2", 0), "x").unwrap_err();
    assert!(matches!(e, WeightError::HeaderNotJson { .. }), "{e}");
}

#[test]
fn header_not_utf8_name() {
    let h = b"{\"w\xff\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
    let e = parse_header(&st_file(h, 4), "x").unwrap_err();
    assert!(matches!(e, WeightError::HeaderNotUtf8 { .. }), "{e}");
}

#[test]
fn duplicate_names_in_header() {
    let h = br#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#;
    let e = parse_header(&st_file(h, 8), "x").unwrap_err();
    assert!(
        matches!(e, WeightError::DuplicateName { ref name, .. } if name == "a"),
        "{e}"
    );
}

#[test]
fn overlapping_offsets() {
    let h = br#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#;
    let e = parse_header(&st_file(h, 12), "x").unwrap_err();
    assert!(
        matches!(e, WeightError::Overlap { ref a, ref b, .. } if a == "a" && b == "b"),
        "{e}"
    );
}

#[test]
fn offsets_out_of_bounds() {
    let h = br#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[100,104]}}"#;
    let e = parse_header(&st_file(h, 8), "x").unwrap_err();
    assert!(
        matches!(e, WeightError::OutOfBounds { ref name, start: 100, end: 104, data_len: 8, .. } if name == "b"),
        "{e}"
    );
}

#[test]
fn shape_disagrees_with_offsets() {
    let h = br#"{"a":{"dtype":"BF16","shape":[3],"data_offsets":[0,4]}}"#;
    let e = parse_header(&st_file(h, 4), "x").unwrap_err();
    assert!(
        matches!(e, WeightError::BadEntry { ref name, .. } if name == "a"),
        "{e}"
    );
}

#[test]
fn unsupported_dtype() {
    let h = br#"{"ids":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}"#;
    let e = parse_header(&st_file(h, 8), "x").unwrap_err();
    assert!(
        matches!(e, WeightError::UnsupportedDtype { ref name, ref dtype } if name == "ids" && dtype == "I64"),
        "{e}"
    );
}

#[test]
fn truncated_shard() {
    let d = copy_of(tiny(), "truncated");
    let p = d.join("model-00002-of-00002.safetensors");
    let b = std::fs::read(&p).unwrap();
    std::fs::write(&p, &b[..b.len() - 100]).unwrap();
    let e = check_hf(&d).unwrap_err();
    assert!(
        matches!(e, WeightError::Truncated { got, want, .. } if want - got == 100),
        "{e}"
    );
}

// ---------------------------------------------------------------- HF folder vs config

/// Rewrites shard 2 through `f` (and the index to match).
fn rewrite_shard2(tag: &str, f: impl Fn(&mut Vec<(TensorInfo, Vec<u8>)>)) -> PathBuf {
    let d = copy_of(tiny(), tag);
    let p = d.join("model-00002-of-00002.safetensors");
    let mut ts: Vec<(TensorInfo, Vec<u8>)> = {
        let buf = std::fs::read(&p).unwrap();
        let (start, entries) = parse_header(&buf, "s2").unwrap();
        entries
            .into_iter()
            .map(|e| (e.info, buf[start + e.begin..start + e.end].to_vec()))
            .collect()
    };
    f(&mut ts);
    write_file(&p, &ts).unwrap();
    let mut idx: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("model.safetensors.index.json")).unwrap())
            .unwrap();
    let wm = idx["weight_map"].as_object_mut().unwrap();
    wm.retain(|_, v| v != "model-00002-of-00002.safetensors");
    for (t, _) in &ts {
        wm.insert(t.name.clone(), "model-00002-of-00002.safetensors".into());
    }
    std::fs::write(d.join("model.safetensors.index.json"), idx.to_string()).unwrap();
    d
}

#[test]
fn missing_tensor() {
    let d = rewrite_shard2("missing", |ts| {
        ts.retain(|(t, _)| t.name != "audio_head.headnorm.weight")
    });
    let e = check_hf(&d).unwrap_err();
    assert!(
        matches!(e, WeightError::MissingTensor { ref name } if name == "audio_head.headnorm.weight"),
        "{e}"
    );
}

#[test]
fn extra_tensor() {
    let d = rewrite_shard2("extra", |ts| {
        ts.push((
            TensorInfo {
                name: "visual.proj.weight".into(),
                shape: vec![2],
                dtype: DType::BF16,
            },
            vec![0; 4],
        ))
    });
    let e = check_hf(&d).unwrap_err();
    assert!(
        matches!(e, WeightError::ExtraTensor { ref name } if name == "visual.proj.weight"),
        "{e}"
    );
}

#[test]
fn wrong_shape() {
    let d = rewrite_shard2("shape", |ts| {
        for (t, _) in ts.iter_mut() {
            if t.name == "audio_head.headnorm.weight" {
                t.shape = vec![32, 2];
            }
        }
    });
    let e = check_hf(&d).unwrap_err();
    assert!(
        matches!(e, WeightError::WrongShape { ref name, ref got, ref want } if name == "audio_head.headnorm.weight" && got == &vec![32, 2] && want == &vec![64]),
        "{e}"
    );
}

#[test]
fn index_names_a_tensor_no_shard_has() {
    let d = copy_of(tiny(), "index");
    let p = d.join("model.safetensors.index.json");
    let mut idx: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    idx["weight_map"]["ghost.weight"] = "model-00001-of-00002.safetensors".into();
    std::fs::write(&p, idx.to_string()).unwrap();
    let e = check_hf(&d).unwrap_err();
    assert!(
        matches!(e, WeightError::Manifest { ref msg, .. } if msg.contains("ghost.weight")),
        "{e}"
    );
}

fn with_config(tag: &str, f: impl Fn(&mut serde_json::Value)) -> Result<(), WeightError> {
    let d = root().join(format!("cfg-{tag}"));
    std::fs::create_dir_all(&d).unwrap();
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tiny().join("config.json")).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(d.join("config.json"), v.to_string()).unwrap();
    check_hf(&d).map(|_| ())
}

#[test]
fn unknown_model_type() {
    let e = with_config("type", |v| v["model_type"] = "qwen2".into()).unwrap_err();
    assert!(
        matches!(e, WeightError::Config(ConfigError::UnknownModelType { ref found, ref file }) if found == "qwen2" && file.ends_with("config.json")),
        "{e}"
    );
}

#[test]
fn missing_config_key() {
    let e = with_config("key", |v| {
        v["audio_config"]["vq_config"]
            .as_object_mut()
            .unwrap()
            .remove("codebook_sizes");
    })
    .unwrap_err();
    assert!(
        matches!(e, WeightError::Config(ConfigError::MissingKey { ref key, .. }) if key == "audio_config.vq_config.codebook_sizes"),
        "{e}"
    );
    let e = with_config("key2", |v| {
        v.as_object_mut().unwrap().remove("num_key_value_heads");
    })
    .unwrap_err();
    assert!(
        matches!(e, WeightError::Config(ConfigError::MissingKey { ref key, .. }) if key == "num_key_value_heads"),
        "{e}"
    );
}

#[test]
fn inconsistent_config() {
    let e = with_config("incons", |v| {
        v["flow_matching_config"]["prenet_in_dim"] = 65.into()
    })
    .unwrap_err();
    assert!(
        matches!(e, WeightError::Config(ConfigError::Inconsistent { ref key, .. }) if key == "flow_matching_config.prenet_in_dim"),
        "{e}"
    );
}

#[test]
fn empty_config_file() {
    let d = root().join("cfg-empty");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("config.json"), b"").unwrap();
    let e = check_hf(&d).unwrap_err();
    assert!(
        matches!(e, WeightError::EmptyFile { ref file } if file.ends_with("config.json")),
        "{e}"
    );
}

#[test]
fn hift_missing_tensor_and_bad_pickle() {
    let d = copy_of(tiny(), "hift");
    let p = d.join("hift.pt");
    let mut ts = read_state_dict(&p).unwrap();
    ts.retain(|t| t.name != "ups.1.weight_v");
    write_state_dict(&p, &ts).unwrap();
    let e = check_hf(&d).unwrap_err();
    assert!(
        matches!(e, WeightError::MissingTensor { ref name } if name == "ups.1.weight_v"),
        "{e}"
    );
    // an archive whose pickle stops mid-stream
    let bad = {
        use std::io::Write;
        let mut buf = std::io::Cursor::new(Vec::new());
        let mut z = zip::ZipWriter::new(&mut buf);
        let o = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        z.start_file("archive/data.pkl", o).unwrap();
        z.write_all(&[0x80, 2, b'}', b'(', b'X', 9, 0, 0]).unwrap();
        z.finish().unwrap();
        buf.into_inner()
    };
    std::fs::write(&p, bad).unwrap();
    let e = check_hf(&d).unwrap_err();
    assert!(
        matches!(e, WeightError::Pickle { ref msg, .. } if msg.contains("unexpected end")),
        "{e}"
    );
}

// ---------------------------------------------------------------- converted folders

#[test]
fn converted_folder_checks_clean() {
    let s = check_web(web_q4()).unwrap();
    assert!(
        s.bytes.contains_key("q4") && s.bytes.contains_key("f16") && s.bytes.contains_key("f32")
    );
}

/// A binding too small for a matrix the engine reads in one binding (every one but the
/// vocabulary tables and the audio head's FFN) is refused before anything is written, with
/// the size the conversion needs; the tables that may be split are split (web_q4: 1 MiB).
/// A `--max-binding` smaller than a whole matrix splits it in row parts like the vocabulary
/// tables (the loader joins them: tests/loader.rs); every span fits the binding, and q8 parts
/// of a matrix with an odd block count per row (none in the tiny model; the rule's unit test
/// is in `weights::convert`) end on whole words of scales (even rows), so they can be joined.
/// The folder checks clean.
#[test]
fn convert_splits_any_matrix_to_the_binding() {
    let out = root().join("web-q8-4k");
    let max = 4u64 << 10;
    let o = ConvertOptions {
        quant: Quant::Q8,
        max_binding: max,
        max_shard: 8 << 20,
        progress: false,
    };
    convert(tiny(), &out, &o).expect("convert");
    check_web(&out).expect("check");
    let m = manifest(&out);
    let mut odd_split = 0;
    let mut split = 0;
    for t in m["tensors"].as_array().unwrap() {
        let parts = t["parts"].as_array().unwrap();
        let shape: Vec<u64> = t["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        let nb = shape.iter().skip(1).product::<u64>().div_ceil(32);
        let name = t["name"].as_str().unwrap();
        if parts.len() > 1 && !name.contains("embed_tokens") && name != "lm_head.weight" {
            split += 1;
        }
        for (i, p) in parts.iter().enumerate() {
            for s in [&p["data"], &p["scales"]] {
                if let Some(len) = s["length"].as_u64() {
                    assert!(len <= max, "{name} part {i}: {len} bytes");
                }
            }
            let rows = p["rows"][1].as_u64().unwrap() - p["rows"][0].as_u64().unwrap();
            if t["format"] == "q8" && nb % 2 == 1 && i + 1 < parts.len() {
                odd_split += 1;
                assert_eq!(rows % 2, 0, "{name} part {i}: {rows} rows of {nb} blocks");
            }
        }
    }
    assert!(
        split > 10,
        "only {split} matrices besides the tables are split"
    );
    eprintln!("{split} matrices split, {odd_split} q8 parts of an odd block count");
}

#[test]
fn flipped_byte_is_a_hash_mismatch() {
    let d = copy_of(web_q4(), "flip");
    let p = d.join("shard-00001.bin");
    let mut b = std::fs::read(&p).unwrap();
    b[1000] ^= 0x40;
    std::fs::write(&p, b).unwrap();
    let e = check_web(&d).unwrap_err();
    assert!(
        matches!(e, WeightError::HashMismatch { ref file, .. } if file == "shard-00001.bin"),
        "{e}"
    );
}

#[test]
fn truncated_web_shard() {
    let d = copy_of(web_q4(), "webtrunc");
    let p = d.join("shard-00000.bin");
    let b = std::fs::read(&p).unwrap();
    std::fs::write(&p, &b[..b.len() - 1]).unwrap();
    let e = check_web(&d).unwrap_err();
    assert!(
        matches!(e, WeightError::SizeMismatch { got, want, .. } if got + 1 == want),
        "{e}"
    );
}

#[test]
fn unknown_quant_format() {
    let d = copy_of(web_q4(), "fmt");
    let mut m = manifest(&d);
    m["tensors"][3]["format"] = "q3_k".into();
    put_manifest(&d, &m);
    let e = check_web(&d).unwrap_err();
    assert!(
        matches!(e, WeightError::UnknownFormat { ref format, .. } if format == "q3_k"),
        "{e}"
    );
}

#[test]
fn wrong_dtype_in_manifest() {
    let d = copy_of(web_q4(), "dtype");
    let mut m = manifest(&d);
    let t = m["tensors"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|t| t["name"] == "model.norm.weight")
        .unwrap();
    t["format"] = "f16".into();
    put_manifest(&d, &m);
    let e = check_web(&d).unwrap_err();
    assert!(
        matches!(e, WeightError::WrongDtype { ref name, ref got, ref want } if name == "model.norm.weight" && got == "f16" && want == "f32"),
        "{e}"
    );
}

#[test]
fn newer_manifest_version() {
    let d = copy_of(web_q4(), "version");
    let mut m = manifest(&d);
    m["format_version"] = 2.into();
    put_manifest(&d, &m);
    let e = check_web(&d).unwrap_err();
    assert!(
        matches!(
            e,
            WeightError::NewerFormat {
                found: 2,
                supported: 1,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn config_manifest_mismatch() {
    let d = copy_of(web_q4(), "cfgmis");
    let mut c: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("config.json")).unwrap()).unwrap();
    c["rope_theta"] = 10000.0.into();
    std::fs::write(d.join("config.json"), c.to_string()).unwrap();
    let e = check_web(&d).unwrap_err();
    assert!(matches!(e, WeightError::ConfigMismatch { .. }), "{e}");
}

#[test]
fn manifest_parts_overlap() {
    let d = copy_of(web_q4(), "overlap");
    let mut m = manifest(&d);
    // point tensor 1's data at tensor 0's bytes (same length so only the overlap is wrong)
    let t = m["tensors"].as_array_mut().unwrap();
    let (a, b) = (
        t[1]["parts"][0]["data"].clone(),
        t[3]["parts"][0]["data"].clone(),
    );
    assert_eq!(
        a["length"], b["length"],
        "fixture: conv1.bias and conv2.bias have equal sizes"
    );
    t[3]["parts"][0]["data"] = a;
    put_manifest(&d, &m);
    let e = check_web(&d).unwrap_err();
    assert!(matches!(e, WeightError::Overlap { .. }), "{e}");
}

#[test]
fn manifest_part_out_of_bounds_and_misaligned() {
    let d = copy_of(web_q4(), "oob");
    let mut m = manifest(&d);
    let bytes = m["shards"][0]["bytes"].as_u64().unwrap();
    m["tensors"][0]["parts"][0]["data"]["offset"] = (bytes.next_multiple_of(256)).into();
    put_manifest(&d, &m);
    let e = check_web(&d).unwrap_err();
    assert!(
        matches!(e, WeightError::OutOfBounds { data_len, .. } if data_len == bytes),
        "{e}"
    );
    m["tensors"][0]["parts"][0]["data"]["offset"] = 8.into();
    put_manifest(&d, &m);
    let e = check_web(&d).unwrap_err();
    assert!(
        matches!(e, WeightError::BadEntry { ref msg, .. } if msg.contains("aligned")),
        "{e}"
    );
}

#[test]
fn manifest_duplicate_missing_and_wrong_shape() {
    let d = copy_of(web_q4(), "dups");
    let orig = manifest(&d);
    let mut m = orig.clone();
    let first = m["tensors"][0].clone();
    m["tensors"].as_array_mut().unwrap().push(first);
    put_manifest(&d, &m);
    let e = check_web(&d).unwrap_err();
    assert!(matches!(e, WeightError::DuplicateName { .. }), "{e}");

    let mut m = orig.clone();
    m["tensors"]
        .as_array_mut()
        .unwrap()
        .retain(|t| t["name"] != "lm_head.weight");
    put_manifest(&d, &m);
    let e = check_web(&d).unwrap_err();
    assert!(
        matches!(e, WeightError::MissingTensor { ref name } if name == "lm_head.weight"),
        "{e}"
    );

    let mut m = orig;
    for t in m["tensors"].as_array_mut().unwrap() {
        if t["name"] == "model.norm.weight" {
            t["shape"] = serde_json::json!([65]);
        }
    }
    put_manifest(&d, &m);
    let e = check_web(&d).unwrap_err();
    assert!(
        matches!(e, WeightError::WrongShape { ref name, .. } if name == "model.norm.weight"),
        "{e}"
    );
}

#[test]
fn empty_and_non_json_manifest() {
    let d = root().join("empty-manifest");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("manifest.json"), b"").unwrap();
    let e = check_web(&d).unwrap_err();
    assert!(matches!(e, WeightError::EmptyFile { .. }), "{e}");
    std::fs::write(d.join("manifest.json"), b"format_version: 1").unwrap();
    let e = check_web(&d).unwrap_err();
    assert!(matches!(e, WeightError::HeaderNotJson { .. }), "{e}");
}
