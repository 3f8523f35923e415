//! Speech chat in the browser (spec §10): one multi-turn conversation on the loaded Instruct
//! model, driven a few steps at a time so the worker can stream events (text deltas, code
//! frames, segment boundaries) to the page and stop between any two steps (barge-in). The
//! same prompt building and loop as the native `bca chat`.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

use wasm_bindgen::prelude::*;

use super::{to_js, Engine};
use crate::model::llm::generate::{
    is_base, reencode_speech, Event, GenConfig, GenOverrides, Generator, Mode,
};
use crate::model::llm::Frame;
use crate::model::{ModelError, Weights};
use crate::text::TextTokenizer;

/// Options of `chatBegin` (all optional): the native `bca chat` flags of the same names
/// (`maxText` also caps a text-only reply, as `--max-text` does).
#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ChatOptions {
    system: Option<String>,
    seed: Option<u32>,
    context: Option<u32>,
    temperature: Option<f32>,
    top_k: Option<u32>,
    top_p: Option<f32>,
    repetition_penalty: Option<f32>,
    max_frames: Option<u32>,
    max_rounds: Option<u32>,
    max_text: Option<u32>,
}

/// What one user turn says (`chatTurn`): speech codes and/or text.
#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct TurnInput {
    /// `frames × 8` codes from `encodePcm`.
    codes: Option<Vec<i64>>,
    text: Option<String>,
    #[serde(default)]
    text_only: bool,
}

struct WebChat {
    /// The model the conversation runs on.
    key: Weak<Weights>,
    /// Taken out while a call runs (a second call meanwhile is an error).
    gen: Option<Generator>,
    /// The system prompt, fed with the first turn.
    system: Option<String>,
    /// The events of the current (or last) turn, for `chatRewriteReply`.
    events: Vec<Event>,
    /// Whether the last turn ran to its end (an interrupted reply is kept as generated).
    finished: bool,
}

thread_local! {
    static CHAT: RefCell<Option<WebChat>> = const { RefCell::new(None) };
    /// Set by `chatInterrupt` (it may arrive while `chatStep` runs); read between steps.
    static STOP: Cell<bool> = const { Cell::new(false) };
}

fn js_err(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

fn js_val(e: impl std::fmt::Display) -> JsValue {
    JsValue::from(js_err(e))
}

/// serde_wasm_bindgen reads only the fields it knows: a misspelt option would pass unseen.
fn check_keys(v: &JsValue, allowed: &[&str], what: &str) -> Result<(), JsError> {
    let Some(o) = v.dyn_ref::<js_sys::Object>() else {
        return Ok(()); // not an object: serde says what is wrong
    };
    for k in js_sys::Object::keys(o).iter() {
        let k = k.as_string().unwrap_or_default();
        if !allowed.contains(&k.as_str()) {
            return Err(JsError::new(&format!(
                "unknown {what} `{k}` (expected one of: {})",
                allowed.join(", ")
            )));
        }
    }
    Ok(())
}

fn parse_frames(codes: &[i64]) -> Result<Vec<Frame>, JsError> {
    if codes.is_empty() || !codes.len().is_multiple_of(8) {
        return Err(JsError::new(&format!(
            "speech codes hold {} values: a positive multiple of 8 (frames × 8) is expected",
            codes.len()
        )));
    }
    codes
        .chunks(8)
        .enumerate()
        .map(|(f, c)| {
            let mut out = [0u32; 8];
            for (i, &v) in c.iter().enumerate() {
                out[i] = u32::try_from(v).map_err(|_| {
                    JsError::new(&format!(
                        "code {v} at frame {f}, codebook {i} is out of range"
                    ))
                })?;
            }
            Ok(out)
        })
        .collect()
}

/// Takes the generator out for one call: an error if no conversation was begun, a call is
/// still running, or another model was loaded since `chatBegin`.
fn take(w: &Rc<Weights>) -> Result<Generator, JsError> {
    CHAT.with(|c| {
        let mut c = c.borrow_mut();
        let ch = c
            .as_mut()
            .ok_or_else(|| JsError::new("no conversation: call chatBegin first"))?;
        if !std::ptr::eq(ch.key.as_ptr(), Rc::as_ptr(w)) {
            return Err(JsError::new(
                "another model was loaded since chatBegin: begin a new conversation",
            ));
        }
        ch.gen
            .take()
            .ok_or_else(|| JsError::new("a chat call is still running"))
    })
}

/// Puts the generator back (unless a new conversation replaced this one meanwhile).
fn put(g: Generator, f: impl FnOnce(&mut WebChat)) {
    CHAT.with(|c| {
        if let Some(ch) = c.borrow_mut().as_mut() {
            if ch.gen.is_none() {
                ch.gen = Some(g);
                f(ch);
            }
        }
    });
}

/// `{fed, turnStart, busy, context}`: where the conversation stands.
fn state(g: &Generator) -> serde_json::Value {
    serde_json::json!({
        "fed": g.fed.len(),
        "turnStart": g.turn_start(),
        "busy": g.busy(),
        "context": g.sess.tmax,
    })
}

#[wasm_bindgen]
impl Engine {
    /// Begins a conversation on the loaded Instruct model (replacing any earlier one; the
    /// tokenizer must be loaded). `options`: `{system, seed, context, temperature, topK, topP,
    /// repetitionPenalty, maxFrames, maxRounds, maxText}`, each optional, as the flags of
    /// `bca chat`. Resolves to the state `{fed, turnStart, busy, context}`.
    #[wasm_bindgen(js_name = chatBegin)]
    pub fn chat_begin(&self, options: JsValue) -> Result<JsValue, JsError> {
        let o: ChatOptions = if options.is_undefined() || options.is_null() {
            ChatOptions::default()
        } else {
            check_keys(
                &options,
                &[
                    "system",
                    "seed",
                    "context",
                    "temperature",
                    "topK",
                    "topP",
                    "repetitionPenalty",
                    "maxFrames",
                    "maxRounds",
                    "maxText",
                ],
                "option",
            )?;
            serde_wasm_bindgen::from_value(options).map_err(js_err)?
        };
        let w = self.model()?;
        if is_base(&w) {
            return Err(JsError::new(
                "this is a Base model (its _name_or_path names -Base): it has no chat format; \
                 load an Instruct model to chat",
            ));
        }
        let running = CHAT.with(|c| c.borrow().as_ref().is_some_and(|ch| ch.gen.is_none()));
        if running {
            return Err(JsError::new("a chat call is still running"));
        }
        let (json, _) = super::llm::tokenizer()?;
        let tok = TextTokenizer::from_json_bytes(&json).map_err(js_err)?;
        if let Some(f) = o.max_frames.filter(|f| !(1..=500).contains(f)) {
            return Err(JsError::new(&format!(
                "maxFrames {f}: 1 to 500 frames per segment"
            )));
        }
        if o.max_rounds == Some(0) {
            return Err(JsError::new("maxRounds must be at least 1"));
        }
        if o.max_text == Some(0) {
            return Err(JsError::new("maxText must be at least 1"));
        }
        let cfg = GenConfig::default().with(&GenOverrides {
            temperature: o.temperature,
            top_k: o.top_k.map(|k| k as usize),
            top_p: o.top_p,
            repetition_penalty: o.repetition_penalty,
            max_frames: o.max_frames.map(|f| f as usize),
            max_rounds: o.max_rounds.map(|r| r as usize),
            max_text: o.max_text.map(|t| t as usize),
        });
        let context = o.context.unwrap_or(4096) as usize;
        if !(16..=8192).contains(&context) {
            return Err(JsError::new(&format!(
                "context {context}: 16 to 8192 positions"
            )));
        }
        // the options are valid: drop the old conversation first (its GPU buffers go before
        // the new ones are made)
        CHAT.with(|c| *c.borrow_mut() = None);
        let mut g = Generator::new(&self.ctx, &w, tok, context, o.seed.unwrap_or(0) as u64)
            .map_err(js_err)?;
        g.cfg = cfg;
        let st = state(&g);
        CHAT.with(|c| {
            *c.borrow_mut() = Some(WebChat {
                key: Rc::downgrade(&w),
                gen: Some(g),
                system: o
                    .system
                    .or_else(|| Some("请用【邻家女声】这个声音回答问题。".into())),
                events: Vec::new(),
                finished: false,
            })
        });
        to_js(&st)
    }

    /// Starts a user turn: `{codes?: number[] (frames × 8, from encodePcm), text?, textOnly?}`
    /// (speech, text, or both). The first turn is preceded by the system prompt. Resolves to
    /// the state; rejects (nothing fed) for an empty turn, bad codes, a turn past the context
    /// length, or a turn still running.
    #[wasm_bindgen(js_name = chatTurn)]
    pub fn chat_turn(&self, turn: JsValue) -> Result<JsValue, JsError> {
        check_keys(&turn, &["codes", "text", "textOnly"], "turn field")?;
        let t: TurnInput = serde_wasm_bindgen::from_value(turn).map_err(js_err)?;
        let frames = t.codes.as_deref().map(parse_frames).transpose()?;
        let w = self.model()?;
        let mut g = take(&w)?;
        let run = |g: &mut Generator, system: Option<String>| -> Result<(), ModelError> {
            let mut inputs = match &system {
                Some(s) if g.fed.is_empty() => g.chat_system_inputs(s)?,
                _ => Vec::new(),
            };
            inputs.extend(g.chat_user_inputs(frames.as_deref(), t.text.as_deref(), t.text_only)?);
            let room = g.sess.tmax.saturating_sub(g.fed.len());
            if inputs.len() >= room {
                return Err(ModelError::input(format!(
                    "this turn needs {} positions but only {room} of the context's {} are \
                     left (the conversation is too long: begin a new one, or speak less at once)",
                    inputs.len() + 1,
                    g.sess.tmax
                )));
            }
            let mode = if t.text_only {
                Mode::TextOnly
            } else {
                Mode::Speech
            };
            g.start(&self.ctx, &inputs, mode)
        };
        let system = CHAT.with(|c| c.borrow().as_ref().and_then(|ch| ch.system.clone()));
        let r = run(&mut g, system);
        let st = state(&g);
        let ok = r.is_ok();
        put(g, |ch| {
            if ok {
                ch.events.clear();
                ch.finished = false;
            }
        });
        STOP.with(|s| s.set(false));
        r.map_err(js_err)?;
        to_js(&st)
    }

    /// Runs up to `maxSteps` steps of the turn (a text token or an audio frame each), stopping
    /// early at the end of the turn or at `chatInterrupt`. Resolves to
    /// `{events: [{event: "text", id, delta} | {event: "segment_start"} |
    /// {event: "frame", codes: [8]} | {event: "segment_end", frames} | {event: "end_of_turn"}],
    /// done, interrupted, fed, turnStart, busy, context}`; the events are the JSON lines of
    /// `bca chat --events`.
    #[wasm_bindgen(js_name = chatStep)]
    pub fn chat_step(&self, max_steps: u32) -> Result<js_sys::Promise, JsError> {
        let w = self.model()?;
        let mut g = take(&w)?;
        let ctx = self.ctx.clone();
        Ok(wasm_bindgen_futures::future_to_promise(async move {
            let mut events = Vec::new();
            let mut interrupted = false;
            let mut err = None;
            for _ in 0..max_steps.max(1) {
                if STOP.with(|s| s.replace(false)) {
                    if g.busy() {
                        g.interrupt();
                        interrupted = true;
                    }
                    break;
                }
                if !g.busy() {
                    break;
                }
                match g.step(&ctx).await {
                    Ok(ev) => events.extend(ev),
                    Err(e) => {
                        err = Some(e);
                        break;
                    }
                }
            }
            let mut st = state(&g);
            let done = !g.busy();
            let finished = done && !interrupted && err.is_none();
            let evs = events.clone();
            put(g, move |ch| {
                ch.events.extend(evs);
                ch.finished = finished && ch.events.last() == Some(&Event::EndOfTurn);
            });
            if let Some(e) = err {
                return Err(js_val(e));
            }
            st["events"] = serde_json::to_value(&events).map_err(js_val)?;
            st["done"] = done.into();
            st["interrupted"] = interrupted.into();
            to_js(&st).map_err(JsValue::from)
        }))
    }

    /// Stops the running turn between two steps (barge-in): the call in flight (or the next
    /// `chatStep`) ends the turn; the cache keeps every fed position, so the next turn goes on
    /// after them.
    #[wasm_bindgen(js_name = chatInterrupt)]
    pub fn chat_interrupt(&self) -> Result<(), JsError> {
        let any = CHAT.with(|c| c.borrow().is_some());
        if !any {
            return Err(JsError::new("no conversation: call chatBegin first"));
        }
        STOP.with(|s| s.set(true));
        // an idle generator can be interrupted at once
        CHAT.with(|c| {
            if let Some(g) = c.borrow_mut().as_mut().and_then(|ch| ch.gen.as_mut()) {
                if g.busy() {
                    g.interrupt();
                }
                STOP.with(|s| s.set(false));
            }
        });
        Ok(())
    }

    /// Replaces the finished reply in the cache by what the next turn reads (spec §2 step 5):
    /// its text, and each speech segment re-encoded from its 24 kHz audio through audio in.
    /// `pcm` holds the segments one after another (`lengths[i]` samples each, one per segment
    /// of the reply, 24 kHz as the vocoder made them). Run it while the user speaks: the next turn then
    /// prefills only the new input. Resolves to the state with `segments` and `frames` (the
    /// re-encoded frames); rejects if the reply was interrupted or still runs.
    #[wasm_bindgen(js_name = chatRewriteReply)]
    pub fn chat_rewrite_reply(
        &self,
        pcm: Vec<f32>,
        lengths: Vec<u32>,
    ) -> Result<js_sys::Promise, JsError> {
        let total: u64 = lengths.iter().map(|&l| u64::from(l)).sum();
        if total != pcm.len() as u64 {
            return Err(JsError::new(&format!(
                "the segment lengths add up to {total} samples but {} were given",
                pcm.len()
            )));
        }
        let (events, finished) = CHAT.with(|c| {
            c.borrow()
                .as_ref()
                .map(|ch| (ch.events.clone(), ch.finished))
                .unwrap_or_default()
        });
        if !finished {
            return Err(JsError::new(
                "the last reply did not run to its end (interrupted, or still running): it \
                 stays in the conversation as generated",
            ));
        }
        let stage = if lengths.iter().all(|&l| l == 0) {
            None
        } else {
            Some(self.audio_in()?.1)
        };
        let w = self.model()?;
        let mut g = take(&w)?;
        let ctx = self.ctx.clone();
        Ok(wasm_bindgen_futures::future_to_promise(async move {
            let run = async {
                let mut reencoded = Vec::with_capacity(lengths.len());
                let mut at = 0;
                for (i, &l) in lengths.iter().enumerate() {
                    let seg = &pcm[at..at + l as usize];
                    at += l as usize;
                    if seg.is_empty() {
                        // a segment that ended before its first frame has no speech
                        reencoded.push(Vec::new());
                        continue;
                    }
                    let stage = stage
                        .as_ref()
                        .ok_or_else(|| ModelError::input("audio in is not loaded"))?;
                    reencoded.push(
                        reencode_speech(&ctx, stage, seg)
                            .await
                            .map_err(|e| ModelError::input(format!("reply segment {i}: {e}")))?,
                    );
                }
                let history = g.reply_history(&events, &reencoded)?;
                g.rewrite_reply(&ctx, &history)?;
                Ok::<usize, ModelError>(reencoded.iter().map(Vec::len).sum())
            };
            let r = run.await;
            let mut st = state(&g);
            put(g, |ch| {
                if r.is_ok() {
                    ch.finished = false; // rewritten once
                }
            });
            let frames = r.map_err(js_val)?;
            st["segments"] = lengths.len().into();
            st["frames"] = frames.into();
            to_js(&st).map_err(JsValue::from)
        }))
    }

    /// Where the conversation stands: `{fed, turnStart, busy, context}`, and `ids` (the ids
    /// of the cached positions, audio frames as `<audio_pad_baichuan>`) when `withIds`.
    #[wasm_bindgen(js_name = chatState)]
    pub fn chat_state(&self, with_ids: bool) -> Result<JsValue, JsError> {
        CHAT.with(|c| {
            let c = c.borrow();
            let g = c
                .as_ref()
                .ok_or_else(|| JsError::new("no conversation: call chatBegin first"))?
                .gen
                .as_ref()
                .ok_or_else(|| JsError::new("a chat call is still running"))?;
            let mut st = state(g);
            if with_ids {
                st["ids"] = serde_json::to_value(&g.fed).map_err(js_err)?;
            }
            to_js(&st)
        })
    }

    /// Ends the conversation and frees its GPU buffers.
    #[wasm_bindgen(js_name = chatEnd)]
    pub fn chat_end(&self) {
        CHAT.with(|c| *c.borrow_mut() = None);
        STOP.with(|s| s.set(false));
    }
}
