// gemv_i8_xqo — gemv_i8.wgsl's q4/q8 product of one vector that also writes y as the next
// product's int8 x (gemv_xq.wgsl's layout), so that product skips its quantisation dispatch.
// Each workgroup owns whole 32-output blocks of y: (WG / TPR) lane groups × R rows make 32
// outputs (64 rows with SwiGLU, whose row pairs make one output). Its lane-group leaders store
// their outputs in y as usual and, rounded to the activation dtype as y holds them, in `blk`;
// then one invocation quantises the block with xq_block.wgsl: the same bits as a gemv_xq1
// dispatch reading y. Outputs past M are zero, as gemv_xq pads past K.
//
// Bindings 0–7 as gemv_i8.wgsl (NB = 1), and
// @binding(8)  oq:  (⌈M_out/32⌉, 8) u32      int8 y, 4 per word, ascending from the low byte
// @binding(9)  od:  (⌈M_out/32⌉,) vec2<f32>  (scale = max|y| / 127, Σ y) per block
// `_defer` entries (x's RMSNorm deferred to this product, defer_norm.wgsl):
// @binding(10) aux: (nbq,) f32              Σ x² per block of x
// `_norm` entries (y is the input of an RMSNorm whose g is known: the next product defers it):
// @binding(10) aux: (M_out,) f32            that norm's g; oq, od then hold y·g as int8 x
// @binding(11) oss: (⌈M_out/32⌉,) f32       Σ y² per block
// `_norm_rn` entries (`_norm` whose residual is RMSNorm(res)·g, normalised here: the audio
// head's FFN adds its normalised input, whose norm the products before were deferring):
// @binding(12) rg:  (M_out,) f32            that norm's g
// @binding(13) rss: (⌈M_out/32⌉,) f32       Σ res² per block (what the `_norm` product that
//                                           wrote res left)

// #include gemv_i8_core

// #include act_fns

// #include gemv_tail

// #include xq_block

@group(0) @binding(8) var<storage, read_write> oq: array<u32>;
@group(0) @binding(9) var<storage, read_write> od: array<vec2<f32>>;

// The block as y holds it: in the activation dtype, so each value is rounded as stored (a
// compiler may keep an f32 → f16 → f32 round trip in registers at f32 precision; an H100's
// did, and its int8 y then differed from quantising the y written)
var<workgroup> blk: array<act, 32>;

// gemv_i8_core's lane partials (one vector) with XU blocks per lane in flight (1 to 4): a
// workgroup that owns 32 outputs gives each lane many blocks of a long row (down: 18.5 per
// lane), and one block's loads at a time would leave the memory idle between them. Rows of a
// few blocks per lane lose by it (their loop is mostly the tail), so the host sets XU by
// shape. The same blocks summed in the same order as group_partial_q4 / _q8.
override XU: u32 = 1u;
const XR: u32 = 4u; // rows per lane group at most (R)

fn xqo_partial_q4(row0: u32, lane: u32) -> vec4<f32> {
    var acc = vec4<f32>(0.0);
    var c = lane;
    for (; c + (XU - 1u) * TPR < pnb(); c += XU * TPR) {
        var wv: array<vec4<u32>, 16>;
        var sw: array<u32, 16>;
        var xa: array<vec4<u32>, 4>;
        var xc: array<vec4<u32>, 4>;
        var d: array<vec2<f32>, 4>;
        for (var u = 0u; u < XU; u++) {
            let cb = c + u * TPR;
            xa[u] = xq[2u * cb];
            xc[u] = xq[2u * cb + 1u];
            d[u] = xd[cb];
            for (var r = 0u; r < R; r++) {
                let b = min(row0 + r, pm() - 1u) * pnb() + cb;
                wv[u * XR + r] = w[b];
                sw[u * XR + r] = s[b];
            }
        }
        for (var u = 0u; u < XU; u++) {
            for (var r = 0u; r < R; r++) {
                acc[r] += q4_block(wv[u * XR + r], sw[u * XR + r], xa[u], xc[u], d[u]);
            }
        }
    }
    // the blocks left, one at a time (NB = 1)
    return group_partial_q4_from(row0, c, acc);
}

fn xqo_partial_q8(row0: u32, lane: u32) -> vec4<f32> {
    var acc = vec4<f32>(0.0);
    var c = lane;
    for (; c + (XU - 1u) * TPR < pnb(); c += XU * TPR) {
        var w0: array<vec4<u32>, 16>;
        var w1: array<vec4<u32>, 16>;
        var sc: array<f32, 16>;
        var xa: array<vec4<u32>, 4>;
        var xc: array<vec4<u32>, 4>;
        var d: array<vec2<f32>, 4>;
        for (var u = 0u; u < XU; u++) {
            let cb = c + u * TPR;
            xa[u] = xq[2u * cb];
            xc[u] = xq[2u * cb + 1u];
            d[u] = xd[cb];
            for (var r = 0u; r < R; r++) {
                let b = min(row0 + r, pm() - 1u) * pnb() + cb;
                w0[u * XR + r] = w[2u * b];
                w1[u * XR + r] = w[2u * b + 1u];
                sc[u * XR + r] = q8_scale(b);
            }
        }
        for (var u = 0u; u < XU; u++) {
            for (var r = 0u; r < R; r++) {
                let i = q8_dot(w0[u * XR + r], w1[u * XR + r], xa[u], xc[u]);
                acc[r] += sc[u * XR + r] * d[u].x * f32(i);
            }
        }
    }
    // the blocks left, one at a time (NB = 1)
    return group_partial_q8_from(row0, c, acc);
}

// xqo_partial_q4 or _q8 as Q8 says.
fn xqo_partial(row0: u32, lane: u32) -> vec4<f32> {
    if (Q8 == 1u) {
        return xqo_partial_q8(row0, lane);
    }
    return xqo_partial_q4(row0, lane);
}

// A lane-group leader's rows: y, and each output as stored into blk (zero past M). Its bias
// and residual came from epi_load before the product.
fn xqo_rows(row0: u32, sums: vec4<f32>, e: EpiPre) {
    let m_out = select(pm(), pm() / 2u, ACT == 3u);
    let step = select(1u, 2u, ACT == 3u);
    for (var r = 0u; r < R; r += step) {
        let row = row0 + r;
        var v = act(0.0);
        if (row < pm()) {
            v = act(out_value_pre(row0, r, sums, e));
            y[pn0() * m_out + out_index(row)] = v;
        }
        blk[out_index(row) % 32u] = v;
    }
}

// After every leader has stored its rows: invocation 0 quantises the workgroup's block `b`.
fn xqo_block(b: u32, lid: u32) {
    workgroupBarrier();
    if (lid == 0u) {
        var a: array<vec4<f32>, 8>;
        for (var j = 0u; j < 8u; j++) {
            a[j] = vec4<f32>(f32(blk[4u * j]), f32(blk[4u * j + 1u]), f32(blk[4u * j + 2u]),
                             f32(blk[4u * j + 3u]));
        }
        let q = xq_block(a);
        for (var j = 0u; j < 8u; j++) {
            oq[8u * b + j] = q.q[j];
        }
        od[b] = q.d;
    }
}

@compute @workgroup_size(WG)
fn gemv_i8_xqo(@builtin(workgroup_id) wid: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let row0 = row0_of(wid, lid);
    let e = epi_load(row0);
    var acc = vec4<f32>(0.0);
    if (row0 < pm()) {
        acc = xqo_partial(row0, lid % TPR);
    }
    let sums = reduce_tree(lid % TPR, lid, acc);
    if (lid % TPR == 0u) {
        xqo_rows(row0, sums, e);
    }
    xqo_block(wg_linear(wid), lid);
}

// #if subgroups
// Lane groups within one subgroup (TPR divides the subgroup size): a butterfly over the lane
// group instead of the workgroup tree, so workgroups may exceed `partial`'s 256 invocations.
fn reduce_lanes(acc: vec4<f32>) -> vec4<f32> {
    var a = acc;
    for (var o = TPR / 2u; o > 0u; o >>= 1u) {
        a += subgroupShuffleXor(a, o);
    }
    return a;
}

// #include defer_norm

@group(0) @binding(11) var<storage, read_write> oss: array<f32>;

// The `_norm` entries' g of the block, stored by the leaders from what norm_g_load gave them.
var<workgroup> blkg: array<f32, 32>;

// The next norm's g of a lane group's outputs (aux, clamped to the last output past M), loaded
// before the product so that the quantisation after it waits on no memory.
fn norm_g_load(row0: u32) -> vec4<f32> {
    let m_out = select(pm(), pm() / 2u, ACT == 3u);
    let step = select(1u, 2u, ACT == 3u);
    var g = vec4<f32>(0.0);
    for (var r = 0u; r < R; r += step) {
        g[r] = aux[min(out_index(row0 + r), m_out - 1u)];
    }
    return g;
}

fn norm_g_store(row0: u32, g: vec4<f32>) {
    let step = select(1u, 2u, ACT == 3u);
    for (var r = 0u; r < R; r += step) {
        blkg[out_index(row0 + r) % 32u] = g[r];
    }
}

// xqo_block for the `_norm` entries: the block of y·g (g = aux, staged in blkg) and Σ y² of
// the block.
fn xqo_block_norm(b: u32, lid: u32) {
    workgroupBarrier();
    if (lid == 0u) {
        var a: array<vec4<f32>, 8>;
        var ss = 0.0;
        for (var j = 0u; j < 8u; j++) {
            for (var e = 0u; e < 4u; e++) {
                let v = f32(blk[4u * j + e]);
                a[j][e] = v * blkg[4u * j + e];
                ss += v * v;
            }
        }
        let q = xq_block(a);
        for (var j = 0u; j < 8u; j++) {
            oq[8u * b + j] = q.q[j];
        }
        od[b] = q.d;
        oss[b] = ss;
    }
}

@compute @workgroup_size(WG)
fn gemv_i8_sgx_xqo(@builtin(workgroup_id) wid: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let row0 = row0_of(wid, lid);
    let e = epi_load(row0);
    var acc = vec4<f32>(0.0);
    if (row0 < pm()) {
        acc = xqo_partial(row0, lid % TPR);
    }
    let sums = reduce_lanes(acc);
    if (lid % TPR == 0u) {
        xqo_rows(row0, sums, e);
    }
    xqo_block(wg_linear(wid), lid);
}

@compute @workgroup_size(WG)
fn gemv_i8_sgx_xqo_defer(@builtin(workgroup_id) wid: vec3<u32>,
                            @builtin(local_invocation_index) lid: u32,
                            @builtin(subgroup_invocation_id) sid: u32,
                            @builtin(subgroup_size) sgs: u32) {
    let row0 = row0_of(wid, lid);
    let part = defer_load(lid);
    let e = epi_load(row0);
    var acc = vec4<f32>(0.0);
    if (row0 < pm()) {
        acc = xqo_partial(row0, lid % TPR);
    }
    let inv = defer_inv_rms(part, lid, sid, sgs, f32(pk()));
    let sums = reduce_lanes(acc) * inv;
    if (lid % TPR == 0u) {
        xqo_rows(row0, sums, e);
    }
    xqo_block(wg_linear(wid), lid);
}

@compute @workgroup_size(WG)
fn gemv_i8_sgx_xqo_norm(@builtin(workgroup_id) wid: vec3<u32>,
                           @builtin(local_invocation_index) lid: u32) {
    let row0 = row0_of(wid, lid);
    let e = epi_load(row0);
    let g = norm_g_load(row0);
    var acc = vec4<f32>(0.0);
    if (row0 < pm()) {
        acc = xqo_partial(row0, lid % TPR);
    }
    let sums = reduce_lanes(acc);
    if (lid % TPR == 0u) {
        xqo_rows(row0, sums, e);
        norm_g_store(row0, g);
    }
    xqo_block_norm(wg_linear(wid), lid);
}

@group(0) @binding(12) var<storage, read> rg: array<f32>;
@group(0) @binding(13) var<storage, read> rss: array<f32>;

// This invocation's share of Σ res² (blocks lid, lid + WG, …).
fn rn_load(lid: u32) -> f32 {
    let nbo = (select(pm(), pm() / 2u, ACT == 3u) + 31u) / 32u;
    var s = 0.0;
    if (lid < nbo) {
        s = rss[lid]; // the load itself, as defer_load's first block
    }
    for (var i = lid + WG; i < nbo; i += WG) {
        s += rss[i];
    }
    return s;
}

// The `_rn` entries' residual and its norm's g of a lane group's outputs, loaded before the
// product (the residual in its stored type, as epi_load keeps it).
struct RnPre {
    r: vec4<act>,
    g: vec4<f32>,
}

fn rn_pre(row0: u32) -> RnPre {
    let m_out = select(pm(), pm() / 2u, ACT == 3u);
    let step = select(1u, 2u, ACT == 3u);
    var e: RnPre;
    for (var r = 0u; r < R; r += step) {
        let o = min(out_index(row0 + r), m_out - 1u);
        e.r[r] = res[o];
        e.g[r] = rg[o];
    }
    return e;
}

// xqo_rows with the residual normalised: res·g·inv (the host leaves the residual flag off).
fn xqo_rows_rn(row0: u32, sums: vec4<f32>, inv: f32, e: EpiPre, rn: RnPre) {
    let m_out = select(pm(), pm() / 2u, ACT == 3u);
    let step = select(1u, 2u, ACT == 3u);
    for (var r = 0u; r < R; r += step) {
        let row = row0 + r;
        let o = out_index(row);
        var v = act(0.0);
        if (row < pm()) {
            v = act(out_value_pre(row0, r, sums, e) + f32(rn.r[r]) * rn.g[r] * inv);
            y[pn0() * m_out + o] = v;
        }
        blk[o % 32u] = v;
    }
}

@compute @workgroup_size(WG)
fn gemv_i8_sgx_xqo_norm_rn(@builtin(workgroup_id) wid: vec3<u32>,
                              @builtin(local_invocation_index) lid: u32,
                              @builtin(subgroup_invocation_id) sid: u32,
                              @builtin(subgroup_size) sgs: u32) {
    let row0 = row0_of(wid, lid);
    let part = rn_load(lid);
    let e = epi_load(row0);
    let rn = rn_pre(row0);
    let g = norm_g_load(row0);
    var acc = vec4<f32>(0.0);
    if (row0 < pm()) {
        acc = xqo_partial(row0, lid % TPR);
    }
    let m_out = select(pm(), pm() / 2u, ACT == 3u);
    let inv = defer_inv_rms(part, lid, sid, sgs, f32(m_out));
    let sums = reduce_lanes(acc);
    if (lid % TPR == 0u) {
        xqo_rows_rn(row0, sums, inv, e, rn);
        norm_g_store(row0, g);
    }
    xqo_block_norm(wg_linear(wid), lid);
}

// #endif
