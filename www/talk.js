// The conversation on the page: microphone in (AudioWorklet, an energy voice detector that cuts
// utterances at pauses), typed messages, the reply's text as it streams, and its speech played
// through a 24 kHz AudioWorklet as soon as each piece is vocoded. Speaking while the assistant
// answers interrupts it (barge-in). Everything runs here and in the engine worker: no audio
// leaves the device.
import { REQUEST } from "./protocol.js";

/** Voice detector and limits (seconds, RMS of ~40 ms blocks). */
export const VAD = Object.freeze({
  minRms: 0.012,        // below this is never speech
  noiseRatio: 3.5,      // speech is this many times louder than the noise floor
  noiseSeconds: 5,      // the floor: the quietest block of this long a window (minimum tracking)
  playingRatio: 2,      // while the answer plays, speech must be this much louder again (echo)
  startSeconds: 0.12,   // this much loud audio in a row starts an utterance
  preRollSeconds: 0.3,  // kept from before the start
  endSilenceSeconds: 0.8, // a pause this long ends it
  minSpeechSeconds: 0.35, // shorter utterances (a click, a cough) are dropped; barge-in waits for this much
  maxSeconds: 60,       // longer ones are cut and sent (the model hears at most this at once)
});

const $ = (id) => document.getElementById(id);

export class Talk {
  constructor(client) {
    this.client = client;
    this.ready = false;      // a conversation is open
    this.busy = false;       // a turn is running in the worker
    this.listening = false;
    this.handsFree = true;   // keep listening after an utterance (false: one utterance per click)
    this.options = {};       // chatBegin options (tests shorten the turns)
    this.player = null;
    this.mic = null;
    this.queue = Promise.resolve();
    // for the page's tests and for humans reading the console
    this.stats = { turns: 0, utterances: 0, micBlocks: 0, micRate: 0, samplesQueued: 0, played: 0,
      underruns: 0, interrupts: 0, dropped: 0, lastTurn: null, errors: [] };
    window.__bcaTalk = this; // not in window.__bca: the test reads that one whole
  }

  status(text, cls = "") {
    $("talk-status").textContent = text;
    $("talk-status").className = cls;
  }

  error(e) {
    const message = e && e.message ? e.message : String(e);
    this.stats.errors.push(message);
    this.status(message, "fail");
  }

  /** Opens a conversation on the loaded model (again after a model load or "New conversation"). */
  async begin() {
    this.ready = false;
    $("transcript").innerHTML = "";
    this.setControls();
    try {
      const st = await this.client.call(REQUEST.CHAT_BEGIN, { options: this.options });
      this.ready = true;
      this.status(`Ready: speak (🎤) or type. Context ${st.context} positions.`, "pass");
    } catch (e) {
      this.error(e);
    }
    this.setControls();
  }

  setControls() {
    $("mic").disabled = !this.ready;
    $("mic").textContent = this.listening ? "⏹ Stop listening" : "🎤 Talk";
    $("say-send").disabled = !this.ready;
    $("new-chat").disabled = this.busy; // also after a failed begin: it is the way to retry
    $("stop-reply").disabled = !this.busy;
  }

  /** The 24 kHz playback worklet, created on the first click (browsers start audio on a gesture). */
  ensurePlayer() {
    this.playerStart ??= this.makePlayer().catch((e) => { this.playerStart = null; throw e; });
    return this.playerStart;
  }

  async makePlayer() {
    const ctx = new AudioContext({ sampleRate: 24000, latencyHint: "interactive" });
    this.stats.players = (this.stats.players || 0) + 1;
    await ctx.audioWorklet.addModule(new URL("./player-worklet.js", import.meta.url));
    const node = new AudioWorkletNode(ctx, "pcm-player", { outputChannelCount: [1] });
    node.connect(ctx.destination);
    node.port.onmessage = (e) => {
      this.stats.played = e.data.played;
      this.stats.underruns = e.data.underruns;
      this.stats.queued = e.data.queued;
    };
    if (ctx.state === "suspended") await ctx.resume().catch(() => {});
    this.player = { ctx, node };
    return this.player;
  }

  /** Whether the assistant is answering or its speech is still playing. */
  speaking() {
    return this.busy || (this.stats.queued || 0) > 0;
  }

  bargeIn() {
    if (!this.speaking()) return;
    this.stats.interrupts++;
    this.cancelled = true; // audio of this turn still on its way is dropped
    if (this.player) this.player.node.port.postMessage({ flush: true });
    this.stats.queued = 0;
    if (this.busy) this.client.call(REQUEST.CHAT_INTERRUPT).catch(() => {});
  }

  // ---- microphone ----

  async toggleMic() {
    if (this.listening) return this.stopMic(true);
    if (this.micStarting) return; // a second click while the permission prompt is up
    this.micStarting = true;
    try {
      await this.ensurePlayer();
      await this.startMic();
    } catch (e) {
      this.listening = false;
      this.setControls();
      if (e && (e.name === "NotAllowedError" || e.name === "SecurityError")) {
        this.error(new Error("Microphone access was denied. Allow it for this site (the icon at the left of " +
          "the address bar) and press 🎤 Talk again, or type your message below."));
      } else if (e && (e.name === "NotFoundError" || e.name === "OverconstrainedError")) {
        this.error(new Error("No microphone was found. Plug one in and press 🎤 Talk again, or type below."));
      } else if (e && e.name === "NotReadableError") {
        this.error(new Error("The microphone is busy in another application (or the system blocked it)."));
      } else {
        this.error(new Error(`Could not open the microphone: ${e && e.message ? e.message : e}`));
      }
    } finally {
      this.micStarting = false;
    }
  }

  async startMic() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      throw Object.assign(new Error("this browser has no microphone API here (the page needs https or localhost)"),
        { name: "SecurityError" });
    }
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
    let ctx;
    try {
      ctx = new AudioContext({ latencyHint: "interactive" });
      await ctx.audioWorklet.addModule(new URL("./mic-worklet.js", import.meta.url));
      if (ctx.state === "suspended") await ctx.resume();
    } catch (e) {
      stream.getTracks().forEach((t) => t.stop()); // never leave the microphone open
      if (ctx) ctx.close().catch(() => {});
      throw e;
    }
    const src = ctx.createMediaStreamSource(stream);
    const node = new AudioWorkletNode(ctx, "mic-capture");
    src.connect(node);
    const rate = ctx.sampleRate;
    this.stats.micRate = rate;
    // the floor starts at the quietest speech threshold, so speech right after the click counts
    this.mic = { stream, ctx, node, rate, levels: [VAD.minRms / VAD.noiseRatio], pre: [], utt: null, loud: 0, quiet: 0 };
    node.port.onmessage = (e) => this.onBlock(e.data.samples, e.data.rms);
    this.listening = true;
    this.setControls();
    this.status("Listening… speak; a pause sends what you said.", "");
  }

  /** Stops the microphone; with `send`, an utterance in progress is sent as it is. */
  stopMic(send) {
    const m = this.mic;
    this.mic = null;
    this.listening = false;
    this.setControls();
    $("level").value = 0;
    if (!m) return;
    m.stream.getTracks().forEach((t) => t.stop());
    m.ctx.close().catch(() => {});
    if (send && m.utt) this.endUtterance(m, "sent when you stopped listening");
    else if (send && !this.busy) this.status("Stopped listening: heard only silence, nothing was sent.", "");
  }

  onBlock(samples, rms) {
    const m = this.mic;
    if (!m) return;
    this.stats.micBlocks++;
    $("level").value = Math.min(1, rms * 8);
    const secs = samples.length / m.rate;
    // the noise floor: the quietest block of the last few seconds (it follows a fan or a
    // louder room up and down; speech has pauses, so it does not lift the floor)
    m.levels.push(rms);
    if (m.levels.length * secs > VAD.noiseSeconds) m.levels.shift();
    const floor = Math.min(...m.levels);
    const ratio = VAD.noiseRatio * (this.speaking() ? VAD.playingRatio : 1);
    const loud = rms >= Math.max(VAD.minRms, floor * ratio);
    if (!m.utt) {
      m.pre.push(samples);
      while (m.pre.length * secs > VAD.preRollSeconds + VAD.startSeconds) m.pre.shift();
      m.loud = loud ? m.loud + secs : 0;
      if (m.loud >= VAD.startSeconds) {
        m.utt = { blocks: m.pre.slice(), speech: m.loud, seconds: m.pre.length * secs, barged: false };
        m.pre = [];
        m.quiet = 0;
        this.status("Hearing you…", "");
      }
      return;
    }
    m.utt.blocks.push(samples);
    m.utt.seconds += secs;
    if (loud) { m.utt.speech += secs; m.quiet = 0; } else m.quiet += secs;
    if (!m.utt.barged && m.utt.speech >= VAD.minSpeechSeconds) {
      m.utt.barged = true; // the user talks over the reply (not a cough): stop it
      this.bargeIn();
    }
    if (m.quiet >= VAD.endSilenceSeconds) this.endUtterance(m, null);
    else if (m.utt.seconds >= VAD.maxSeconds) this.endUtterance(m, `cut at ${VAD.maxSeconds} s, the longest turn`);
  }

  endUtterance(m, note) {
    const u = m.utt;
    m.utt = null;
    m.loud = 0;
    if (u.speech < VAD.minSpeechSeconds) {
      this.stats.dropped++;
      this.status("That was too short to be speech: nothing was sent.", "");
      return;
    }
    const pcm = new Float32Array(u.blocks.reduce((a, b) => a + b.length, 0));
    let o = 0;
    for (const b of u.blocks) { pcm.set(b, o); o += b.length; }
    this.stats.utterances++;
    if (!this.handsFree) this.stopMic(false);
    this.say({ pcm, sampleRate: m.rate, note });
  }

  // ---- turns ----

  /** One user turn (speech and/or text); turns queue up one after another. */
  say({ pcm = null, sampleRate = 16000, text = "", note = null }) {
    const textOnly = $("text-only").checked;
    // chunked playback: audio every 4 frames (3 held back), before the segment ends; off by
    // default, as it is not yet identical to whole-segment decoding (ARCHITECTURE.md)
    const chunkFrames = $("chunked").checked ? 4 : 0;
    this.queue = this.queue.then(() => this.turn({ pcm, sampleRate, text, textOnly, chunkFrames, note }));
    return this.queue;
  }

  async turn({ pcm, sampleRate, text, textOnly, chunkFrames, note }) {
    if (!this.ready) return;
    await this.ensurePlayer().catch(() => null);
    const user = this.line("user", text || "");
    if (pcm) user.dataset.audio = `🎤 ${(pcm.length / sampleRate).toFixed(1)} s${note ? ` (${note})` : ""}`;
    const reply = this.line("assistant", "");
    this.busy = true;
    this.cancelled = false;
    this.setControls();
    this.status("Answering…", "");
    if (this.player) this.player.node.port.postMessage({ streaming: true });
    const t0 = performance.now();
    let firstAudio = null;
    const onProgress = (m) => {
      if (m.type === "user") user.dataset.audio = `🎤 ${m.seconds.toFixed(1)} s → ${m.frames} frames${note ? ` (${note})` : ""}`;
      else if (m.type === "text") reply.querySelector(".text").textContent += m.delta;
      else if (m.type === "segment_start") reply.dataset.audio = `🔊 speech segment ${m.segment + 1}`;
      else if (m.type === "audio") {
        if (this.cancelled) return; // interrupted: what was still on its way is not played
        if (firstAudio === null) firstAudio = performance.now() - t0;
        this.stats.samplesQueued += m.pcm.length;
        if (this.player) this.player.node.port.postMessage({ pcm: m.pcm }, [m.pcm.buffer]);
      } else if (m.type === "warning") this.stats.errors.push(m.message);
    };
    try {
      const r = await this.client.call(REQUEST.CHAT_SAY,
        { pcm, sampleRate, text, textOnly, chunkFrames }, { onProgress, transfer: pcm ? [pcm.buffer] : [] });
      this.stats.turns++;
      this.stats.lastTurn = { ...r, firstAudioMs: firstAudio, ms: performance.now() - t0 };
      reply.dataset.audio = r.segments ? `🔊 ${r.segments} segment(s), ${(r.samples / 24000).toFixed(2)} s` +
        (r.interrupted ? " · interrupted" : "") : (r.interrupted ? "interrupted" : "");
      const left = r.context - r.fed;
      this.status(`${r.interrupted ? "Interrupted" : "Done"} in ${((performance.now() - t0) / 1000).toFixed(1)} s` +
        (firstAudio !== null ? `, first audio after ${(firstAudio / 1000).toFixed(2)} s` : "") +
        `; ${left} context positions left.${this.listening ? " Listening…" : ""}`, "pass");
    } catch (e) {
      reply.remove();
      this.error(e);
      this.stats.lastTurn = { error: e.message };
    } finally {
      this.busy = false;
      if (this.player) this.player.node.port.postMessage({ streaming: false });
      this.setControls();
    }
  }

  line(role, text) {
    const li = document.createElement("li");
    li.className = role;
    const t = document.createElement("span");
    t.className = "text";
    t.textContent = text;
    li.append(t);
    $("transcript").append(li);
    return li;
  }

  wire() {
    $("mic").onclick = () => this.toggleMic();
    $("stop-reply").onclick = () => this.bargeIn();
    $("new-chat").onclick = () => { this.stopMic(false); this.begin(); };
    $("say-form").onsubmit = (ev) => {
      ev.preventDefault();
      const text = $("say-text").value.trim();
      if (!text) return;
      $("say-text").value = "";
      this.bargeIn();
      this.say({ text });
    };
  }
}
