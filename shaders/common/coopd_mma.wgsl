// coopd_mma — y = x · Wᵀ tiles with f16 weights on cooperative matrices, fragments loaded
// straight from the storage buffers (no staging through workgroup memory, no barriers in the K
// loop; gemm_coop.wgsl's staged tile is kept for q8/q4 weights, which need dequantising, and
// for small or ragged shapes). A workgroup is GN × GM subgroups (32-wide); each owns a
// (16·FN) × 64 tile (FN = 2 or 4 row fragments × 4 column fragments), so the workgroup covers
// (16·FN·GN) x rows × 64·GM W rows and its subgroups share rows through the L1 cache. The
// including file enables `wgpu_cooperative_matrix` and declares `w` (f16 weights as
// vec4<f16>, rows of nb·8 halves), `x` (act4 rows of K/4) and a uniform `P` with m, k, nb, n.
//
// The host guarantees N ≥ 16·FN, M ≥ 64 and K a multiple of 16, and each subgroup's tile is
// clamped inside the matrices (n0 ≤ N − 16·FN, m0 ≤ M − 64): every fragment load is in bounds,
// and an edge tile overlaps its neighbour, recomputing the same outputs bit for bit (same k
// order), so duplicated stores write equal values.

override FN: u32 = 2u; // row fragments per subgroup: 2 or 4
override GN: u32 = 1u; // subgroups along x rows
override GM: u32 = 1u; // subgroups along W rows

const CS4: u32 = 17u; // vec4<f32> row stride of the staged output
const BAND4: u32 = 16u; // vec4<f32>s of output per staged row (64 W rows)

var<workgroup> cs: array<vec4<f32>, 1088>; // per subgroup one 16-row band: 16 × CS4

// This subgroup's tile origin (x row n0, W row m0), clamped inside the matrices.
fn coopd_origin(g: u32, wg: vec3<u32>) -> vec2<u32> {
    let n0 = min((wg.y * GN + g / GM) * 16u * FN, P.n - 16u * FN);
    let m0 = min((wg.x * GM + g % GM) * 64u, P.m - 64u);
    return vec2<u32>(n0, m0);
}

// Sums the tile at (n0, m0) over k in [k_lo, k_hi) (multiples of 16) and hands each 16-row
// band to `emit(g, lane, n0 + 16·band, m0)` after staging it in cs (f32, [row][W row / 4] at
// g·16·CS4); every subgroup runs the same number of bands, so the barriers are uniform.
fn coopd_tile(g: u32, lane: u32, n0: u32, m0: u32, k_lo: u32, k_hi: u32) {
    let xr = P.k / 4u; // x row stride in vec4s
    let wr = P.nb * 2u; // W row stride in vec4<f16>s
    let x0 = (n0 + 0u) * xr;
    let x1 = (n0 + 16u) * xr;
    let x2 = (n0 + 32u) * xr;
    let x3 = (n0 + 48u) * xr;
    let w0 = (m0 + 0u) * wr;
    let w1 = (m0 + 16u) * wr;
    let w2 = (m0 + 32u) * wr;
    let w3 = (m0 + 48u) * wr;
    var c00: coop_mat16x16<f32, C>;
    var c01: coop_mat16x16<f32, C>;
    var c02: coop_mat16x16<f32, C>;
    var c03: coop_mat16x16<f32, C>;
    var c10: coop_mat16x16<f32, C>;
    var c11: coop_mat16x16<f32, C>;
    var c12: coop_mat16x16<f32, C>;
    var c13: coop_mat16x16<f32, C>;
    var c20: coop_mat16x16<f32, C>;
    var c21: coop_mat16x16<f32, C>;
    var c22: coop_mat16x16<f32, C>;
    var c23: coop_mat16x16<f32, C>;
    var c30: coop_mat16x16<f32, C>;
    var c31: coop_mat16x16<f32, C>;
    var c32: coop_mat16x16<f32, C>;
    var c33: coop_mat16x16<f32, C>;
    for (var k = k_lo; k < k_hi; k += 16u) {
        let kq = k / 4u;
        let b0 = coopLoad<coop_mat16x16<f16, B>>(&w[w0 + kq], wr);
        let b1 = coopLoad<coop_mat16x16<f16, B>>(&w[w1 + kq], wr);
        let b2 = coopLoad<coop_mat16x16<f16, B>>(&w[w2 + kq], wr);
        let b3 = coopLoad<coop_mat16x16<f16, B>>(&w[w3 + kq], wr);
        let a0 = coopLoadT<coop_mat16x16<f16, A>>(&x[x0 + kq], xr);
        c00 = coopMultiplyAdd(a0, b0, c00);
        c01 = coopMultiplyAdd(a0, b1, c01);
        c02 = coopMultiplyAdd(a0, b2, c02);
        c03 = coopMultiplyAdd(a0, b3, c03);
        let a1 = coopLoadT<coop_mat16x16<f16, A>>(&x[x1 + kq], xr);
        c10 = coopMultiplyAdd(a1, b0, c10);
        c11 = coopMultiplyAdd(a1, b1, c11);
        c12 = coopMultiplyAdd(a1, b2, c12);
        c13 = coopMultiplyAdd(a1, b3, c13);
        if (FN == 4u) {
            let a2 = coopLoadT<coop_mat16x16<f16, A>>(&x[x2 + kq], xr);
            c20 = coopMultiplyAdd(a2, b0, c20);
            c21 = coopMultiplyAdd(a2, b1, c21);
            c22 = coopMultiplyAdd(a2, b2, c22);
            c23 = coopMultiplyAdd(a2, b3, c23);
            let a3 = coopLoadT<coop_mat16x16<f16, A>>(&x[x3 + kq], xr);
            c30 = coopMultiplyAdd(a3, b0, c30);
            c31 = coopMultiplyAdd(a3, b1, c31);
            c32 = coopMultiplyAdd(a3, b2, c32);
            c33 = coopMultiplyAdd(a3, b3, c33);
        }
    }
    let base = g * 16u * CS4;
    coopStoreT(c00, &cs[base + 0u], CS4);
    coopStoreT(c01, &cs[base + 4u], CS4);
    coopStoreT(c02, &cs[base + 8u], CS4);
    coopStoreT(c03, &cs[base + 12u], CS4);
    workgroupBarrier();
    emit(g, lane, n0 + 0u, m0);
    workgroupBarrier();
    coopStoreT(c10, &cs[base + 0u], CS4);
    coopStoreT(c11, &cs[base + 4u], CS4);
    coopStoreT(c12, &cs[base + 8u], CS4);
    coopStoreT(c13, &cs[base + 12u], CS4);
    workgroupBarrier();
    emit(g, lane, n0 + 16u, m0);
    workgroupBarrier();
    if (FN == 4u) {
        coopStoreT(c20, &cs[base + 0u], CS4);
        coopStoreT(c21, &cs[base + 4u], CS4);
        coopStoreT(c22, &cs[base + 8u], CS4);
        coopStoreT(c23, &cs[base + 12u], CS4);
        workgroupBarrier();
        emit(g, lane, n0 + 32u, m0);
        workgroupBarrier();
    }
    if (FN == 4u) {
        coopStoreT(c30, &cs[base + 0u], CS4);
        coopStoreT(c31, &cs[base + 4u], CS4);
        coopStoreT(c32, &cs[base + 8u], CS4);
        coopStoreT(c33, &cs[base + 12u], CS4);
        workgroupBarrier();
        emit(g, lane, n0 + 48u, m0);
        workgroupBarrier();
    }
}
