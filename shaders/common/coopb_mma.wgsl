// coopb_mma — a 128 × 128 tile of y = x · Wᵀ with f16 weights on cooperative matrices,
// staged through workgroup memory in two buffers: while the subgroups multiply one K step,
// every invocation already holds the next step's loads in registers and then writes them to
// the other buffer, so a step costs one barrier and the loads' latency hides behind the
// multiply-adds. 8 subgroups (32-wide) in a 2 × 4 grid, each owning 64 × 32 outputs (4 × 2
// accumulator fragments). Workgroup memory: 2 × 2 × 20 KB staging + 8 KB output staging =
// 48 KB (the limit Vulkan drivers commonly offer).
// The including file enables `wgpu_cooperative_matrix` and declares `w` (f16 weights as
// vec4<f16>, rows of nb·8 halves), `x` (act4 rows, K a multiple of 4), a uniform `P` with m, k,
// nb, n, and `fn emit(g, lane, n, m)`, which consumes the 16 × 16 fragment staged in cs at
// g·16·CS4 (f32, [row][col / 4]) for outputs (n.., m..). Rows past N or M and k past K are
// staged as zeros.

const BT: u32 = 128u; // tile rows (x) and columns (W rows)
const XS4: u32 = 10u; // staged row stride in vec4<f16>s (32 halves + padding: 80 bytes)
const STAGE: u32 = 1280u; // BT × XS4
const CS4: u32 = 4u; // vec4<f32> row stride of a staged output fragment
const BAND4: u32 = 4u; // vec4<f32>s of output per staged row (16 W rows)

var<workgroup> xs: array<vec4<f16>, 2560>; // 2 buffers × 128 x rows × XS4
var<workgroup> ws: array<vec4<f16>, 2560>; // 2 buffers × 128 W rows × XS4
var<workgroup> cs: array<vec4<f32>, 512>; // 8 subgroups × 16 rows × CS4

// Value i (< 4) of invocation t's share of a K step (k0 .. k0+31): row t / 8 + 32i of the
// tile, vec4 t % 8 of the step; zeros past N, M or K.
fn fetch_x(t: u32, n0: u32, k0: u32, i: u32) -> vec4<f16> {
    let kq = k0 / 4u + t % 8u;
    let k4 = P.k / 4u;
    let n = n0 + t / 8u + 32u * i;
    if (n < P.n && kq < k4) {
        return x[n * k4 + kq];
    }
    return vec4<f16>(0.0);
}

fn fetch_w(t: u32, m0: u32, k0: u32, i: u32) -> vec4<f16> {
    let kq = k0 / 4u + t % 8u;
    let m = m0 + t / 8u + 32u * i;
    if (m < P.m && kq < P.k / 4u) {
        return w[m * P.nb * 2u + kq];
    }
    return vec4<f16>(0.0);
}

// where value i goes in buffer `buf`
fn slot(t: u32, buf: u32, i: u32) -> u32 {
    return buf * STAGE + (t / 8u + 32u * i) * XS4 + t % 8u;
}

// Sums the tile at (x row n0, W row m0) over k in [k_lo, k_hi) (k_lo a multiple of 32; both
// uniform) and hands each subgroup's 8 fragments to `emit`, one at a time.
fn coopb_tile(t: u32, n0: u32, m0: u32, k_lo: u32, k_hi: u32) {
    let g = t / 32u;
    let wn = (g / 4u) * 64u; // the subgroup's x rows in the tile
    let wm = (g % 4u) * 32u; // its W rows
    var c00: coop_mat16x16<f32, C>;
    var c01: coop_mat16x16<f32, C>;
    var c10: coop_mat16x16<f32, C>;
    var c11: coop_mat16x16<f32, C>;
    var c20: coop_mat16x16<f32, C>;
    var c21: coop_mat16x16<f32, C>;
    var c30: coop_mat16x16<f32, C>;
    var c31: coop_mat16x16<f32, C>;
    for (var i = 0u; i < 4u; i++) {
        xs[slot(t, 0u, i)] = fetch_x(t, n0, k_lo, i);
        ws[slot(t, 0u, i)] = fetch_w(t, m0, k_lo, i);
    }
    workgroupBarrier();
    var buf = 0u;
    for (var k0 = k_lo; k0 < k_hi; k0 += 32u) {
        let more = k0 + 32u < k_hi;
        var px0 = vec4<f16>(0.0);
        var pw0 = vec4<f16>(0.0);
        var px1 = vec4<f16>(0.0);
        var pw1 = vec4<f16>(0.0);
        var px2 = vec4<f16>(0.0);
        var pw2 = vec4<f16>(0.0);
        var px3 = vec4<f16>(0.0);
        var pw3 = vec4<f16>(0.0);
        if (more) {
            px0 = fetch_x(t, n0, k0 + 32u, 0u);
            pw0 = fetch_w(t, m0, k0 + 32u, 0u);
            px1 = fetch_x(t, n0, k0 + 32u, 1u);
            pw1 = fetch_w(t, m0, k0 + 32u, 1u);
            px2 = fetch_x(t, n0, k0 + 32u, 2u);
            pw2 = fetch_w(t, m0, k0 + 32u, 2u);
            px3 = fetch_x(t, n0, k0 + 32u, 3u);
            pw3 = fetch_w(t, m0, k0 + 32u, 3u);
        }
        let base = buf * STAGE;
        for (var kk = 0u; kk < 8u; kk += 4u) {
            let b0 = coopLoad<coop_mat16x16<f16, B>>(&ws[base + (wm + 0u) * XS4 + kk], XS4);
            let b1 = coopLoad<coop_mat16x16<f16, B>>(&ws[base + (wm + 16u) * XS4 + kk], XS4);
            let a0 = coopLoadT<coop_mat16x16<f16, A>>(&xs[base + (wn + 0u) * XS4 + kk], XS4);
            c00 = coopMultiplyAdd(a0, b0, c00);
            c01 = coopMultiplyAdd(a0, b1, c01);
            let a1 = coopLoadT<coop_mat16x16<f16, A>>(&xs[base + (wn + 16u) * XS4 + kk], XS4);
            c10 = coopMultiplyAdd(a1, b0, c10);
            c11 = coopMultiplyAdd(a1, b1, c11);
            let a2 = coopLoadT<coop_mat16x16<f16, A>>(&xs[base + (wn + 32u) * XS4 + kk], XS4);
            c20 = coopMultiplyAdd(a2, b0, c20);
            c21 = coopMultiplyAdd(a2, b1, c21);
            let a3 = coopLoadT<coop_mat16x16<f16, A>>(&xs[base + (wn + 48u) * XS4 + kk], XS4);
            c30 = coopMultiplyAdd(a3, b0, c30);
            c31 = coopMultiplyAdd(a3, b1, c31);
        }
        if (more) {
            xs[slot(t, buf ^ 1u, 0u)] = px0;
            ws[slot(t, buf ^ 1u, 0u)] = pw0;
            xs[slot(t, buf ^ 1u, 1u)] = px1;
            ws[slot(t, buf ^ 1u, 1u)] = pw1;
            xs[slot(t, buf ^ 1u, 2u)] = px2;
            ws[slot(t, buf ^ 1u, 2u)] = pw2;
            xs[slot(t, buf ^ 1u, 3u)] = px3;
            ws[slot(t, buf ^ 1u, 3u)] = pw3;
        }
        workgroupBarrier();
        buf ^= 1u;
    }
    let cb = g * 16u * CS4;
    let lane = t % 32u;
    coopStoreT(c00, &cs[cb], CS4);
    workgroupBarrier();
    emit(g, lane, n0 + wn + 0u, m0 + wm + 0u);
    workgroupBarrier();
    coopStoreT(c01, &cs[cb], CS4);
    workgroupBarrier();
    emit(g, lane, n0 + wn + 0u, m0 + wm + 16u);
    workgroupBarrier();
    coopStoreT(c10, &cs[cb], CS4);
    workgroupBarrier();
    emit(g, lane, n0 + wn + 16u, m0 + wm + 0u);
    workgroupBarrier();
    coopStoreT(c11, &cs[cb], CS4);
    workgroupBarrier();
    emit(g, lane, n0 + wn + 16u, m0 + wm + 16u);
    workgroupBarrier();
    coopStoreT(c20, &cs[cb], CS4);
    workgroupBarrier();
    emit(g, lane, n0 + wn + 32u, m0 + wm + 0u);
    workgroupBarrier();
    coopStoreT(c21, &cs[cb], CS4);
    workgroupBarrier();
    emit(g, lane, n0 + wn + 32u, m0 + wm + 16u);
    workgroupBarrier();
    coopStoreT(c30, &cs[cb], CS4);
    workgroupBarrier();
    emit(g, lane, n0 + wn + 48u, m0 + wm + 0u);
    workgroupBarrier();
    coopStoreT(c31, &cs[cb], CS4);
    workgroupBarrier();
    emit(g, lane, n0 + wn + 48u, m0 + wm + 16u);
    workgroupBarrier();
}
