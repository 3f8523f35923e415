// Speech chat in the browser (issue 7's generation loop, issue 8's streaming out, the page's
// talk UI): the worker's chat (REQUEST.CHAT_*, www/chat.js) on tiny-instruct must emit the same
// events as the native `bca chat --f32` with the same seed and limits, for a typed turn and for
// a spoken one (PCM → encodePcm in wasm); its audio must arrive per segment with the vocoder's
// sample counts; a finished reply is rewritten in the cache with its speech re-encoded; a turn
// can be interrupted and the next one goes on; bad input fails clearly. Then the page itself:
// a typed message and a spoken one (the fake microphone plays a WAV), the reply streamed to
// the playback worklet, and a denied microphone.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { readWav16 } from "../wav.mjs";

const SEED = 7;
const LIMITS = { maxFrames: 5, maxRounds: 2, maxText: 5 };
const CLI_LIMITS = ["--max-frames", "5", "--max-rounds", "2", "--max-text", "5"];
const AUDIOGEN_START = 151700, AUDIOGEN_END = 151701, AUDIO_PAD = 151678; // tiny config's audio_pad_token_id

/** A progress message of CHAT_SAY → the event of `bca chat --events` it reports, or null. */
function asEvent(m) {
  switch (m.type) {
    case "text": return { event: "text", id: m.id, delta: m.delta };
    case "segment_start": return { event: "segment_start" };
    case "frame": return { event: "frame", codes: m.codes };
    case "segment_end": return { event: "segment_end", frames: m.frames };
    case "end_of_turn": return { event: "end_of_turn" };
    default: return null;
  }
}

/** Samples the stream plays for a turn's segments of n_i frames: (4n−1)·480 each, and the
 *  240-sample cross-fade before every segment but the first. */
const expectedSamples = (frames) => frames.filter((n) => n > 0)
  .reduce((a, n, i) => a + (4 * n - 1) * 480 + (i > 0 ? 240 : 0), 0);

export default async function ({ page, root, outDir, bca, check, call, loadModel }) {
  const start = Date.now();
  const lap = (what) => console.log(`     [40-chat ${((Date.now() - start) / 1000).toFixed(0)} s] ${what}`);
  const dir = resolve(root, "www/models/tiny-instruct");
  const env = { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR || "/tmp" };
  const req = (kind, content) => page.evaluate(([k, c]) => window.__bca.client.call(k, c), [kind, content]);
  const fails = async (kind, content) => { try { await req(kind, content); return ""; } catch (e) { return e.message.split("\n")[0]; } };
  // a turn through the worker; `interruptAfter`: interrupt at that many frame messages
  const say = (content, interruptAfter = 0) => page.evaluate(async ([c, k]) => {
    const msgs = [];
    let frames = 0;
    const client = window.__bca.client;
    const pcm = c.pcm ? Float32Array.from(c.pcm) : undefined;
    const r = await client.call("chat-say", { ...c, pcm }, {
      onProgress: (m) => {
        msgs.push(m.type === "audio" ? { type: "audio", n: m.pcm.length, segment: m.segment, finite: m.pcm.every(Number.isFinite) } : m);
        if (m.type === "frame" && ++frames === k) client.call("chat-interrupt");
      },
    });
    return { r, msgs };
  }, [content, interruptAfter]);
  const native = (args, name) => {
    const ev = resolve(outDir, name);
    execFileSync(bca, ["chat", dir, ...args, "--seed", String(SEED), ...CLI_LIMITS, "--f32", "--events", ev],
      { env, stdio: ["ignore", "ignore", "inherit"] });
    return readFileSync(ev, "utf8").trim().split("\n").map((l) => JSON.parse(l));
  };
  const sameEvents = (name, t, nat) => {
    const got = t.msgs.map(asEvent).filter(Boolean);
    const a = JSON.stringify(got), b = JSON.stringify(nat);
    let at = 0;
    while (at < got.length && JSON.stringify(got[at]) === JSON.stringify(nat[at])) at++;
    const frames = nat.filter((e) => e.event === "frame").length;
    check(`${name}: browser events = native bca chat --events (${nat.length} events, ${frames} frames)`,
      a === b && nat.length > 0, a === b ? "" : `first difference at event ${at}: ${JSON.stringify(got[at])} vs ${JSON.stringify(nat[at])}`);
  };
  const audioAdds = (name, t) => {
    const segFrames = t.msgs.filter((m) => m.type === "segment_end").map((m) => m.frames);
    const got = t.msgs.filter((m) => m.type === "audio").reduce((a, m) => a + m.n, 0);
    const want = expectedSamples(segFrames);
    const finite = t.msgs.filter((m) => m.type === "audio").every((m) => m.finite);
    check(`${name}: one PCM piece per segment, (4N−1)·480 samples + cross-fades (${segFrames.join(", ")} frames)`,
      got === want && got === t.r.samples && finite &&
      t.msgs.filter((m) => m.type === "audio").length === segFrames.filter((n) => n > 0).length,
      `${got} samples played, ${want} expected, finite ${finite}`);
  };

  await loadModel("models/tiny-instruct/");
  await req("chat-begin", { options: { seed: SEED, ...LIMITS } });

  lap("start");
  // 1. a typed turn
  const t1 = await say({ text: "你好，请介绍一下你自己。" });
  sameEvents("typed turn", t1, native(["--text", "你好，请介绍一下你自己。"], "chat-native-typed.jsonl"));
  audioAdds("typed turn", t1);

  lap("typed turn + native");
  // the reply is rewritten in the background: its text, and each segment's speech re-encoded
  const st = await req("chat-state", { ids: true });
  const reply = st.ids.slice(st.turnStart);
  const starts = reply.filter((i) => i === AUDIOGEN_START).length;
  const ends = reply.filter((i) => i === AUDIOGEN_END).length;
  const pads = reply.filter((i) => i === AUDIO_PAD).length;
  check("finished reply rewritten: one <audiogen_start/end> pair per segment, a pad per re-encoded frame",
    !st.warning && st.rewrite && starts === t1.r.segments && ends === starts && pads === st.rewrite.frames &&
    st.fed === st.ids.length && !st.busy && (t1.r.segments === 0 || pads > 0),
    `${JSON.stringify(st.rewrite)}, ${starts}/${ends} markers, ${pads} pads, warning ${st.warning}`);

  const wav = readWav16(readFileSync(resolve(root, "tests/goldens/audio_in/wav/en_48k_s16.wav")));
  // (a spoken second turn after a rewritten reply: the page's microphone turn below)
  // 2b. chunked playback (chunkFrames 1, lookahead 3), one segment: its audio starts before
  // the segment ends and adds up to the same (4N−1)·480 samples
  await req("chat-begin", { options: { seed: SEED, ...LIMITS, maxRounds: 1 } });
  const tc = await say({ text: "你好，请介绍一下你自己。", chunkFrames: 1 });
  const firstAudio = tc.msgs.findIndex((m) => m.type === "audio");
  const firstEnd = tc.msgs.findIndex((m) => m.type === "segment_end");
  const segC = tc.msgs.filter((m) => m.type === "segment_end").map((m) => m.frames);
  check("chunked turn: audio before the segment ends, (4N−1)·480 samples in all",
    firstAudio >= 0 && firstAudio < firstEnd && segC[0] >= 4 && tc.r.samples === expectedSamples(segC) &&
    tc.msgs.filter((m) => m.type === "audio").length > 1,
    `first audio at message ${firstAudio}, segment end at ${firstEnd}, ${segC} frames, ${tc.r.samples} samples`);

  lap("chunked turn");
  // 3. the same speech as the first turn of a new conversation = native bca chat --audio
  await req("chat-begin", { options: { seed: SEED, ...LIMITS } });
  const t3 = await say({ pcm: wav.samples, sampleRate: wav.rate });
  const user = t3.msgs.find((m) => m.type === "user");
  const enc = await call("encodePcm", wav.samples, wav.rate);
  check("spoken turn: the speech is encoded in the worker (the frames of encodePcm)",
    user && user.frames === enc.frames && enc.frames > 0 && !user.silent, `${JSON.stringify(user)} vs ${enc.frames}`);
  sameEvents("spoken turn", t3, native(["--audio", resolve(root, "tests/goldens/audio_in/wav/en_48k_s16.wav")], "chat-native-spoken.jsonl"));
  audioAdds("spoken turn", t3);

  lap("spoken turn + native");
  // 4. barge-in: interrupted after the 2nd frame, the next turn goes on after what was fed
  await req("chat-begin", { options: { seed: SEED + 1, maxFrames: 40, maxRounds: 3, maxText: 3, temperature: 1.5 } });
  const before = (await req("chat-state", {})).fed;
  const t4 = await say({ text: "讲个故事" }, 2);
  const s4 = await req("chat-state", { ids: true });
  const frames4 = t4.msgs.filter((m) => m.type === "frame").length;
  // the same turn left alone is long (deterministic: same seed), so the interrupt, which
  // reaches the worker a few steps after the page sends it, always lands inside it
  const ev4 = resolve(outDir, "chat-native-long.jsonl");
  execFileSync(bca, ["chat", dir, "--text", "讲个故事", "--seed", String(SEED + 1), "--max-frames", "40",
    "--max-rounds", "3", "--max-text", "3", "--temperature", "1.5", "--f32", "--events", ev4],
  { env, stdio: ["ignore", "ignore", "inherit"] });
  const whole4 = readFileSync(ev4, "utf8").trim().split("\n").filter((l) => l.includes('"frame"')).length;
  check("interrupted turn stops between steps, keeps what was fed",
    whole4 >= 30 && t4.r.interrupted && !s4.busy && frames4 >= 2 && frames4 < whole4 && s4.fed > before &&
    s4.fed === s4.ids.length && !t4.msgs.some((m) => m.type === "end_of_turn"),
    `${frames4} of ${whole4} frames, fed ${before} → ${s4.fed}, ${JSON.stringify(t4.r)}`);
  // text only (maxText 3 caps it): no long segments to vocode on the CPU
  const t5 = await say({ text: "继续", textOnly: true });
  const s5 = await req("chat-state", {});
  check("the turn after a barge-in runs to its end", !t5.r.interrupted && s5.fed > s4.fed && t5.msgs.some((m) => m.type === "end_of_turn"),
    `fed ${s4.fed} → ${s5.fed}`);

  lap("barge-in + next turn");
  // 5. errors a user can act on (nothing is fed by a failed turn)
  await req("chat-begin", { options: { context: 256 } });
  const fed5 = (await req("chat-state", {})).fed;
  let m = await fails("chat-say", {});
  check("an empty turn is a clear error", /nothing to answer/.test(m), m);
  m = await fails("chat-say", { pcm: new Array(16000).fill(0), sampleRate: 16000 });
  check("a silent recording is a clear error", /silent/.test(m), m);
  m = await fails("chat-say", { text: Array.from({ length: 300 }, (_, i) => String(i)).join(" ") });
  check("a turn past the context length is a clear error", /context/.test(m) && /positions/.test(m), m);
  check("failed turns feed nothing", (await req("chat-state", {})).fed === fed5);
  m = await fails("chat-begin", { options: { maxFrames: 9999 } });
  check("a bad option is a clear error", /maxFrames 9999/.test(m), m);
  m = await fails("chat-begin", { options: { sead: 1 } });
  check("an unknown option is a clear error", /unknown option `sead`/.test(m), m);
  m = await fails("chat-begin", { options: { context: 5 } });
  const kept = await req("chat-state", {});
  check("a bad context is a clear error, and the conversation is kept", /context 5: 16 to 8192/.test(m) &&
    kept.context === 256 && kept.fed === fed5, `${m}; ${JSON.stringify(kept)}`);
  await loadModel("models/tiny-base/");
  m = await fails("chat-begin", {});
  check("a Base model cannot chat (clear error)", /Base model/.test(m), m);

  lap("errors");
  // 5b. a model whose matrices are stored in row parts (`bca convert --max-binding 12288`: each
  // layer's W_pack, gate, up and down in two ragged parts, the tables in 1584) gives the
  // one-part model's logits bit for bit: the parts are joined on the GPU at load; and the
  // joined matrices, read back part by part, equal `bca check --digests`
  const J = "tiny-instruct-f16-12k";
  const jdir = resolve(root, `www/models/${J}`);
  const ids = [151644, 872, 198, 108386, 11, 151645, 198];
  const logitsOf = async (model) => {
    await loadModel(model);
    const r = await call("llmLogits", ids, 4096);
    return { first: Array.from(r.first), argmax: Array.from(r.argmax) };
  };
  const oneL = await logitsOf("models/tiny-instruct/");
  lap("one-part logits");
  const joinedL = await logitsOf(`models/${J}/`);
  lap("joined logits");
  const jm = JSON.parse(readFileSync(resolve(jdir, "manifest.json"), "utf8"));
  const joinedNames = jm.tensors
    .filter((t) => t.parts.length > 1 && /^model\.layers\.\d+\.(self_attn\.W_pack|mlp\.down_proj)\.weight$/.test(t.name))
    .map((t) => t.name);
  const differ = oneL.first.filter((v, i) => !Object.is(v, joinedL.first[i])).length;
  check(`joined parts: ${J}'s logits equal the one-part model's bit for bit (${ids.length} positions × 4096)`,
    differ === 0 && oneL.first.length === ids.length * 4096 && JSON.stringify(oneL.argmax) === JSON.stringify(joinedL.argmax)
    && oneL.first.some((v) => Math.abs(v) > 1e-3) && joinedNames.length >= 4,
    `${differ} differ; argmax ${oneL.argmax} vs ${joinedL.argmax}; ${joinedNames.length} split`);
  const dj = resolve(outDir, `digests-${J}.json`);
  execFileSync(bca, ["check", jdir, "--digests", dj], { stdio: "ignore" });
  const wantD = JSON.parse(readFileSync(dj, "utf8"));
  const gotD = {};
  for (const n of joinedNames) gotD[n] = await call("tensorDigest", n);
  const badD = joinedNames.filter((n) => gotD[n] !== wantD[n]);
  check(`joined parts: ${joinedNames.length} joined matrices read back part by part equal bca check --digests`,
    badD.length === 0, badD.length ? `${badD.length} differ, e.g. ${badD[0]}` : "");
  lap("joined parts");
  // 6. the page: load the Instruct model through the form, shorter turns, a typed message
  await page.evaluate((o) => { window.__bcaTalk.options = o; window.__bcaTalk.handsFree = false; }, { seed: SEED, ...LIMITS });
  await page.fill("#model-url", "models/tiny-instruct/");
  await page.click("#model-load");
  await page.waitForFunction(() => window.__bcaTalk.ready, null, { timeout: 120000 });
  await page.check("#text-only");
  await page.fill("#say-text", "你好，请介绍一下你自己。");
  await page.click("#say-send");
  await page.waitForFunction(() => window.__bcaTalk.stats.turns >= 1 || window.__bcaTalk.stats.errors.length, null, { timeout: 180000 });
  let s = await page.evaluate(() => JSON.parse(JSON.stringify(window.__bcaTalk.stats)));
  const natOnly = execFileSync(bca, ["chat", dir, "--text", "你好，请介绍一下你自己。", "--text-only", "--seed", String(SEED),
    ...CLI_LIMITS, "--f32"], { env, stdio: ["ignore", "pipe", "ignore"] }).toString().replace(/\n$/, "");
  const shown = await page.$$eval("#transcript li.assistant .text", (l) => l.map((e) => e.textContent));
  check("page: a typed message (text-only answer) gets the streamed reply of native bca chat --text-only",
    s.turns === 1 && shown[0] === natOnly && natOnly.length > 0 && s.errors.length === 0 && s.samplesQueued === 0,
    `${JSON.stringify(shown)} vs ${JSON.stringify(natOnly)}; ${s.errors}`);

  lap("page typed turn");
  // the microphone (Chromium's fake device plays a WAV of speech then silence, looped):
  // one utterance, cut at the pause, encoded and answered in speech, played
  await page.uncheck("#text-only");
  await page.click("#mic");
  await page.waitForFunction(() => window.__bcaTalk.stats.turns >= 2 || window.__bcaTalk.stats.errors.length, null, { timeout: 180000 });
  s = await page.evaluate(() => JSON.parse(JSON.stringify(window.__bcaTalk.stats)));
  const audioNote = await page.$$eval("#transcript li.user", (l) => l.map((e) => e.dataset.audio || ""));
  check("page: the microphone's utterance is cut at the pause and answered",
    s.utterances === 1 && s.turns === 2 && s.errors.length === 0 && s.micBlocks > 0 && !s.lastTurn.error &&
    /🎤 \d+\.\d s → \d+ frames/.test(audioNote[1] || ""),
    `${s.utterances} utterances, ${s.micBlocks} mic blocks at ${s.micRate} Hz, ${JSON.stringify(audioNote)}, ${s.errors}`);
  const listening = await page.evaluate(() => window.__bcaTalk.listening);
  check("page: one utterance per click when not hands-free (the mic is closed)", listening === false);
  check("page: the reply's speech went to the playback worklet",
    s.lastTurn.samples > 0 && s.samplesQueued === s.lastTurn.samples && s.lastTurn.segments > 0,
    `${s.samplesQueued} queued, ${s.lastTurn.samples} made in ${s.lastTurn.segments} segments`);
  await page.waitForFunction(() => window.__bcaTalk.stats.played > 0, null, { timeout: 20000 }).catch(() => {});
  s = await page.evaluate(() => JSON.parse(JSON.stringify(window.__bcaTalk.stats)));
  check("page: the playback worklet plays it (24 kHz AudioContext)", s.played > 0, `${s.played} samples played`);

  lap("page mic turn");
  // a denied microphone: a clear message, the page keeps working
  await page.evaluate(() => {
    navigator.mediaDevices.getUserMedia = () => Promise.reject(new DOMException("Permission denied", "NotAllowedError"));
  });
  await page.click("#mic");
  await page.waitForFunction(() => /denied/.test(document.getElementById("talk-status").textContent), null, { timeout: 10000 }).catch(() => {});
  const status = await page.textContent("#talk-status");
  const enabled = await page.evaluate(() => !document.getElementById("say-send").disabled);
  check("page: a denied microphone says what to do, typing still works", /denied/.test(status) && /type/.test(status) && enabled, status);
  await page.screenshot({ path: resolve(outDir, "chat.png"), fullPage: true });
}
