//! The generation loop (spec §10): prompt building for ASR / TTS (Base) and speech chat
//! (Instruct), and the interleaved state machine text step → audio step (frames until audio
//! end) → text step … → `<|endoftext|>`, one unit of work (a text token or an audio frame) per
//! [`Generator::step`], so a caller can stop between any two steps (barge-in) and the session
//! stays consistent: the cache holds exactly the fed positions listed in [`Generator::fed`].

use crate::gpu::GpuContext;
use crate::text::{StreamDecoder, TextTokenizer};
use crate::util::rng::Rng;

use super::head::{AudioHead, FrameInFlight, FrameSampler, HeadState};
use super::sample::{GpuSampler, SamplingParams, TokenInFlight};
use super::{Frame, Input, Llm, Session, CODEBOOKS};
use crate::model::{ModelError, Weights};

pub const EOS: u32 = 151643;
pub const AUDIOGEN_START: u32 = 151700;
pub const AUDIOGEN_END: u32 = 151701;

/// Stop strings of text steps after an audio segment (spec §10.2.d).
pub const NEXT_STOPS: [&str; 9] = [
    "<audiogen_start_baichuan>",
    ",",
    "!",
    "?",
    "，",
    "。",
    "！",
    "？",
    ". ",
];

/// What a step produced.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A sampled text token and the text it completed (whole characters only).
    Text { id: u32, delta: String },
    /// An audio segment begins (the model switched to audio).
    SegmentStart,
    /// One 80 ms frame of 8 codes.
    Frame { codes: Frame },
    /// The segment ended (audio end code, or the frame limit).
    SegmentEnd { frames: usize },
    /// The turn is over.
    EndOfTurn,
}

/// How a turn generates.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    /// Instruct speech mode: interleaved text and audio (§10.2).
    Speech,
    /// Text only: up to 1024 tokens, stop at EOS.
    TextOnly,
    /// Base ASR: text until EOS (≤ 700 tokens).
    Asr,
    /// Base TTS: one audio segment (the prompt ends with `<audiogen_start_baichuan>`).
    Tts,
}

/// Sampling per regime and limits; defaults = spec §10.2 (Instruct) / §16 (Base demos).
#[derive(Clone, Copy, Debug)]
pub struct GenConfig {
    pub text_first: SamplingParams,
    pub text_next: SamplingParams,
    pub audio: SamplingParams,
    pub text_max: usize,
    pub text_only_max: usize,
    pub frames_max: usize,
    pub rounds_max: usize,
    /// Keep one audio frame in flight: frame k's codes are fed to the LLM straight from the GPU
    /// and frame k + 1 is submitted before frame k is read back, so the GPU never waits for the
    /// CPU between frames (an audio-end code is seen one frame late and the extra frame is
    /// dropped). Same events, codes and RNG stream as `false`, which reads each frame before
    /// going on (an A/B knob).
    pub pipeline: bool,
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            text_first: SamplingParams::TEXT_FIRST,
            text_next: SamplingParams::TEXT_NEXT,
            audio: SamplingParams::AUDIO,
            text_max: 50,
            text_only_max: 1024,
            frames_max: 500,
            rounds_max: 100,
            pipeline: true,
        }
    }
}

/// Sampling and limit overrides over a [`GenConfig`]: the flags of `bca chat`/`generate` and
/// the page's chat options (each caller validates its own ranges).
#[derive(Clone, Copy, Debug, Default)]
pub struct GenOverrides {
    pub temperature: Option<f32>,
    pub top_k: Option<usize>,
    pub top_p: Option<f32>,
    pub repetition_penalty: Option<f32>,
    /// Audio frames per segment at most.
    pub max_frames: Option<usize>,
    /// Text + speech rounds per turn at most (≥ 1; the last round's segment ends the turn).
    pub max_rounds: Option<usize>,
    /// Text tokens per text round at most, and of a text-only or ASR reply (one text round).
    pub max_text: Option<usize>,
}

impl GenConfig {
    /// This configuration with `o` applied: the sampling overrides to every regime (first
    /// text step, later text steps, audio), then the limits.
    pub fn with(mut self, o: &GenOverrides) -> Self {
        let apply = |p: SamplingParams| SamplingParams {
            temperature: o.temperature.unwrap_or(p.temperature),
            top_k: o.top_k.unwrap_or(p.top_k),
            top_p: o.top_p.unwrap_or(p.top_p),
            repetition_penalty: o.repetition_penalty.unwrap_or(p.repetition_penalty),
        };
        self.text_first = apply(self.text_first);
        self.text_next = apply(self.text_next);
        self.audio = apply(self.audio);
        if let Some(f) = o.max_frames {
            self.frames_max = f;
        }
        if let Some(r) = o.max_rounds {
            // rounds_max counts the rounds before the last one
            self.rounds_max = r.saturating_sub(1);
        }
        if let Some(t) = o.max_text {
            self.text_max = t;
            self.text_only_max = t;
        }
        self
    }

    /// The Base demos: greedy after repetition penalty 1.3 unless sampling is asked for.
    pub fn base(do_sample: bool) -> Self {
        let p = if do_sample {
            SamplingParams::AUDIO
        } else {
            SamplingParams::greedy(1.3)
        };
        GenConfig {
            text_first: p,
            text_next: p,
            audio: p,
            text_max: 700,
            text_only_max: 700,
            ..Default::default()
        }
    }
}

/// Whether a checkpoint is a Base model (`_name_or_path` names `-Base`), else Instruct.
pub fn is_base(w: &Weights) -> bool {
    w.config.raw["_name_or_path"]
        .as_str()
        .is_some_and(|s| s.to_ascii_lowercase().contains("-base"))
}

/// Where the loop is.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Phase {
    Idle,
    /// Sampling text; `stops` chooses the stop rule, `n` tokens so far this step.
    Text {
        first: bool,
        n: usize,
    },
    /// Sampling frames of a segment (`n` so far); `last` = the final segment of the turn.
    Audio {
        n: usize,
        last: bool,
    },
}

/// One conversation on the GPU: LLM session, audio head, samplers, and the loop state.
pub struct Generator {
    pub llm: Llm,
    pub head: AudioHead,
    pub tok: TextTokenizer,
    pub sess: Session,
    hs: HeadState,
    frames: FrameSampler,
    text_sampler: GpuSampler,
    code_sampler: GpuSampler,
    pub rng: Rng,
    pub cfg: GenConfig,
    /// Ids of the positions in the cache (audio frames as `<audio_pad_baichuan>`).
    pub fed: Vec<u32>,
    /// Sampled but not yet fed (HF keeps the newest token out of the cache).
    pending: Option<u32>,
    mode: Mode,
    phase: Phase,
    rounds: usize,
    seg_codes: Vec<Vec<u32>>,
    text_buf: String,
    stream: StreamDecoder,
    /// `fed.len()` when the current (or last) reply began: the end of its prompt.
    turn_start: usize,
    /// The next audio frame, submitted while the current one was read (`cfg.pipeline`); the
    /// current frame's codes are then in the cache one position past `fed` until it is read.
    ahead: Option<FrameInFlight>,
    /// The next text token's draw, submitted while the current one was read (`cfg.pipeline`);
    /// the current token (`pending`) is then in the cache one position past `fed`, its step's
    /// logits in the session's spare buffers ([`Session::step_id`]) until it is kept.
    text_ahead: Option<TokenInFlight>,
}

impl Generator {
    pub fn new(
        ctx: &GpuContext,
        w: &Weights,
        tok: TextTokenizer,
        tmax: usize,
        seed: u64,
    ) -> Result<Self, ModelError> {
        let llm = Llm::load(ctx, w)?;
        let head = AudioHead::load(ctx, w, &llm)?;
        let sess = Session::new(ctx, &llm, tmax, 64)?;
        let hs = HeadState::new(ctx, &head)?;
        let max_rows = llm.head_parts().iter().map(|p| p.1).max().unwrap_or(1);
        let text_sampler = GpuSampler::new(ctx, max_rows, llm.head_parts().len(), tmax);
        let cb_max = llm.dims.codebooks.iter().max().copied().unwrap_or(1) + 1;
        let code_sampler = GpuSampler::new(ctx, cb_max, 1, GenConfig::default().frames_max + 1);
        let frames = FrameSampler::new(ctx, GenConfig::default().frames_max + 1);
        Ok(Generator {
            llm,
            head,
            tok,
            sess,
            hs,
            frames,
            text_sampler,
            code_sampler,
            rng: Rng::new(seed),
            cfg: GenConfig::default(),
            fed: Vec::new(),
            pending: None,
            mode: Mode::Speech,
            phase: Phase::Idle,
            rounds: 0,
            seg_codes: vec![Vec::new(); CODEBOOKS],
            text_buf: String::new(),
            stream: StreamDecoder::new(),
            turn_start: 0,
            ahead: None,
            text_ahead: None,
        })
    }

    /// Text (special-token strings allowed) → inputs.
    pub fn text_inputs(&self, text: &str) -> Result<Vec<Input>, ModelError> {
        let ids = self
            .tok
            .encode(text)
            .map_err(|e| ModelError::input(e.to_string()))?;
        Ok(ids.into_iter().map(Input::Text).collect())
    }

    /// `<audio_start_baichuan>` + one pad per frame + `<audio_end_baichuan>`.
    pub fn audio_inputs(&self, codes: &[Frame]) -> Result<Vec<Input>, ModelError> {
        if codes.is_empty() {
            return Err(ModelError::input("the audio has no frames"));
        }
        let a = &self.tok;
        let id = |s: &str| a.token_id(s).map_err(|e| ModelError::input(e.to_string()));
        let mut v = vec![Input::Text(id("<audio_start_baichuan>")?)];
        v.extend(codes.iter().map(|f| Input::Audio(*f)));
        v.push(Input::Text(id("<audio_end_baichuan>")?));
        Ok(v)
    }

    /// The start of a speech-chat conversation (spec §10.1): `<B_SYS>` + the system prompt.
    pub fn chat_system_inputs(&self, system: &str) -> Result<Vec<Input>, ModelError> {
        self.text_inputs(&format!("<B_SYS>{system}"))
    }

    /// One user turn of a speech chat (spec §10.1): `<C_Q>`, the user's speech (if any) as
    /// `<audio_start_baichuan>` pads `<audio_end_baichuan>`, the user's text (if any), then the
    /// reply's opening: `<audiotext_start_baichuan><C_A>` for a speech reply, `<C_A>` for a
    /// text-only one. Fails when the turn holds neither speech nor text.
    pub fn chat_user_inputs(
        &self,
        audio: Option<&[Frame]>,
        text: Option<&str>,
        text_only: bool,
    ) -> Result<Vec<Input>, ModelError> {
        let text = text.filter(|t| !t.trim().is_empty());
        if audio.is_none() && text.is_none() {
            return Err(ModelError::input(
                "nothing to answer: the turn has neither speech nor text",
            ));
        }
        let mut v = self.text_inputs("<C_Q>")?;
        if let Some(a) = audio {
            v.extend(self.audio_inputs(a)?);
        }
        if let Some(t) = text {
            v.extend(self.text_inputs(t)?);
        }
        let tail = if text_only {
            "<C_A>"
        } else {
            "<audiotext_start_baichuan><C_A>"
        };
        v.extend(self.text_inputs(tail)?);
        Ok(v)
    }

    /// Whether a turn is in progress.
    pub fn busy(&self) -> bool {
        self.phase != Phase::Idle
    }

    /// Feeds `inputs` (after the fed history) and starts a turn in `mode`.
    pub fn start(
        &mut self,
        ctx: &GpuContext,
        inputs: &[Input],
        mode: Mode,
    ) -> Result<(), ModelError> {
        if self.busy() {
            return Err(ModelError::input("a turn is already in progress"));
        }
        self.sess.truncate(self.fed.len());
        self.sess.feed(ctx, &self.llm, inputs)?;
        let pad = self.llm.dims.audio_pad;
        self.fed.extend(inputs.iter().map(|i| match i {
            Input::Text(t) => *t,
            Input::Audio(_) => pad,
        }));
        self.turn_start = self.fed.len();
        self.mode = mode;
        self.rounds = 0;
        self.pending = None;
        self.text_buf.clear();
        self.stream = StreamDecoder::new();
        self.phase = match mode {
            Mode::Tts => {
                self.begin_audio(false);
                Phase::Audio { n: 0, last: true }
            }
            _ => Phase::Text { first: true, n: 0 },
        };
        Ok(())
    }

    /// Positions before the current (or last) reply: the history and its prompt.
    pub fn turn_start(&self) -> usize {
        self.turn_start
    }

    /// A finished reply as later turns read it (spec §2 step 5 and §10.1): the text of its
    /// text steps (what the events delivered, special tokens left out), and each speech segment
    /// as `<audiogen_start_baichuan>` + one `<audio_pad_baichuan>` per frame of that segment's
    /// audio re-encoded through audio in ([`reencode_speech`]) + `<audiogen_end_baichuan>`.
    /// `reencoded` holds one code list per segment of `events`, in order.
    pub fn reply_history(
        &self,
        events: &[Event],
        reencoded: &[Vec<Frame>],
    ) -> Result<Vec<Input>, ModelError> {
        let segments = events
            .iter()
            .filter(|e| matches!(e, Event::SegmentStart))
            .count();
        if segments != reencoded.len() {
            return Err(ModelError::input(format!(
                "the reply has {segments} speech segments but {} re-encoded ones were given",
                reencoded.len()
            )));
        }
        let mut out = Vec::new();
        let mut text = String::new();
        let mut seg = 0;
        for e in events {
            match e {
                Event::Text { id, delta } => {
                    if ![EOS, AUDIOGEN_START, AUDIOGEN_END].contains(id) {
                        text.push_str(delta);
                    }
                }
                Event::SegmentStart => {
                    if !text.is_empty() {
                        out.extend(self.text_inputs(&text)?);
                        text.clear();
                    }
                    out.push(Input::Text(AUDIOGEN_START));
                    out.extend(reencoded[seg].iter().map(|f| Input::Audio(*f)));
                    out.push(Input::Text(AUDIOGEN_END));
                    seg += 1;
                }
                Event::Frame { .. } | Event::SegmentEnd { .. } | Event::EndOfTurn => {}
            }
        }
        if !text.is_empty() {
            out.extend(self.text_inputs(&text)?);
        }
        Ok(out)
    }

    /// Replaces the last reply in the cache with `history` (from [`Self::reply_history`]):
    /// the cache of everything before the reply is kept and only `history` is prefilled. Run it
    /// once the reply is done (the web worker does, while the user speaks), so that the next
    /// turn prefills only the new user input, and the cache equals a full prefill of the
    /// conversation as the reference re-reads it each turn.
    pub fn rewrite_reply(&mut self, ctx: &GpuContext, history: &[Input]) -> Result<(), ModelError> {
        if self.busy() {
            return Err(ModelError::input(
                "a turn is in progress: its reply can be rewritten once it ends",
            ));
        }
        let keep = self.turn_start.min(self.fed.len());
        self.sess.truncate(keep);
        self.fed.truncate(keep);
        if history.is_empty() {
            return Ok(());
        }
        self.sess.feed(ctx, &self.llm, history)?;
        let pad = self.llm.dims.audio_pad;
        self.fed.extend(history.iter().map(|i| match i {
            Input::Text(t) => *t,
            Input::Audio(_) => pad,
        }));
        Ok(())
    }

    fn begin_audio(&mut self, _last: bool) {
        for c in &mut self.seg_codes {
            c.clear();
        }
    }

    fn feed_one(&mut self, ctx: &GpuContext, input: Input) -> Result<(), ModelError> {
        self.sess.step(ctx, &self.llm, input)?;
        self.fed.push(match input {
            Input::Text(t) => t,
            Input::Audio(_) => self.llm.dims.audio_pad,
        });
        Ok(())
    }

    /// Stops the turn between steps (barge-in): a sampled token that was not fed is dropped;
    /// the cache keeps every fed position, so the next turn continues after them.
    pub fn interrupt(&mut self) {
        self.pending = None;
        self.phase = Phase::Idle;
        self.drop_ahead(true);
    }

    /// Drops the frame or text token in flight, if any: the cache goes back to the fed
    /// positions, and with `rewind` the RNG to before its draws (the audio-end read has already
    /// rewound it).
    fn drop_ahead(&mut self, rewind: bool) {
        if let Some(f) = self.ahead.take() {
            if rewind {
                self.rng = f.rng_before().clone();
            }
        }
        if let Some(t) = self.text_ahead.take() {
            if rewind {
                self.rng = t.rng_before().clone();
            }
        }
        self.sess.truncate(self.fed.len());
    }

    /// One unit of work; returns its events (empty = nothing to do).
    pub async fn step(&mut self, ctx: &GpuContext) -> Result<Vec<Event>, ModelError> {
        match self.phase {
            Phase::Idle => Ok(Vec::new()),
            Phase::Text { first, n } => self.text_step(ctx, first, n).await,
            Phase::Audio { n, last } => self.audio_step(ctx, n, last).await,
        }
    }

    async fn text_step(
        &mut self,
        ctx: &GpuContext,
        first: bool,
        n: usize,
    ) -> Result<Vec<Event>, ModelError> {
        // the previous token is fed first (it was kept out of the cache until now); the
        // pipelined loop has already stepped on it, and keeps that step now
        if let Some(t) = self.pending.take() {
            if self.text_ahead.is_some() {
                self.sess.keep_step();
                self.fed.push(t);
            } else {
                self.feed_one(ctx, Input::Text(t))?;
            }
        }
        let p = if first {
            self.cfg.text_first
        } else {
            self.cfg.text_next
        };
        let max = match self.mode {
            Mode::TextOnly | Mode::Asr => self.cfg.text_only_max,
            _ => self.cfg.text_max,
        };
        let parts = self.llm.lm_head.len();
        let id = if self.text_ahead.is_some()
            || self.text_sampler.draws_on_gpu(parts, &p, self.fed.len())
        {
            self.gpu_text_token(ctx, &p, n + 1 < max).await?
        } else {
            // penalty history: the whole sequence (prompt included)
            let parts = self.sess.logit_parts(&self.llm);
            self.text_sampler
                .sample(ctx, &parts, &self.fed, &p, &mut self.rng)
                .await?
        };
        // ids past the tokenizer (the embedding's padding rows, 151702..152063) have no text;
        // a trained model does not produce them, random weights do
        let delta = self.stream.push(&self.tok, id).unwrap_or_default();
        self.text_buf.push_str(&String::from_utf8_lossy(
            self.tok.id_bytes(id).unwrap_or_default(),
        ));
        let mut ev = vec![Event::Text { id, delta }];
        let n = n + 1;
        let stop = match self.mode {
            Mode::TextOnly | Mode::Asr => id == EOS,
            _ if first => id == EOS || id == AUDIOGEN_START,
            _ => id == EOS || NEXT_STOPS.iter().any(|s| self.text_buf.ends_with(s)),
        };
        // (`fed`, not the cache: the pipelined loop has stepped on the token already)
        if !stop && n < max && self.fed.len() + 1 < self.sess.tmax {
            self.pending = Some(id);
            if id == self.llm.dims.audio_pad {
                // not a text input: drop the step on it, so that feeding it fails as in the
                // loop that reads each token first
                self.drop_ahead(true);
            }
            self.phase = Phase::Text { first, n };
            return Ok(ev);
        }
        // the text step is over: the last sampled token is not fed (nor the step on it, nor
        // the next token's draw, in the pipelined loop)
        self.drop_ahead(true);
        self.text_buf.clear();
        let tail = self.stream.finish();
        if !tail.is_empty() {
            ev.push(Event::Text {
                id: u32::MAX,
                delta: tail,
            });
        }
        if matches!(self.mode, Mode::TextOnly | Mode::Asr) {
            self.phase = Phase::Idle;
            ev.push(Event::EndOfTurn);
            return Ok(ev);
        }
        self.rounds += 1;
        if id == EOS && (n <= 1 || self.rounds > self.cfg.rounds_max) {
            self.phase = Phase::Idle;
            ev.push(Event::EndOfTurn);
            return Ok(ev);
        }
        let last = id == EOS || self.rounds > self.cfg.rounds_max;
        // overwrite the last token with <audiogen_start_baichuan> and feed it
        if self.sess.len + 1 >= self.sess.tmax {
            self.phase = Phase::Idle;
            ev.push(Event::EndOfTurn);
            return Ok(ev);
        }
        self.feed_one(ctx, Input::Text(AUDIOGEN_START))?;
        self.begin_audio(last);
        self.phase = Phase::Audio { n: 0, last };
        ev.push(Event::SegmentStart);
        Ok(ev)
    }

    /// The next text token drawn on the GPU: the draw submitted while the last token was read,
    /// or one submitted now. Where `more` (the token may not be the text step's last) and
    /// `cfg.pipeline`, the step on the token and the next token's draw are submitted before it
    /// is read ([`Self::text_ahead`](Generator)), so the GPU never waits for the CPU between
    /// tokens. The same ids and RNG stream as reading each token first.
    async fn gpu_text_token(
        &mut self,
        ctx: &GpuContext,
        p: &SamplingParams,
        more: bool,
    ) -> Result<u32, ModelError> {
        let cur = match self.text_ahead.take() {
            Some(t) => t,
            None => {
                self.text_sampler.load_history(ctx, &self.fed)?;
                let parts = self.sess.logit_parts(&self.llm);
                self.text_sampler
                    .submit_draw(ctx, &parts, self.fed.len(), p, &mut self.rng)?
            }
        };
        // on an error the step can be retried (`undo_step`)
        let retry = cur.rng_before().clone();
        let ahead = self.cfg.pipeline
            && more
            && self.fed.len() + 1 < self.sess.tmax
            && self
                .text_sampler
                .draws_on_gpu(self.llm.lm_head.len(), p, cur.pos() + 1);
        if ahead {
            let r = self
                .sess
                .step_id(ctx, &self.llm, self.text_sampler.history(), cur.pos())
                .and_then(|_| {
                    let parts = self.sess.step_logit_parts(&self.llm);
                    self.text_sampler
                        .submit_draw(ctx, &parts, cur.pos() + 1, p, &mut self.rng)
                });
            match r {
                Ok(t) => self.text_ahead = Some(t),
                Err(e) => return self.undo_step(retry, e),
            }
        }
        match self.text_sampler.read_draw(ctx, &cur).await {
            Ok(id) => Ok(id),
            Err(e) => self.undo_step(retry, e),
        }
    }

    /// A failed step: what it put in flight is dropped (the cache goes back to `fed`) and the
    /// RNG to `before` its draws, so the step can be retried.
    fn undo_step<T>(&mut self, before: Rng, e: ModelError) -> Result<T, ModelError> {
        self.drop_ahead(false);
        self.rng = before;
        Err(e)
    }

    async fn audio_step(
        &mut self,
        ctx: &GpuContext,
        n: usize,
        last: bool,
    ) -> Result<Vec<Event>, ModelError> {
        let mut ev = Vec::new();
        if n == 0 && self.mode == Mode::Tts {
            ev.push(Event::SegmentStart);
        }
        let cbs = self.llm.dims.codebooks;
        // the whole frame in one submission where the sampling parameters allow it
        if self.ahead.is_some() || self.frames.gpu_ok(&self.cfg.audio, n) {
            let cur = match self.ahead.take() {
                Some(f) => f,
                None => {
                    self.frames.load_history(ctx, &self.seg_codes)?;
                    self.submit_frame(ctx, n)?
                }
            };
            // on an error the step can be retried: nothing past the fed positions is kept and
            // the RNG goes back to before this frame's draws
            let retry = cur.rng_before().clone();
            // feed this frame's codes from the GPU and start the next frame before reading
            // this one, wherever `push_frame` would feed it
            let ahead = self.cfg.pipeline
                && self.feeds_frame(n)
                && self.frames.gpu_ok(&self.cfg.audio, n + 1);
            if ahead {
                let r = self
                    .sess
                    .step_codes(ctx, &self.llm, self.hs.codes())
                    .and_then(|_| self.submit_frame(ctx, n + 1));
                match r {
                    Ok(f) => self.ahead = Some(f),
                    Err(e) => return self.undo_step(retry, e),
                }
            }
            let codes = match self.frames.read(ctx, cur, &self.llm, &mut self.rng).await {
                Ok(c) => c,
                Err(e) => return self.undo_step(retry, e),
            };
            if codes[0] as usize == cbs[0] {
                // `read` has rewound the RNG past the next frame's draws
                self.drop_ahead(false);
                return self.end_segment(ctx, ev, n, last);
            }
            return self.push_frame(ctx, ev, codes, n, last, ahead);
        }
        let mut codes = [0u32; CODEBOOKS];
        for i in 0..CODEBOOKS {
            self.hs
                .step(ctx, &self.head, &self.llm, &self.sess.hidden, &codes, i)?;
            let t = &self.hs.logits[i];
            // codebook 0 keeps its audio-end class; the others drop it
            let view = crate::tensor::Tensor {
                buf: t.buf.clone(),
                shape: vec![if i == 0 { cbs[0] + 1 } else { cbs[i] }],
                dtype: t.dtype,
            };
            let c = self
                .code_sampler
                .sample(
                    ctx,
                    &[(0, &view)],
                    &self.seg_codes[i],
                    &self.cfg.audio,
                    &mut self.rng,
                )
                .await?;
            if i == 0 && c as usize == cbs[0] {
                return self.end_segment(ctx, ev, n, last);
            }
            codes[i] = c;
        }
        self.push_frame(ctx, ev, codes, n, last, false)
    }

    /// Submits frame `n` of the segment on the current hidden state (its history, `n` codes
    /// per codebook, already on the GPU).
    fn submit_frame(&mut self, ctx: &GpuContext, n: usize) -> Result<FrameInFlight, ModelError> {
        self.frames.submit(
            ctx,
            &self.hs,
            &self.head,
            &self.llm,
            &self.sess.hidden,
            &self.code_sampler,
            n,
            &self.cfg.audio,
            &mut self.rng,
            n % 2,
        )
    }

    /// A sampled frame (not the audio end): event, segment history, then fed unless the
    /// segment ends here.
    /// `fed`: the pipelined loop has already put the frame in the cache (`step_codes`, after
    /// [`Self::feeds_frame`] held), so only `fed` records it.
    fn push_frame(
        &mut self,
        ctx: &GpuContext,
        mut ev: Vec<Event>,
        codes: Frame,
        n: usize,
        last: bool,
        fed: bool,
    ) -> Result<Vec<Event>, ModelError> {
        for (i, c) in codes.iter().enumerate() {
            self.seg_codes[i].push(*c);
        }
        ev.push(Event::Frame { codes });
        if fed {
            self.fed.push(self.llm.dims.audio_pad);
        } else if self.feeds_frame(n) {
            self.feed_one(ctx, Input::Audio(codes))?;
        } else {
            return self.end_segment(ctx, ev, n + 1, last);
        }
        self.phase = Phase::Audio { n: n + 1, last };
        Ok(ev)
    }

    /// Whether frame `n` of the segment (not an audio end) goes into the cache, or the segment
    /// ends after it: the frame limit and room in the context for it and what follows.
    /// Evaluated before the frame is fed.
    fn feeds_frame(&self, n: usize) -> bool {
        n + 1 < self.cfg.frames_max && self.sess.len + 2 < self.sess.tmax
    }

    fn end_segment(
        &mut self,
        ctx: &GpuContext,
        mut ev: Vec<Event>,
        n: usize,
        last: bool,
    ) -> Result<Vec<Event>, ModelError> {
        ev.push(Event::SegmentEnd { frames: n });
        if last || self.mode == Mode::Tts {
            self.phase = Phase::Idle;
            ev.push(Event::EndOfTurn);
            return Ok(ev);
        }
        // the pending pad is overwritten by <audiogen_end_baichuan>; text step k follows
        self.feed_one(ctx, Input::Text(AUDIOGEN_END))?;
        self.phase = Phase::Text { first: false, n: 0 };
        Ok(ev)
    }

    /// Runs the turn to its end, passing each event to `on` (return false to interrupt).
    pub async fn run(
        &mut self,
        ctx: &GpuContext,
        mut on: impl FnMut(&Event) -> bool,
    ) -> Result<Vec<Event>, ModelError> {
        let mut all = Vec::new();
        while self.busy() {
            let ev = self.step(ctx).await?;
            for e in &ev {
                if !on(e) {
                    self.interrupt();
                }
            }
            all.extend(ev);
        }
        Ok(all)
    }
}

/// The assistant's own speech (24 kHz PCM of one segment) back into codes, as the reference
/// re-encodes its earlier replies for the history: resampled to 16 kHz, then audio in.
pub async fn reencode_speech(
    ctx: &GpuContext,
    audio_in: &crate::model::audio_in::AudioIn,
    pcm24k: &[f32],
) -> Result<Vec<Frame>, ModelError> {
    let pcm = crate::audio::resample(pcm24k, 24_000)
        .map_err(|e| ModelError::input(format!("re-encoding the reply's speech: {e}")))?;
    Ok(audio_in.encode_pcm(ctx, &pcm).await?.frames())
}

/// Splits TTS text into clauses at punctuation, merging until a clause is > 10 characters
/// (spec §10.1, Base TTS demo).
pub fn tts_clauses(text: &str) -> Vec<String> {
    const PUNCT: &[char] = &[
        ',', '.', '!', '?', ';', ':', '，', '。', '！', '？', '；', '：', '、', '\n',
    ];
    let mut pieces = Vec::new();
    let mut cur = String::new();
    for ch in text.chars() {
        cur.push(ch);
        if PUNCT.contains(&ch) {
            pieces.push(std::mem::take(&mut cur));
        }
    }
    if !cur.trim().is_empty() {
        pieces.push(cur);
    }
    let mut out: Vec<String> = Vec::new();
    let mut acc = String::new();
    for p in pieces {
        acc.push_str(&p);
        if acc.trim().chars().count() > 10 {
            out.push(std::mem::take(&mut acc).trim().to_string());
        }
    }
    if !acc.trim().is_empty() {
        out.push(acc.trim().to_string());
    }
    out
}
