//! Audio out in the browser: codes of one segment → 24 kHz PCM (spec §7–§9).

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use wasm_bindgen::prelude::*;

use super::{to_js, Engine};
use crate::model::audio_out::{ChunkOpts, StreamState, Vocoder, SAMPLE_RATE};
use crate::model::{ModelError, Weights};

thread_local! {
    /// The stages of the loaded model, built on first use. Keyed by a weak reference to the
    /// weight store (it keeps the allocation, so a newly loaded model never shares its address).
    static VOCODER: RefCell<Option<(Weak<Weights>, Rc<Vocoder>)>> = const { RefCell::new(None) };
    /// The stream `vocodeBegin` / `vocodePush` / `vocodeEnd` drive. It lives here, not in a JS
    /// object, because the worker calls the engine by method name and wasm objects do not
    /// cross `postMessage`.
    static STREAM: RefCell<Option<WebStream>> = const { RefCell::new(None) };
}

struct WebStream {
    /// The model the stream was begun on.
    key: Weak<Weights>,
    voc: Rc<Vocoder>,
    /// Taken out while a call runs (a second call meanwhile is an error).
    state: Option<StreamState>,
}

/// Codes from JS: `frames × 8` non-negative int32.
fn parse_codes(codes: &[i32], frames: u32) -> Result<Vec<u32>, JsError> {
    if codes.len() != frames as usize * 8 {
        return Err(JsError::new(&format!(
            "codes hold {} values, {frames} frames × 8 = {} expected",
            codes.len(),
            frames as usize * 8
        )));
    }
    codes
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
        .collect()
}

/// Takes the stream's state out for one call: an error if none was begun, if a call is still
/// running, or if another model was loaded since `vocodeBegin`.
fn take_stream(w: &Rc<Weights>) -> Result<(Rc<Vocoder>, StreamState), JsError> {
    STREAM.with(|s| {
        let mut s = s.borrow_mut();
        let ws = s
            .as_mut()
            .ok_or_else(|| JsError::new("no vocode stream: call vocodeBegin first"))?;
        if !std::ptr::eq(ws.key.as_ptr(), Rc::as_ptr(w)) {
            return Err(JsError::new(
                "another model was loaded since vocodeBegin: begin a new stream",
            ));
        }
        let st = ws
            .state
            .take()
            .ok_or_else(|| JsError::new("a vocode stream call is still running"))?;
        Ok((ws.voc.clone(), st))
    })
}

/// Puts the state back after a call (unless a new stream replaced this one meanwhile).
fn put_stream(voc: &Rc<Vocoder>, st: StreamState) {
    STREAM.with(|s| {
        if let Some(ws) = s.borrow_mut().as_mut() {
            if Rc::ptr_eq(&ws.voc, voc) && ws.state.is_none() {
                ws.state = Some(st);
            }
        }
    });
}

/// `{samples, sampleRate, frames (open segment), segments (finished), pcm: number[]}`.
fn stream_result(pcm: &[f32], st: &StreamState) -> Result<JsValue, JsValue> {
    to_js(&serde_json::json!({
        "samples": pcm.len(),
        "sampleRate": SAMPLE_RATE,
        "frames": st.open_frames(),
        "segments": st.segments(),
        "pcm": pcm,
    }))
    .map_err(JsValue::from)
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
        let codes = parse_codes(&codes, frames)?;
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

    /// Begins a stream of segments (replacing any earlier one): per segment when
    /// `chunkFrames` is 0 (the default mode: a segment is vocoded when it ends), else chunked
    /// (`chunkFrames` frames per prefix decode, `lookahead` frames held back, default 3:
    /// playback starts before the segment ends; see ARCHITECTURE.md). Segment i's noise comes
    /// from `seed + i·0x9E3779B9`, as in native streaming.
    #[wasm_bindgen(js_name = vocodeBegin)]
    pub fn vocode_begin(
        &self,
        seed: u32,
        chunk_frames: u32,
        lookahead: Option<u32>,
    ) -> Result<(), JsError> {
        let w = self.model()?;
        let running = STREAM.with(|s| s.borrow().as_ref().is_some_and(|ws| ws.state.is_none()));
        if running {
            return Err(JsError::new("a vocode stream call is still running"));
        }
        let st = if chunk_frames == 0 {
            StreamState::whole(seed as u64)
        } else {
            let l = lookahead.map_or(ChunkOpts::DEFAULT_LOOKAHEAD, |l| l as usize);
            let opts = ChunkOpts::new(chunk_frames as usize, l)
                .map_err(|e| JsError::new(&e.to_string()))?;
            StreamState::chunked(seed as u64, opts).map_err(|e| JsError::new(&e.to_string()))?
        };
        let voc = vocoder(&w, &self.ctx).map_err(|e| JsError::new(&e.to_string()))?;
        STREAM.with(|s| {
            *s.borrow_mut() = Some(WebStream {
                key: Rc::downgrade(&w),
                voc,
                state: Some(st),
            })
        });
        Ok(())
    }

    /// Adds `frames` code frames (`codes`: frames × 8, int32) to the open segment. Resolves to
    /// `{samples, sampleRate, frames, segments, pcm}`: the samples to play now (none in
    /// per-segment mode or before a chunk is due).
    #[wasm_bindgen(js_name = vocodePush)]
    pub fn vocode_push(&self, codes: Vec<i32>, frames: u32) -> Result<js_sys::Promise, JsError> {
        let w = self.model()?;
        let codes = parse_codes(&codes, frames)?;
        let (voc, mut st) = take_stream(&w)?;
        let ctx = self.ctx.clone();
        Ok(wasm_bindgen_futures::future_to_promise(async move {
            let r = st.push_frames(&voc, &ctx, &codes).await;
            let out = match &r {
                Ok(pcm) => stream_result(pcm, &st),
                Err(e) => Err(JsValue::from(JsError::new(&e.to_string()))),
            };
            put_stream(&voc, st);
            out
        }))
    }

    /// Ends the open segment. Resolves to `{samples, sampleRate, frames, segments, pcm}`: the
    /// rest of the segment (with the 240-sample cross-fade before it if it is not the first
    /// and nothing of it was played yet); rejects if no frame was pushed.
    #[wasm_bindgen(js_name = vocodeEnd)]
    pub fn vocode_end(&self) -> Result<js_sys::Promise, JsError> {
        let w = self.model()?;
        let (voc, mut st) = take_stream(&w)?;
        let ctx = self.ctx.clone();
        Ok(wasm_bindgen_futures::future_to_promise(async move {
            let r = st.end_segment(&voc, &ctx).await;
            let out = match &r {
                Ok(pcm) => stream_result(pcm, &st),
                Err(e) => Err(JsValue::from(JsError::new(&e.to_string()))),
            };
            put_stream(&voc, st);
            out
        }))
    }
}
