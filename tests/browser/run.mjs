// Browser test harness: serves www/ with COOP/COEP (through `bca serve`), drives system
// Chromium headlessly (WebGPU on SwiftShader, the CPU), collects the page's results, saves a
// screenshot, and prints `N passed, N failed`. Exits non-zero on any failure, including
// "no WebGPU adapter" — a browser test that cannot reach a GPU is a failed test, never a skip.
//
// Usage: node tests/browser/run.mjs [--bca target/debug/bca] [--out artifacts/browser]
//        [--fake-mic file.wav]   (a WAV played as the microphone; default: speech + silence)
//        [--suites 30-audio,20]  (only the stage suites whose file names contain these)
import { spawn } from "node:child_process";
import { mkdirSync, existsSync, writeFileSync, readdirSync, readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith("--") ? [...acc, [a.slice(2), all[i + 1]]] : acc), []));
const bca = resolve(root, args.bca || "target/debug/bca");
const outDir = resolve(root, args.out || "artifacts/browser");
const port = Number(args.port || 8765);
const chromePath = process.env.CHROMIUM || "/usr/bin/chromium";
mkdirSync(outDir, { recursive: true });

let passed = 0, failed = 0;
const log = [];
function check(name, ok, detail = "") {
  ok ? passed++ : failed++;
  const line = `${ok ? "ok  " : "FAIL"} ${name}${detail ? ": " + detail : ""}`;
  log.push(line);
  console.log(line);
}

/** tests/goldens/audio_in/wav/en_48k_s16.wav (1.2 s of speech, 48 kHz 16-bit mono) + 1.5 s of
 *  silence, written to the output folder. */
function fakeMicWav() {
  const src = readFileSync(resolve(root, "tests/goldens/audio_in/wav/en_48k_s16.wav"));
  let o = 12, data = null;
  while (o + 8 <= src.length) {
    const id = src.toString("latin1", o, o + 4), len = src.readUInt32LE(o + 4);
    if (id === "data") { data = src.subarray(o + 8, o + 8 + len); break; }
    o += 8 + len + (len & 1);
  }
  if (!data) throw new Error("en_48k_s16.wav has no data chunk");
  const body = Buffer.concat([data, Buffer.alloc(48000 * 2 * 3 / 2)]);
  const h = Buffer.alloc(44);
  h.write("RIFF", 0, "latin1"); h.writeUInt32LE(36 + body.length, 4); h.write("WAVEfmt ", 8, "latin1");
  h.writeUInt32LE(16, 16); h.writeUInt16LE(1, 20); h.writeUInt16LE(1, 22); h.writeUInt32LE(48000, 24);
  h.writeUInt32LE(96000, 28); h.writeUInt16LE(2, 32); h.writeUInt16LE(16, 34);
  h.write("data", 36, "latin1"); h.writeUInt32LE(body.length, 40);
  const path = resolve(outDir, "fake-mic.wav");
  writeFileSync(path, Buffer.concat([h, body]));
  return path;
}

async function waitForServer(url, ms) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    try { const r = await fetch(url); if (r.ok) return r; } catch {}
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`server at ${url} did not come up`);
}

async function main() {
  if (!existsSync(resolve(root, "www/pkg/bca.js"))) throw new Error("www/pkg is missing: run scripts/build-web.sh first");
  if (!existsSync(chromePath)) throw new Error(`no Chromium at ${chromePath}`);
  const server = spawn(bca, ["serve", "--dir", resolve(root, "www"), "--addr", `127.0.0.1:${port}`], { stdio: ["ignore", "pipe", "inherit"] });
  const base = `http://127.0.0.1:${port}`;
  let browser;
  try {
    const r = await waitForServer(`${base}/`, 15000);
    check("server sends COOP same-origin", r.headers.get("cross-origin-opener-policy") === "same-origin");
    check("server sends COEP require-corp", r.headers.get("cross-origin-embedder-policy") === "require-corp");
    const wasm = await fetch(`${base}/pkg/bca_bg.wasm`);
    await wasm.arrayBuffer(); // read the body: an unread 4 MB response holds a connection open
    check("wasm served as application/wasm", wasm.headers.get("content-type") === "application/wasm");

    const flags = [
      "--enable-unsafe-webgpu", "--no-sandbox", "--disable-gpu-sandbox",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      "--no-first-run", "--disable-quic", "--autoplay-policy=no-user-gesture-required",
      "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
    ];
    // the microphone: a WAV played (looped) by Chromium's fake capture device; by default speech
    // then 1.5 s of silence, so the page's voice detector cuts one utterance at the pause
    flags.push(`--use-file-for-fake-audio-capture=${resolve(args["fake-mic"] || fakeMicWav())}`);
    browser = await chromium.launch({ executablePath: chromePath, headless: true, args: flags });
    const page = await browser.newPage({ viewport: { width: 1100, height: 1400 } });
    const consoleLines = [];
    page.on("console", (m) => consoleLines.push(`[${m.type()}] ${m.text()}`));
    page.on("pageerror", (e) => consoleLines.push(`[pageerror] ${e.message}`));

    // a slow CI machine may take a while to start the renderer; the engine has its own timeout below
    await page.goto(`${base}/`, { waitUntil: "domcontentloaded", timeout: 120000 });
    await page.waitForFunction(() => window.__bca && window.__bca.done, null, { timeout: 180000 });
    const state = await page.evaluate(() => window.__bca);
    await page.screenshot({ path: resolve(outDir, "selftest.png"), fullPage: true });
    writeFileSync(resolve(outDir, "console.log"), consoleLines.join("\n") + "\n");

    check("page is cross-origin isolated", await page.evaluate(() => self.crossOriginIsolated));
    check("engine started (WebGPU adapter found)", !state.error && !!state.info, state.error || state.info?.adapter);
    if (state.info) {
      check("adapter report has limits", state.info.limits.max_storage_buffer_binding_size >= 134217728,
        `maxStorageBufferBindingSize ${state.info.limits.max_storage_buffer_binding_size}`);
      console.log(`     adapter: ${state.info.adapter} (${state.info.backend}), activations ${state.info.activation_dtype}`);
    }
    check("self-test ran cases", state.results.length >= 10, `${state.results.length} cases`);
    for (const r of state.results) check(`browser ${r.name}`, r.passed, r.detail);
    const shown = await page.textContent("#summary");
    check("page shows the pass summary", shown === `${state.passed} passed, 0 failed`, shown);

    // Stage suites: tests/browser/suites/*.mjs, each `export default async function (t)` with
    // t = { page, base, root, outDir, bca, check, call(method, ...args), loadModel(url) }.
    // `call` runs an Engine method in the worker (REQUEST.CALL); models live in www/models/.
    const call = (method, ...args) => page.evaluate(([m, a]) =>
      window.__bca.client.call("call", { method: m, args: a }), [method, args]);
    const loadModel = (url) => page.evaluate((u) => window.__bca.client.call("load-model", { url: u }), url);
    const suitesDir = resolve(root, "tests/browser/suites");
    // `--suites 30-audio,20` runs only the suites whose file name contains one of the words
    const only = args.suites ? String(args.suites).split(",") : null;
    const suites = existsSync(suitesDir) ? readdirSync(suitesDir).filter((f) => f.endsWith(".mjs")).sort()
      .filter((f) => !only || only.some((w) => f.includes(w))) : [];
    for (const f of suites) {
      try {
        const mod = await import(pathToFileURL(resolve(suitesDir, f)).href);
        await mod.default({ page, base, root, outDir, bca, check, call, loadModel });
      } catch (e) {
        check(`suite ${f}`, false, e.message);
      }
    }
  } finally {
    if (browser) await browser.close();
    server.kill();
  }
}

main()
  .catch((e) => check("browser harness", false, e.message))
  .finally(() => {
    writeFileSync(resolve(outDir, "results.txt"), log.join("\n") + "\n");
    console.log(`browser: ${passed} passed, ${failed} failed`);
    process.exit(failed === 0 && passed > 0 ? 0 : 1);
  });
