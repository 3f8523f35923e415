// Audio out in the browser: the embedded tiny model vocodes a fixed segment of codes; the PCM
// must match native `bca vocode` on the same converted model and seed (the noise generator is
// the same on both sides), and bad codes must be clear errors. Then the stream the worker
// drives by name (vocodeBegin / vocodePush / vocodeEnd): chunked, frame by frame, against
// native `bca vocode --chunk-frames`, and per segment against `vocode`.
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";

// 6 frames within the tiny codebooks (64, 32, 16 × 6)
const CODES = [
  37, 12, 5, 0, 15, 9, 3, 7,
  1, 31, 14, 8, 2, 11, 6, 13,
  63, 0, 9, 4, 10, 1, 15, 2,
  20, 17, 0, 15, 7, 12, 8, 5,
  5, 4, 3, 2, 1, 0, 14, 10,
  44, 25, 11, 6, 9, 3, 2, 15,
];
const FRAMES = 6, SEED = 7;
// Browser and native may differ in activation precision (f16 vs f32) and HiFT's exp() magnifies
// small differences; measured ≥ 40 dB between the f16 and f32 paths natively.
const MIN_SNR_DB = 25;

function npyI32(shape, data) {
  let header = `{'descr': '<i4', 'fortran_order': False, 'shape': (${shape.join(", ")}), }`;
  const total = 10 + header.length + 1;
  header += " ".repeat((64 - (total % 64)) % 64) + "\n";
  const out = Buffer.alloc(10 + header.length + data.length * 4);
  out.write("\x93NUMPY", 0, "latin1");
  out[6] = 1; out[7] = 0;
  out.writeUInt16LE(header.length, 8);
  out.write(header, 10, "latin1");
  data.forEach((v, i) => out.writeInt32LE(v, 10 + header.length + 4 * i));
  return out;
}

function wavF32(buf) {
  let p = 12;
  while (p + 8 <= buf.length) {
    const id = buf.toString("latin1", p, p + 4), len = buf.readUInt32LE(p + 4);
    if (id === "data") {
      const n = len / 4, out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = buf.readFloatLE(p + 8 + 4 * i);
      return out;
    }
    p += 8 + len + (len & 1);
  }
  throw new Error("no data chunk in the WAV");
}

export default async function ({ check, call, loadModel, bca, root, outDir }) {
  await loadModel("models/tiny-instruct/");
  const r = await call("vocode", CODES, FRAMES, SEED);
  check("vocode returns (4N−1)·480 samples", r.samples === (4 * FRAMES - 1) * 480 && r.pcm.length === r.samples,
    `${r.samples} samples, pcm ${r.pcm?.length}`);
  check("vocode output is 24 kHz, finite, not silent",
    r.sampleRate === 24000 && r.pcm.every(Number.isFinite) && r.pcm.some((v) => Math.abs(v) > 1e-3));

  const npy = resolve(outDir, "audio-out-codes.npy"), wav = resolve(outDir, "audio-out-native.wav");
  writeFileSync(npy, npyI32([FRAMES, 8], CODES));
  execFileSync(bca, ["vocode", resolve(root, "www/models/tiny-instruct"), npy, "-o", wav, "--float", "--seed", String(SEED)],
    { stdio: ["ignore", "ignore", "inherit"] });
  const native = wavF32(readFileSync(wav));
  check("native and browser sample counts agree", native.length === r.pcm.length, `${native.length} vs ${r.pcm.length}`);
  let s = 0, n = 0;
  for (let i = 0; i < native.length; i++) { s += native[i] ** 2; n += (native[i] - r.pcm[i]) ** 2; }
  const snr = 10 * Math.log10(s / Math.max(n, 1e-30));
  check(`browser PCM matches native bca vocode (SNR ≥ ${MIN_SNR_DB} dB)`, snr >= MIN_SNR_DB, `SNR ${snr.toFixed(1)} dB`);

  const err = async (...args) => { try { await call("vocode", ...args); return ""; } catch (e) { return e.message; } };
  let m = await err([], 0, 0);
  check("empty codes are a clear error", /N ≥ 1/.test(m), m);
  m = await err([64, 0, 0, 0, 0, 0, 0, 0], 1, 0);
  check("the audio EOS code is a clear error", /audio EOS/.test(m), m);
  m = await err([1, 2, 3], 1, 0);
  check("a wrong codes length is a clear error", /8 = 8 expected/.test(m), m);

  // Chunked streaming, frame by frame: C = 1, L = 3 → chunks after frames 4, 5, 6 of 1920
  // samples (mel frames below 4(n − 3)), the rest at the end; (4·6 − 1)·480 in all.
  const C = 1, L = 3, TOTAL = (4 * FRAMES - 1) * 480;
  const WANT = [[4, 1920], [5, 1920], [6, 1920], ["end", TOTAL - 3 * 1920]];
  const runChunked = async () => {
    await call("vocodeBegin", SEED, C, L);
    const chunks = [], pcm = [];
    for (let f = 0; f < FRAMES; f++) {
      const o = await call("vocodePush", CODES.slice(8 * f, 8 * f + 8), 1);
      if (o.samples > 0) { chunks.push([f + 1, o.samples]); pcm.push(...o.pcm); }
    }
    const e = await call("vocodeEnd");
    chunks.push(["end", e.samples]); pcm.push(...e.pcm);
    return { chunks, pcm };
  };
  const ch = await runChunked();
  check("chunked stream: chunks arrive after frames 4, 5, 6 (before the segment ends) with the scheduled sample counts",
    JSON.stringify(ch.chunks) === JSON.stringify(WANT), JSON.stringify(ch.chunks));
  check("chunked stream: the chunks add up to (4N−1)·480 samples, finite",
    ch.pcm.length === TOTAL && ch.pcm.every(Number.isFinite), `${ch.pcm.length}`);

  const wavC = resolve(outDir, "audio-out-native-chunked.wav");
  const report = execFileSync(bca, ["vocode", resolve(root, "www/models/tiny-instruct"), npy, "-o", wavC, "--float",
    "--seed", String(SEED), "--chunk-frames", String(C), "--lookahead", String(L)],
  { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] });
  const nativeSizes = report.split("\n").filter((l) => l.startsWith("chunk ")).map((l) => Number(l.split(": ").pop().split(" ")[0]));
  check("native bca vocode --chunk-frames reports the same chunk sizes",
    JSON.stringify(nativeSizes) === JSON.stringify(WANT.map((w) => w[1])), JSON.stringify(nativeSizes));
  const nativeC = wavF32(readFileSync(wavC));
  let sc = 0, nc = 0;
  for (let i = 0; i < nativeC.length; i++) { sc += nativeC[i] ** 2; nc += (nativeC[i] - ch.pcm[i]) ** 2; }
  const snrC = 10 * Math.log10(sc / Math.max(nc, 1e-30));
  check(`browser chunked stream matches native bca vocode --chunk-frames (SNR ≥ ${MIN_SNR_DB} dB)`,
    nativeC.length === ch.pcm.length && snrC >= MIN_SNR_DB, `${nativeC.length} samples, SNR ${snrC.toFixed(1)} dB`);

  // a second segment on the same stream: the inserted 240-sample cross-fade comes first
  const seg2 = [];
  let first2 = 0;
  for (let f = 0; f < FRAMES; f++) {
    const o = await call("vocodePush", CODES.slice(8 * f, 8 * f + 8), 1);
    if (o.samples > 0 && !first2) first2 = o.samples;
    seg2.push(...o.pcm);
  }
  const end2 = await call("vocodeEnd");
  seg2.push(...end2.pcm);
  check("second chunked segment: cross-fade + (4N−1)·480 samples, the fade in its first chunk",
    seg2.length === 240 + TOTAL && first2 === 240 + 1920 && end2.segments === 2, `${seg2.length}, first ${first2}`);

  // per-segment mode on the stream (chunkFrames 0): nothing until the end, then `vocode`'s PCM
  await call("vocodeBegin", SEED, 0);
  let early = 0;
  for (let f = 0; f < FRAMES; f++) early += (await call("vocodePush", CODES.slice(8 * f, 8 * f + 8), 1)).samples;
  const whole = await call("vocodeEnd");
  let same = whole.pcm.length === r.pcm.length && early === 0;
  for (let i = 0; same && i < r.pcm.length; i++) same = whole.pcm[i] === r.pcm[i];
  check("per-segment stream (chunkFrames 0) plays at the end and equals vocode exactly", same,
    `${early} early samples, ${whole.pcm.length} at the end`);

  const serr = async (m, ...args) => { try { await call(m, ...args); return ""; } catch (e) { return e.message; } };
  m = await serr("vocodeEnd");
  check("ending an empty segment is a clear error", /segment is empty/.test(m), m);
  await call("vocodeBegin", 0, 1, 3);
  m = await serr("vocodePush", [64, 0, 0, 0, 0, 0, 0, 0], 1);
  check("an audio EOS code pushed to the stream is a clear error", /audio EOS/.test(m), m);
}
