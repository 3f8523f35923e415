// The embedded tiny model loads into the engine (the simple in-memory path).
export default async function ({ check, loadModel }) {
  for (const v of ["tiny-instruct", "tiny-base"]) {
    const r = await loadModel(`models/${v}/`);
    check(`${v} model loads`, r.tensors > 100 && r.quant === "f16", JSON.stringify(r));
  }
  let msg = "";
  try { await loadModel("models/nope/"); } catch (e) { msg = e.message; }
  check("a missing model folder is a clear error", /manifest\.json: HTTP 404/.test(msg), msg);
}
