// sample_draw — the last stage of sampling on the GPU, over the top-k of `topk` (sorted
// descending, ties to the lower index): temperature, top-p, then the inverse-CDF draw with a
// uniform `u` drawn on the CPU by the session's seeded RNG. Writes the id to out[P.slot], so a
// following kernel (the audio head's code embedding) can read it without a CPU round trip.
// Same rules as `sample_candidates` (src/model/llm/sample.rs), in f32 (as transformers' torch
// processors compute them) where the CPU path sums in f64. The two differ only when `u` or
// 1 − top_p lands within f32 rounding of a cumulative probability: e.g. two exactly tied
// candidates at top-p 0.5, where f32 (like torch) removes one and f64 keeps both. (A
// compensated two-sum would not help: Mesa's NIR folds it away, SPIR-V marks no op exact.)
//
// @binding(0) vals: (k,) f32   top-k values (after the repetition penalty)
// @binding(1) idx:  (k,) u32   their ids
// @binding(2) out:  (…,) u32   out[P.slot] = the drawn id
// @binding(3) P:    uniform Params

struct Params {
    k: u32,
    slot: u32,
    temperature: f32, // 0 = greedy
    top_p: f32,       // 1 = off
    u: f32,           // uniform in [0, 1)
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<storage, read> vals: array<f32>;
@group(0) @binding(1) var<storage, read> idx: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;
@group(0) @binding(3) var<uniform> P: Params;

fn dv(j: u32) -> f32 {
    return vals[j];
}

fn di(j: u32) -> u32 {
    return idx[j];
}

// #include draw

@compute @workgroup_size(1)
fn sample_draw() {
    out[P.slot] = draw_candidates(P.k, P.temperature, P.top_p, P.u);
}
