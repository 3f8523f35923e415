// gemm_coopd — gemm_coop.wgsl's product for f16 weights with fragments loaded straight from
// the storage buffers (coopd_mma.wgsl): GN × GM subgroups of 32 per workgroup, each owning a
// (16·FN) × 64 output tile; the result goes through workgroup memory (f32) to gemm_store's
// epilogue, 16 rows at a time (coop_f16_out.wgsl: gemm.wgsl's bindings and params, W read as
// vec4<f16>). Native only (Caps::coop); the host picks it for f16 weights with N ≥ 16·FN,
// M ≥ 64, K a multiple of 16.

enable wgpu_cooperative_matrix;

// #include act_fns

// #include gemm_store

// #include coop_f16_out

// #include coopd_mma

override WGS: u32 = 32u * GN * GM;

@compute @workgroup_size(WGS)
fn gemm_coopd(
    @builtin(local_invocation_index) t: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
) {
    let g = t / 32u;
    let o = coopd_origin(g, wg);
    coopd_tile(g, t % 32u, o.x, o.y, 0u, P.k);
}
