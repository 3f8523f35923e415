//! Tokenizer against the golden from Python `tokenizers` + `transformers`
//! (scripts/goldens/tokenizer.py): the real Qwen2 BPE with Baichuan's added tokens, encoded with
//! add_special_tokens = false, decoded with special tokens kept; plus the streaming detokeniser.
//! Needs .cache/assets/tokenizer-qwen3.json (scripts/fetch-assets.sh); missing it is a failure.

use bca::text::{StreamDecoder, TextTokenizer};

fn tokenizer() -> TextTokenizer {
    let root = env!("CARGO_MANIFEST_DIR");
    let path = format!("{root}/.cache/assets/tokenizer-qwen3.json");
    let qwen = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e} (run scripts/fetch-assets.sh)"));
    let tok = bca::weights::tiny::baichuan_tokenizer(&qwen).expect("baichuan tokenizer");
    TextTokenizer::from_json_bytes(tok.to_string().as_bytes()).expect("load")
}

fn golden() -> Vec<serde_json::Value> {
    let root = env!("CARGO_MANIFEST_DIR");
    let s = std::fs::read_to_string(format!("{root}/tests/goldens/tokenizer/corpus.json"))
        .expect("golden corpus");
    let v: serde_json::Value = serde_json::from_str(&s).expect("json");
    v["cases"].as_array().expect("cases").clone()
}

#[test]
fn special_tokens_have_their_real_ids() {
    let t = tokenizer();
    for (s, id) in [
        ("<|endoftext|>", 151643),
        ("<B_SYS>", 151665),
        ("<C_Q>", 151667),
        ("<C_A>", 151668),
        ("<audio_start_baichuan>", 151676),
        ("<audio_end_baichuan>", 151677),
        ("<audio_pad_baichuan>", 151678),
        ("<audio_delim_baichuan>", 151693),
        ("<audiotext_start_baichuan>", 151697),
        ("<audiogen_start_baichuan>", 151700),
        ("<audiogen_end_baichuan>", 151701),
    ] {
        assert_eq!(t.token_id(s).unwrap(), id, "{s}");
        assert_eq!(t.encode(s).unwrap(), vec![id], "{s}");
    }
    assert!(t.decode(&[152064]).is_err());
}

#[test]
fn encode_matches_transformers_on_the_corpus() {
    let t = tokenizer();
    let cases = golden();
    assert!(cases.len() >= 200);
    let mut bad = Vec::new();
    for c in &cases {
        let text = c["text"].as_str().unwrap();
        let want: Vec<u32> = c["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        let got = t.encode(text).unwrap();
        if got != want {
            bad.push(format!("{text:?}: got {got:?}, want {want:?}"));
        }
    }
    assert!(
        bad.is_empty(),
        "{} of {} differ:\n{}",
        bad.len(),
        cases.len(),
        bad.join("\n")
    );
}

#[test]
fn decode_and_stream_match_transformers() {
    let t = tokenizer();
    for c in golden() {
        let ids: Vec<u32> = c["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        let want = c["decoded"].as_str().unwrap();
        assert_eq!(t.decode(&ids).unwrap(), want, "ids {ids:?}");
        // streaming: every delta is whole characters and the deltas add up to the decode
        let mut s = StreamDecoder::new();
        let mut acc = String::new();
        for &id in &ids {
            let d = s.push(&t, id).unwrap();
            acc.push_str(&d);
            assert!(!d.contains('\u{FFFD}') || want.contains('\u{FFFD}'));
        }
        acc.push_str(&s.finish());
        assert_eq!(acc, want, "stream of {ids:?}");
    }
}

#[test]
fn stream_never_splits_a_character() {
    let t = tokenizer();
    // CJK and emoji that byte-level BPE splits across tokens
    let text = "🐼👨‍👩‍👧‍👦🏳️‍🌈𠀀𪚥龘靐齉";
    let ids = t.encode(text).unwrap();
    assert!(
        ids.len() > text.chars().count(),
        "expected split characters: {ids:?}"
    );
    let mut s = StreamDecoder::new();
    let mut acc = String::new();
    let mut held = 0;
    for &id in &ids {
        let d = s.push(&t, id).unwrap();
        assert!(!d.contains('\u{FFFD}'), "half a character emitted at {id}");
        held += usize::from(d.is_empty());
        acc.push_str(&d);
        assert!(text.starts_with(&acc));
    }
    assert!(held > 0, "no token was held back: the test proves nothing");
    assert!(!s.has_pending());
    assert_eq!(acc, text);
}
