// topk — the k largest logits (k ≤ 64) and their indices, sorted descending, in two passes:
// topk_partial takes the local top-k of each SLICE-element slice, topk_merge merges the G·k
// candidates in one workgroup. With one slice (G = 1) topk_partial writes the result itself
// and topk_merge is not dispatched. Ties go to the lower index (a total order, so the result is
// unique and deterministic).
//
// @binding(0) x:    (N,) act       logits
// @binding(1) pv:   (G, k) f32     per-slice top-k values (sentinel −inf past the slice's end)
// @binding(2) pi:   (G, k) u32     per-slice top-k indices (sentinel 0xffffffff)
// @binding(3) outv: (k,) f32       result values, descending
// @binding(4) outi: (k,) u32       result indices
// @binding(5) P:    uniform Params
// @binding(6) dout: (…,) u32       `_draw` entries: dout[P.slot] = the id drawn from the result
//
// Logits in row parts (an LM head too large for one binding): topk_partial runs once per part,
// its indices offset by the part's first row (P.first) and its slices' candidates written from
// slice P.base on, so one topk_merge over all the parts' slices (P.groups in all) finishes.
//
// Order: a beats b when a.value > b.value, or the values are equal and a.index < b.index.
// Round r selects the best element below the round r−1 winner. Each thread keeps its best
// candidate below the current threshold; only the thread that owned the winner rescans its
// elements, because every other thread's candidate is already below the new threshold.
// NaN logits are not supported (never selected).

struct Params {
    n: u32,        // logits
    k: u32,        // 1..=64
    groups: u32,   // G: slices (stage-1 workgroups)
    groups_x: u32, // stage-1 workgroups along x (2-D grid)
    // `_draw` entries: sample_draw.wgsl's parameters
    slot: u32,
    temperature: f32,
    top_p: f32,
    u: f32,
    first: u32,    // topk_partial: the part's first row (added to its indices)
    base: u32,     // topk_partial: the part's first slice in pv/pi
    direct: u32,   // 1: one slice in all, so topk_partial writes the result
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> x: array<act>;
@group(0) @binding(1) var<storage, read_write> pv: array<f32>;
@group(0) @binding(2) var<storage, read_write> pi: array<u32>;
@group(0) @binding(3) var<storage, read_write> outv: array<f32>;
@group(0) @binding(4) var<storage, read_write> outi: array<u32>;
@group(0) @binding(5) var<uniform> P: Params;

override WG: u32 = 256;
override ITEMS: u32 = 8; // elements per thread in a slice: SLICE = WG·ITEMS
const MAX_WG: u32 = 256u;
const NONE: u32 = 0xffffffffu;

var<workgroup> rv: array<f32, MAX_WG>;
var<workgroup> ri: array<u32, MAX_WG>;

struct Cand {
    v: f32,
    i: u32,
}

fn neg_inf() -> f32 {
    // through a `var`: a constant bitcast to −inf is a const-expression, which Tint rejects
    var bits = 0xff800000u;
    return bitcast<f32>(bits);
}

fn beats(v: f32, i: u32, bv: f32, bi: u32) -> bool {
    return v > bv || (v == bv && i < bi);
}

// Element j of this pass's input: a logit (stage 1) or a stage-1 candidate (stage 2).
fn load(merge: bool, j: u32) -> Cand {
    if (merge) {
        return Cand(pv[j], pi[j]);
    }
    return Cand(f32(x[j]), j + P.first);
}

// Best of this thread's elements lo + lid + m·WG (< hi) that lies strictly below t
// (no threshold when `open`).
fn scan(merge: bool, lo: u32, hi: u32, lid: u32, open: bool, t: Cand) -> Cand {
    var best = Cand(neg_inf(), NONE);
    for (var j = lo + lid; j < hi; j += WG) {
        let c = load(merge, j);
        if ((open || beats(t.v, t.i, c.v, c.i)) && beats(c.v, c.i, best.v, best.i)) {
            best = c;
        }
    }
    return best;
}

// k rounds of a workgroup argmax; round r's winner is written to slot `dst + r`.
fn select_k(merge: bool, lo: u32, hi: u32, lid: u32, dst: u32) {
    var cand = scan(merge, lo, hi, lid, true, Cand(0.0, 0u));
    for (var r = 0u; r < P.k; r++) {
        rv[lid] = cand.v;
        ri[lid] = cand.i;
        workgroupBarrier();
        for (var s = WG / 2u; s > 0u; s >>= 1u) {
            if (lid < s && beats(rv[lid + s], ri[lid + s], rv[lid], ri[lid])) {
                rv[lid] = rv[lid + s];
                ri[lid] = ri[lid + s];
            }
            workgroupBarrier();
        }
        let win = Cand(rv[0], ri[0]);
        workgroupBarrier(); // everyone has read slot 0 before the next round overwrites it
        if (lid == 0u) {
            // one slice: stage 1 is the result (the host skips topk_merge)
            if (merge || P.direct != 0u) {
                outv[dst + r] = win.v;
                outi[dst + r] = win.i;
            } else {
                pv[dst + r] = win.v;
                pi[dst + r] = win.i;
            }
        }
        if (win.i != NONE && cand.i == win.i) {
            cand = scan(merge, lo, hi, lid, false, win);
        }
    }
}

@compute @workgroup_size(WG)
fn topk_partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let g = wid.y * P.groups_x + wid.x;
    if (g >= P.groups) {
        return; // uniform per workgroup: the whole workgroup leaves together
    }
    let slice = WG * ITEMS;
    let lo = g * slice;
    let hi = min(lo + slice, P.n);
    select_k(false, lo, hi, lid, (P.base + g) * P.k);
}

@compute @workgroup_size(WG)
fn topk_merge(@builtin(local_invocation_index) lid: u32) {
    select_k(true, 0u, P.groups * P.k, lid, 0u);
}

// ---- `_draw`: the pass that finishes the top-k also draws from it --------------------------

@group(0) @binding(6) var<storage, read_write> dout: array<u32>;

fn dv(j: u32) -> f32 {
    return outv[j];
}

fn di(j: u32) -> u32 {
    return outi[j];
}

// #include draw

@compute @workgroup_size(WG)
fn topk_partial_draw(@builtin(local_invocation_index) lid: u32) {
    // one slice (the host dispatches this entry only then): the result is final here
    select_k(false, 0u, P.n, lid, 0u);
    if (lid == 0u) {
        // invocation 0 wrote every slot of the result itself
        dout[P.slot] = draw_candidates(P.k, P.temperature, P.top_p, P.u);
    }
}

@compute @workgroup_size(WG)
fn topk_merge_draw(@builtin(local_invocation_index) lid: u32) {
    select_k(true, 0u, P.groups * P.k, lid, 0u);
    if (lid == 0u) {
        dout[P.slot] = draw_candidates(P.k, P.temperature, P.top_p, P.u);
    }
}
