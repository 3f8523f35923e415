// The page: detects WebGPU, starts the engine worker, shows the adapter and the self-test.
import { EngineClient, REQUEST, WebGpuUnavailableError } from "./protocol.js";

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
  Object.assign(window.__bca, { results, passed, failed, done: true });
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
}

function fail(e) {
  $("status").textContent = `Error: ${e.message}`;
  $("status").className = "fail";
  Object.assign(window.__bca, { error: `${e.name}: ${e.message}`, done: true });
}

main().catch(fail);
