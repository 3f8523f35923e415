// The page ⇄ worker protocol, in one place.
//
// Request:  { kind, uuid, content }            kind ∈ REQUEST
// Response: { kind: "return", uuid, content }  the request's result
//           { kind: "throw",  uuid, content: { name, message } }
//           { kind: "progress", uuid, content }      e.g. a load's { stage, bytesDone, bytesTotal,
//                                                     rate, etaSeconds, fromCache, shard, shards, file }

export const REQUEST = Object.freeze({
  INIT: "init",         // content: { forceF32?: boolean } → adapter report
  INFO: "info",         // → adapter report
  SELFTEST: "selftest", // → [{ name, passed, detail }]
  // content: { url, options? } (a converted model folder; options: { simulateQuotaBytes,
  // maxBindingBytes, noCache } test hooks) → { tensors, quant, bytesTotal, bytesFromNetwork,
  // bytesFromCache, shardsFromNetwork, shardsFromCache, cacheErrors, seconds, wasmMemoryBytes }
  // streamed with progress messages (www/loader.js)
  LOAD_MODEL: "load-model",
  CANCEL: "cancel",     // content: { uuid? } of a load-model request → { cancelled: n }
  CALL: "call",         // content: { method, args } → the engine method's result (stage APIs)
  // Speech chat (www/chat.js) on the last loaded model:
  CHAT_BEGIN: "chat-begin",         // content: { options } → { fed, turnStart, busy, context }
  // content: { pcm?: Float32Array, sampleRate?, text?, textOnly?, chunkFrames? (0: vocode each
  // segment when it ends; C: every C frames, before it ends) } → { text, frames, segments,
  // samples, interrupted, fed, context }, streamed with progress messages (see www/chat.js)
  CHAT_SAY: "chat-say",
  CHAT_INTERRUPT: "chat-interrupt", // barge-in: the running turn stops between two steps
  CHAT_STATE: "chat-state",         // content: { ids? } → { fed, turnStart, busy, context, ids? }
});

/** One error class per thing a user can act on. */
export class WebGpuUnavailableError extends Error {
  constructor(message) { super(message); this.name = "WebGpuUnavailableError"; }
}
export class EngineError extends Error {
  constructor(message) { super(message); this.name = "EngineError"; }
}
export class LoadCancelledError extends Error {
  constructor(message) { super(message); this.name = "LoadCancelledError"; }
}

export function errorFromWire({ name, message }) {
  if (name === "WebGpuUnavailableError") return new WebGpuUnavailableError(message);
  if (name === "LoadCancelledError") return new LoadCancelledError(message);
  return new EngineError(message);
}

/** Talks to the engine worker: `call(kind, content)` returns a Promise. */
export class EngineClient {
  constructor(worker) {
    this.worker = worker;
    this.pending = new Map();
    this.next = 1;
    this.onProgress = null;
    worker.onmessage = (ev) => this.#receive(ev.data);
    worker.onerror = (ev) => {
      const err = new EngineError(`the engine worker failed: ${ev.message || "unknown error"}`);
      for (const { reject } of this.pending.values()) reject(err);
      this.pending.clear();
    };
  }
  /** `onProgress(content, uuid)` gets every progress message (a call's own `onProgress`
   *  option takes those of that call); `lastUuid` is the uuid of the
   *  latest request (to cancel a load: `call(REQUEST.CANCEL, { uuid })`). */
  call(kind, content = null, { onProgress = null, transfer = [] } = {}) {
    const uuid = String(this.next++);
    this.lastUuid = uuid;
    return new Promise((resolve, reject) => {
      this.pending.set(uuid, { resolve, reject, onProgress });
      this.worker.postMessage({ kind, uuid, content }, transfer);
    });
  }
  #receive(msg) {
    const p = this.pending.get(msg.uuid);
    if (msg.kind === "progress") {
      const f = (p && p.onProgress) || this.onProgress;
      if (f) f(msg.content, msg.uuid);
      return;
    }
    if (!p) return;
    this.pending.delete(msg.uuid);
    if (msg.kind === "return") p.resolve(msg.content);
    else p.reject(errorFromWire(msg.content));
  }
}
