// gemm_coopd_split — gemm_coopd.wgsl's tiles with K cut into slices: workgroup (m tile, n
// tile, slice z) sums k in [z·kslice, (z+1)·kslice) into f32 partials (coop_f16_part.wgsl);
// gemm_splitk.wgsl's `gemm_reduce` then sums the slices in order and applies the epilogue.
// Native only.

enable wgpu_cooperative_matrix;

// #include coop_f16_part

// #include coopd_mma

override WGS: u32 = 32u * GN * GM;

@compute @workgroup_size(WGS)
fn gemm_coopd_part(
    @builtin(local_invocation_index) t: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
) {
    let g = t / 32u;
    let o = coopd_origin(g, wg);
    slice = wg.z;
    let k_lo = wg.z * P.kslice;
    coopd_tile(g, t % 32u, o.x, o.y, k_lo, min(P.k, k_lo + P.kslice));
}
