//! Audio out in the browser: codes of one segment → 24 kHz PCM (spec §7–§9).

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use wasm_bindgen::prelude::*;

use super::{to_js, Engine};
use crate::model::audio_out::{Vocoder, SAMPLE_RATE};
use crate::model::{ModelError, Weights};

thread_local! {
    /// The stages of the loaded model, built on first use. Keyed by a weak reference to the
    /// weight store (it keeps the allocation, so a newly loaded model never shares its address).
    static VOCODER: RefCell<Option<(Weak<Weights>, Rc<Vocoder>)>> = const { RefCell::new(None) };
}

fn vocoder(w: &Rc<Weights>, ctx: &crate::gpu::GpuContext) -> Result<Rc<Vocoder>, ModelError> {
    if let Some(v) = VOCODER.with(|c| {
        c.borrow()
            .as_ref()
            .filter(|(k, _)| std::ptr::eq(k.as_ptr(), Rc::as_ptr(w)))
            .map(|(_, v)| v.clone())
    }) {
        return Ok(v);
    }
    let v = Rc::new(Vocoder::load(w, ctx)?);
    VOCODER.with(|c| *c.borrow_mut() = Some((Rc::downgrade(w), v.clone())));
    Ok(v)
}

#[wasm_bindgen]
impl Engine {
    /// Vocodes one segment of `frames` code frames (`codes`: frames × 8 row-major, int32;
    /// audio EOS excluded) with noise from `seed`. Resolves to
    /// `{frames, samples, sampleRate, pcm: number[]}`; rejects with a readable message for
    /// empty or out-of-range codes, a wrong length, or no model.
    pub fn vocode(
        &self,
        codes: Vec<i32>,
        frames: u32,
        seed: u32,
    ) -> Result<js_sys::Promise, JsError> {
        let w = self.model()?;
        let ctx = self.ctx.clone();
        if codes.len() != frames as usize * 8 {
            return Err(JsError::new(&format!(
                "codes hold {} values, {frames} frames × 8 = {} expected",
                codes.len(),
                frames as usize * 8
            )));
        }
        let codes: Vec<u32> = codes
            .iter()
            .enumerate()
            .map(|(i, &c)| {
                u32::try_from(c).map_err(|_| {
                    JsError::new(&format!(
                        "code {c} at frame {}, codebook {} is negative",
                        i / 8,
                        i % 8
                    ))
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(wasm_bindgen_futures::future_to_promise(async move {
            let err = |e: ModelError| JsValue::from(JsError::new(&e.to_string()));
            let voc = vocoder(&w, &ctx).map_err(err)?;
            let n = voc.decoder.check_codes(&codes).map_err(err)?;
            let noise = voc.noise(n, seed as u64);
            let pcm = voc.segment(&ctx, &codes, &noise).await.map_err(err)?;
            to_js(&serde_json::json!({
                "frames": n,
                "samples": pcm.len(),
                "sampleRate": SAMPLE_RATE,
                "pcm": pcm,
            }))
            .map_err(JsValue::from)
        }))
    }
}
