//! Audio in (spec §2–§4) against the goldens of scripts/goldens/audio_in.py:
//! - log-mel vs transformers' WhisperFeatureExtractor(128) on real speech (AISHELL-1 clip) and
//!   synthesized English at 8–48 kHz, 8/16/24-bit int, 32-bit float, stereo;
//! - the encoder vs transformers' WhisperEncoder layer by layer, on `bca tiny --seed 0` weights
//!   and on the real Whisper tiny.en weights (CTranslate2 file read here, independently);
//! - bridge + RVQ codes vs a NumPy reference of the spec;
//! - the CLI (`bca mel`, `bca encode`, `bca trace`) and its errors.
//!
//! Tolerances (stated in ARCHITECTURE.md "Audio in"): mel max |err| ≤ 1e-4; encoder taps:
//! max |err| relative to the tap's max |value| ≤ 1e-4 on the f32 path, ≤ 1e-2 on f16 (2e-2 for the trained tiny.en weights); codes
//! exact on the f32 path (except where the reference's best two distances are within 1e-3),
//! f16 mismatch ≤ 25 % of codes.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use bca::audio::{self, mel::Mel, MelConfig};
use bca::model::audio_in::{AudioEncoder, AudioIn, TraceTensor};
use bca::model::{HostTensor, Weights};
use bca::tensor::{Matrix, Tensor, WeightFormat};
use bca::util::npy::{self, NpyArray};
use bca::weights::tiny::{write_tiny, TinyOptions, Variant};
use common::{ctx, Path as GpuPath, PATHS};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn goldens() -> PathBuf {
    repo().join("tests/goldens/audio_in")
}

fn meta() -> &'static serde_json::Value {
    static M: OnceLock<serde_json::Value> = OnceLock::new();
    M.get_or_init(|| {
        let s = std::fs::read_to_string(goldens().join("meta.json")).expect("meta.json");
        serde_json::from_str(&s).expect("meta.json parses")
    })
}

fn load_npy(rel: &str) -> NpyArray {
    let p = goldens().join(rel);
    npy::read(&std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn f32s(a: NpyArray) -> (Vec<usize>, Vec<f32>) {
    match a {
        NpyArray::F32 { shape, data } => (shape, data),
        NpyArray::I32 { .. } => panic!("expected f32"),
    }
}

fn i32s(a: NpyArray) -> (Vec<usize>, Vec<i32>) {
    match a {
        NpyArray::I32 { shape, data } => (shape, data),
        NpyArray::F32 { .. } => panic!("expected i32"),
    }
}

/// Fetches the third-party audio assets (AISHELL clips, Whisper tiny.en) if missing.
fn asset(rel: &str) -> PathBuf {
    let p = repo().join(".cache/assets").join(rel);
    if !p.exists() {
        let st = Command::new("bash")
            .arg(repo().join("scripts/fetch-audio-assets.sh"))
            .status()
            .expect("run scripts/fetch-audio-assets.sh");
        assert!(
            st.success() && p.exists(),
            "scripts/fetch-audio-assets.sh did not produce {rel}"
        );
    }
    p
}

fn wav_path(rel: &str) -> PathBuf {
    if let Some(r) = rel.strip_prefix(".cache/assets/") {
        asset(r)
    } else {
        repo().join(rel)
    }
}

fn pcm16k(path: &Path) -> Vec<f32> {
    let p = audio::read_wav(&std::fs::read(path).expect("read wav")).expect("decode wav");
    audio::resample(&p.samples, p.rate).expect("resample")
}

/// Max |a − b| and its index.
fn max_err(a: &[f32], b: &[f32]) -> (f32, usize) {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .enumerate()
        .map(|(i, (x, y))| ((x - y).abs(), i))
        .fold((0.0, 0), |m, e| if e.0 > m.0 { e } else { m })
}

fn max_abs(a: &[f32]) -> f32 {
    a.iter().fold(0f32, |m, v| m.max(v.abs()))
}

// ---------------------------------------------------------------------------------------------
// mel

#[test]
fn mel_matches_transformers_on_every_clip() {
    let mels = meta()["mel"].as_object().expect("meta mel");
    assert!(mels.len() >= 8, "expected ≥ 8 clips, got {}", mels.len());
    for (name, info) in mels {
        let x = pcm16k(&wav_path(info["wav"].as_str().unwrap()));
        assert_eq!(
            x.len() as u64,
            info["samples_16k"].as_u64().unwrap(),
            "{name}: 16 kHz length"
        );
        let m = audio::log_mel(MelConfig::default(), &x).unwrap();
        assert_eq!(
            m.frames as u64,
            info["frames_total"].as_u64().unwrap(),
            "{name}"
        );
        let frames: Vec<usize> = info["frames"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        let (shape, want) = f32s(load_npy(&format!("mel/{name}.npy")));
        assert_eq!(shape, vec![128, frames.len()]);
        let got: Vec<f32> = (0..128)
            .flat_map(|b| frames.iter().map(move |&t| (b, t)))
            .map(|(b, t)| m.data[b * m.frames + t])
            .collect();
        let (e, i) = max_err(&got, &want);
        println!("{name}: mel max |err| {e:.2e} over {} values", got.len());
        assert!(
            e <= 1e-4,
            "{name}: mel max |err| {e} at bin {}, frame {}",
            i / frames.len(),
            frames[i % frames.len()]
        );
    }
}

#[test]
fn resampler_agrees_with_an_independent_one() {
    // scipy's polyphase resampler (Kaiser window) against ours on the same input: both are
    // good low-pass designs with different transition bands, so the signals agree to ~0.15 %
    // of full scale rms and the mels on average to a few 1e-3 (up to 0.03 from 8 kHz, where
    // the empty 4–8 kHz band is filled by different stop-band residues).
    for (name, info) in meta()["mel"].as_object().unwrap() {
        if let Some(d) = info
            .get("resample_vs_scipy_pcm_rms")
            .and_then(|v| v.as_f64())
        {
            let m = info["mel_scipy_resampled_vs_ours_mean_abs"]
                .as_f64()
                .unwrap();
            println!("{name}: pcm rms Δ {d:.2e}, mel mean |Δ| {m:.2e}");
            assert!(
                d < 3e-3,
                "{name}: resampled PCM differs from scipy's by {d} rms"
            );
            assert!(
                m < 5e-2,
                "{name}: mel from scipy-resampled PCM differs by {m} on average"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// tiny checkpoint: encoder, bridge, RVQ

fn tokenizer() -> PathBuf {
    let p = repo().join(".cache/assets/tokenizer-qwen3.json");
    if !p.exists() {
        let st = Command::new("bash")
            .arg(repo().join("scripts/fetch-assets.sh"))
            .status()
            .expect("run scripts/fetch-assets.sh");
        assert!(
            st.success(),
            "scripts/fetch-assets.sh failed: the tokenizer is needed"
        );
    }
    p
}

fn tmp_root() -> PathBuf {
    std::env::temp_dir().join(format!("bca-audioin-test-{}", std::process::id()))
}

/// `bca tiny --seed 0 --variant base` (what the golden script used).
fn tiny() -> &'static Path {
    static T: OnceLock<PathBuf> = OnceLock::new();
    T.get_or_init(|| {
        let out = tmp_root().join("tiny");
        write_tiny(&TinyOptions {
            out: out.clone(),
            seed: 0,
            variant: Variant::Base,
            tokenizer: tokenizer(),
        })
        .expect("bca tiny");
        out
    })
}

fn golden_mel(rel: &str) -> Mel {
    let (shape, data) = f32s(load_npy(rel));
    Mel {
        n_mels: shape[0],
        frames: shape[1],
        data,
    }
}

fn by_name(tr: &[TraceTensor], name: &str) -> TraceTensor {
    tr.iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no tap {name}"))
        .clone()
}

fn tol(path: GpuPath) -> f32 {
    match path {
        GpuPath::F32 => 1e-4,
        _ => 1e-2,
    }
}

/// Trained weights in f16 activations: the worst tap (English clip, layer 3 of tiny.en) measured
/// 8.6e-3 with the matrix–vector kernel and 1.15e-2 with the tiled kernel (another summation
/// order, f16 outputs); f16 is bounded at 2e-2 here, f32 stays at 1e-4.
fn tol_real(path: GpuPath) -> f32 {
    match path {
        GpuPath::F32 => 1e-4,
        _ => 2e-2,
    }
}

#[test]
fn tiny_encoder_bridge_rvq_match_the_references() {
    let m = &meta()["enc_tiny"];
    let mel = golden_mel("enc_tiny/mel.npy");
    let (_, want_codes) = i32s(load_npy("enc_tiny/codes.npy"));
    let (_, margin) = f32s(load_npy("enc_tiny/margin.npy"));
    for path in PATHS {
        let ctx = ctx(path);
        let w = Weights::open(tiny(), WeightFormat::F16).expect("open tiny");
        let model = AudioIn::load(ctx, &w).expect("load audio in");
        let mut tr = Vec::new();
        let enc =
            pollster::block_on(model.encode_mels(ctx, std::slice::from_ref(&mel), Some(&mut tr)))
                .expect("encode");
        assert_eq!(enc.frames as u64, m["bridge_frames"].as_u64().unwrap());
        let mut taps: Vec<String> = m["taps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        taps.push("bridge.out".into());
        for name in &taps {
            let (shape, want) = f32s(load_npy(&format!("enc_tiny/{name}.npy")));
            let got = by_name(&tr, name);
            assert_eq!(got.shape, shape, "{path:?} {name}");
            let (e, i) = max_err(&got.data, &want);
            let rel = e / max_abs(&want);
            println!(
                "{path:?} {name}: max |err| {e:.2e} (rel {rel:.2e}) at row {}",
                i / shape[1]
            );
            assert!(
                rel <= tol(path),
                "{path:?} {name}: rel err {rel} > {}",
                tol(path)
            );
        }
        // codes: level by level; after the first mismatch in a frame the residuals differ
        let mut bad = 0;
        let mut bad_unexplained = 0;
        for (i, (&g, &w)) in enc.codes.iter().zip(&want_codes).enumerate() {
            if g != w {
                bad += 1;
                let (t, l) = (i / 8, i % 8);
                let earlier = (0..l).any(|j| enc.codes[t * 8 + j] != want_codes[t * 8 + j]);
                if !earlier && margin[i] > 1e-3 {
                    bad_unexplained += 1;
                }
            }
        }
        let rate = bad as f32 / want_codes.len() as f32;
        println!("{path:?}: {bad}/{} codes differ ({:.1} %), {bad_unexplained} not explained by a near tie", want_codes.len(), rate * 100.0);
        match path {
            GpuPath::F32 => assert_eq!(
                bad_unexplained, 0,
                "f32 path codes must match the reference"
            ),
            _ => assert!(
                rate <= 0.25,
                "{path:?}: {:.1} % of codes differ",
                rate * 100.0
            ),
        }
    }
}

#[test]
fn rvq_residuals_and_lookup_are_consistent() {
    // the last level's residual = bridge output − Σ chosen codewords (the inverse lookup)
    let ctx = ctx(GpuPath::F32);
    let w = Weights::open(tiny(), WeightFormat::F16).unwrap();
    let model = AudioIn::load(ctx, &w).unwrap();
    let mel = golden_mel("enc_tiny/mel.npy");
    let mut tr = Vec::new();
    let enc = pollster::block_on(model.encode_mels(ctx, &[mel], Some(&mut tr))).unwrap();
    let r = by_name(&tr, "bridge.out");
    let res7 = by_name(&tr, "rvq.residual.7");
    let codes: Vec<u32> = enc.codes.iter().map(|&c| c as u32).collect();
    let mut rec = bca::gpu::Recorder::new(ctx, "lookup");
    let sum = model.bridge.lookup(&mut rec, &codes).unwrap();
    rec.submit().unwrap();
    let sum = pollster::block_on(ctx.read_f32(&sum, r.data.len())).unwrap();
    let recon: Vec<f32> = r.data.iter().zip(&sum).map(|(a, b)| a - b).collect();
    let (e, _) = max_err(&recon, &res7.data);
    assert!(e < 1e-4, "r − Σc vs last residual: {e}");
    let (_, want7) = f32s(load_npy("enc_tiny/rvq.residual.7.npy"));
    let (e7, _) = max_err(&res7.data, &want7);
    assert!(
        e7 / max_abs(&want7) < 5e-3,
        "last residual vs reference: {e7}"
    );
    // out-of-range codes are a typed error
    let mut rec = bca::gpu::Recorder::new(ctx, "lookup");
    let err = model
        .bridge
        .lookup(&mut rec, &[1_000_000, 0, 0, 0, 0, 0, 0, 0])
        .expect_err("error");
    assert!(err.to_string().contains("outside codebook 0"), "{err}");
}

#[test]
fn odd_chunk_in_a_batch_reads_the_padded_conv1_frame() {
    // spec §3 step 0: two chunks, the second shorter with odd T: its last encoder frame must
    // see conv1's output at frame T (one zero mel column), not conv2's zero padding.
    let ctx = ctx(GpuPath::F32);
    let w = Weights::open(tiny(), WeightFormat::F16).unwrap();
    let model = AudioIn::load(ctx, &w).unwrap();
    let full = golden_mel("enc_tiny/mel.npy");
    let t = 101; // odd
    let part = Mel {
        n_mels: 128,
        frames: t,
        data: (0..128)
            .flat_map(|b| full.data[b * full.frames..b * full.frames + t].to_vec())
            .collect(),
    };
    let mut alone = Vec::new();
    pollster::block_on(model.encode_mels(ctx, std::slice::from_ref(&part), Some(&mut alone)))
        .unwrap();
    let mut batch = Vec::new();
    pollster::block_on(model.encode_mels(ctx, &[full.clone(), part], Some(&mut batch))).unwrap();
    let a = by_name(&alone, "encoder.conv");
    let b = by_name(&batch, "chunk1.encoder.conv");
    let d = model.encoder.d;
    let t2 = a.shape[0];
    let (e_first, _) = max_err(&a.data[..(t2 - 1) * d], &b.data[..(t2 - 1) * d]);
    assert!(
        e_first < 1e-6,
        "frames before the last must agree: {e_first}"
    );
    // the last frame differs by the contribution of conv1's frame T (a real, non-zero change)
    let (e_last, _) = max_err(&a.data[(t2 - 1) * d..], &b.data[(t2 - 1) * d..]);
    assert!(
        e_last > 1e-3,
        "the last frame must change in a batch: {e_last}"
    );
}

// ---------------------------------------------------------------------------------------------
// real weights: Whisper tiny.en (CTranslate2 model.bin, fp16), read here independently

fn read_ct2(path: &Path) -> std::collections::HashMap<String, (Vec<usize>, Vec<f32>)> {
    let f = std::fs::read(path).expect("model.bin");
    let mut o = 0usize;
    let mut take = |n: usize| {
        let s = &f[o..o + n];
        o += n;
        s.to_vec()
    };
    let u32_ = |b: Vec<u8>| u32::from_le_bytes(b.try_into().unwrap());
    assert_eq!(u32_(take(4)), 6, "CTranslate2 binary version");
    let string = |take: &mut dyn FnMut(usize) -> Vec<u8>| {
        let n = u16::from_le_bytes(take(2).try_into().unwrap()) as usize;
        let s = take(n);
        String::from_utf8_lossy(&s)
            .trim_end_matches('\0')
            .to_string()
    };
    string(&mut take);
    take(4);
    let n = u32_(take(4));
    let mut out = std::collections::HashMap::new();
    for _ in 0..n {
        let name = string(&mut take);
        let rank = take(1)[0] as usize;
        let dims: Vec<usize> = (0..rank).map(|_| u32_(take(4)) as usize).collect();
        let dt = take(1)[0];
        let nb = u32_(take(4)) as usize;
        let b = take(nb);
        let data: Vec<f32> = match dt {
            0 => bytemuck::pod_collect_to_vec(&b),
            4 => bytemuck::pod_collect_to_vec::<u8, half::f16>(&b)
                .into_iter()
                .map(f32::from)
                .collect(),
            2 => bytemuck::pod_collect_to_vec::<u8, i16>(&b)
                .into_iter()
                .map(|v| v as f32)
                .collect(),
            _ => continue,
        };
        out.insert(name, (dims, data));
    }
    out
}

/// A Weights store holding Whisper tiny.en's encoder under our checkpoint's names.
fn whisper_tiny_en(ctx: &bca::gpu::GpuContext) -> Weights {
    let ct = read_ct2(&asset("whisper-tiny-en/model.bin"));
    let g = |n: &str| {
        ct.get(n)
            .unwrap_or_else(|| panic!("model.bin has no {n}"))
            .clone()
    };
    let (cw, _) = g("encoder/conv1/weight");
    let (d, n_mels) = (cw[0], cw[1]);
    let layers = (0..)
        .take_while(|i| ct.contains_key(&format!("encoder/layer_{i}/ffn/linear_0/weight")))
        .count();
    let heads = g("encoder/num_heads").1[0] as usize;
    let ffn = g("encoder/layer_0/ffn/linear_0/weight").0[0];
    let mut v = bca::weights::tiny::tiny_config_value(Variant::Base);
    let a = &mut v["audio_config"];
    a["num_mel_bins"] = n_mels.into();
    a["d_model"] = d.into();
    a["encoder_layers"] = layers.into();
    a["encoder_attention_heads"] = heads.into();
    a["encoder_ffn_dim"] = ffn.into();
    v["flow_matching_config"]["prenet_in_dim"] = d.into();
    let cfg = bca::weights::OmniConfig::from_value(v, "whisper-tiny.en").expect("config");
    let w = Weights::empty(cfg, WeightFormat::F16);
    let p = AudioEncoder::PREFIX;
    let host = |name: String, (shape, data): (Vec<usize>, Vec<f32>)| {
        w.insert_host(&name, HostTensor { shape, data })
    };
    let mat = |name: String, rows: usize, data: &[f32]| {
        let m = Matrix::f16_from_f32(ctx, &name, rows, data.len() / rows, data);
        w.insert_matrix(
            &name,
            vec![bca::model::weights::MatrixPart {
                row_start: 0,
                matrix: m,
            }],
        );
    };
    for c in ["conv1", "conv2"] {
        host(format!("{p}.{c}.weight"), g(&format!("encoder/{c}/weight")));
        host(format!("{p}.{c}.bias"), g(&format!("encoder/{c}/bias")));
    }
    host(
        format!("{p}.positional_embedding"),
        g("encoder/position_encodings/encodings"),
    );
    host(
        format!("{p}.layer_norm.weight"),
        g("encoder/layer_norm/gamma"),
    );
    host(format!("{p}.layer_norm.bias"), g("encoder/layer_norm/beta"));
    for i in 0..layers {
        let (s, l) = (format!("encoder/layer_{i}/"), format!("{p}.layers.{i}."));
        let (_, qkv) = g(&format!("{s}self_attention/linear_0/weight"));
        let (_, qkv_b) = g(&format!("{s}self_attention/linear_0/bias"));
        for (j, n) in ["q_proj", "k_proj", "v_proj"].iter().enumerate() {
            mat(
                format!("{l}self_attn.{n}.weight"),
                d,
                &qkv[j * d * d..(j + 1) * d * d],
            );
            if j != 1 {
                host(
                    format!("{l}self_attn.{n}.bias"),
                    (vec![d], qkv_b[j * d..(j + 1) * d].to_vec()),
                );
            }
        }
        let lin = |ours: &str, theirs: &str| {
            let (sh, data) = g(&format!("{s}{theirs}/weight"));
            mat(format!("{l}{ours}.weight"), sh[0], &data);
            host(format!("{l}{ours}.bias"), g(&format!("{s}{theirs}/bias")));
        };
        lin("self_attn.out_proj", "self_attention/linear_1");
        lin("fc1", "ffn/linear_0");
        lin("fc2", "ffn/linear_1");
        for (ours, theirs) in [
            ("self_attn_layer_norm", "self_attention/layer_norm"),
            ("final_layer_norm", "ffn/layer_norm"),
        ] {
            host(
                format!("{l}{ours}.weight"),
                g(&format!("{s}{theirs}/gamma")),
            );
            host(format!("{l}{ours}.bias"), g(&format!("{s}{theirs}/beta")));
        }
    }
    w
}

#[test]
fn real_whisper_tiny_en_encoder_matches_transformers() {
    let m = &meta()["enc_real"];
    for path in PATHS {
        let ctx = ctx(path);
        let w = whisper_tiny_en(ctx);
        let enc = AudioEncoder::load(ctx, &w).expect("load tiny.en encoder");
        for (clip, info) in m["clips"].as_object().unwrap() {
            // the golden's own mel (our mel is checked against transformers separately)
            let mel = golden_mel(&format!("enc_real/{clip}.mel.npy"));
            // also our mel from the same audio: within the mel tolerance of the golden's
            let x = pcm16k(&wav_path(info["wav"].as_str().unwrap()));
            let n = info["samples"].as_u64().unwrap() as usize;
            let ours = audio::log_mel(
                MelConfig {
                    n_mels: mel.n_mels,
                    ..MelConfig::default()
                },
                &x[..n],
            )
            .unwrap();
            let (em, _) = max_err(&ours.data, &mel.data);
            assert!(em <= 1e-4, "{clip}: 80-bin mel vs transformers {em}");
            let t2 = bca::model::audio_in::enc_len(mel.frames);
            let out = Tensor::empty(ctx, "out", &[t2, enc.d]);
            let mut taps = Vec::new();
            let mut rec = bca::gpu::Recorder::new(ctx, "enc");
            enc.record(
                &mut rec,
                &mel.time_major(),
                mel.frames,
                false,
                &out,
                Some(&mut taps),
            )
            .unwrap();
            rec.submit().unwrap();
            taps.push(("encoder.out".into(), out));
            for (name, t) in &taps {
                let Some(st) = info["taps"].get(name) else {
                    continue;
                };
                let rows: Vec<usize> = st["rows"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_u64().unwrap() as usize)
                    .collect();
                let all = pollster::block_on(t.to_vec(ctx)).unwrap();
                let d = t.shape[1];
                let got: Vec<f32> = rows
                    .iter()
                    .flat_map(|&r| all[r * d..(r + 1) * d].to_vec())
                    .collect();
                let (_, want) = f32s(load_npy(&format!("enc_real/{clip}.{name}.npy")));
                let (e, i) = max_err(&got, &want);
                let scale = st["max_abs"].as_f64().unwrap() as f32;
                let rel = e / scale;
                let rms = (got
                    .iter()
                    .zip(&want)
                    .map(|(a, b)| ((a - b) as f64).powi(2))
                    .sum::<f64>()
                    / got.len() as f64)
                    .sqrt();
                println!("{path:?} {clip} {name}: max |err| {e:.2e} (rel to max {rel:.2e}, rms {rms:.2e}) at row {}", rows[i / d]);
                assert!(
                    rel <= tol_real(path),
                    "{path:?} {clip} {name}: rel err {rel} > {}",
                    tol_real(path)
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// CLI

fn bca() -> Command {
    Command::new(env!("CARGO_BIN_EXE_bca"))
}

fn run_ok(c: &mut Command) -> String {
    let out = c.output().expect("run bca");
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "bca failed: {err}");
    String::from_utf8_lossy(&out.stdout).to_string() + &err
}

#[test]
fn cli_mel_encode_trace_match_the_goldens() {
    let dir = tmp_root().join("cli");
    std::fs::create_dir_all(&dir).unwrap();
    let wav = goldens().join("wav/en_16k_s16.wav");
    // bca mel
    let mel_p = dir.join("mel.npy");
    run_ok(bca().arg("mel").arg(&wav).arg("-o").arg(&mel_p));
    let (shape, got) = f32s(npy::read(&std::fs::read(&mel_p).unwrap()).unwrap());
    let want = golden_mel("enc_tiny/mel.npy");
    assert_eq!(shape, vec![want.n_mels, want.frames]);
    let (e, _) = max_err(&got, &want.data);
    assert!(e <= 1e-4, "bca mel vs transformers: {e}");
    // bca encode --f32 on the tiny HF folder: the reference codes
    let codes_p = dir.join("codes.npy");
    run_ok(
        bca()
            .arg("encode")
            .arg(tiny())
            .arg(&wav)
            .arg("-o")
            .arg(&codes_p)
            .arg("--f32"),
    );
    let (shape, codes) = i32s(npy::read(&std::fs::read(&codes_p).unwrap()).unwrap());
    let (wshape, want_codes) = i32s(load_npy("enc_tiny/codes.npy"));
    assert_eq!(shape, wshape);
    let (_, margin) = f32s(load_npy("enc_tiny/margin.npy"));
    for (i, (a, b)) in codes.iter().zip(&want_codes).enumerate() {
        assert!(a == b || margin[i] < 1e-3, "code {i}: {a} vs {b}");
    }
    // bca trace: every tap point, named
    let tr_p = dir.join("trace.safetensors");
    run_ok(
        bca()
            .arg("trace")
            .arg(tiny())
            .arg(&wav)
            .arg("-o")
            .arg(&tr_p)
            .arg("--f32"),
    );
    let bytes = std::fs::read(&tr_p).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("trace is safetensors");
    let mut names: Vec<String> = st.names().into_iter().map(|s| s.to_string()).collect();
    names.sort();
    for n in [
        "mel",
        "encoder.conv",
        "encoder.embed",
        "encoder.layers.0",
        "encoder.layers.1",
        "encoder.out",
        "bridge.out",
        "rvq.residual.0",
        "rvq.residual.7",
        "rvq.codes.0",
        "rvq.codes.7",
        "codes",
    ] {
        assert!(names.iter().any(|x| x == n), "trace lacks {n}: {names:?}");
    }
    let c = st.tensor("codes").unwrap();
    assert_eq!(c.shape(), &[want_codes.len() / 8, 8]);
    let tc: Vec<i32> = bytemuck::pod_collect_to_vec(c.data());
    assert_eq!(tc, codes, "trace codes = encode codes");
}

#[test]
fn cli_encode_rates_and_channels_all_give_codes() {
    // every committed clip (8–48 kHz, 8/16/24-bit, float, stereo) goes through `bca encode`
    let dir = tmp_root().join("cli-rates");
    std::fs::create_dir_all(&dir).unwrap();
    for e in std::fs::read_dir(goldens().join("wav")).unwrap() {
        let p = e.unwrap().path();
        let out = dir.join("c.npy");
        run_ok(bca().arg("encode").arg(tiny()).arg(&p).arg("-o").arg(&out));
        let (shape, codes) = i32s(npy::read(&std::fs::read(&out).unwrap()).unwrap());
        assert_eq!(shape[1], 8, "{}", p.display());
        assert!(
            shape[0] >= 10,
            "{}: {} frames for ~1.2 s",
            p.display(),
            shape[0]
        );
        let sizes = [64, 32, 16, 16, 16, 16, 16, 16];
        assert!(codes
            .iter()
            .enumerate()
            .all(|(i, &c)| c >= 0 && (c as usize) < sizes[i % 8]));
    }
}

#[test]
fn cli_bad_audio_fails_with_a_clear_message() {
    let dir = tmp_root().join("cli-bad");
    std::fs::create_dir_all(&dir).unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty.wav", vec![], "audio is empty"),
        (
            "text.wav",
            b"this is not a wav file at all....".to_vec(),
            "not a WAV file",
        ),
        (
            "short.wav",
            audio::wav::write_wav_i16(&[0.1; 400], 16000),
            "too short",
        ),
    ];
    for (name, bytes, msg) in cases {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        let out = bca()
            .arg("encode")
            .arg(tiny())
            .arg(&p)
            .arg("-o")
            .arg(dir.join("x.npy"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name} must fail");
        assert!(err.contains(msg), "{name}: {err}");
        assert!(!err.contains("panicked"), "{name}: {err}");
    }
    let out = bca()
        .arg("mel")
        .arg(dir.join("missing.wav"))
        .arg("-o")
        .arg(dir.join("m.npy"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.wav"));
}

#[test]
fn bench_encode_runs_on_the_tiny_shape() {
    let out = run_ok(bca().args(["bench", "encode", "--shape", "tiny", "--seconds", "1,2"]));
    // one row per length: seconds, frames (12.5 Hz), timings
    for (s, frames) in [("1.0", 12), ("2.0", 25)] {
        let row = out
            .lines()
            .find(|l| l.split_whitespace().next() == Some(s))
            .unwrap_or_else(|| panic!("no row for {s} s in:\n{out}"));
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cols[1].parse::<usize>().unwrap(), frames, "{row}");
        assert!(cols[4].parse::<f64>().unwrap() > 0.0, "{row}");
    }
    let bad = bca()
        .args(["bench", "encode", "--shape", "tiny", "--seconds", "31"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("each length must be in"));
}
