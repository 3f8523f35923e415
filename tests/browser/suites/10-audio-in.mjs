// Audio in (spec §2–§4) in the browser: a committed 48 kHz WAV's samples → encodePcm on the
// tiny-base model (resampled, mel, encoder, bridge, RVQ in wasm + WebGPU) must give the same
// codes as the native `bca encode --f32` on the same converted folder; mel and errors too.
import { readFileSync, mkdtempSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { readWav16 } from "../wav.mjs";

// .npy (int32 or float32, C order) → { shape, data }
function readNpy(bytes) {
  const hlen = bytes[8] | (bytes[9] << 8);
  const header = new TextDecoder().decode(bytes.subarray(10, 10 + hlen));
  const shape = header.match(/'shape': \(([^)]*)\)/)[1].split(",").filter((s) => s.trim()).map(Number);
  const body = Uint8Array.prototype.slice.call(bytes, 10 + hlen); // a copy (Buffer.slice is a view into a pool)
  const data = header.includes("<i4") ? new Int32Array(body.buffer) : new Float32Array(body.buffer);
  return { shape, data: Array.from(data) };
}

export default async function ({ root, bca, check, call, loadModel }) {
  await loadModel("models/tiny-base/");
  const wavPath = join(root, "tests/goldens/audio_in/wav/en_48k_s16.wav");
  const { rate, samples } = readWav16(readFileSync(wavPath));
  const r = await call("encodePcm", samples, rate);
  const dir = mkdtempSync(join(tmpdir(), "bca-audio-in-"));
  const out = join(dir, "codes.npy");
  execFileSync(bca, ["encode", join(root, "www/models/tiny-base"), wavPath, "-o", out, "--f32"], { stdio: "pipe" });
  const native = readNpy(readFileSync(out));
  check("encodePcm gives (frames, 8) codes", r.frames === native.shape[0] && r.codes.length === r.frames * 8,
    `browser ${r.frames} frames, native ${native.shape}`);
  let diff = 0;
  for (let i = 0; i < native.data.length; i++) if (r.codes[i] !== native.data[i]) diff++;
  check("browser codes equal native bca encode --f32", diff === 0, `${diff}/${native.data.length} codes differ`);
  check("speech is not flagged silent", r.silent === false);

  // log-mel in wasm vs native `bca mel`
  const m = await call("mel", samples, rate, 128);
  const melOut = join(dir, "mel.npy");
  execFileSync(bca, ["mel", wavPath, "-o", melOut], { stdio: "pipe" });
  const nm = readNpy(readFileSync(melOut));
  let maxErr = 0;
  for (let i = 0; i < nm.data.length; i++) maxErr = Math.max(maxErr, Math.abs(nm.data[i] - m.data[i]));
  check("browser mel equals native bca mel", m.nMels === 128 && m.frames === nm.shape[1] && maxErr <= 1e-6,
    `frames ${m.frames} vs ${nm.shape[1]}, max |err| ${maxErr}`);

  // errors a user can act on
  let msg = "";
  try { await call("encodePcm", [], 16000); } catch (e) { msg = e.message; }
  check("empty audio is a clear error", /audio is empty/.test(msg), msg);
  msg = "";
  try { await call("encodePcm", samples.slice(0, 2000), 48000); } catch (e) { msg = e.message; }
  check("too-short audio is a clear error", /too short/.test(msg), msg);
  msg = "";
  try { await call("encodePcm", samples, 1000); } catch (e) { msg = e.message; }
  check("an unsupported rate is a clear error", /1000 Hz is not supported/.test(msg), msg);
}
