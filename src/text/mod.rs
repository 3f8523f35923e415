//! Text side: the Qwen2 BPE tokenizer through the `tokenizers` crate (wasm-capable build).

#[derive(Debug, thiserror::Error)]
pub enum TextError {
    #[error("tokenizer file is invalid: {0}")]
    Load(String),
    #[error("tokenizer failed: {0}")]
    Encode(String),
}

/// A loaded tokenizer (`tokenizer.json` contents).
pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
}

impl TextTokenizer {
    pub fn from_json_bytes(bytes: &[u8]) -> Result<Self, TextError> {
        let inner =
            tokenizers::Tokenizer::from_bytes(bytes).map_err(|e| TextError::Load(e.to_string()))?;
        Ok(TextTokenizer { inner })
    }

    /// Ids of `text` with no special tokens added (added-token strings map to their ids).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TextError> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| TextError::Encode(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String, TextError> {
        self.inner
            .decode(ids, false)
            .map_err(|e| TextError::Encode(e.to_string()))
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
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
        assert!(matches!(
            TextTokenizer::from_json_bytes(b"{not json"),
            Err(TextError::Load(_))
        ));
    }
}
