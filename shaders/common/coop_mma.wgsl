// coop_mma — the K loop of a 64 × 64 tile of y = x · Wᵀ on cooperative matrices (tensor
// cores, 16×16×16 f16 → f32), shared by gemm_coop.wgsl, gemm_coop_split.wgsl and
// rvq_coop.wgsl. The including file enables `wgpu_cooperative_matrix`, declares the override
// TK (K per step, 32 or 64) and defines `fn stage(t, m0, n0, k0)`, which writes x rows
// [n0, n0+64) into `xs` and W rows [m0, m0+64) into `ws` for k0 .. k0+TK as f16 (`[row][k]`,
// zeros outside the matrices). Each subgroup loads its fragments from there: x as row-major
// A (n × k), W as column-major B (k × m). Cooperative loads and stores take pointers to vec4s,
// with strides counted in vec4s.

override XS4: u32 = TK / 4u + 2u; // vec4<f16> row stride of the staged tiles (80 or 144 bytes:
                                  // 8 rows fall in 8 bank groups)
const CS4: u32 = 17u; // vec4<f32> row stride of the staged output

var<workgroup> xs: array<vec4<f16>, 1152>; // 64 x rows × XS4 (≤ 18)
var<workgroup> ws: array<vec4<f16>, 1152>; // 64 W rows × XS4
var<workgroup> cs: array<vec4<f32>, 1088>; // 64 x rows × CS4

// The 64 × 64 tile at (m0 = W row, n0 = x row) summed over k in [k_lo, k_hi) (k_lo a
// multiple of TK; both uniform: the loop has barriers), left in cs (f32, [x row][W row / 4],
// row stride CS4) for all invocations to read. Subgroup g (the host requires 32-wide
// subgroups) owns the 32 × 32 quarter (g / 2, g % 2) as 2 × 2 accumulator fragments.
fn coop_tile(t: u32, m0: u32, n0: u32, k_lo: u32, k_hi: u32) {
    let g = t / 32u;
    let rn = (g / 2u) * 32u; // its x rows in the tile
    let rm = (g % 2u) * 32u; // its W rows in the tile
    var c00: coop_mat16x16<f32, C>;
    var c01: coop_mat16x16<f32, C>;
    var c10: coop_mat16x16<f32, C>;
    var c11: coop_mat16x16<f32, C>;
    for (var k0 = k_lo; k0 < k_hi; k0 += TK) {
        stage(t, m0, n0, k0);
        workgroupBarrier();
        for (var kk = 0u; kk < TK / 4u; kk += 4u) {
            let a0 = coopLoadT<coop_mat16x16<f16, A>>(&xs[rn * XS4 + kk], XS4);
            let a1 = coopLoadT<coop_mat16x16<f16, A>>(&xs[(rn + 16u) * XS4 + kk], XS4);
            let b0 = coopLoad<coop_mat16x16<f16, B>>(&ws[rm * XS4 + kk], XS4);
            let b1 = coopLoad<coop_mat16x16<f16, B>>(&ws[(rm + 16u) * XS4 + kk], XS4);
            c00 = coopMultiplyAdd(a0, b0, c00);
            c01 = coopMultiplyAdd(a0, b1, c01);
            c10 = coopMultiplyAdd(a1, b0, c10);
            c11 = coopMultiplyAdd(a1, b1, c11);
        }
        workgroupBarrier();
    }
    coopStoreT(c00, &cs[rn * CS4 + rm / 4u], CS4);
    coopStoreT(c01, &cs[rn * CS4 + (rm + 16u) / 4u], CS4);
    coopStoreT(c10, &cs[(rn + 16u) * CS4 + rm / 4u], CS4);
    coopStoreT(c11, &cs[(rn + 16u) * CS4 + (rm + 16u) / 4u], CS4);
    workgroupBarrier();
}
