// Speech chat in the engine worker: one conversation on the loaded Instruct model. A turn is
// user speech (PCM → encodePcm → codes) and/or text → chatTurn → chatStep a few steps at a
// time; every event goes to the page at once (text deltas, segment boundaries) and the code
// frames go through the vocoder stream, whose PCM goes to the page for playback while the model
// goes on. A finished reply is then rewritten in the cache (its speech re-encoded, spec §2
// step 5) in the background, while the user speaks; the next turn waits for it.
//
// Messages to the page (progress of a CHAT_SAY request), { type, ... }:
//   user { frames, seconds, silent }   the user's speech, encoded
//   text { delta, id }                 reply text as it is sampled
//   segment_start { segment }          the model switched to speech
//   frame { codes: [8], segment }      one 80 ms frame of codes
//   audio { pcm: Float32Array, sampleRate, segment }   PCM to play now
//   segment_end { segment, frames, samples }
//   end_of_turn {}
// (text, segment_start, frame, segment_end and end_of_turn carry the fields of the events of
// `bca chat --events`, in the same order.)
// The request resolves to { text, frames, segments, samples, interrupted, fed, context }.

const STEPS_PER_CALL = 4;
const CROSS_FADE = 240; // samples the stream puts before every segment but the first

export class ChatRunner {
  constructor(engine) {
    this.engine = engine;
    this.rewrite = null;   // the background rewrite of the last reply
    this.running = null;   // the turn in progress (a promise)
    this.stopped = false;
    this.turns = 0;
  }

  /** Stops a running turn and waits for it and for the background rewrite: the generator is
   *  idle afterwards (chatBegin replaces it only once its options are valid). */
  async quiesce() {
    if (this.running) {
      this.interrupt();
      await this.running.catch(() => {});
    }
    await this.settle();
  }

  /** Ends the conversation and frees the generator's GPU buffers (before another model loads). */
  async close() {
    await this.quiesce();
    this.engine.chatEnd();
  }

  /** Loads the model folder's tokenizer and begins a conversation. `options`: chatBegin's
   *  ({system, seed, context, temperature, topK, topP, repetitionPenalty, maxFrames,
   *  maxRounds, maxText}) plus chunkFrames (0 = vocode each segment when it ends). */
  async begin(modelUrl, options = {}) {
    await this.settle();
    const { chunkFrames = 0, ...chat } = options;
    const url = new URL("tokenizer.json", new URL(modelUrl.replace(/\/?$/, "/"), self.location.href));
    const r = await fetch(url);
    if (!r.ok) throw new Error(`${url}: HTTP ${r.status} (a converted model folder holds its tokenizer.json)`);
    this.engine.llmLoadTokenizer(await r.text());
    const st = this.engine.chatBegin(chat);
    this.seed = (chat.seed ?? 0) >>> 0;
    this.chunkFrames = chunkFrames;
    this.turns = 0;
    return st;
  }

  /** Waits for the background rewrite of the last reply; returns its error message, if any. */
  async settle() {
    const p = this.rewrite;
    this.rewrite = null;
    if (!p) return null;
    try { this.lastRewrite = await p; return null; } catch (e) { return e.message; }
  }

  /** Barge-in: the turn stops between two steps; the rest of its audio is not vocoded. */
  interrupt() {
    this.stopped = true;
    try { this.engine.chatInterrupt(); } catch {} // no conversation (closed): nothing to stop
  }

  say(turn, emit) {
    if (this.running) throw new Error("a turn is already running: interrupt it or wait for its end");
    // an interrupt from now on (even while the speech is encoded) stops this turn
    this.stopped = false;
    this.running = this.#say(turn, emit).finally(() => { this.running = null; });
    return this.running;
  }

  async #say({ pcm = null, sampleRate = 16000, text = "", textOnly = false, chunkFrames = null }, emit) {
    const warn = await this.settle();
    if (warn) emit({ type: "warning", message: `the last reply stays in the conversation as generated: ${warn}` });
    let codes;
    if (pcm && pcm.length) {
      const enc = await this.engine.encodePcm(pcm, sampleRate);
      if (enc.silent && !text.trim()) {
        throw new Error("the recording is silent: nothing was sent (is the microphone muted?)");
      }
      codes = enc.codes;
      emit({ type: "user", frames: enc.frames, seconds: pcm.length / sampleRate, silent: enc.silent });
    }
    this.engine.chatTurn({ codes, text: text || undefined, textOnly });
    try {
      if (this.stopped) this.engine.chatInterrupt();
      return await this.#run(emit, chunkFrames ?? this.chunkFrames);
    } catch (e) {
      // leave the conversation idle and usable: the turn ends where it failed
      try { this.engine.chatInterrupt(); } catch {}
      throw e;
    }
  }

  async #run(emit, chunkFrames) {
    // each turn its own noise stream (segment i of a turn: + i·0x9E3779B9 inside the stream)
    this.engine.vocodeBegin((this.seed + this.turns * 0x632BE5AB) >>> 0, chunkFrames);
    this.turns++;
    const segs = []; // per segment: { frames, pcm: Float32Array[] (its own samples, for the rewrite) }
    let reply = "", frames = 0, samples = 0, r;
    let voiced = 0; // segments that reached the stream (it cross-fades into all but the first)
    const play = (arr, segment) => {
      // an interrupt that came while this piece was vocoded: it is not played
      if (!arr.length || this.stopped) return;
      const seg = segs[segment];
      const own = seg.pcm.length === 0 && voiced > 0 ? CROSS_FADE : 0;
      if (seg.pcm.length === 0) voiced++;
      const pcm = Float32Array.from(arr);
      if (pcm.length > own) seg.pcm.push(pcm.slice(own));
      else seg.pcm.push(new Float32Array(0));
      samples += pcm.length;
      emit({ type: "audio", pcm, sampleRate: 24000, segment }, [pcm.buffer]);
    };
    for (;;) {
      r = await this.engine.chatStep(STEPS_PER_CALL);
      for (const e of r.events) {
        const s = segs.length - 1;
        if (e.event === "text") {
          reply += e.delta;
          emit({ type: "text", delta: e.delta, id: e.id });
        } else if (e.event === "segment_start") {
          segs.push({ frames: 0, pcm: [] });
          emit({ type: "segment_start", segment: s + 1 });
        } else if (e.event === "frame") {
          frames++;
          segs[s].frames++;
          emit({ type: "frame", codes: e.codes, segment: s });
          if (!this.stopped) {
            const o = await this.engine.vocodePush(e.codes, 1);
            play(o.pcm, s);
          }
        } else if (e.event === "segment_end") {
          if (!this.stopped && segs[s].frames > 0) {
            const o = await this.engine.vocodeEnd();
            play(o.pcm, s);
          }
          emit({ type: "segment_end", frames: e.frames, segment: s, samples });
        } else if (e.event === "end_of_turn") {
          emit({ type: "end_of_turn" });
        }
      }
      if (r.done) break;
    }
    if (!r.interrupted && !this.stopped) {
      // the reply as the next turn reads it: each segment's own speech (without the cross-fade)
      const parts = segs.map((s) => {
        const n = s.pcm.reduce((a, p) => a + p.length, 0);
        const out = new Float32Array(n);
        let o = 0;
        for (const p of s.pcm) { out.set(p, o); o += p.length; }
        return out;
      });
      const all = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
      let o = 0;
      for (const p of parts) { all.set(p, o); o += p.length; }
      this.rewrite = this.engine.chatRewriteReply(all, parts.map((p) => p.length));
    }
    return { text: reply, frames, segments: segs.length, samples, interrupted: !!r.interrupted || this.stopped,
      fed: r.fed, context: r.context };
  }
}
