// The streaming loader (www/loader.js + src/model/stream.rs) in headless Chromium, against a
// test-only model server (node http, another origin: CORS + CORP + COOP/COEP on every response)
// that counts requests and can fail on purpose: 404, a connection cut mid-shard, a flipped
// byte, a slow body (to cancel), rewritten manifests/configs.
//
// Checked: f16/q8/q4 round trips — every tensor read back from the GPU (Engine.tensorDigest)
// equals `bca check --digests` (the converted bytes) bit for bit; progress events; a second
// load served from Cache Storage with zero shard requests; resume after a cut (completed shards
// come from the cache); cancel; and each bad input's exact error.
import http from "node:http";
import { execFileSync } from "node:child_process";
import { readFileSync, existsSync, statSync, writeFileSync } from "node:fs";
import { resolve, join, sep } from "node:path";

const PORT = 8766;
const CACHE = "bca-models-v1";

function modelServer(dir) {
  const rules = new Map();   // path → { status | body | flip | cutAfter | slowMs }
  const aliases = new Map(); // "/v2/" → "/tiny-instruct/"
  const hits = [];
  const cors = {
    "Access-Control-Allow-Origin": "*",
    "Cross-Origin-Resource-Policy": "cross-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cache-Control": "no-cache",
  };
  const server = http.createServer((req, res) => {
    let p = decodeURIComponent(new URL(req.url, "http://x").pathname);
    hits.push(p);
    const rule = rules.get(p) || {};
    if (rule.status) { res.writeHead(rule.status, cors); res.end("no"); return; }
    if (rule.body !== undefined) {
      res.writeHead(200, { ...cors, "Content-Type": "application/json" });
      res.end(rule.body);
      return;
    }
    for (const [from, to] of aliases) if (p.startsWith(from)) p = to + p.slice(from.length);
    const file = resolve(join(dir, p));
    if (!file.startsWith(dir + sep) || !existsSync(file) || statSync(file).isDirectory()) {
      res.writeHead(404, cors); res.end("not found"); return;
    }
    let data = readFileSync(file);
    if (rule.flip !== undefined) data[rule.flip] ^= 0x40;
    res.writeHead(200, { ...cors, "Content-Type": "application/octet-stream", "Content-Length": data.length });
    if (rule.cutAfter !== undefined) {
      res.write(data.subarray(0, rule.cutAfter), () => setTimeout(() => res.socket.destroy(), 100));
      return;
    }
    if (rule.slowMs) {
      let o = 0;
      const next = () => {
        if (res.destroyed) return;
        if (o >= data.length) { res.end(); return; }
        res.write(data.subarray(o, o + 65536));
        o += 65536;
        setTimeout(next, rule.slowMs);
      };
      next();
      return;
    }
    res.end(data);
  });
  return {
    rules, aliases, hits,
    listen: () => new Promise((ok) => server.listen(PORT, "127.0.0.1", ok)),
    close: () => new Promise((ok) => { server.closeAllConnections?.(); server.close(ok); }),
    shardHits: (prefix) => hits.filter((h) => h.startsWith(prefix) && /shard-[^/]*\.bin$/.test(h)).length,
  };
}

export default async function ({ page, root, outDir, bca, check }) {
  const models = resolve(root, "www/models");
  const srv = modelServer(models);
  await srv.listen();
  const M = `http://127.0.0.1:${PORT}/`;
  const load = (url, options = {}) => page.evaluate(async ([u, o]) => {
    const c = window.__bca.client;
    const events = [];
    c.onProgress = (p) => events.push(p);
    try {
      const r = await c.call("load-model", { url: u, options: o });
      return { ok: true, r, events };
    } catch (e) {
      return { ok: false, error: e.message, name: e.name, events };
    } finally { c.onProgress = null; }
  }, [url, options]);
  const clearCache = () => page.evaluate((n) => caches.delete(n), CACHE);
  const cachedKeys = () => page.evaluate(async (n) =>
    (await (await caches.open(n)).keys()).map((r) => r.url), CACHE);
  const manifestOf = (name) => JSON.parse(readFileSync(join(models, name, "manifest.json"), "utf8"));
  const info = await page.evaluate(() => window.__bca.info);

  try {
    // ---- the page's own default load (embedded tiny model, progress bar)
    const pageModel = await page.evaluate(() => window.__bca.model);
    check("page loads the embedded tiny model by default", pageModel && pageModel.ok,
      JSON.stringify(pageModel));
    const bar = await page.textContent("#model-progress-text");
    check("page shows the load's progress text", /MB/.test(bar || "") && /(network|cache)/.test(bar || ""), bar);

    // ---- round trips, all three formats
    const summary = [];
    for (const [name, q] of [["tiny-instruct", "f16"], ["tiny-instruct-q8", "q8"], ["tiny-instruct-q4", "q4"]]) {
      const dir = join(models, name);
      if (!existsSync(join(dir, "manifest.json"))) { check(`${name} exists (scripts/tiny-models.sh)`, false); continue; }
      await clearCache();
      const before = srv.shardHits(`/${name}/`);
      const res = await load(`${M}${name}/`);
      check(`${name}: streams from another origin`, res.ok, res.error || "");
      if (!res.ok) continue;
      const m = manifestOf(name);
      const r = res.r;
      check(`${name}: ${m.shards.length} shard request(s), all from the network`,
        srv.shardHits(`/${name}/`) - before === m.shards.length && r.shardsFromNetwork === m.shards.length
        && r.bytesFromNetwork === r.bytesTotal && r.quant === q, JSON.stringify({ ...r, cacheErrors: r.cacheErrors.length }));
      // progress events
      const ev = res.events;
      const w = ev.filter((e) => e.stage === "weights");
      const last = ev[ev.length - 1] || {};
      const keys = ["stage", "bytesDone", "bytesTotal", "rate", "etaSeconds", "fromCache", "shard"];
      check(`${name}: progress events manifest → weights → done, bytes monotonic`,
        ev[0].stage === "manifest" && w.length >= 1 && last.stage === "done" && last.bytesDone === r.bytesTotal
        && ev.every((e) => keys.every((k) => k in e))
        && w.every((e, i) => i === 0 || e.bytesDone >= w[i - 1].bytesDone) && last.rate > 0,
        `${ev.length} events, last ${JSON.stringify(last)}`);
      // memory: wasm heap after loading
      check(`${name}: wasm memory stays small (${(r.wasmMemoryBytes / 2 ** 20).toFixed(1)} MiB, staged ≤ ${(r.peakStageBytes / 2 ** 20).toFixed(2)} MiB)`,
        r.wasmMemoryBytes < 256 * 2 ** 20 && r.peakStageBytes <= (1 << 20) + 65536, `${r.wasmMemoryBytes} bytes`);
      // bit-exact read-back vs the native digests
      const dj = join(outDir, `digests-${name}.json`);
      execFileSync(bca, ["check", dir, "--digests", dj], { stdio: "ignore" });
      const want = JSON.parse(readFileSync(dj, "utf8"));
      const got = await page.evaluate(async () => {
        const c = window.__bca.client;
        const names = await c.call("call", { method: "tensorNames", args: [] });
        const out = {};
        for (const n of names) out[n] = await c.call("call", { method: "tensorDigest", args: [n] });
        return out;
      });
      const names = Object.keys(want);
      const bad = names.filter((n) => got[n] !== want[n]);
      check(`${name}: every tensor read back from the GPU equals the converted bytes (${names.length} tensors)`,
        bad.length === 0 && Object.keys(got).length === names.length,
        bad.length ? `${bad.length} differ, e.g. ${bad[0]}` : "");
      summary.push({ name, tensors: names.length, bytes: r.bytesTotal, shards: m.shards.length,
        seconds: r.seconds, wasmMemoryBytes: r.wasmMemoryBytes, peakStageBytes: r.peakStageBytes });

      // second load: entirely from the cache
      const b2 = srv.shardHits(`/${name}/`);
      const again = await load(`${M}${name}/`);
      check(`${name}: a second load is served from the cache with zero shard requests`,
        again.ok && srv.shardHits(`/${name}/`) === b2 && again.r.shardsFromCache === m.shards.length
        && again.r.bytesFromNetwork === 0 && again.events.some((e) => e.stage === "weights" && e.fromCache),
        again.ok ? JSON.stringify({ fromCache: again.r.shardsFromCache, net: again.r.bytesFromNetwork }) : again.error);
    }
    writeFileSync(join(outDir, "loader-summary.json"), JSON.stringify(summary, null, 2));

    // the q8 model has several shards: the fault cases use it
    const Q8 = "tiny-instruct-q8";
    const m8 = manifestOf(Q8);
    const n8 = m8.shards.length;
    check("the q8 test model has several shards", n8 >= 3, `${n8} shards`);

    // ---- connection cut mid-shard, then resume from the cache
    await clearCache();
    const cut = `/${Q8}/shard-00002.bin`;
    srv.rules.set(cut, { cutAfter: 100000 });
    const r1 = await load(`${M}${Q8}/`);
    const want1 = new RegExp(`^shard-00002\\.bin: connection lost after \\d+ of ${m8.shards[2].bytes} bytes`);
    check("a connection cut mid-shard is a clear error", !r1.ok && want1.test(r1.error), r1.error);
    srv.rules.delete(cut);
    const h0 = srv.shardHits(`/${Q8}/`);
    const r2 = await load(`${M}${Q8}/`);
    check("the next load resumes: completed shards come from the cache, only the rest is fetched",
      r2.ok && r2.r.shardsFromCache === 2 && srv.shardHits(`/${Q8}/`) - h0 === n8 - 2,
      r2.ok ? `${r2.r.shardsFromCache} from cache, ${srv.shardHits(`/${Q8}/`) - h0} fetched` : r2.error);

    // ---- HTTP 404 for a shard
    await clearCache();
    srv.rules.set(`/${Q8}/shard-00001.bin`, { status: 404 });
    const r3 = await load(`${M}${Q8}/`);
    check("HTTP 404 for a shard", !r3.ok && r3.error === `${M}${Q8}/shard-00001.bin: HTTP 404`, r3.error);
    srv.rules.delete(`/${Q8}/shard-00001.bin`);

    // ---- flipped byte: hash mismatch naming the shard; the shard is not kept in the cache
    await clearCache();
    srv.rules.set(`/${Q8}/shard-00001.bin`, { flip: 5000 });
    const r4 = await load(`${M}${Q8}/`);
    const keys4 = await cachedKeys();
    check("a flipped byte is a hash mismatch naming the shard",
      !r4.ok && r4.error.startsWith("shard-00001.bin: sha256 ")
      && r4.error.endsWith(`does not match the manifest's ${m8.shards[1].sha256}`), r4.error);
    check("the bad shard is evicted from the cache (the good one before it stays)",
      keys4.some((k) => k.includes("shard-00000.bin")) && !keys4.some((k) => k.includes("shard-00001.bin")),
      keys4.map((k) => k.replace(/\?.*/, "").split("/").pop()).join(","));
    srv.rules.delete(`/${Q8}/shard-00001.bin`);

    // ---- a corrupted cached copy is rejected, evicted and fetched again
    const shard0 = `${M}${Q8}/shard-00000.bin`;
    await page.evaluate(async ([n, url, sha]) => {
      const c = await caches.open(n);
      const u = new URL(url); u.searchParams.set("sha256", sha);
      await c.put(u.href, new Response(new Uint8Array(1000)));
    }, [CACHE, shard0, m8.shards[0].sha256]);
    const r5 = await load(`${M}${Q8}/`);
    check("a corrupted cached shard is evicted and fetched again",
      r5.ok && r5.r.cacheErrors.length === 1
      && r5.r.cacheErrors[0] === `shard-00000.bin: cached copy rejected (shard-00000.bin: truncated: 1000 bytes of data, ${m8.shards[0].bytes} expected); fetched again`,
      r5.ok ? JSON.stringify(r5.r.cacheErrors) : r5.error);

    // ---- cancel mid-download
    await clearCache();
    for (let i = 0; i < n8; i++) srv.rules.set(`/${Q8}/shard-${String(i).padStart(5, "0")}.bin`, { slowMs: 15 });
    const r6 = await page.evaluate(async (url) => {
      const c = window.__bca.client;
      let sent = false;
      const p = c.call("load-model", { url });
      const uuid = c.lastUuid;
      c.onProgress = (ev, id) => {
        if (id === uuid && !sent && ev.bytesDone > 0) { sent = true; c.call("cancel", { uuid }); }
      };
      try { await p; return "loaded"; } catch (e) { return `${e.name}: ${e.message}`; } finally { c.onProgress = null; }
    }, `${M}${Q8}/`);
    check("a load can be cancelled (cancel request → AbortController)", r6 === "LoadCancelledError: loading cancelled", r6);
    for (let i = 0; i < n8; i++) srv.rules.delete(`/${Q8}/shard-${String(i).padStart(5, "0")}.bin`);

    // ---- storage quota exceeded: the load still succeeds from the network, uncached
    const Q4 = "tiny-instruct-q4";
    const n4 = manifestOf(Q4).shards.length;
    await clearCache();
    const r7 = await load(`${M}${Q4}/`, { simulateQuotaBytes: 0 });
    check("quota exceeded: the model still loads from the network, and says it was not cached",
      r7.ok && r7.r.shardsFromNetwork === n4 && r7.r.cacheErrors[0] ===
        "shard-00000.bin: QuotaExceededError: the cache quota was exceeded (simulated: 0 bytes allowed); loaded from the network without caching",
      r7.ok ? JSON.stringify(r7.r.cacheErrors) : r7.error);
    const h7 = srv.shardHits(`/${Q4}/`);
    const r8 = await load(`${M}${Q4}/`);
    check("…and nothing was cached: the next load fetches every shard again",
      r8.ok && srv.shardHits(`/${Q4}/`) - h7 === n4, `${srv.shardHits(`/${Q4}/`) - h7} of ${n4}`);

    // ---- manifests refused before any shard is requested
    const base = manifestOf("tiny-instruct");
    const refused = async (dir, manifest, want, what, config) => {
      srv.aliases.set(`/${dir}/`, "/tiny-instruct/");
      srv.rules.set(`/${dir}/manifest.json`, { body: JSON.stringify(manifest) });
      if (config) srv.rules.set(`/${dir}/config.json`, { body: JSON.stringify(config) });
      const h = srv.shardHits(`/${dir}/`);
      const r = await load(`${M}${dir}/`);
      check(`${what} (before any download)`, !r.ok && r.error === want && srv.shardHits(`/${dir}/`) === h,
        r.ok ? "loaded" : r.error);
    };
    // a model too big for this adapter: the vocabulary tables grown until one part no longer
    // fits one binding (as `bca convert --max-binding` larger than the adapter would write)
    {
      const m = structuredClone(base);
      const oldV = m.config.vocab_size;
      const H = m.config.hidden_size;
      const limit = Math.min(info.limits.max_storage_buffer_binding_size, info.limits.max_buffer_size);
      const which = info.limits.max_storage_buffer_binding_size <= info.limits.max_buffer_size
        ? "maxStorageBufferBindingSize" : "maxBufferSize";
      const V = Math.ceil((limit + 1) / (H * 2) / 8) * 8;
      m.config.vocab_size = V;
      m.shards.push({ file: "shard-big.bin", bytes: 0, sha256: "0".repeat(64) });
      let first = null;
      for (const t of m.tensors) {
        if (t.shape[0] !== oldV || t.format !== "f16") continue;
        t.shape[0] = V;
        const len = V * t.shape.slice(1).reduce((a, b) => a * b, 1) * 2;
        const off = Math.ceil(m.shards.at(-1).bytes / 256) * 256;
        t.parts = [{ rows: [0, V], data: { shard: m.shards.length - 1, offset: off, length: len } }];
        m.shards.at(-1).bytes = off + len;
        first ??= { name: t.name, len };
      }
      await refused("big", m,
        `model too big for this GPU: tensor ${first.name} rows 0..${V} needs a ${first.len}-byte buffer, the adapter allows ${limit} (${which})`,
        `a model too big for the adapter's limits is refused with the numbers`, m.config);
    }
    {
      const m = structuredClone(base); m.format_version = 2;
      await refused("v2", m, `${M}v2/manifest.json: format_version 2 is newer than this build supports (1)`,
        "a manifest of a newer format version");
    }
    {
      const m = structuredClone(base); m.quant = "q3";
      await refused("q3", m, `${M}q3/manifest.json: unknown quant "q3"`, "an unknown quant");
      const m2 = structuredClone(base); m2.tensors[5].format = "q3_k";
      await refused("q3k", m2, `tensor ${m2.tensors[5].name}: unknown format q3_k`, "an unknown tensor format");
    }
    {
      const c = JSON.parse(readFileSync(join(models, "tiny-instruct", "config.json"), "utf8"));
      c.num_hidden_layers += 1;
      await refused("cfg", base, "config mismatch: config.json differs from the manifest's config",
        "config.json disagreeing with the manifest", c);
    }
    {
      const m = structuredClone(base); m.tensors.splice(3, 1);
      await refused("missing", m, `missing tensor ${base.tensors[3].name}`, "a manifest missing a tensor");
    }
  } finally {
    await srv.close();
  }
}
