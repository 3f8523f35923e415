// repetition_penalty — HF RepetitionPenaltyLogitsProcessor, in place:
// for each DISTINCT id in `ids`: s = logits[id]; logits[id] = s < 0 ? s·p : s / p.
//
// @binding(0) logits: (V,) act            in place
// @binding(1) ids:    (n_ids,) u32        history, may hold duplicates; ids ≥ V are ignored
//                                         (ids of the whole vocabulary where the logits are
//                                         its row part from P.first: id − P.first, wrapping)
// @binding(2) mask:   (⌈V/32⌉,) atomic<u32> scratch bitmask ("already penalised")
// @binding(3) P:      uniform Params
//
// HF gathers all scores, then scatters the penalised ones, so a duplicate id is penalised
// once, not compounded. Here one thread per list entry claims its id with atomicOr on the
// bitmask: only the thread that flips the bit from 0 to 1 writes, so duplicates are race-free.
// Two dispatches: repetition_penalty_clear zeroes the mask words this list touches, then
// repetition_penalty applies. The mask therefore needs no initial state. Lists of up to
// ONE_MAX ids take one dispatch instead (repetition_penalty_one: one workgroup clears, then,
// after a storage barrier, applies).

struct Params {
    n_ids: u32,
    vocab: u32,
    penalty: f32,
    groups_x: u32, // workgroups along x (2-D grid)
    first: u32,    // the logits' first row in the vocabulary (a part of it)
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

// Entry e's id within these logits (≥ vocab when outside them: u32 wraps below P.first).
fn entry_id(e: u32) -> u32 {
    return ids[e] - P.first;
}

@group(0) @binding(0) var<storage, read_write> logits: array<act>;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read_write> mask: array<atomic<u32>>;
@group(0) @binding(3) var<uniform> P: Params;

override WG: u32 = 256;

fn list_entry(wid: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * P.groups_x + wid.x) * WG + lid;
}

@compute @workgroup_size(WG)
fn repetition_penalty_clear(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let e = list_entry(wid, lid);
    if (e >= P.n_ids) {
        return;
    }
    let id = entry_id(e);
    if (id < P.vocab) {
        atomicStore(&mask[id / 32u], 0u);
    }
}

// Entry e of the list: penalise its id unless another entry claimed it first.
fn apply(e: u32) {
    let id = entry_id(e);
    if (id >= P.vocab) {
        return;
    }
    let bit = 1u << (id % 32u);
    let old = atomicOr(&mask[id / 32u], bit);
    if ((old & bit) != 0u) {
        return; // a duplicate: another thread owns this id
    }
    let s = f32(logits[id]);
    logits[id] = act(select(s / P.penalty, s * P.penalty, s < 0.0));
}

@compute @workgroup_size(WG)
fn repetition_penalty_one(@builtin(local_invocation_index) lid: u32) {
    for (var e = lid; e < P.n_ids; e += WG) {
        let id = entry_id(e);
        if (id < P.vocab) {
            atomicStore(&mask[id / 32u], 0u);
        }
    }
    storageBarrier();
    for (var e = lid; e < P.n_ids; e += WG) {
        apply(e);
    }
}

@compute @workgroup_size(WG)
fn repetition_penalty(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let e = list_entry(wid, lid);
    if (e >= P.n_ids) {
        return;
    }
    apply(e);
}
