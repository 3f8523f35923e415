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
    case REQUEST.LOAD_MODEL: {
      if (!engine) throw new Error("engine not initialised");
      const base = content.url.replace(/\/?$/, "/");
      const res = await fetch(base + "manifest.json");
      if (!res.ok) throw new Error(`${base}manifest.json: HTTP ${res.status}`);
      const text = await res.text();
      const manifest = JSON.parse(text);
      const shards = [];
      for (const s of manifest.shards) {
        const r = await fetch(base + s.file);
        if (!r.ok) throw new Error(`${base}${s.file}: HTTP ${r.status}`);
        shards.push(new Uint8Array(await r.arrayBuffer()));
      }
      return engine.loadModelBytes(text, shards);
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
    const result = await handle(kind, content);
    self.postMessage({ kind: "return", uuid, content: result });
  } catch (e) {
    self.postMessage({ kind: "throw", uuid, content: wireError(e) });
  }
};
