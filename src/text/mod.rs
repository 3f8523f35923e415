//! Text side: the Qwen2 BPE tokenizer through the `tokenizers` crate (wasm-capable build), and a
//! streaming detokeniser that only ever emits whole UTF-8 characters.
//!
//! Semantics (spec §1.1): `add_special_tokens = false` (no BOS, nothing added), added-token
//! strings in the text (`<C_Q>`, `<audio_pad_baichuan>`, …) become their single ids, decoding
//! keeps special tokens as their text. Decoding is byte exact: every id maps to the bytes it
//! stands for (GPT-2 byte-level alphabet for the BPE vocabulary, the UTF-8 of the content for
//! added tokens), and bytes that are not valid UTF-8 become U+FFFD as Python's
//! `bytes.decode("utf-8", errors="replace")` does (`errors: "replace"` in tokenizer_config).

use std::collections::HashMap;

#[derive(Debug, thiserror::Error)]
pub enum TextError {
    #[error("tokenizer file is invalid: {0}")]
    Load(String),
    #[error("tokenizer failed: {0}")]
    Encode(String),
    #[error("token id {id} is outside the vocabulary ({vocab} ids)")]
    UnknownId { id: u32, vocab: usize },
    #[error("no special token {0:?} in this tokenizer")]
    NoSuchToken(String),
}

/// A loaded tokenizer (`tokenizer.json` contents).
pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
    /// Bytes of every id (index = id); empty for ids the file does not define.
    bytes: Vec<Vec<u8>>,
    /// Ids of added tokens (special or not), by content.
    added: HashMap<String, u32>,
}

/// GPT-2's byte ↔ printable-character table (the `ByteLevel` alphabet): bytes that are printable
/// Latin-1 map to themselves, the other 68 to U+0100 onward in byte order.
fn byte_level_decoder() -> HashMap<char, u8> {
    let mut map = HashMap::with_capacity(256);
    let printable = |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || b >= 174;
    let mut next = 256u32;
    for b in 0u32..256 {
        let c = if printable(b) {
            b
        } else {
            let c = next;
            next += 1;
            c
        };
        if let Some(ch) = char::from_u32(c) {
            map.insert(ch, b as u8);
        }
    }
    map
}

impl TextTokenizer {
    pub fn from_json_bytes(bytes: &[u8]) -> Result<Self, TextError> {
        let inner =
            tokenizers::Tokenizer::from_bytes(bytes).map_err(|e| TextError::Load(e.to_string()))?;
        let size = inner.get_vocab_size(true);
        let vocab = inner.get_vocab(true);
        let max_id = vocab.values().copied().max().map_or(0, |m| m as usize + 1);
        let mut table = vec![Vec::new(); size.max(max_id)];
        let added: HashMap<String, u32> = inner
            .get_added_tokens_decoder()
            .into_iter()
            .map(|(id, t)| (t.content, id))
            .collect();
        let bl = byte_level_decoder();
        for (tok, id) in vocab {
            let b = if added.contains_key(&tok) {
                tok.into_bytes()
            } else {
                // Byte-level BPE token: every char stands for one byte. A char outside the
                // alphabet (not a byte-level vocabulary) keeps its own UTF-8.
                let mut out = Vec::with_capacity(tok.len());
                for ch in tok.chars() {
                    match bl.get(&ch) {
                        Some(b) => out.push(*b),
                        None => {
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        }
                    }
                }
                out
            };
            if let Some(slot) = table.get_mut(id as usize) {
                *slot = b;
            }
        }
        Ok(TextTokenizer {
            inner,
            bytes: table,
            added,
        })
    }

    /// Ids of `text` with no special tokens added (added-token strings map to their ids).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TextError> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| TextError::Encode(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// The id of an added token (`<C_Q>`, `<|endoftext|>` …).
    pub fn token_id(&self, content: &str) -> Result<u32, TextError> {
        self.added
            .get(content)
            .copied()
            .ok_or_else(|| TextError::NoSuchToken(content.to_string()))
    }

    /// The bytes one id stands for.
    pub fn id_bytes(&self, id: u32) -> Result<&[u8], TextError> {
        match self.bytes.get(id as usize) {
            Some(b) if !b.is_empty() => Ok(b),
            _ => Err(TextError::UnknownId {
                id,
                vocab: self.bytes.len(),
            }),
        }
    }

    /// Text of `ids`, special tokens included; invalid UTF-8 becomes U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> Result<String, TextError> {
        let mut bytes = Vec::new();
        for &id in ids {
            bytes.extend_from_slice(self.id_bytes(id)?);
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Ids the tokenizer defines (base vocabulary + added tokens).
    pub fn vocab_size(&self) -> usize {
        self.bytes.len()
    }
}

/// Incremental detokeniser: push ids one by one, get back only complete characters. Bytes of a
/// character split across tokens (CJK, emoji) are held until the character is complete; a byte
/// sequence that can never become valid UTF-8 is emitted as U+FFFD (so `push`es followed by
/// `finish` give exactly [`TextTokenizer::decode`] of all ids).
#[derive(Default)]
pub struct StreamDecoder {
    pending: Vec<u8>,
}

impl StreamDecoder {
    pub fn new() -> Self {
        StreamDecoder::default()
    }

    /// Adds one id; returns the newly completed text (possibly empty).
    pub fn push(&mut self, tok: &TextTokenizer, id: u32) -> Result<String, TextError> {
        self.pending.extend_from_slice(tok.id_bytes(id)?);
        Ok(self.drain(false))
    }

    /// Flushes what is left (an incomplete character becomes U+FFFD).
    pub fn finish(&mut self) -> String {
        self.drain(true)
    }

    /// Whether bytes of an unfinished character are waiting.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    fn drain(&mut self, all: bool) -> String {
        let mut out = String::new();
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let good = e.valid_up_to();
                    // from_utf8 validated this prefix
                    out.push_str(&String::from_utf8_lossy(&rest[..good]));
                    match e.error_len() {
                        Some(n) => {
                            out.push('\u{FFFD}');
                            rest = &rest[good + n..];
                        }
                        None => {
                            rest = &rest[good..];
                            if all {
                                out.push('\u{FFFD}');
                                rest = &[];
                            }
                            break;
                        }
                    }
                }
            }
        }
        self.pending = rest.to_vec();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A minimal word-level tokenizer: proves the crate loads and encodes in this build.
    const TINY: &str = r#"{
      "version": "1.0", "truncation": null, "padding": null,
      "added_tokens": [{"id": 3, "content": "<C_Q>", "single_word": false, "lstrip": false,
                        "rstrip": false, "normalized": false, "special": true}],
      "normalizer": null,
      "pre_tokenizer": {"type": "Whitespace"},
      "post_processor": null, "decoder": null,
      "model": {"type": "WordLevel", "vocab": {"hello": 0, "world": 1, "[UNK]": 2, "<C_Q>": 3},
                "unk_token": "[UNK]"}
    }"#;

    #[test]
    fn loads_and_encodes() {
        let t = TextTokenizer::from_json_bytes(TINY.as_bytes()).unwrap();
        assert_eq!(
            t.encode("hello <C_Q> world moon").unwrap(),
            vec![0, 3, 1, 2]
        );
        assert_eq!(t.token_id("<C_Q>").unwrap(), 3);
        assert!(matches!(
            t.decode(&[7]),
            Err(TextError::UnknownId { id: 7, .. })
        ));
        assert!(matches!(
            TextTokenizer::from_json_bytes(b"{not json"),
            Err(TextError::Load(_))
        ));
    }

    #[test]
    fn byte_level_table_is_a_bijection() {
        let m = byte_level_decoder();
        assert_eq!(m.len(), 256);
        assert_eq!(m.get(&'Ġ'), Some(&b' '));
        assert_eq!(m.get(&'Ċ'), Some(&b'\n'));
        assert_eq!(m.get(&'a'), Some(&b'a'));
    }

    #[test]
    fn stream_holds_partial_characters() {
        let mut s = StreamDecoder::new();
        let text = "a猫😀b";
        let bytes = text.as_bytes();
        let mut out = String::new();
        for b in bytes {
            s.pending.push(*b);
            let got = s.drain(false);
            // never half a character: whatever came out is a prefix of the text
            out.push_str(&got);
            assert!(text.starts_with(&out));
        }
        assert_eq!(out, text);
        s.pending.extend_from_slice(&[0xE7, 0x8C]);
        assert_eq!(s.drain(false), "");
        assert_eq!(s.finish(), "\u{FFFD}");
        s.pending.extend_from_slice(&[0xFF, b'x']);
        assert_eq!(s.drain(false), "\u{FFFD}x");
    }
}
