// gemm_coopd_split — gemm_coopd.wgsl's tiles with K cut into slices: workgroup (m tile, n
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
    kslice: u32, // k per slice, a multiple of 16
    splits: u32,
    groups_x: u32,
}

@group(0) @binding(0) var<storage, read> w: array<vec4<f16>>;
@group(0) @binding(2) var<storage, read> x: array<act4>;
@group(0) @binding(3) var<storage, read_write> part: array<vec4<f32>>;
@group(0) @binding(4) var<uniform> P: Params;

// #include coopd_mma

override WGS: u32 = 32u * GN * GM;

// the 16-row band staged at subgroup g's part of cs → slice z's partials (M % 4 == 0, so a
// row's partials are whole vec4s)
fn emit_part(g: u32, lane: u32, n: u32, m0: u32, z: u32) {
    let base = g * 16u * CS4;
    let m4 = P.m / 4u;
    for (var i = 0u; i < 8u; i++) {
        let idx = lane + i * 32u;
        let row = idx / 16u;
        let q = idx % 16u;
        part[(z * P.n + n + row) * m4 + m0 / 4u + q] = cs[base + row * CS4 + q];
    }
}

var<private> slice: u32;

fn emit(g: u32, lane: u32, n: u32, m0: u32) {
    emit_part(g, lane, n, m0, slice);
}

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
