// The engine worker: owns the wasm module and its GPU device; answers protocol.js requests.
import init, { Engine } from "./pkg/bca.js";
import { REQUEST } from "./protocol.js";
import { loadModel } from "./loader.js";
import { ChatRunner } from "./chat.js";

let engine = null;
let ready = null;
let modelUrl = null; // the last model loaded
let chat = null;
const loads = new Map(); // uuid of a load-model request → its AbortController

function wireError(e) {
  const message = e && e.message ? e.message : String(e);
  const name = e && e.name === "LoadCancelledError" ? e.name
    : /WebGPU is not available|no GPU adapter/i.test(message) ? "WebGpuUnavailableError" : "EngineError";
  return { name, message };
}

async function handle(kind, content, uuid) {
  switch (kind) {
    case REQUEST.INIT: {
      if (!("gpu" in navigator)) {
        throw Object.assign(new Error("WebGPU is not available in this worker (navigator.gpu is missing)"),
          { name: "WebGpuUnavailableError" });
      }
      ready ??= init();
      await ready;
      engine = await Engine.create({ forceF32: !!(content && content.forceF32) });
      return engine.info();
    }
    case REQUEST.INFO:
      if (!engine) throw new Error("engine not initialised");
      return engine.info();
    case REQUEST.SELFTEST:
      if (!engine) throw new Error("engine not initialised");
      return await engine.selfTest();
    case REQUEST.LOAD_MODEL: {
      if (!engine) throw new Error("engine not initialised");
      const controller = new AbortController();
      loads.set(uuid, controller);
      try {
        // the conversation holds the old model's weights: end it before the new one loads
        if (chat) { const c = chat; chat = null; await c.close(); }
        modelUrl = null;
        const r = await loadModel(engine, content.url, {
          ...(content.options || {}),
          signal: controller.signal,
          onProgress: (p) => self.postMessage({ kind: "progress", uuid, content: p }),
        });
        modelUrl = content.url;
        return r;
      } finally {
        loads.delete(uuid);
      }
    }
    case REQUEST.CANCEL: {
      // content: { uuid } of a load-model request; without one, every load in flight
      const targets = content && content.uuid ? [content.uuid] : [...loads.keys()];
      let n = 0;
      for (const id of targets) { const c = loads.get(id); if (c) { c.abort(); n++; } }
      return { cancelled: n };
    }
    case REQUEST.CHAT_BEGIN: {
      if (!engine) throw new Error("engine not initialised");
      if (!modelUrl) throw new Error("no model loaded: load a converted Instruct model first");
      // the old conversation stops; it is replaced once the new one's options prove valid
      if (chat) await chat.quiesce();
      const next = new ChatRunner(engine);
      const st = await next.begin(modelUrl, (content && content.options) || {});
      chat = next;
      return st;
    }
    case REQUEST.CHAT_SAY: {
      if (!chat) throw new Error("no conversation: begin one first");
      return await chat.say(content || {}, (m, transfer = []) =>
        self.postMessage({ kind: "progress", uuid, content: m }, transfer));
    }
    case REQUEST.CHAT_INTERRUPT:
      if (chat) chat.interrupt();
      return { interrupted: !!chat };
    case REQUEST.CHAT_STATE: {
      if (!chat) throw new Error("no conversation: begin one first");
      const warning = await chat.settle();
      return { ...engine.chatState(!!(content && content.ids)), rewrite: chat.lastRewrite || null, warning };
    }
    case REQUEST.CALL: {
      if (!engine) throw new Error("engine not initialised");
      const fn = engine[content.method];
      if (typeof fn !== "function") throw new Error(`the engine has no method ${content.method}`);
      return await fn.apply(engine, content.args || []);
    }
    default:
      throw new Error(`unknown request kind ${kind}`);
  }
}

self.onmessage = async (ev) => {
  const { kind, uuid, content } = ev.data;
  try {
    const result = await handle(kind, content, uuid);
    self.postMessage({ kind: "return", uuid, content: result });
  } catch (e) {
    self.postMessage({ kind: "throw", uuid, content: wireError(e) });
  }
};
