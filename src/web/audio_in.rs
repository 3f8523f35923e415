//! Audio in for the page: PCM → log-mel → codes (spec §2–§4), the same code as `bca encode`.

use std::cell::RefCell;
use std::rc::Rc;

use wasm_bindgen::prelude::*;

use super::{to_js, Engine};
use crate::audio::{self, MelConfig};
use crate::model::audio_in::AudioIn;
use crate::model::Weights;

thread_local! {
    /// The audio-in stage of the loaded model (rebuilt when another model is loaded).
    static STAGE: RefCell<Option<(*const Weights, Rc<AudioIn>)>> = const { RefCell::new(None) };
}

fn js(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

impl Engine {
    pub(super) fn audio_in(&self) -> Result<(Rc<Weights>, Rc<AudioIn>), JsError> {
        let w = self.model()?;
        let key = Rc::as_ptr(&w);
        if let Some(s) = STAGE.with(|s| {
            s.borrow()
                .as_ref()
                .filter(|(k, _)| *k == key)
                .map(|(_, m)| m.clone())
        }) {
            return Ok((w, s));
        }
        let m = Rc::new(AudioIn::load(&self.ctx, &w).map_err(js)?);
        STAGE.with(|s| *s.borrow_mut() = Some((key, m.clone())));
        Ok((w, m))
    }
}

fn to_16k(samples: &[f32], sample_rate: u32) -> Result<Vec<f32>, JsError> {
    if samples.is_empty() {
        return Err(js(audio::AudioError::Empty));
    }
    audio::resample(samples, sample_rate).map_err(js)
}

#[wasm_bindgen]
impl Engine {
    /// Mono PCM in [-1, 1] at `sampleRate` → RVQ codes of the loaded model. Resolves to
    /// `{codes: number[] (frames × 8, row-major), frames, chunks, silent}`.
    #[wasm_bindgen(js_name = encodePcm)]
    pub fn encode_pcm(&self, samples: Vec<f32>, sample_rate: u32) -> js_sys::Promise {
        let ctx = self.ctx.clone();
        let stage = self.audio_in();
        wasm_bindgen_futures::future_to_promise(async move {
            let (_w, model) = stage.map_err(JsValue::from)?;
            let x = to_16k(&samples, sample_rate).map_err(JsValue::from)?;
            let enc = model
                .encode_pcm(&ctx, &x)
                .await
                .map_err(|e| JsValue::from(js(e)))?;
            to_js(&serde_json::json!({
                "codes": enc.codes,
                "frames": enc.frames,
                "chunks": enc.chunks.len(),
                "silent": audio::is_silent(&x),
            }))
            .map_err(JsValue::from)
        })
    }

    /// Mono PCM at `sampleRate` → Whisper log-mel of one chunk (≤ 30 s) with `nMels` bins.
    /// Returns `{nMels, frames, data: number[] (nMels × frames, row-major)}`.
    pub fn mel(
        &self,
        samples: Vec<f32>,
        sample_rate: u32,
        n_mels: usize,
    ) -> Result<JsValue, JsError> {
        let x = to_16k(&samples, sample_rate)?;
        let cfg = MelConfig {
            n_mels,
            ..MelConfig::default()
        };
        let m = audio::log_mel(cfg, &x).map_err(js)?;
        to_js(&serde_json::json!({"nMels": m.n_mels, "frames": m.frames, "data": m.data}))
    }
}
