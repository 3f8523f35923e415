// The page: detects WebGPU, starts the engine worker, shows the adapter and the self-test.
import { EngineClient, REQUEST, WebGpuUnavailableError } from "./protocol.js";
import { Talk } from "./talk.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
// Results for humans (the tables) and for the browser test (window.__bca).
window.__bca = { done: false, passed: 0, failed: 0, results: [], info: null, error: null };

function noWebGpu(detail) {
  const box = $("nogpu");
  box.hidden = false;
  box.innerHTML = `<strong>WebGPU is not available here.</strong> ${detail}<br>
    Use a current Chrome or Edge (113 or later) on Windows, macOS or ChromeOS; on Linux start Chrome with
    <code>--enable-unsafe-webgpu</code> (and <code>--enable-features=Vulkan</code>); in Firefox or Safari, enable WebGPU
    in the browser's experimental features. The page must be served over https or from localhost.`;
}

const adapterName = (info) => info.adapter || `${info.device_type} adapter (the browser hides its name)`;

function fillAdapter(info) {
  const rows = [
    ["adapter", adapterName(info)], ["backend", `${info.backend} (${info.device_type})`],
    ["driver", `${info.driver} ${info.driver_info}`.trim() || "(not reported)"],
    ["activations", info.activation_dtype],
    ...Object.entries(info.features).map(([k, v]) => [`feature ${k}`, String(v)]),
    ...Object.entries(info.limits).map(([k, v]) => [`limit ${k}`, String(v)]),
  ];
  $("adapter").innerHTML = rows.map(([k, v]) => `<tr><th>${k}</th><td>${v}</td></tr>`).join("");
}

async function selfTest(client) {
  $("rerun").disabled = true;
  $("summary").textContent = "Running…";
  const results = await client.call(REQUEST.SELFTEST);
  const failed = results.filter((r) => !r.passed).length;
  const passed = results.length - failed;
  $("results").innerHTML = results.map((r) =>
    `<tr><td class="${r.passed ? "pass" : "fail"}">${r.passed ? "PASS" : "FAIL"}</td><td>${r.name}</td><td>${r.detail}</td></tr>`).join("");
  $("summary").textContent = `${passed} passed, ${failed} failed`;
  $("summary").className = failed === 0 && passed > 0 ? "pass" : "fail";
  $("rerun").disabled = false;
  Object.assign(window.__bca, { results, passed, failed });
}

const MB = (b) => (b / 1e6).toFixed(1);
function eta(s) {
  if (s === null || !isFinite(s)) return "…";
  return s < 60 ? `${Math.ceil(s)} s` : `${Math.floor(s / 60)} min ${Math.ceil(s % 60)} s`;
}

/** Streams a converted model into the engine with a progress bar; never throws. */
async function loadModel(client, url, talk) {
  $("model-load").disabled = true;
  $("model-cancel").disabled = false;
  $("model-status").textContent = `Loading ${url}…`;
  $("model-status").className = "";
  let uuid = null;
  client.onProgress = (p, id) => {
    uuid = id;
    if (p.bytesTotal > 0) { $("model-progress").max = p.bytesTotal; $("model-progress").value = p.bytesDone; }
    const where = p.fromCache ? "from the cache" : "from the network";
    $("model-progress-text").textContent = p.stage === "manifest" ? "Reading manifest.json…"
      : `${MB(p.bytesDone)} / ${MB(p.bytesTotal)} MB · ${MB(p.rate)} MB/s · ETA ${eta(p.etaSeconds)} · ` +
        `shard ${p.shard + 1} of ${p.shards} ${where}${p.stage === "done" ? " · done" : ""}`;
  };
  $("model-cancel").onclick = () => { if (uuid) client.call(REQUEST.CANCEL, { uuid }); };
  try {
    const r = await client.call(REQUEST.LOAD_MODEL, { url });
    const src = r.shardsFromCache === 0 ? "all from the network"
      : r.shardsFromNetwork === 0 ? "all from the cache" : `${r.shardsFromCache} shards from the cache`;
    $("model-status").textContent = `Loaded ${url}: ${r.tensors} tensors (${r.quant}), ${MB(r.bytesTotal)} MB ` +
      `in ${r.seconds.toFixed(1)} s, ${src}; wasm memory ${MB(r.wasmMemoryBytes)} MB.` +
      (r.cacheErrors.length ? ` Not cached: ${r.cacheErrors.join("; ")}` : "");
    $("model-status").className = "pass";
    window.__bca.model = { ok: true, url, ...r };
    await talk.begin(); // a Base model says here that it cannot chat
  } catch (e) {
    $("model-status").textContent = `Could not load ${url}: ${e.message}`;
    $("model-status").className = "fail";
    window.__bca.model = { ok: false, url, error: `${e.name}: ${e.message}` };
    talk.status("Load a model to talk.", "");
  } finally {
    client.onProgress = null;
    $("model-load").disabled = false;
    $("model-cancel").disabled = true;
  }
}

async function main() {
  $("coi").textContent = self.crossOriginIsolated ? "yes" : "no (SharedArrayBuffer audio rings unavailable)";
  if (!("gpu" in navigator)) {
    noWebGpu("This browser does not expose <code>navigator.gpu</code>.");
    throw new WebGpuUnavailableError("navigator.gpu is missing");
  }
  const client = new EngineClient(new Worker(new URL("./worker.js", import.meta.url), { type: "module" }));
  window.__bca.client = client; // the browser tests drive stage APIs through it
  $("status").textContent = "Requesting a GPU device…";
  let info;
  try {
    info = await client.call(REQUEST.INIT, { forceF32: params.get("f32") === "1" });
  } catch (e) {
    if (e instanceof WebGpuUnavailableError) noWebGpu(e.message);
    throw e;
  }
  window.__bca.info = info;
  $("status").textContent = `Ready: ${adapterName(info)} through ${info.backend}, computing in ${info.activation_dtype}.`;
  fillAdapter(info);
  $("rerun").onclick = () => selfTest(client).catch(fail);
  await selfTest(client);
  // the embedded tiny model by default (or ?model=URL); the form loads any converted model
  const talk = new Talk(client);
  talk.wire();
  $("model-form").onsubmit = (ev) => {
    ev.preventDefault();
    talk.stopMic(false);
    talk.ready = false;
    talk.setControls();
    loadModel(client, $("model-url").value.trim(), talk);
  };
  if (params.get("model")) $("model-url").value = params.get("model");
  await loadModel(client, $("model-url").value.trim(), talk);
  window.__bca.done = true;
}

function fail(e) {
  $("status").textContent = `Error: ${e.message}`;
  $("status").className = "fail";
  Object.assign(window.__bca, { error: `${e.name}: ${e.message}`, done: true });
}

main().catch(fail);
