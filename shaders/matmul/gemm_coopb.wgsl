// gemm_coopb — gemm_coop.wgsl's product for f16 weights on 128 × 128 tiles with
// double-buffered staging (coopb_mma.wgsl): 8 subgroups of 32, each owning 64 × 32 outputs;
// each output fragment goes through workgroup memory (f32) to gemm_store's epilogue
// (coop_f16_out.wgsl: gemm.wgsl's bindings and params, W read as vec4<f16>). Native only
// (Caps::coop); the host picks it for f16 weights with K a multiple of 4 (`--coop-f16 big`,
// the default).

enable wgpu_cooperative_matrix;

// #include act_fns

// #include gemm_store

// #include coop_f16_out

// #include coopb_mma

@compute @workgroup_size(256)
fn gemm_coopb(
    @builtin(local_invocation_index) t: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
) {
    coopb_tile(t, wg.y * BT, wg.x * BT, 0u, P.k);
}
