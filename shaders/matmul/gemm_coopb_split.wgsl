// gemm_coopb_split — gemm_coopb.wgsl's tiles with K cut into slices: workgroup (m tile, n
// tile, slice z) sums k in [z·kslice, (z+1)·kslice) into f32 partials (coop_f16_part.wgsl);
// gemm_splitk.wgsl's `gemm_reduce` then sums the slices in order and applies the epilogue.
// Native only.

enable wgpu_cooperative_matrix;

// #include coop_f16_part

// #include coopb_mma

@compute @workgroup_size(256)
fn gemm_coopb_part(
    @builtin(local_invocation_index) t: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
) {
    slice = wg.z;
    let k_lo = wg.z * P.kslice;
    coopb_tile(t, wg.y * BT, wg.x * BT, k_lo, min(P.k, k_lo + P.kslice));
}
