// The streaming model loader (runs in the engine worker). JS does what the browser is good at —
// fetch streams, Cache Storage, AbortController, timing — and hands every chunk to the wasm
// `ModelLoader`, which hashes it (SHA-256, incrementally) and writes tensor parts to GPU
// buffers at once. No shard is ever held whole in wasm or JS memory (see ARCHITECTURE.md,
// "Checkpoints: the browser loader").
//
// loadModel(engine, url, { signal, onProgress, simulateQuotaBytes, maxBindingBytes, noCache })
//   → { tensors, quant, bytesTotal, bytesFromNetwork, bytesFromCache, shardsFromNetwork,
//       shardsFromCache, cacheErrors, seconds, wasmMemoryBytes, peakStageBytes }
// Progress: { stage: "manifest"|"weights"|"done", bytesDone, bytesTotal, rate (bytes/s),
//             etaSeconds, fromCache, shard, shards, file }

export const CACHE_NAME = "bca-models-v1";
/** Largest piece handed to wasm at once (bounds the temporary copy in wasm memory). */
const MAX_PUSH = 1 << 20;
const PROGRESS_EVERY_MS = 100;

export class LoadCancelledError extends Error {
  constructor() { super("loading cancelled"); this.name = "LoadCancelledError"; }
}

/** The Cache Storage key of a shard: its URL plus its SHA-256, so a re-converted model (new
 *  hashes) never reuses stale bytes and two models never share an entry by accident. */
export function cacheKey(shardUrl, sha256) {
  const u = new URL(shardUrl);
  u.searchParams.set("sha256", sha256);
  return u.href;
}

function cancelled(signal, e) {
  return (signal && signal.aborted) || (e && e.name === "AbortError");
}

async function fetchText(url, signal, optional = false) {
  const r = await fetch(url, { signal, cache: "no-cache" });
  if (!r.ok) {
    if (optional && r.status === 404) return null;
    throw new Error(`${url}: HTTP ${r.status}`);
  }
  return r.text();
}

export async function loadModel(engine, url, opts = {}) {
  const { signal, onProgress = () => {}, simulateQuotaBytes, maxBindingBytes, noCache } = opts;
  const t0 = performance.now();
  const base = new URL(url.replace(/\/?$/, "/"), self.location.href).href;
  const progress = { stage: "manifest", bytesDone: 0, bytesTotal: 0, rate: 0, etaSeconds: null,
    fromCache: false, shard: -1, shards: 0, file: "manifest.json" };
  onProgress({ ...progress });
  let manifestText, configText;
  try {
    manifestText = await fetchText(base + "manifest.json", signal);
    configText = await fetchText(base + "config.json", signal, true);
  } catch (e) {
    if (cancelled(signal, e)) throw new LoadCancelledError();
    throw e;
  }
  // Validation, including the adapter's limits, happens here: before any shard is requested.
  const loader = engine.beginLoad(manifestText, configText, base + "manifest.json",
    maxBindingBytes ? { maxBindingBytes } : {});
  try {
    return await stream(engine, loader, JSON.parse(manifestText), base, t0, progress, opts);
  } finally {
    loader.free(); // GPU buffers of a failed load go now, not at the next GC
  }
}

async function stream(engine, loader, manifest, base, t0, progress, opts) {
  const { signal, onProgress = () => {}, simulateQuotaBytes, noCache } = opts;
  const shards = manifest.shards;
  progress.bytesTotal = shards.reduce((a, s) => a + s.bytes, 0);
  progress.shards = shards.length;
  progress.stage = "weights";

  const cache = !noCache && typeof caches !== "undefined" ? await caches.open(CACHE_NAME) : null;
  const stats = { bytesFromNetwork: 0, bytesFromCache: 0, shardsFromNetwork: 0, shardsFromCache: 0,
    cacheErrors: [] };
  let putBytes = 0;
  let lastEmit = 0;
  const emit = (force) => {
    const now = performance.now();
    if (!force && now - lastEmit < PROGRESS_EVERY_MS) return;
    lastEmit = now;
    const secs = (now - t0) / 1000;
    progress.rate = secs > 0 ? progress.bytesDone / secs : 0;
    progress.etaSeconds = progress.rate > 0 ? (progress.bytesTotal - progress.bytesDone) / progress.rate : null;
    onProgress({ ...progress });
  };

  // Streams one body into the loader; returns the bytes read.
  async function pump(body, shard, fromCache) {
    if (!body) throw new Error(`${shard.file}: the response has no body`);
    const reader = body.getReader();
    let got = 0;
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        for (let o = 0; o < value.length; o += MAX_PUSH) {
          const piece = value.subarray(o, Math.min(value.length, o + MAX_PUSH));
          loader.push(piece);
          got += piece.length;
          progress.bytesDone += piece.length;
          emit(false);
        }
      }
    } catch (e) {
      if (cancelled(signal, e)) throw new LoadCancelledError();
      if (e && e.name === "TypeError") {
        throw new Error(`${shard.file}: connection lost after ${got} of ${shard.bytes} bytes (${e.message})`);
      }
      throw e;
    } finally {
      reader.releaseLock();
    }
    if (fromCache) { stats.bytesFromCache += got; } else { stats.bytesFromNetwork += got; }
    return got;
  }

  for (let i = 0; i < shards.length; i++) {
    const shard = shards[i];
    const shardUrl = new URL(shard.file, base).href;
    const key = cacheKey(shardUrl, shard.sha256);
    const before = progress.bytesDone;
    Object.assign(progress, { shard: i, file: shard.file });
    // 1. the cache (a bad cached copy is evicted and fetched again)
    const hit = cache ? await cache.match(key) : undefined;
    if (hit) {
      progress.fromCache = true;
      emit(true);
      loader.beginShard(i);
      try {
        await pump(hit.body, shard, true);
        loader.endShard();
        stats.shardsFromCache++;
        continue;
      } catch (e) {
        if (e instanceof LoadCancelledError) throw e;
        await cache.delete(key);
        stats.cacheErrors.push(`${shard.file}: cached copy rejected (${e.message}); fetched again`);
        progress.bytesDone = before;
      }
    }
    // 2. the network, teeing the body into the cache
    progress.fromCache = false;
    emit(true);
    let res;
    try {
      res = await fetch(shardUrl, { signal, cache: "no-store" });
    } catch (e) {
      if (cancelled(signal, e)) throw new LoadCancelledError();
      throw new Error(`${shard.file}: ${e.message}`);
    }
    if (!res.ok) throw new Error(`${shardUrl}: HTTP ${res.status}`);
    let body = res.body;
    let put = null;
    if (cache) {
      if (simulateQuotaBytes !== undefined && putBytes + shard.bytes > simulateQuotaBytes) {
        stats.cacheErrors.push(`${shard.file}: QuotaExceededError: the cache quota was exceeded ` +
          `(simulated: ${simulateQuotaBytes} bytes allowed); loaded from the network without caching`);
      } else {
        const [a, b] = body.tee();
        body = a;
        putBytes += shard.bytes;
        put = cache.put(key, new Response(b, { headers: { "content-type": "application/octet-stream" } }))
          .then(() => true, (e) => {
            stats.cacheErrors.push(`${shard.file}: ${e.name}: ${e.message}; loaded from the network without caching`);
            return false;
          });
      }
    }
    loader.beginShard(i);
    try {
      await pump(body, shard, false);
      loader.endShard();
    } catch (e) {
      // never keep a shard that failed: evict whatever the tee may have stored
      if (put) { await put; await cache.delete(key); }
      throw e;
    }
    if (put) await put;
    stats.shardsFromNetwork++;
  }
  progress.stage = "done";
  emit(true);
  const peakStageBytes = loader.peakStage();
  const r = engine.finishLoad(loader);
  return {
    ...r, ...stats, bytesTotal: progress.bytesTotal,
    seconds: (performance.now() - t0) / 1000,
    wasmMemoryBytes: engine.wasmMemoryBytes(), peakStageBytes,
  };
}
