// gemv_i8 — gemv.wgsl for q4/q8 weights with int8 input vectors (from gemv_xq.wgsl): each 32-wide
// block is 8 packed integer dot products (`dot4I8Packed`, one DP4A instruction where the GPU
// has it) instead of 32 dequantise-and-FMA steps, and x costs 8 words per block instead of 32
// f16 → f32 conversions. Same weight layouts, rows-per-group scheme and epilogue as gemv.wgsl.
//
// @binding(0) w:      weight blocks as vec4<u32> (q8: 2 per block; q4: 1 per block)
// @binding(1) s:      scales (q8: f16 pairs per u32; q4: (scale, min) f16 per u32)
// @binding(2) xq:     (NB, nbq, 2) vec4<u32>  int8 x, 32 per block
// @binding(3) bias:   (M,) act
// @binding(4) res:    (NB, M_out) act
// @binding(5) y:      (NB, M_out) act
// @binding(6) P:      uniform Params (xs = blocks per vector)
// @binding(7) xd:     (NB, nbq) vec2<f32>     (x scale, Σ x) per block
//
// q4: Σ_k (s·q_k + m)·x_k ≈ s·d·Σ q_k·xq_k + m·Σ x_k (the Σ x term is exact); q8: s·d·Σ q_k·xq_k.
// Nibbles (0..15) are valid signed bytes, so both formats use dot4I8Packed.

// #include gemv_i8_core

// #include act_fns

// #include gemv_tail

@compute @workgroup_size(WG)
fn gemv_q8_i8(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row0 = row0_of(wid, lid);
    var acc = vec4<f32>(0.0);
    if (row0 < pm()) {
        acc = group_partial_q8(row0, lid % TPR);
    }
    reduce_and_finish(row0, lid % TPR, lid, acc);
}

@compute @workgroup_size(WG)
fn gemv_q4_i8(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row0 = row0_of(wid, lid);
    var acc = vec4<f32>(0.0);
    if (row0 < pm()) {
        acc = group_partial_q4(row0, lid % TPR);
    }
    reduce_and_finish(row0, lid % TPR, lid, acc);
}

// #if subgroups
@compute @workgroup_size(WG)
fn gemv_q8_i8_sg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                 @builtin(subgroup_invocation_id) sid: u32) {
    let row0 = row0_of(wid, lid);
    var acc = vec4<f32>(0.0);
    if (row0 < pm()) {
        acc = group_partial_q8(row0, sid);
    }
    let sum = subgroupAdd(acc);
    if (sid == 0u) {
        finish(row0, sum);
    }
}

@compute @workgroup_size(WG)
fn gemv_q4_i8_sg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                 @builtin(subgroup_invocation_id) sid: u32) {
    let row0 = row0_of(wid, lid);
    var acc = vec4<f32>(0.0);
    if (row0 < pm()) {
        acc = group_partial_q4(row0, sid);
    }
    let sum = subgroupAdd(acc);
    if (sid == 0u) {
        finish(row0, sum);
    }
}
// #endif

// #if subgroups
// Lane groups of several subgroups (TPR a multiple of the subgroup size: long rows spread over
// more invocations, so short-and-wide products fill the GPU): each subgroup sums its lanes,
// and the group's first invocation adds the subgroups' sums.
// The lane group's sums, valid in its first invocation (lid % TPR == 0).
fn reduce_subgroups(lid: u32, sid: u32, sgs: u32, acc: vec4<f32>) -> vec4<f32> {
    let sum = subgroupAdd(acc);
    if (sid == 0u) {
        partial[lid / sgs] = sum;
    }
    workgroupBarrier();
    var total = vec4<f32>(0.0);
    if (lid % TPR == 0u) {
        for (var j = 0u; j < TPR / sgs; j++) {
            total += partial[lid / sgs + j];
        }
    }
    return total;
}

fn reduce_subgroups_and_finish(row0: u32, lid: u32, sid: u32, sgs: u32, acc: vec4<f32>) {
    let total = reduce_subgroups(lid, sid, sgs, acc);
    if (lid % TPR == 0u) {
        finish(row0, total);
    }
}

@compute @workgroup_size(WG)
fn gemv_q4_i8_sgk(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                  @builtin(subgroup_invocation_id) sid: u32, @builtin(subgroup_size) sgs: u32) {
    let row0 = row0_of(wid, lid);
    var acc = vec4<f32>(0.0);
    if (row0 < pm()) {
        acc = group_partial_q4(row0, lid % TPR);
    }
    reduce_subgroups_and_finish(row0, lid, sid, sgs, acc);
}

@compute @workgroup_size(WG)
fn gemv_q8_i8_sgk(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                  @builtin(subgroup_invocation_id) sid: u32, @builtin(subgroup_size) sgs: u32) {
    let row0 = row0_of(wid, lid);
    var acc = vec4<f32>(0.0);
    if (row0 < pm()) {
        acc = group_partial_q8(row0, lid % TPR);
    }
    reduce_subgroups_and_finish(row0, lid, sid, sgs, acc);
}
// #endif

// ---- The fused QKV product with RoPE and the cache append (`_rope` entries) ----------------
// One vector, R = NB = 1. The rows are the W_pack product's [q | k | v] heads of D; lane groups
// 2p and 2p + 1 of a workgroup take rows i and i + D/2 of one head (the rotate-half pair), so
// the workgroup rotates the pair itself and writes q (binding 5), or appends k / v to the cache
// at the position P._p1: rope_kv.wgsl's work without its dispatch. Each value is rounded to the
// activation dtype before the rotation, as rope_kv reads it from the stored product, and
// rotated by the same arithmetic: the same bits where the compiler contracts the multiply-adds
// alike (lavapipe), one rounding step apart in a few values where it does not (an H100).
//
// @binding(8) kv:       (2, Hkv, Tmax, D) act  keys (index 0) and values (index 1)
// @binding(9) inv_freq: (D/2,) f32

@group(0) @binding(8) var<storage, read_write> kv: array<act>;
@group(0) @binding(9) var<storage, read> inv_freq: array<f32>;

override D: u32 = 128;
const MAX_GROUPS: u32 = 8u; // lane groups per workgroup: WG / TPR with TPR ≥ 32
var<workgroup> pair_sums: array<f32, MAX_GROUPS>;

// #include trig

// Row of lane group `lg` of workgroup `w` (linear).
fn rope_row(w: u32, lg: u32) -> u32 {
    let pair = w * (WG / TPR / 2u) + lg / 2u;
    let half = D / 2u;
    return (pair / half) * D + pair % half + (lg % 2u) * half;
}

fn kv_index(kind: u32, head: u32, i: u32) -> u32 {
    let hkv = (pm() / D - pqh()) / 2u;
    return ((kind * hkv + head) * ptm() + P._p1) * D + i;
}

// What pair p of workgroup w needs besides its sums, loaded before the product so that the
// epilogue waits on no memory: the biases of rows r0 and r0 + D/2 (in their stored type: a
// conversion here would wait on the load before the product's loads are issued) and the
// rotation's frequency.
struct RopePre {
    b0: act,
    b1: act,
    freq: f32,
}

fn rope_pre(w: u32, p: u32) -> RopePre {
    var e: RopePre;
    let r0 = rope_row(w, 2u * p);
    if (p >= WG / TPR / 2u || r0 >= pm()) {
        return e;
    }
    if ((pfl() & 1u) != 0u) {
        e.b0 = bias[r0];
        e.b1 = bias[r0 + D / 2u];
    }
    e.freq = inv_freq[r0 % D];
    return e;
}

// Invocation p < WG/TPR/2 finishes pair p of workgroup w from the pair's sums (v0, v1) and
// what rope_pre gave it.
fn rope_finish(w: u32, p: u32, sums: vec2<f32>, pre: RopePre) {
    let r0 = rope_row(w, 2u * p);
    if (r0 >= pm()) {
        return;
    }
    let half = D / 2u;
    let r1 = r0 + half;
    var v0 = sums.x;
    var v1 = sums.y;
    if ((pfl() & 1u) != 0u) {
        v0 += f32(pre.b0);
        v1 += f32(pre.b1);
    }
    let x0 = f32(act(v0));
    let x1 = f32(act(v1));
    let head = r0 / D;
    let i = r0 % D;
    let hq = pqh();
    let hkv = (pm() / D - hq) / 2u;
    if (head < hq + hkv) {
        let cs = cos_sin(f32(P._p1) * pre.freq);
        let y0 = x0 * cs.x - x1 * cs.y;
        let y1 = x1 * cs.x + x0 * cs.y;
        if (head < hq) {
            y[r0] = act(y0);
            y[r1] = act(y1);
        } else {
            kv[kv_index(0u, head - hq, i)] = act(y0);
            kv[kv_index(0u, head - hq, i + half)] = act(y1);
        }
    } else {
        kv[kv_index(1u, head - hq - hkv, i)] = act(x0);
        kv[kv_index(1u, head - hq - hkv, i + half)] = act(x1);
    }
}

fn rope_epilogue(w: u32, lid: u32, total: vec4<f32>, pre: RopePre) {
    if (lid % TPR == 0u) {
        pair_sums[lid / TPR] = total.x;
    }
    workgroupBarrier();
    if (lid < WG / TPR / 2u) {
        rope_finish(w, lid, vec2<f32>(pair_sums[2u * lid], pair_sums[2u * lid + 1u]), pre);
    }
}

@compute @workgroup_size(WG)
fn gemv_q8_i8_rope(@builtin(workgroup_id) wid: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let w = wg_linear(wid);
    let row = rope_row(w, lid / TPR);
    let pre = rope_pre(w, lid);
    var acc = vec4<f32>(0.0);
    if (row < pm()) {
        acc = group_partial_q8(row, lid % TPR);
    }
    rope_epilogue(w, lid, reduce_tree(lid % TPR, lid, acc), pre);
}

@compute @workgroup_size(WG)
fn gemv_q4_i8_rope(@builtin(workgroup_id) wid: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let w = wg_linear(wid);
    let row = rope_row(w, lid / TPR);
    let pre = rope_pre(w, lid);
    var acc = vec4<f32>(0.0);
    if (row < pm()) {
        acc = group_partial_q4(row, lid % TPR);
    }
    rope_epilogue(w, lid, reduce_tree(lid % TPR, lid, acc), pre);
}

// #if subgroups
// The sgk rope entries' end after one barrier: each subgroup leaves its sum (and its share of
// the deferred norm's Σ x²) in workgroup memory, and invocation p < WG/TPR/2 adds the subgroups
// of its pair's two lane groups itself (in reduce_subgroups' order, and defer_inv_rms' for
// Σ x²), instead of the lane-group leaders adding them and passing them on through pair_sums
// after a second barrier (a third for the norm).
fn rope_sgk_end(w: u32, lid: u32, sid: u32, sgs: u32, acc: vec4<f32>, part: f32, defer: bool,
                pre: RopePre) {
    let sum = subgroupAdd(acc);
    var t = 0.0;
    if (defer) {
        t = subgroupAdd(part);
    }
    if (sid == 0u) {
        partial[lid / sgs] = sum;
        if (defer) {
            wss[lid / sgs] = t;
        }
    }
    workgroupBarrier();
    if (lid < WG / TPR / 2u) {
        var inv = 1.0;
        if (defer) {
            inv = defer_inv_rms_staged(sgs, f32(pk()));
        }
        let per = TPR / sgs;
        var s0 = vec4<f32>(0.0);
        var s1 = vec4<f32>(0.0);
        for (var j = 0u; j < per; j++) {
            s0 += partial[2u * lid * per + j];
            s1 += partial[(2u * lid + 1u) * per + j];
        }
        if (defer) {
            s0 *= inv;
            s1 *= inv;
        }
        rope_finish(w, lid, vec2<f32>(s0.x, s1.x), pre);
    }
}

@compute @workgroup_size(WG)
fn gemv_q4_i8_sgk_rope(@builtin(workgroup_id) wid: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32,
                       @builtin(subgroup_invocation_id) sid: u32,
                       @builtin(subgroup_size) sgs: u32) {
    let w = wg_linear(wid);
    let row = rope_row(w, lid / TPR);
    let pre = rope_pre(w, lid);
    var acc = vec4<f32>(0.0);
    if (row < pm()) {
        acc = group_partial_q4(row, lid % TPR);
    }
    rope_sgk_end(w, lid, sid, sgs, acc, 0.0, false, pre);
}

@compute @workgroup_size(WG)
fn gemv_q8_i8_sgk_rope(@builtin(workgroup_id) wid: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32,
                       @builtin(subgroup_invocation_id) sid: u32,
                       @builtin(subgroup_size) sgs: u32) {
    let w = wg_linear(wid);
    let row = rope_row(w, lid / TPR);
    let pre = rope_pre(w, lid);
    var acc = vec4<f32>(0.0);
    if (row < pm()) {
        acc = group_partial_q8(row, lid % TPR);
    }
    rope_sgk_end(w, lid, sid, sgs, acc, 0.0, false, pre);
}
// #endif

// #if subgroups
// ---- The RMSNorm of x deferred to the product (`_defer` entries; defer_norm.wgsl) -----------
// x arrives as int8 x·g with Σ x² per block (binding 10); the lane groups' sums are scaled by
// inv_rms before the epilogue. The plain and the RoPE epilogues; either weight format (Q8).

// #include defer_norm

@compute @workgroup_size(WG)
fn gemv_i8_sgk_defer(@builtin(workgroup_id) wid: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32,
                     @builtin(subgroup_invocation_id) sid: u32,
                     @builtin(subgroup_size) sgs: u32) {
    let row0 = row0_of(wid, lid);
    let part = defer_load(lid);
    var acc = vec4<f32>(0.0);
    if (row0 < pm()) {
        acc = group_partial(row0, lid % TPR);
    }
    let inv = defer_inv_rms(part, lid, sid, sgs, f32(pk()));
    let total = reduce_subgroups(lid, sid, sgs, acc) * inv;
    if (lid % TPR == 0u) {
        finish(row0, total);
    }
}

@compute @workgroup_size(WG)
fn gemv_i8_sgk_rope_defer(@builtin(workgroup_id) wid: vec3<u32>,
                          @builtin(local_invocation_index) lid: u32,
                          @builtin(subgroup_invocation_id) sid: u32,
                          @builtin(subgroup_size) sgs: u32) {
    let w = wg_linear(wid);
    let row = rope_row(w, lid / TPR);
    let pre = rope_pre(w, lid);
    let part = defer_load(lid);
    var acc = vec4<f32>(0.0);
    if (row < pm()) {
        acc = group_partial(row, lid % TPR);
    }
    rope_sgk_end(w, lid, sid, sgs, acc, part, true, pre);
}
// #endif
