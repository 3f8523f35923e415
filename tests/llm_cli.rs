//! The LLM commands on bad input: one clear line on stderr and a non-zero exit, never a panic.
//! Plus `bca tokenize` on a file and `bca tts` writing codes.

use std::path::{Path, PathBuf};
use std::process::Command;

use bca::weights::tiny::Variant;

mod common;

fn tiny(variant: Variant) -> PathBuf {
    common::tiny_checkpoint("bca-llmcli-test-", variant)
}

fn tmp() -> PathBuf {
    let p = common::temp_root("bca-llmcli-test-");
    std::fs::create_dir_all(&p).unwrap();
    p
}

fn bca(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_bca"))
        .args(args)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .output()
        .expect("run bca");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn fails_with(args: &[&str], needle: &str) {
    let (ok, _, err) = bca(args);
    assert!(!ok, "{args:?} must fail");
    assert!(err.contains(needle), "{args:?}: stderr {err}");
    assert!(!err.contains("panicked"), "{args:?}: {err}");
}

fn npy_i32(path: &Path, shape: &[usize], data: &[i32]) {
    std::fs::write(path, bca::util::npy::write_i32(shape, data)).unwrap();
}

#[test]
fn tokenize_prints_ids() {
    let d = tiny(Variant::Instruct);
    let f = tmp().join("t.txt");
    std::fs::write(&f, "<C_Q>你好").unwrap();
    let (ok, out, err) = bca(&[
        "tokenize",
        d.to_str().unwrap(),
        "--file",
        f.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "151667 108386");
}

#[test]
fn bad_inputs_are_clear_errors() {
    let inst = tiny(Variant::Instruct);
    let base = tiny(Variant::Base);
    let (i, b) = (inst.to_str().unwrap(), base.to_str().unwrap());
    let o = tmp().join("o.npy");
    let o = o.to_str().unwrap();
    fails_with(
        &["logits", i, "--tokens", "1,152064", "-o", o],
        "outside the vocabulary",
    );
    let empty = tmp().join("empty.npy");
    npy_i32(&empty, &[0, 8], &[]);
    fails_with(
        &["asr", b, "--codes", empty.to_str().unwrap()],
        "audio is empty",
    );
    let bad = tmp().join("bad.npy");
    npy_i32(&bad, &[2, 4], &[1; 8]);
    fails_with(&["asr", b, "--codes", bad.to_str().unwrap()], "[frames, 8]");
    let big = tmp().join("big.npy");
    npy_i32(&big, &[1, 8], &[999, 0, 0, 0, 0, 0, 0, 0]);
    fails_with(&["asr", b, "--codes", big.to_str().unwrap()], "codebook 0");
    fails_with(&["chat", b, "--text", "hi"], "Base model");
    fails_with(
        &[
            "chat",
            i,
            "--text",
            "一二三四五六七八九十",
            "--context",
            "8",
        ],
        "context length",
    );
}

#[test]
fn tts_writes_codes() {
    let b = tiny(Variant::Base);
    let o = tmp().join("tts.npy");
    let (ok, out, err) = bca(&[
        "tts",
        b.to_str().unwrap(),
        "你好。",
        "-o",
        o.to_str().unwrap(),
        "--f32",
        "--max-frames",
        "4",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("frames"), "{out}");
    let a = bca::util::npy::read(&std::fs::read(&o).unwrap()).unwrap();
    assert_eq!(a.shape()[1], 8);
}

/// Reads a WAV's sample count (mono, 24 kHz).
fn wav_len(p: &Path) -> usize {
    let r = hound::WavReader::open(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let s = r.spec();
    assert_eq!((s.channels, s.sample_rate), (1, 24000), "{s:?}");
    r.len() as usize
}

/// Segment sizes (frames) from an `--events` JSON-lines file.
fn segment_frames(events: &Path) -> Vec<usize> {
    std::fs::read_to_string(events)
        .unwrap()
        .lines()
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["event"] == "segment_end")
                .then(|| v["frames"].as_u64())
                .flatten()
                .map(|n| n as usize)
        })
        .collect()
}

/// Text → codes → the audio-out stages → WAV: (4N − 1)·480 samples per segment of N frames,
/// plus the reference's 240-sample cross-fade between segments.
#[test]
fn tts_writes_speech() {
    let b = tiny(Variant::Base);
    let o = tmp().join("tts.wav");
    let ev = tmp().join("tts.events");
    let (ok, _, err) = bca(&[
        "tts",
        b.to_str().unwrap(),
        "你好。",
        "-o",
        o.to_str().unwrap(),
        "--max-frames",
        "3",
        "--events",
        ev.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let segs = segment_frames(&ev);
    assert!(!segs.is_empty(), "no segment in {}", ev.display());
    let want: usize = segs.iter().map(|n| (4 * n - 1) * 480).sum::<usize>()
        + 240
            * segs
                .iter()
                .skip(1)
                .filter(|n| (4 * *n - 1) * 480 > 240)
                .count();
    assert_eq!(wav_len(&o), want, "segments {segs:?}");
}

/// A spoken turn end to end: WAV in (48 kHz) → audio in → LLM → audio out → WAV.
#[test]
fn chat_takes_speech_and_answers_with_speech() {
    let inst = tiny(Variant::Instruct);
    let wav =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/goldens/audio_in/wav/en_48k_s16.wav");
    let o = tmp().join("reply.wav");
    let ev = tmp().join("chat.events");
    let (ok, out, err) = bca(&[
        "chat",
        inst.to_str().unwrap(),
        "--audio",
        wav.to_str().unwrap(),
        "-o",
        o.to_str().unwrap(),
        "--max-frames",
        "2",
        "--max-rounds",
        "2",
        "--max-text",
        "6",
        "--context",
        "512",
        "--seed",
        "3",
        "--events",
        ev.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(err.contains("frames of speech"), "{err}");
    // the limits hold: at most 2 rounds of ≤ 6 text tokens and ≤ 2 frames each
    let events = std::fs::read_to_string(&ev).unwrap();
    let count = |kind: &str| events.lines().filter(|l| l.contains(kind)).count();
    assert!(
        count("\"segment_end\"") >= 1 && count("\"segment_end\"") <= 2,
        "{events}"
    );
    assert!(count("\"frame\"") <= 4, "{events}");
    assert!(!out.trim().is_empty(), "no reply text");
    assert!(wav_len(&o) >= 3 * 480, "reply too short");
    // a second turn: the first as history, the reply's speech re-encoded through audio in
    // (the tiny reply above is only a few frames long: the assistant's speech here is a 1 s
    // 24 kHz signal, 12–13 code frames once re-encoded)
    let said = tmp().join("said.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 24000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut wr = hound::WavWriter::create(&said, spec).unwrap();
    for i in 0..24000 {
        let t = i as f32 / 24000.0;
        let x = 0.3 * (2.0 * std::f32::consts::PI * 220.0 * t).sin()
            + 0.1 * (2.0 * std::f32::consts::PI * 1330.0 * t * (1.0 + t)).sin();
        wr.write_sample((x * 32767.0) as i16).unwrap();
    }
    wr.finalize().unwrap();
    let h = tmp().join("history.json");
    let hist = serde_json::json!([
        {"role": "user", "audio": wav.to_str().unwrap()},
        {"role": "assistant", "text": out.trim(), "audio": ["said.wav"]},
    ]);
    std::fs::write(&h, hist.to_string()).unwrap();
    let (ok, out2, err2) = bca(&[
        "chat",
        inst.to_str().unwrap(),
        "--history",
        h.to_str().unwrap(),
        "--text",
        "再说一遍",
        "--max-text",
        "4",
        "--max-rounds",
        "1",
        "--max-frames",
        "1",
        "--context",
        "512",
    ]);
    assert!(ok, "{err2}");
    let reencoded: usize = err2
        .lines()
        .find_map(|l| l.strip_prefix("history: "))
        .and_then(|l| l.split(", ").nth(2))
        .and_then(|x| x.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no history line: {err2}"));
    assert!((12..=13).contains(&reencoded), "{err2}");
    assert!(!out2.trim().is_empty(), "no reply text");
    fails_with(
        &[
            "chat",
            inst.to_str().unwrap(),
            "--audio",
            wav.to_str().unwrap(),
            "--codes",
            "x.npy",
        ],
        "not both",
    );
}

/// `bca convert` says the largest GPU buffer the converted model needs: with 12 KiB bindings a
/// layer matrix joined whole at load (more than any part), with the default bindings a part of
/// the embedding table (the largest one-part buffer).
#[test]
fn convert_says_the_binding_the_model_needs() {
    use bca::weights::manifest::{largest_binding, Manifest};
    let src = tiny(Variant::Instruct);
    for (tag, args, joined) in [
        (
            "12k",
            &["--quant", "f16", "--max-binding", "12288"][..],
            true,
        ),
        ("q4", &["--quant", "q4"][..], false),
    ] {
        let out = tmp().join(format!("convert-{tag}"));
        let _ = std::fs::remove_dir_all(&out);
        let mut a = vec!["convert", src.to_str().unwrap(), out.to_str().unwrap()];
        a.extend_from_slice(args);
        let (ok, stdout, err) = bca(&a);
        assert!(ok, "{err}");
        let m: Manifest =
            serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
        let cfg = bca::weights::convert::manifest_config(&m).unwrap();
        let roles = bca::weights::spec::model_tensors(&cfg)
            .into_iter()
            .map(|s| (s.name, s.role))
            .collect();
        let (name, need) = largest_binding(&m, &roles).unwrap();
        let t = m.tensors.iter().find(|t| t.name == name).unwrap();
        assert_eq!(
            bca::weights::manifest::joined(t, &roles),
            joined,
            "{tag}: {name} in {} parts",
            t.parts.len()
        );
        let biggest_part = m
            .tensors
            .iter()
            .flat_map(|t| t.parts.iter().map(move |p| (t, p)))
            .map(|(t, p)| bca::weights::manifest::gpu_bytes(t, p, &p.data))
            .max()
            .unwrap();
        assert!(
            need >= biggest_part && (need > biggest_part) == joined,
            "{tag}: {need} vs {biggest_part}"
        );
        assert!(
            stdout.contains(&format!(
                "loads on GPUs whose maxStorageBufferBindingSize is at least {need} bytes"
            )) && stdout.contains(&format!("for {name})")),
            "{tag}: {stdout}"
        );
    }
}
