//! The audio LLM from JS: tokenizer, logits and generation on the loaded model (the same code
//! as the native `bca tokenize` / `bca logits` / `bca generate`).

use std::cell::RefCell;

use wasm_bindgen::prelude::*;

use super::Engine;
use crate::model::llm::generate::{Event, Generator, Mode};
use crate::model::llm::{Input, Llm, Session};
use crate::text::TextTokenizer;

thread_local! {
    /// tokenizer.json bytes of the loaded model (wasm is single-threaded).
    static TOKENIZER: RefCell<Option<(Vec<u8>, std::rc::Rc<TextTokenizer>)>> =
        const { RefCell::new(None) };
}

fn js_err(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

pub(super) fn tokenizer() -> Result<(Vec<u8>, std::rc::Rc<TextTokenizer>), JsError> {
    TOKENIZER.with(|t| {
        t.borrow()
            .clone()
            .ok_or_else(|| JsError::new("no tokenizer loaded (llmLoadTokenizer)"))
    })
}

#[wasm_bindgen]
impl Engine {
    /// Loads the model folder's tokenizer.json (its text). Resolves to the vocabulary size.
    #[wasm_bindgen(js_name = llmLoadTokenizer)]
    pub fn llm_load_tokenizer(&self, json: &str) -> Result<u32, JsError> {
        let t = TextTokenizer::from_json_bytes(json.as_bytes()).map_err(js_err)?;
        let n = t.vocab_size() as u32;
        TOKENIZER.with(|c| *c.borrow_mut() = Some((json.as_bytes().to_vec(), std::rc::Rc::new(t))));
        Ok(n)
    }

    /// Ids of `text` (no special tokens added; special-token strings become their ids).
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>, JsError> {
        tokenizer()?.1.encode(text).map_err(js_err)
    }

    /// Text of `ids` (special tokens kept).
    pub fn detokenize(&self, ids: Vec<u32>) -> Result<String, JsError> {
        tokenizer()?.1.decode(&ids).map_err(js_err)
    }

    /// Logits of every position of `ids`: resolves to `{vocab, first: Float32Array (n × k:
    /// the first k logits of each position), argmax: [n]}`.
    #[wasm_bindgen(js_name = llmLogits)]
    pub fn llm_logits(&self, ids: Vec<u32>, k: u32) -> Result<js_sys::Promise, JsError> {
        let ctx = self.ctx.clone();
        let w = self.model()?;
        Ok(wasm_bindgen_futures::future_to_promise(async move {
            let run = async {
                let llm = Llm::load(&ctx, &w)?;
                let mut s = Session::new(&ctx, &llm, ids.len().max(1), 64)?;
                let inputs: Vec<Input> = ids.iter().map(|&t| Input::Text(t)).collect();
                let v = s.all_logits(&ctx, &llm, &inputs).await?;
                Ok::<_, crate::model::ModelError>((llm.dims.vocab, v))
            };
            let (vocab, v) = run.await.map_err(|e| JsValue::from(js_err(e)))?;
            let k = (k as usize).min(vocab);
            let mut first = Vec::with_capacity(ids.len() * k);
            let mut argmax = Vec::with_capacity(ids.len());
            for row in v.chunks(vocab) {
                first.extend_from_slice(&row[..k]);
                let mut b = 0;
                for (i, x) in row.iter().enumerate() {
                    if *x > row[b] {
                        b = i;
                    }
                }
                argmax.push(b as u32);
            }
            let o = js_sys::Object::new();
            let set = |key: &str, val: &JsValue| js_sys::Reflect::set(&o, &key.into(), val);
            set("vocab", &JsValue::from(vocab as u32))?;
            set(
                "first",
                &js_sys::Float32Array::from(first.as_slice()).into(),
            )?;
            set(
                "argmax",
                &js_sys::Uint32Array::from(argmax.as_slice()).into(),
            )?;
            Ok(o.into())
        }))
    }

    /// Text continuation of `text` (at most `max_new` tokens, stops at `<|endoftext|>`), with
    /// the text-step sampling of spec §10.2 and `temperature` (0 = greedy). Resolves to
    /// `{ids: Uint32Array, text}` — the same ids as `bca generate … --temperature T --seed S`.
    #[wasm_bindgen(js_name = llmGenerate)]
    pub fn llm_generate(
        &self,
        text: String,
        max_new: u32,
        seed: u32,
        temperature: f32,
    ) -> Result<js_sys::Promise, JsError> {
        let ctx = self.ctx.clone();
        let w = self.model()?;
        let (json, _) = tokenizer()?;
        Ok(wasm_bindgen_futures::future_to_promise(async move {
            let run = async {
                let tok = TextTokenizer::from_json_bytes(&json)
                    .map_err(|e| crate::model::ModelError::input(e.to_string()))?;
                let mut g = Generator::new(&ctx, &w, tok, 4096, seed as u64)?;
                g.cfg.text_only_max = (max_new as usize).max(1);
                g.cfg.text_first.temperature = temperature;
                let inputs = g.text_inputs(&text)?;
                g.start(&ctx, &inputs, Mode::TextOnly)?;
                let ev = g.run(&ctx, |_| true).await?;
                let mut ids = Vec::new();
                let mut out = String::new();
                for e in ev {
                    if let Event::Text { id, delta } = e {
                        if id != u32::MAX {
                            ids.push(id);
                        }
                        out.push_str(&delta);
                    }
                }
                Ok::<_, crate::model::ModelError>((ids, out))
            };
            let (ids, out) = run.await.map_err(|e| JsValue::from(js_err(e)))?;
            let o = js_sys::Object::new();
            js_sys::Reflect::set(
                &o,
                &"ids".into(),
                &js_sys::Uint32Array::from(ids.as_slice()).into(),
            )?;
            js_sys::Reflect::set(&o, &"text".into(), &JsValue::from(out))?;
            Ok(o.into())
        }))
    }
}
