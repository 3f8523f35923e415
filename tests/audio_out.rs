//! Audio out (spec §7–§9) against goldens from independent implementations
//! (`scripts/goldens/audio_out.py`: a PyTorch decoder/Pre-Net written from the spec, CosyVoice's
//! causal U-Net and HiFTGenerator with SineGen), on the repo's own `bca tiny --seed 0`
//! checkpoint. Each stage is fed the golden input of that stage, so errors do not compound;
//! one end-to-end run checks the chain. Error = max |ours − golden| / max |golden|.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use bca::gpu::GpuContext;
use bca::model::audio_out::{self, SegmentNoise, SourceNoise, Vocoder};
use bca::model::Weights;
use bca::tensor::{Tensor, WeightFormat};
use bca::weights::tiny::{write_tiny, TinyOptions, Variant};
use common::{ctx, Path as GpuPath, PATHS};

fn root() -> PathBuf {
    static SWEEP: std::sync::Once = std::sync::Once::new();
    SWEEP.call_once(|| {
        let Ok(rd) = std::fs::read_dir(std::env::temp_dir()) else {
            return;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if let Some(pid) = name.strip_prefix("bca-aout-test-") {
                if pid != std::process::id().to_string() && !Path::new("/proc").join(pid).exists() {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
    });
    std::env::temp_dir().join(format!("bca-aout-test-{}", std::process::id()))
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
            assert!(
                st.success(),
                "scripts/fetch-assets.sh failed: the tokenizer is needed"
            );
        }
        let out = root().join("tiny");
        write_tiny(&TinyOptions {
            out: out.clone(),
            seed: 0,
            variant: Variant::Instruct,
            tokenizer: tok,
        })
        .expect("bca tiny");
        out
    })
}

struct Golden(std::collections::HashMap<String, (Vec<usize>, Vec<f32>)>);

fn golden() -> &'static Golden {
    static G: OnceLock<Golden> = OnceLock::new();
    G.get_or_init(|| {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/goldens/audio_out/golden.safetensors");
        let bytes = std::fs::read(&p).expect("read golden");
        let st = safetensors::SafeTensors::deserialize(&bytes).expect("parse golden");
        let mut m = std::collections::HashMap::new();
        for (name, v) in st.tensors() {
            let data: Vec<f32> = match v.dtype() {
                safetensors::Dtype::F32 => v
                    .data()
                    .chunks(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
                safetensors::Dtype::I32 => v
                    .data()
                    .chunks(4)
                    .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32)
                    .collect(),
                d => panic!("{name}: unexpected dtype {d:?}"),
            };
            m.insert(name.to_string(), (v.shape().to_vec(), data));
        }
        Golden(m)
    })
}

impl Golden {
    fn get(&self, k: &str) -> &[f32] {
        &self
            .0
            .get(k)
            .unwrap_or_else(|| panic!("golden has no {k}"))
            .1
    }
    fn codes(&self) -> Vec<u32> {
        self.get("codes").iter().map(|&c| c as u32).collect()
    }
}

/// max |a − b| / max |b|, and the worst index.
fn rel_err(a: &[f32], b: &[f32]) -> (f32, usize) {
    assert_eq!(a.len(), b.len(), "lengths differ");
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    let mut worst = (0f32, 0);
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let e = (x - y).abs();
        if e.is_nan() || e > worst.0 {
            worst = (if e.is_nan() { f32::INFINITY } else { e }, i);
        }
    }
    (worst.0 / scale, worst.1)
}

/// Signal-to-noise ratio of `a` against reference `b` in dB.
fn snr_db(a: &[f32], b: &[f32]) -> f64 {
    let s: f64 = b.iter().map(|v| (*v as f64).powi(2)).sum();
    let n: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    10.0 * (s / n.max(1e-30)).log10()
}

fn check(what: &str, path: GpuPath, a: &[f32], b: &[f32], tol_f32: f32, tol_f16: f32) {
    let tol = match path {
        GpuPath::F32 => tol_f32,
        _ => tol_f16,
    };
    let (e, i) = rel_err(a, b);
    eprintln!(
        "{what} {path:?}: rel err {e:.3e} (worst index {i}: {} vs {})",
        a[i], b[i]
    );
    assert!(
        e <= tol,
        "{what} {path:?}: rel err {e:.3e} > {tol:.1e} at {i}: {} vs {}",
        a[i],
        b[i]
    );
}

fn model(c: &GpuContext) -> (Weights, Vocoder) {
    let w = Weights::open(tiny(), WeightFormat::F16).expect("open tiny");
    let v = Vocoder::load(&w, c).expect("load vocoder");
    (w, v)
}

// Tolerances (also in ARCHITECTURE.md, "Audio out"): relative to the golden's max |value|.
// Measured on lavapipe: hidden 4e-7 / 1.2e-3, mu 3e-7 / 6.5e-4, mel 2.5e-7 / 1.8e-3,
// PCM 47.8 dB / 40.9 dB (HiFT's conv kernels are f16 on every path, hence < f32 exactness).
const DEC_F32: f32 = 1e-4;
const DEC_F16: f32 = 1e-2;
const MEL_F32: f32 = 1e-4;
const MEL_F16: f32 = 1e-2;
const PCM_SNR_F32: f64 = 40.0;
const PCM_SNR_F16: f64 = 30.0;

#[test]
fn decoder_and_prenet_match_golden() {
    let g = golden();
    for path in PATHS {
        let c = ctx(path);
        let (_w, v) = model(c);
        let mut rec = bca::gpu::Recorder::new(c, "t");
        let hidden = v.decoder.forward(&mut rec, &g.codes()).unwrap();
        let gh = g.get("hidden");
        let hin = Tensor::from_f32(c, "hidden", &[gh.len() / v.decoder.d, v.decoder.d], gh);
        let mu = v.prenet.forward(&mut rec, &hin).unwrap();
        rec.submit().unwrap();
        let hidden = pollster::block_on(hidden.to_vec(c)).unwrap();
        let mu = pollster::block_on(mu.to_vec(c)).unwrap();
        check("decoder hidden", path, &hidden, gh, DEC_F32, DEC_F16);
        check("prenet mu", path, &mu, g.get("mu"), DEC_F32, DEC_F16);
    }
}

#[test]
fn flow_matching_matches_golden() {
    let g = golden();
    for path in PATHS {
        let (mel, _) = golden_cfm(ctx(path));
        check("cfm mel", path, &mel, g.get("mel"), MEL_F32, MEL_F16);
    }
}

/// The flow on the golden `mu` and start noise → (mel, Euler steps).
fn golden_cfm(c: &GpuContext) -> (Vec<f32>, usize) {
    let g = golden();
    let (_w, v) = model(c);
    let gm = g.get("mu");
    let t = gm.len() / 80;
    let mu = Tensor::from_f32(c, "mu", &[t, 80], gm);
    let z = Tensor::from_f32(c, "z", &[t, 80], g.get("cfm_noise"));
    let mut rec = bca::gpu::Recorder::new(c, "t");
    let mel = audio_out::cfm_sample(&mut rec, &v.unet, &mu, &z, v.cfm).unwrap();
    rec.submit().unwrap();
    (pollster::block_on(mel.to_vec(c)).unwrap(), v.cfm.steps)
}

fn golden_source_noise(g: &Golden, phases: &str, noise: &str) -> SourceNoise {
    SourceNoise {
        phases: g.get(phases).to_vec(),
        noise: g.get(noise).to_vec(),
    }
}

#[test]
fn sine_source_matches_sinegen() {
    let g = golden();
    let c = ctx(GpuPath::F32);
    let (_w, v) = model(c);
    let f0 = g.get("sine_f0");
    let s = v
        .hift
        .source(f0, &golden_source_noise(g, "sine_phases", "sine_noise"))
        .unwrap();
    let (e, i) = rel_err(&s, g.get("sine_s"));
    eprintln!("sine source: rel err {e:.3e} at {i}");
    assert!(e < 1e-5, "sine source rel err {e:.3e} at {i}");
}

#[test]
fn hift_matches_golden() {
    // covers the host STFT of the source and the iSTFT: the golden's are torch.stft/istft
    let g = golden();
    for path in PATHS {
        let c = ctx(path);
        let (_w, v) = model(c);
        let gm = g.get("mel");
        let t = gm.len() / 80;
        let mel = Tensor::from_f32(c, "mel", &[t, 80], gm);
        let f0 = pollster::block_on(v.hift.f0(c, &mel)).unwrap();
        check("hift f0", path, &f0, g.get("f0"), 2e-3, 3e-2);
        let noise = golden_source_noise(g, "src_phases", "src_noise");
        let s = v.hift.source(g.get("f0"), &noise).unwrap();
        check("hift source", path, &s, g.get("source"), 1e-5, 1e-5);
        let pcm = pollster::block_on(v.hift.forward(c, &mel, &noise)).unwrap();
        assert_eq!(pcm.len(), t * 480);
        let snr = snr_db(&pcm, g.get("pcm"));
        eprintln!("hift pcm {path:?}: SNR {snr:.1} dB");
        let want = match path {
            GpuPath::F32 => PCM_SNR_F32,
            _ => PCM_SNR_F16,
        };
        assert!(snr >= want, "hift pcm {path:?}: SNR {snr:.1} dB < {want}");
    }
}

#[test]
fn end_to_end_segment_matches_golden() {
    let g = golden();
    let c = ctx(GpuPath::F32);
    let (_w, v) = model(c);
    let codes = g.codes();
    let noise = SegmentNoise {
        cfm: g.get("cfm_noise").to_vec(),
        source: golden_source_noise(g, "src_phases", "src_noise"),
    };
    let tr = pollster::block_on(v.segment_traced(c, &codes, &noise)).unwrap();
    let n = codes.len() / 8;
    assert_eq!(tr.pcm.len(), v.segment_samples(n));
    assert_eq!(tr.pcm.len(), (4 * n - 1) * 480);
    check(
        "e2e mel",
        GpuPath::F32,
        &tr.mel,
        g.get("mel"),
        MEL_F32,
        MEL_F32,
    );
    let snr = snr_db(&tr.pcm, g.get("pcm"));
    eprintln!("end-to-end pcm: SNR {snr:.1} dB");
    assert!(snr >= PCM_SNR_F32, "end-to-end SNR {snr:.1} dB");
}

#[test]
fn bad_codes_are_clear_errors() {
    let c = ctx(GpuPath::F32);
    let (_w, v) = model(c);
    let err = |codes: &[u32]| match pollster::block_on(v.segment(c, codes, &v.noise(1, 0))) {
        Ok(_) => panic!("codes {codes:?} were accepted"),
        Err(e) => e.to_string(),
    };
    assert!(err(&[]).contains("N ≥ 1"), "{}", err(&[]));
    assert!(err(&[1, 2, 3]).contains("(N, 8)"));
    let sizes = v.decoder.codebook_sizes();
    let mut codes = vec![0u32; 8];
    codes[0] = sizes[0] as u32;
    assert!(err(&codes).contains("audio EOS"), "{}", err(&codes));
    codes[0] = 0;
    codes[5] = 999_999;
    assert!(err(&codes).contains("codebook 5"), "{}", err(&codes));
    let too_many = vec![0u32; 8 * (v.decoder.max_frames() + 1)];
    assert!(err(&too_many).contains("limit"));
}

#[test]
fn stitching_inserts_the_reference_crossfade() {
    let a: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.01).sin()).collect();
    let b: Vec<f32> = (0..700).map(|i| (i as f32 * 0.03).cos()).collect();
    let short = vec![0.5f32; 200];
    let out = audio_out::stitch(&[a.clone(), b.clone(), short.clone()]);
    // cross-fade inserted between a and b (both > 240); none before the short segment
    assert_eq!(out.len(), 1000 + 240 + 700 + 200);
    assert_eq!(&out[..1000], &a[..]);
    for n in 0..240 {
        let want = a[760 + n] * (1.0 - n as f32 / 239.0) + b[n] * (n as f32 / 239.0);
        assert!((out[1000 + n] - want).abs() < 1e-6, "xfade {n}");
    }
    assert_eq!(out[1000], a[760]);
    assert_eq!(out[1239], b[239]);
    assert_eq!(&out[1240..1940], &b[..]);
    assert_eq!(&out[1940..], &short[..]);
}

#[test]
fn stream_emits_segments_in_order_with_crossfades() {
    let c = ctx(GpuPath::F32);
    let (_w, v) = model(c);
    let g = golden();
    let codes = g.codes();
    let mut s = audio_out::VocodeStream::new(&v, 5);
    let first = pollster::block_on(s.push(c, &codes[..16])).unwrap();
    assert_eq!(first.len(), 7 * 480);
    let second = pollster::block_on(s.push(c, &codes)).unwrap();
    assert_eq!(second.len(), 240 + 15 * 480);
    // the same seed and segment index give the same audio again
    let mut s2 = audio_out::VocodeStream::new(&v, 5);
    let again = pollster::block_on(s2.push(c, &codes[..16])).unwrap();
    assert_eq!(first, again);
    assert!(first.iter().any(|x| x.abs() > 1e-4), "silent output");
}

fn bca_cmd() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_bca"));
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        c.env("XDG_RUNTIME_DIR", std::env::temp_dir());
    }
    c
}

/// Runs `c`, requires success (else fails with its stdout and stderr) and returns its stdout.
fn run_ok(c: &mut std::process::Command) -> String {
    let out = c.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn cli_vocode_writes_wav_and_rejects_bad_codes() {
    let g = golden();
    let dir = root().join("cli");
    std::fs::create_dir_all(&dir).unwrap();
    let codes: Vec<i32> = g.codes().iter().map(|&c| c as i32).collect();
    let npy = dir.join("codes.npy");
    std::fs::write(
        &npy,
        bca::util::npy::write_i32(&[codes.len() / 8, 8], &codes),
    )
    .unwrap();
    let wav = dir.join("out.wav");
    let trace = dir.join("trace.safetensors");
    run_ok(
        bca_cmd()
            .arg("vocode")
            .arg(tiny())
            .arg(&npy)
            .arg("-o")
            .arg(&wav)
            .args(["--seed", "3", "--f32", "--trace"])
            .arg(&trace),
    );
    let r = hound::WavReader::open(&wav).unwrap();
    assert_eq!(r.spec().sample_rate, 24000);
    assert_eq!(r.spec().channels, 1);
    assert_eq!(r.spec().bits_per_sample, 16);
    assert_eq!(r.len() as usize, (4 * codes.len() / 8 - 1) * 480);
    // the traced PCM is what was written (int16 by truncation of clamp(±0.99)·32768)
    let bytes = std::fs::read(&trace).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let pcm: Vec<f32> = st
        .tensor("pcm")
        .unwrap()
        .data()
        .chunks(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let samples: Vec<i16> = r.into_samples::<i16>().map(|s| s.unwrap()).collect();
    for (i, (&p, &s)) in pcm.iter().zip(&samples).enumerate() {
        assert_eq!((p.clamp(-0.99, 0.99) * 32768.0) as i16, s, "sample {i}");
    }
    assert!(samples.iter().any(|&s| s.abs() > 30), "silent output");

    let fail = |data: &[i32], shape: &[usize]| {
        let p = dir.join("bad.npy");
        std::fs::write(&p, bca::util::npy::write_i32(shape, data)).unwrap();
        let out = bca_cmd()
            .arg("vocode")
            .arg(tiny())
            .arg(&p)
            .arg("-o")
            .arg(dir.join("bad.wav"))
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    assert!(fail(&[], &[0, 8]).contains("empty"));
    assert!(fail(&[1, 2, 3], &[1, 3]).contains("(N, 8)"));
    assert!(fail(&[64, 0, 0, 0, 0, 0, 0, 0], &[1, 8]).contains("audio EOS"));
    assert!(fail(&[0, 0, -1, 0, 0, 0, 0, 0], &[1, 8]).contains("negative"));
}

#[test]
fn cli_bench_vocode_runs_at_tiny_shape() {
    let text = run_ok(bca_cmd().args([
        "bench",
        "vocode",
        "--shape",
        "tiny",
        "--seconds",
        "0.16",
        "--reps",
        "1",
    ]));
    // one row: 2 frames → 7 mel frames → 3360 samples = 0.14 s, and a positive RTF
    let row = text
        .lines()
        .find(|l| l.trim_start().starts_with("0.14"))
        .unwrap_or_else(|| panic!("no 0.14 s row in:\n{text}"));
    let rtf: f64 = row.split_whitespace().last().unwrap().parse().unwrap();
    assert!(rtf > 0.0 && rtf.is_finite(), "{row}");
}

/// 30 frames → 119 mel frames: longer than the U-Net's 100-frame attention chunk, so the
/// chunk-causal mask (not full attention) is what the golden checks here. With the tiny random
/// weights full attention would give a mel 1.4e-4 (relative) away from the golden, so the f32
/// tolerance here is 2e-5 (measured 3e-7).
#[test]
fn long_segment_crosses_the_attention_chunk() {
    let g = golden();
    for path in [GpuPath::F16, GpuPath::F32] {
        let c = ctx(path);
        let (_w, v) = model(c);
        let codes: Vec<u32> = g.get("codes_long").iter().map(|&x| x as u32).collect();
        let gm = g.get("mu_long");
        let t = gm.len() / 80;
        assert_eq!(t, 4 * codes.len() / 8 - 1);
        assert!(t > audio_out::flow::UNET_CHUNK);
        let mu = Tensor::from_f32(c, "mu", &[t, 80], gm);
        let z = Tensor::from_f32(c, "z", &[t, 80], g.get("cfm_noise_long"));
        let mut rec = bca::gpu::Recorder::new(c, "t");
        let hidden = v.decoder.forward(&mut rec, &codes).unwrap();
        let mel = audio_out::cfm_sample(&mut rec, &v.unet, &mu, &z, v.cfm).unwrap();
        rec.submit().unwrap();
        let hidden = pollster::block_on(hidden.to_vec(c)).unwrap();
        let mel = pollster::block_on(mel.to_vec(c)).unwrap();
        check(
            "long hidden",
            path,
            &hidden,
            g.get("hidden_long"),
            DEC_F32,
            DEC_F16,
        );
        check("long mel", path, &mel, g.get("mel_long"), 2e-5, MEL_F16);
    }
}

/// The GPU iSTFT (`ops::istft_hift`) against the CPU reference `hift::istft_hift` (f64) plus
/// the clamp, on seeded random spectra: log-magnitudes in [−6, 6] (so the exp(·) ≤ 100 clamp is
/// hit), phase logits in [−20, 20], several frame counts and two (n_fft, hop). Spectra are
/// rounded to the activation dtype first, so only the kernel's f32 arithmetic differs:
/// max abs error ≤ 2e-5 on samples clamped to ±0.99. A NaN in the spectrum stays NaN in the
/// samples its frame covers (the vocoder's guard depends on it).
#[test]
fn istft_kernel_matches_cpu_reference() {
    use bca::gpu::Recorder;
    use bca::model::audio_out::hift::istft_hift;
    use bca::util::rng::Rng;
    for path in PATHS {
        let c = ctx(path);
        for (i, &(frames, n_fft, hop)) in [
            (2, 16, 4),
            (3, 16, 4),
            (121, 16, 4),
            (601, 16, 4),
            (57, 8, 2),
        ]
        .iter()
        .enumerate()
        {
            let nb = n_fft / 2 + 1;
            let mut rng = Rng::new(700 + i as u64);
            let mut spec = Vec::with_capacity(frames * 2 * nb);
            for _ in 0..frames {
                spec.extend(rng.uniform_vec(nb, -6.0, 6.0));
                spec.extend(rng.uniform_vec(nb, -20.0, 20.0));
            }
            let spec = bca::tensor::round_act(c.act(), &spec);
            let want: Vec<f32> = istft_hift(&spec, frames, n_fft, hop)
                .into_iter()
                .map(|v| v.clamp(-0.99, 0.99))
                .collect();
            let t = Tensor::from_f32(c, "spec", &[frames, n_fft + 2], &spec);
            let out = c.storage("pcm", (want.len() * 4) as u64);
            let mut rec = Recorder::new(c, "istft test");
            let n = bca::ops::istft_hift(&mut rec, &t, n_fft, hop, 0.99, &out).unwrap();
            rec.submit().unwrap();
            assert_eq!(n, want.len());
            let got = pollster::block_on(c.read_f32(&out, n)).unwrap();
            let err = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(
                err <= 2e-5,
                "{path:?} frames {frames} n_fft {n_fft} hop {hop}: max error {err}"
            );
            assert!(want.iter().any(|v| v.abs() > 0.1), "a non-trivial signal");
        }
        // NaN in frame 5's phase: samples covered by frame 5 are NaN, the others are not
        let (frames, n_fft, hop) = (12, 16, 4);
        let mut rng = Rng::new(799);
        let mut spec = rng.uniform_vec(frames * (n_fft + 2), -2.0, 2.0);
        spec[5 * (n_fft + 2) + 12] = f32::NAN;
        let t = Tensor::from_f32(c, "spec", &[frames, n_fft + 2], &spec);
        let out = c.storage("pcm", (hop * (frames - 1) * 4) as u64);
        let mut rec = Recorder::new(c, "istft nan test");
        let n = bca::ops::istft_hift(&mut rec, &t, n_fft, hop, 0.99, &out).unwrap();
        rec.submit().unwrap();
        let got = pollster::block_on(c.read_f32(&out, n)).unwrap();
        // frame 5 covers p in [20, 36), i.e. samples p − 8 in [12, 28)
        for (i, v) in got.iter().enumerate() {
            assert_eq!(
                v.is_nan(),
                (12..28).contains(&i),
                "{path:?} sample {i}: {v}"
            );
        }
        // bad shapes fail clearly
        let t = Tensor::from_f32(c, "spec", &[4, 10], &[0.5; 40]);
        let mut rec = Recorder::new(c, "istft bad");
        let e = bca::ops::istft_hift(&mut rec, &t, 16, 4, 0.99, &out).unwrap_err();
        assert!(e.to_string().contains("n_fft 16"), "{e}");
    }
}

/// Under `--profile` a recorder submits only at its end, so the flow records its Euler steps
/// into the caller's recorder, in order: the mel must equal the normal path's (per-step
/// recorders with the scratch arena and the bind cache), and the profile must hold one Euler
/// update per step.
#[test]
fn flow_under_profile_matches_the_normal_path() {
    use bca::gpu::GpuOptions;
    let g = golden();
    let opts = GpuOptions {
        force_f32: true,
        no_subgroups: true,
        profile: true,
        ..Default::default()
    };
    let profiled =
        pollster::block_on(GpuContext::new(&opts)).expect("a GPU adapter with timestamp queries");
    let (normal, _) = golden_cfm(ctx(GpuPath::F32));
    let (prof, steps) = golden_cfm(&profiled);
    let (e, i) = rel_err(&prof, &normal);
    assert!(e <= 1e-6, "profiled mel differs: {e} at {i}");
    check(
        "cfm mel (profiled)",
        GpuPath::F32,
        &prof,
        g.get("mel"),
        MEL_F32,
        MEL_F16,
    );
    let p = profiled.profile_take().expect("a profile");
    let euler = p
        .kernels
        .iter()
        .find(|(k, _)| k.contains("cfg_euler"))
        .map(|(_, (n, _))| *n as usize);
    assert_eq!(
        euler,
        Some(steps),
        "{:?}",
        p.kernels.keys().collect::<Vec<_>>()
    );
}

// ---- chunked streaming (src/model/audio_out/stream.rs) ----

/// The golden's 30-frame segment (valid codes for the tiny codebooks), its first `n` frames.
fn long_codes(n: usize) -> Vec<u32> {
    let all: Vec<u32> = golden()
        .get("codes_long")
        .iter()
        .map(|&x| x as u32)
        .collect();
    all[..n * 8].to_vec()
}

/// Segment samples a prefix decode of n frames lets out: mel frames below 4(n − L), and at
/// least the 240-sample overlap before the prefix's end (the stream's documented contract).
fn safe_end(n: usize, l: usize) -> usize {
    (4 * n.saturating_sub(l) * 480).min((4 * n - 1) * 480 - 240)
}

#[test]
fn noise_of_a_prefix_is_the_prefix_of_the_noise() {
    use audio_out::NoiseStream;
    let (bins, harm, seed) = (80, 8, 1234);
    let whole = SegmentNoise::seeded(seed, 51, bins, 51 * 480, harm);
    for t in [1usize, 3, 7, 50] {
        let p = SegmentNoise::seeded(seed, t, bins, t * 480, harm);
        assert_eq!(p.cfm[..], whole.cfm[..t * bins], "cfm noise, {t} frames");
        assert_eq!(p.source.phases, whole.source.phases, "phases, {t} frames");
        assert_eq!(
            p.source.noise[..],
            whole.source.noise[..t * 480 * (harm + 1)],
            "source noise, {t} frames"
        );
    }
    // drawn in uneven pieces (as a chunked stream grows it) — the same values
    let mut g = NoiseStream::new(seed, bins, harm);
    for t in [3usize, 4, 11, 51] {
        let p = g.prefix(t, t * 480);
        assert_eq!(p.cfm[..], whole.cfm[..t * bins]);
        assert_eq!(p.source.noise[..], whole.source.noise[..t * 480 * 9]);
    }
    assert_eq!(g.prefix(51, 51 * 480).source.noise, whole.source.noise);
    // and another seed is other noise
    let other = SegmentNoise::seeded(seed + 1, 51, bins, 51 * 480, harm);
    assert_ne!(other.cfm[..80], whole.cfm[..80]);
}

/// Chunked against whole-segment decoding for several (N, C, L), ragged ones included (N not
/// a multiple of C, N < C + L, N = 1, L = 0), on the f32 path. Each segment goes in frame by
/// frame (`chunked_deviation`): the chunks come when the schedule says (after frames
/// C + L, 2C + L, … ≤ N, then at the end) with the samples it says, add up to (4N − 1)·480,
/// and everything after the last cross-fade is the whole-segment output bit for bit (checked
/// against an independent per-segment stream). The deviation is reported; with the default
/// lookahead (L = 3) SNR ≥ 40 dB and flow-mel L1 ≤ 1e-3 (measured on this tiny random
/// checkpoint: 52–58 dB, 0.9–1.7e-4 against a mean |mel| of 0.8; with L = 2 it is 17–32 dB,
/// HiFT's convolutions reach ~11 mel frames ahead). These are bounds a bug would fail (a
/// shifted sample, other noise, a missing fade), not an audibility verdict: the tiny
/// model's weights are random.
#[test]
fn chunked_stream_matches_whole_segment_decoding() {
    use audio_out::{chunked_deviation, ChunkOpts, VocodeStream};
    let c = ctx(GpuPath::F32);
    let (_w, v) = model(c);
    let seed = 11;
    for &(n, cf, l) in &[
        (1usize, 1usize, 3usize),
        (4, 2, 3),
        (5, 2, 3),
        (13, 4, 3),
        (30, 8, 3),
        (9, 2, 0),
    ] {
        let codes = long_codes(n);
        let opts = ChunkOpts::new(cf, l).unwrap();
        let d = pollster::block_on(chunked_deviation(&v, c, &codes, seed, opts)).unwrap();
        let whole = pollster::block_on(VocodeStream::new(&v, seed).push(c, &codes)).unwrap();
        let total = (4 * n - 1) * 480;
        assert_eq!(whole.len(), total);
        assert_eq!(d.chunked.len(), total, "N {n} C {cf} L {l}");
        assert_eq!(
            d.whole, whole,
            "the final decode is the whole-segment decode"
        );
        // the schedule: a chunk after frames C + L, 2C + L, … (≤ N), then the end's
        let mut want = Vec::new();
        let mut prev = 0;
        let mut k = cf + l;
        while k <= n {
            want.push((k, safe_end(k, l) - prev));
            prev = safe_end(k, l);
            k += cf;
        }
        want.push((n, total - prev));
        assert_eq!(
            d.chunks, want,
            "N {n} C {cf} L {l}: (frame, samples) per chunk"
        );
        assert_eq!(
            d.chunks.iter().map(|c| c.1).sum::<usize>(),
            total,
            "chunk samples add up"
        );
        if n >= cf + l {
            // the first chunk came from a push, not from the end
            assert!(
                d.chunks.len() >= 2,
                "playback starts before the segment ends"
            );
        }
        // after the last hold-back and its cross-fade: the whole-segment output exactly
        let before = prev;
        let exact_from = if before == 0 { 0 } else { before + 240 };
        assert_eq!(
            d.chunked[exact_from..],
            whole[exact_from..],
            "N {n} C {cf} L {l}: the tail from sample {exact_from} on"
        );
        eprintln!(
            "chunked N {n} C {cf} L {l}: {} chunks, {} decodes, SNR {:.2} dB, max |Δ| {:.2e}, \
             flow mel L1 {:.2e} (mean |mel| {:.2})",
            d.chunks.len(),
            d.decodes,
            d.snr_db,
            d.max_abs,
            d.mel_l1,
            d.mel_mean_abs
        );
        if before == 0 {
            assert_eq!(d.snr_db, f64::INFINITY, "no prefix decode: exact");
            assert_eq!(d.mel_l1, 0.0);
        } else if d.decodes == 1 {
            // the one prefix decode held all N frames and was reused at the end: only the
            // fade of the overlap with itself rounds
            assert!(d.snr_db >= 120.0, "N {n} C {cf} L {l}: SNR {}", d.snr_db);
            assert_eq!(d.mel_l1, 0.0);
        } else {
            assert!(d.snr_db.is_finite(), "N {n} C {cf} L {l}: SNR {}", d.snr_db);
            assert!(d.mel_l1 > 0.0 && d.mel_l1.is_finite());
        }
        if l >= ChunkOpts::DEFAULT_LOOKAHEAD {
            assert!(
                d.snr_db >= 40.0,
                "N {n} C {cf} L {l}: SNR {:.2} dB < 40",
                d.snr_db
            );
            assert!(
                d.mel_l1 <= 1e-3,
                "N {n} C {cf} L {l}: mel L1 {:.3e}",
                d.mel_l1
            );
        }
    }
}

/// How frames are grouped into pushes does not change the output (the decode schedule depends
/// only on the frame count), and `push` of a whole segment on a chunked stream is the same as
/// pushing its frames and ending it.
#[test]
fn chunked_output_does_not_depend_on_push_grouping() {
    use audio_out::{ChunkOpts, VocodeStream};
    let c = ctx(GpuPath::F32);
    let (_w, v) = model(c);
    let codes = long_codes(9);
    let opts = ChunkOpts::new(2, 3).unwrap();
    let mut one = VocodeStream::chunked(&v, 4, opts).unwrap();
    let mut by_frame = Vec::new();
    let mut early = 0;
    for f in codes.chunks(8) {
        let out = pollster::block_on(one.push_frames(c, f)).unwrap();
        early += out.len();
        by_frame.extend(out);
    }
    by_frame.extend(pollster::block_on(one.end_segment(c)).unwrap());
    assert!(early > 0, "chunks before the end");
    let mut grouped = VocodeStream::chunked(&v, 4, opts).unwrap();
    let mut g = Vec::new();
    for part in [&codes[..3 * 8], &codes[3 * 8..8 * 8], &codes[8 * 8..]] {
        g.extend(pollster::block_on(grouped.push_frames(c, part)).unwrap());
    }
    g.extend(pollster::block_on(grouped.end_segment(c)).unwrap());
    assert_eq!(g, by_frame, "frames pushed 3 + 5 + 1");
    let mut whole_push = VocodeStream::chunked(&v, 4, opts).unwrap();
    let w = pollster::block_on(whole_push.push(c, &codes)).unwrap();
    assert_eq!(w, by_frame, "push() of the whole segment");
}

/// Two chunked segments: the second one's first chunk starts with the inserted 240-sample
/// cross-fade (the previous segment's last 240 samples into this one's first 240), every
/// segment keeps (4N − 1)·480 samples of its own, and segment 1 uses the same noise seed
/// (`seed + 0x9E3779B9`) as per-segment streaming: its tail equals the per-segment stream's.
#[test]
fn chunked_segments_keep_the_crossfade_and_the_seeds() {
    use audio_out::{fade, ChunkOpts, VocodeStream};
    let c = ctx(GpuPath::F32);
    let (_w, v) = model(c);
    let all = long_codes(13);
    let (a, b) = (&all[..6 * 8], &all[6 * 8..]);
    let opts = ChunkOpts::new(2, 3).unwrap();
    let mut s = VocodeStream::chunked(&v, 9, opts).unwrap();
    let mut seg_a = Vec::new();
    for f in a.chunks(8) {
        seg_a.extend(pollster::block_on(s.push_frames(c, f)).unwrap());
    }
    seg_a.extend(pollster::block_on(s.end_segment(c)).unwrap());
    assert_eq!(seg_a.len(), 23 * 480);
    let mut chunks_b = Vec::new();
    for f in b.chunks(8) {
        let out = pollster::block_on(s.push_frames(c, f)).unwrap();
        if !out.is_empty() {
            chunks_b.push(out);
        }
    }
    assert!(!chunks_b.is_empty(), "segment 1 plays before it ends");
    chunks_b.push(pollster::block_on(s.end_segment(c)).unwrap());
    let out_b: Vec<f32> = chunks_b.concat();
    assert_eq!(out_b.len(), 240 + 27 * 480, "cross-fade + (4·7 − 1)·480");
    let own_b = &out_b[240..];
    let want = fade(&seg_a[seg_a.len() - 240..], &own_b[..240]);
    assert_eq!(out_b[..240], want[..], "the inserted cross-fade");
    // per-segment streaming of the same two segments and seed
    let mut w = VocodeStream::new(&v, 9);
    let wa = pollster::block_on(w.push(c, a)).unwrap();
    let wb = pollster::block_on(w.push(c, b)).unwrap();
    assert_eq!(wb.len(), out_b.len());
    let exact_from = out_b.len() - chunks_b.last().map_or(0, |x| x.len()) + 240;
    assert_eq!(
        out_b[exact_from..],
        wb[exact_from..],
        "segment 1's tail: the per-segment stream's"
    );
    assert_eq!(
        seg_a[seg_a.len() - 1000..],
        wa[wa.len() - 1000..],
        "segment 0's tail"
    );
}

#[test]
fn chunked_stream_rejects_bad_input_clearly() {
    use audio_out::{ChunkOpts, StreamState, VocodeStream};
    let c = ctx(GpuPath::F32);
    let (_w, v) = model(c);
    let msg = |r: Result<Vec<f32>, bca::model::ModelError>| match r {
        Ok(x) => panic!("accepted ({} samples)", x.len()),
        Err(e) => e.to_string(),
    };
    let e = ChunkOpts::new(0, 3).unwrap_err().to_string();
    assert!(e.contains("chunk size 0"), "{e}");
    let e = StreamState::chunked(
        0,
        ChunkOpts {
            frames: 0,
            lookahead: 1,
        },
    )
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(e.contains("chunk size 0"), "{e}");
    let mut s = VocodeStream::chunked(&v, 0, ChunkOpts::new(2, 3).unwrap()).unwrap();
    let e = msg(pollster::block_on(s.end_segment(c)));
    assert!(e.contains("segment is empty"), "{e}");
    let e = msg(pollster::block_on(s.push_frames(c, &[1, 2, 3])));
    assert!(e.contains("(N, 8)"), "{e}");
    let sizes = v.decoder.codebook_sizes();
    let mut bad = vec![0u32; 8];
    bad[0] = sizes[0] as u32;
    let e = msg(pollster::block_on(s.push_frames(c, &bad)));
    assert!(e.contains("audio EOS"), "{e}");
    bad[0] = 0;
    bad[3] = 999;
    let e = msg(pollster::block_on(s.push_frames(c, &bad)));
    assert!(e.contains("codebook 3"), "{e}");
    // nothing was added by the rejected pushes; an empty push is nothing to do
    assert_eq!(s.state.open_frames(), 0);
    assert!(pollster::block_on(s.push_frames(c, &[]))
        .unwrap()
        .is_empty());
    // a whole-segment push while frames are pending
    let mut w = VocodeStream::new(&v, 0);
    assert!(pollster::block_on(w.push_frames(c, &[0; 8]))
        .unwrap()
        .is_empty());
    let e = msg(pollster::block_on(w.push(c, &[0; 8])));
    assert!(e.contains("segment is open"), "{e}");
    // a segment past the positional table's limit, reached one push at a time
    let max = v.decoder.max_frames();
    assert!(
        pollster::block_on(w.push_frames(c, &vec![0; 8 * (max - 1)]))
            .unwrap()
            .is_empty()
    );
    let e = msg(pollster::block_on(w.push_frames(c, &[0; 16])));
    assert!(e.contains("limit"), "{e}");
    assert_eq!(w.state.open_frames(), max);
}

#[test]
fn cli_vocode_chunked_writes_chunks_and_reports_the_deviation() {
    let dir = root().join("cli-chunked");
    std::fs::create_dir_all(&dir).unwrap();
    let codes: Vec<i32> = long_codes(11).iter().map(|&c| c as i32).collect();
    let npy = dir.join("codes.npy");
    std::fs::write(&npy, bca::util::npy::write_i32(&[11, 8], &codes)).unwrap();
    let wav = dir.join("out.wav");
    let text = run_ok(
        bca_cmd()
            .arg("vocode")
            .arg(tiny())
            .arg(&npy)
            .arg("-o")
            .arg(&wav)
            .args(["--f32", "--float", "--seed", "2", "--chunk-frames", "3"]),
    );
    // default lookahead 3: chunks after frames 6 and 9, then the end
    let sizes: Vec<usize> = text
        .lines()
        .filter(|l| l.starts_with("chunk "))
        .map(|l| {
            l.rsplit(": ")
                .next()
                .unwrap()
                .trim_end_matches(" samples")
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(
        sizes,
        vec![12 * 480, 12 * 480, 43 * 480 - 24 * 480],
        "{text}"
    );
    assert!(text.contains("chunk 0: after frame 6:"), "{text}");
    let r = hound::WavReader::open(&wav).unwrap();
    assert_eq!(r.len() as usize, 43 * 480);
    let snr: f64 = text
        .split("SNR ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no SNR in:\n{text}"));
    assert!(snr >= 40.0 && snr.is_finite(), "{text}");
    assert!(text.contains("flow mel L1"), "{text}");
    // the WAV holds the chunked output: its tail is the whole-segment decode's
    let whole_wav = dir.join("whole.wav");
    let st = bca_cmd()
        .arg("vocode")
        .arg(tiny())
        .arg(&npy)
        .arg("-o")
        .arg(&whole_wav)
        .args(["--f32", "--float", "--seed", "2"])
        .status()
        .unwrap();
    assert!(st.success());
    let a: Vec<f32> = r.into_samples::<f32>().map(|s| s.unwrap()).collect();
    let b: Vec<f32> = hound::WavReader::open(&whole_wav)
        .unwrap()
        .into_samples::<f32>()
        .map(|s| s.unwrap())
        .collect();
    assert_eq!(a[24 * 480 + 240..], b[24 * 480 + 240..]);
    assert_ne!(
        a[..24 * 480],
        b[..24 * 480],
        "chunked and whole differ before"
    );

    let fail = |args: &[&str]| {
        let out = bca_cmd()
            .arg("vocode")
            .arg(tiny())
            .arg(&npy)
            .arg("-o")
            .arg(dir.join("bad.wav"))
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} accepted");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    assert!(fail(&["--chunk-frames", "0"]).contains("chunk size 0"));
    assert!(fail(&["--lookahead", "2"]).contains("--lookahead needs --chunk-frames"));
}

#[test]
fn cli_bench_vocode_times_chunked_streaming() {
    let text = run_ok(bca_cmd().args([
        "bench",
        "vocode",
        "--shape",
        "tiny",
        "--seconds",
        "0.4",
        "--reps",
        "1",
        "--chunk-frames",
        "1",
    ]));
    // 5 frames, C = 1, L = 3: prefixes of 4 and 5 frames, the 5-frame one reused at the end
    let after = text
        .split("chunked streaming, 1 frames per chunk, lookahead 3")
        .nth(1)
        .unwrap_or_else(|| panic!("no chunked table in:\n{text}"));
    let row: Vec<&str> = after
        .lines()
        .find(|l| l.trim_start().starts_with("0.38"))
        .unwrap_or_else(|| panic!("no 0.38 s row (19 mel frames) in:\n{text}"))
        .split_whitespace()
        .collect();
    assert_eq!(row[1..3], ["5", "2"], "frames, decodes: {row:?}");
    let first: f64 = row[3].parse().unwrap();
    let total: f64 = row[4].parse().unwrap();
    let rtf: f64 = row[5].parse().unwrap();
    assert!(
        first > 0.0 && first <= total && rtf > 0.0 && rtf.is_finite(),
        "{row:?}"
    );
}

/// HiFT's F0 `|Linear|`, sine source and source STFT on the GPU (`ops::hift_source_stft`)
/// against the CPU references (`hift::sine_source`, `hift::stft`): F0 features of one channel
/// with weight 1 make F0 = |feature|, so the frames can be chosen voiced (60–400 Hz, ramps and
/// jumps) and unvoiced (< 10 Hz) at will; long segments check the phase sums (the reference
/// sums in f64; the kernel in fixed point). Noise and phases seeded; 8 harmonics. Tolerance:
/// the spectrum is rounded to the activation dtype (f16 rounds |v| ≤ 8 to 2⁻⁸), plus the
/// GPU's `sin` (≲ 1e-6) — atol 1e-4 + rtol 1e-3 on f32, 4e-3 + 2e-3 on f16.
#[test]
fn hift_source_kernel_matches_cpu_reference() {
    use bca::gpu::Recorder;
    use bca::model::audio_out::hift::{sine_source, stft, stft_twiddles, HiftParams};
    use bca::util::rng::Rng;
    let p = HiftParams {
        sampling_rate: 24000.0,
        harmonics: 8,
        sine_amp: 0.1,
        noise_std: 0.003,
        voiced_threshold: 10.0,
        n_fft: 16,
        hop: 4,
        frame_samples: 480,
        lrelu_slope: 0.1,
        audio_limit: 0.99,
    };
    let h = p.harmonics + 1;
    for path in PATHS {
        let c = ctx(path);
        for (i, &frames) in [1usize, 7, 60, 600].iter().enumerate() {
            let mut rng = Rng::new(900 + i as u64);
            // F0 per frame: voiced runs with ramps, unvoiced gaps, exact on the f16 path
            let f0: Vec<f32> = (0..frames)
                .map(|f| match (f / 5) % 4 {
                    0 => 3.0,
                    1 => 80.0 + 2.0 * f as f32 % 300.0,
                    2 => 400.0 - (f % 50) as f32,
                    _ => 150.0 + (f % 7) as f32 * 0.5,
                })
                .collect();
            let f0 = bca::tensor::round_act(c.act(), &f0);
            let lin_w = rng.uniform_vec(h, -0.5, 0.5);
            let lin_b = 0.05;
            let noise = SourceNoise::seeded(17 + i as u64, frames * p.frame_samples, p.harmonics);
            let up: Vec<f32> = f0
                .iter()
                .flat_map(|&f| std::iter::repeat_n(f, p.frame_samples))
                .collect();
            let s = sine_source(&p, &up, &lin_w, lin_b, &noise).unwrap();
            let want = stft(&s, p.n_fft, p.hop);
            // F0 = |1·(−f0) + 0|: the sign goes through the abs
            let feats: Vec<f32> = f0.iter().map(|v| -v).collect();
            let hin = Tensor::from_f32(c, "f0 feats", &[frames, 1], &feats);
            let cls = c.upload("cls", bytemuck::cast_slice(&[1.0f32]));
            let nbuf = c.upload("noise", bytemuck::cast_slice(&noise.noise));
            let phw: Vec<f32> = noise.phases.iter().chain(&lin_w).copied().collect();
            let phw = c.upload("phw", bytemuck::cast_slice(&phw));
            let tw = c.upload("tw", bytemuck::cast_slice(&stft_twiddles(p.n_fft)));
            let sframes = frames * p.frame_samples / p.hop + 1;
            let spec = Tensor::empty(c, "spec", &[sframes, p.n_fft + 2]);
            let mut rec = Recorder::new(c, "source test");
            bca::ops::hift_source_stft(
                &mut rec,
                &hin,
                bca::ops::SourceInputs {
                    cls_w: &cls,
                    noise: &nbuf,
                    phw: &phw,
                    twiddles: &tw,
                },
                p.source_spec(lin_b, 0.0),
                &spec,
            )
            .unwrap();
            assert_eq!(rec.dispatches(), 3);
            rec.submit().unwrap();
            let got = pollster::block_on(spec.to_vec(c)).unwrap();
            assert_eq!(got.len(), want.len());
            let (atol, rtol) = match path {
                GpuPath::F32 => (1e-4, 1e-3),
                _ => (4e-3, 2e-3),
            };
            let bad: Vec<usize> = (0..want.len())
                .filter(|&j| {
                    let e = (got[j] - want[j]).abs();
                    e.is_nan() || e > atol + rtol * want[j].abs()
                })
                .collect();
            let worst = (0..want.len())
                .max_by(|&a, &b| {
                    (got[a] - want[a])
                        .abs()
                        .total_cmp(&(got[b] - want[b]).abs())
                })
                .unwrap_or(0);
            assert!(
                bad.is_empty(),
                "{path:?} {frames} frames: {} of {} bad (first at {:?}), worst at {worst}: {} vs {}",
                bad.len(),
                want.len(),
                bad.first(),
                got[worst],
                want[worst]
            );
            assert!(
                want.iter().any(|v| v.abs() > 0.05),
                "a non-trivial spectrum"
            );
        }
        // bad input fails clearly, before anything is recorded
        let hin = Tensor::from_f32(c, "f0 feats", &[3, 1], &[100.0; 3]);
        let small = c.upload("small", &[0u8; 16]);
        let spec = Tensor::empty(c, "spec", &[3 * 480 / 4 + 1, 18]);
        let mut rec = Recorder::new(c, "source bad");
        let e = bca::ops::hift_source_stft(
            &mut rec,
            &hin,
            bca::ops::SourceInputs {
                cls_w: &small,
                noise: &small,
                phw: &small,
                twiddles: &small,
            },
            p.source_spec(0.0, 0.0),
            &spec,
        )
        .unwrap_err();
        assert!(e.to_string().contains("noise"), "{e}");
        assert_eq!(rec.dispatches(), 0);
    }
}
