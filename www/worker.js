// The engine worker: owns the wasm module and its GPU device; answers protocol.js requests.
import init, { Engine } from "./pkg/bca.js";
import { REQUEST } from "./protocol.js";

let engine = null;
let ready = null;

function wireError(e) {
  const message = e && e.message ? e.message : String(e);
  const name = /WebGPU is not available|no GPU adapter/i.test(message)
    ? "WebGpuUnavailableError" : "EngineError";
  return { name, message };
}

async function handle(kind, content) {
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
    default:
      throw new Error(`unknown request kind ${kind}`);
  }
}

self.onmessage = async (ev) => {
  const { kind, uuid, content } = ev.data;
  try {
    const result = await handle(kind, content);
    self.postMessage({ kind: "return", uuid, content: result });
  } catch (e) {
    self.postMessage({ kind: "throw", uuid, content: wireError(e) });
  }
};
