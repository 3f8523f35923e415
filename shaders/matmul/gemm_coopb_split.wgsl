// gemm_coopb_split — gemm_coopb.wgsl's tiles with K cut into slices: workgroup (m tile, n
// tile, slice z) sums k in [z·kslice, (z+1)·kslice) into f32 partials part[(z·N + n)·M + m];
// gemm_splitk.wgsl's `gemm_reduce` then sums the slices in order and applies the epilogue.
// Same bindings and params as gemm_splitk.wgsl, W read as vec4<f16>. Native only.

enable wgpu_cooperative_matrix;

struct Params {
    m: u32,
    k: u32,
    nb: u32,
    flags: u32,
    n: u32,
    kslice: u32, // k per slice, a multiple of 32
    splits: u32,
    groups_x: u32,
}

@group(0) @binding(0) var<storage, read> w: array<vec4<f16>>;
@group(0) @binding(2) var<storage, read> x: array<act4>;
@group(0) @binding(3) var<storage, read_write> part: array<vec4<f32>>;
@group(0) @binding(4) var<uniform> P: Params;

// #include coopb_mma

var<private> slice: u32;

// the 16 × 16 fragment staged at subgroup g's part of cs → slice `slice`'s partials (M % 4 ==
// 0, so a row's partials are whole vec4s; rows and columns past the matrix are dropped)
fn emit(g: u32, lane: u32, n: u32, m: u32) {
    let base = g * 16u * CS4;
    let m4 = P.m / 4u;
    for (var i = 0u; i < 2u; i++) {
        let idx = lane + i * 32u;
        let row = idx / 4u;
        let q = idx % 4u;
        if (n + row < P.n && m / 4u + q < m4) {
            part[(slice * P.n + n + row) * m4 + m / 4u + q] = cs[base + row * CS4 + q];
        }
    }
}

@compute @workgroup_size(256)
fn gemm_coopb_part(
    @builtin(local_invocation_index) t: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
) {
    slice = wg.z;
    let k_lo = wg.z * P.kslice;
    coopb_tile(t, wg.y * BT, wg.x * BT, k_lo, min(P.k, k_lo + P.kslice));
}
