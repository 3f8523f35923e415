// The audio LLM in the browser (f32 path on SwiftShader) against the native CLI on the same
// converted model: tokenizer ids, logits, and the greedy continuation of a prompt.
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";

// float32 .npy (format 1.0) → Float32Array
function readNpy(path) {
  const b = readFileSync(path);
  const hlen = b.readUInt16LE(8);
  return new Float32Array(b.buffer.slice(b.byteOffset + 10 + hlen, b.byteOffset + b.length));
}

export default async function ({ page, root, outDir, bca, check, call, loadModel }) {
  const dir = resolve(root, "www/models/tiny-instruct");
  await loadModel("models/tiny-instruct/");
  const tokJson = await page.evaluate(() => fetch("models/tiny-instruct/tokenizer.json").then((r) => r.text()));
  const vocab = await call("llmLoadTokenizer", tokJson);
  check("tokenizer loads", vocab === 151702, String(vocab));

  const text = "<C_Q>你好，世界 😀 hello<C_A>";
  const ids = Array.from(await call("tokenize", text));
  const txt = resolve(outDir, "llm-prompt.txt");
  writeFileSync(txt, text);
  const native = execFileSync(bca, ["tokenize", dir, "--file", txt]).toString().trim().split(/\s+/).map(Number);
  check("tokenize = native bca tokenize", JSON.stringify(ids) === JSON.stringify(native), `${ids} vs ${native}`);
  const back = await call("detokenize", ids);
  check("detokenize round-trips", back === text, back);

  const lg = await call("llmLogits", ids.slice(0, 6), 8);
  check("logits: vocab and shape", lg.vocab === 152064 && lg.first.length === 48, `${lg.vocab} ${lg.first.length}`);
  const npy = resolve(outDir, "llm-logits.npy");
  execFileSync(bca, ["logits", dir, "--tokens", ids.slice(0, 6).join(","), "-o", npy, "--f32"],
    { env: { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR || "/tmp" }, stdio: "ignore" });
  const nat = readNpy(npy);
  let err = 0;
  for (let t = 0; t < 6; t++) for (let i = 0; i < 8; i++) err = Math.max(err, Math.abs(nat[t * 152064 + i] - lg.first[t * 8 + i]));
  check("logits = native bca logits (f32, 1e-4)", err < 1e-4, `max error ${err}`);

  const prompt = "<B_SYS>请用【邻家女声】这个声音回答问题。<C_Q>你好<C_A>";
  const web = await call("llmGenerate", prompt, 16, 0, 0);
  const out = execFileSync(bca, ["generate", dir, "--text", prompt, "--max-new", "16", "--temperature", "0", "--seed", "0", "--f32"],
    { env: { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR || "/tmp" }, stdio: ["ignore", "pipe", "ignore"] })
    .toString().trim().split(/\s+/).map(Number);
  const got = Array.from(web.ids);
  check("greedy ids = native bca generate (f32)", got.length > 0 && JSON.stringify(got) === JSON.stringify(out), `${got} vs ${out}`);
}
