// A q4/q8 product whose x is an RMSNorm's input left unnormalised (the norm deferred): the
// product before it wrote x·g as int8 x (gemv_i8_xqo.wgsl's `_norm` entries) and Σ x² per
// 32-value block, so RMSNorm(x)·g = inv_rms · (x·g) and the product is inv_rms times the
// product of the int8 x·g, with inv_rms = 1 / √(Σ x² / K + ε) from the block sums. Each
// workgroup sums them itself: its invocations load the blocks' sums before the product's loop
// (their latency hidden behind it) and add them after it, one subgroup sum each and then the
// subgroups' sums in order.
//
// @binding(10) aux: (nbq,) f32  Σ x² per block of x (the `_norm` producers: the next norm's g)

@group(0) @binding(10) var<storage, read> aux: array<f32>;

const MAX_SUBGROUPS: u32 = 128u;
var<workgroup> wss: array<f32, MAX_SUBGROUPS>;

// This invocation's share of Σ x² (blocks lid, lid + WG, …). The first block's sum is the
// load itself, not 0 + it: an add at the top would make the lane wait on the load before it
// issues its weights' (the products' x has at most WG blocks at the decode shapes, so that is
// the only one). The same value: the sums are ≥ 0, never −0.
fn defer_load(lid: u32) -> f32 {
    var s = 0.0;
    if (lid < pnb()) {
        s = aux[lid];
    }
    for (var i = lid + WG; i < pnb(); i += WG) {
        s += aux[i];
    }
    return s;
}

// 1/√(Σ/n + ε) from every invocation's share of Σ (uniform control flow: a barrier).
fn defer_inv_rms(part: f32, lid: u32, sid: u32, sgs: u32, n: f32) -> f32 {
    let t = subgroupAdd(part);
    if (sid == 0u) {
        wss[lid / sgs] = t;
    }
    workgroupBarrier();
    return defer_inv_rms_staged(sgs, n);
}

// 1/√(Σ/n + ε) from the subgroups' shares of Σ staged in `wss` (after a barrier), in order.
fn defer_inv_rms_staged(sgs: u32, n: f32) -> f32 {
    var total = 0.0;
    for (var j = 0u; j < WG / sgs; j++) {
        total += wss[j];
    }
    return inverseSqrt(total / n + peps());
}
