// gemm_coop_split — gemm_splitk.wgsl's `gemm_part` on cooperative matrices (coop_tile.wgsl):
// workgroup (m tile, n tile, slice z) sums k in [z·kslice, (z+1)·kslice) into f32 partials
// part[(z·N + n)·M + m]; gemm_splitk.wgsl's `gemm_reduce` then sums the slices in order and
// applies the epilogue. Same bindings and params as gemm_splitk.wgsl (read it first), W read
// as vec4<u32> words. Native only, the f16 path (Caps::coop).

enable wgpu_cooperative_matrix;

struct Params {
    m: u32,
    k: u32,
    nb: u32,
    flags: u32,
    n: u32,
    kslice: u32, // k per slice, a multiple of TK
    splits: u32,
    groups_x: u32,
}

@group(0) @binding(0) var<storage, read> w: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read> s: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<act4>;
@group(0) @binding(3) var<storage, read_write> part: array<f32>;
@group(0) @binding(4) var<uniform> P: Params;

override FMT: u32 = 0; // weight format: 0 f16, 1 q8, 2 q4

// #include coop_tile

// #include coop_mma

@compute @workgroup_size(128)
fn gemm_coop_part(
    @builtin(local_invocation_index) t: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
) {
    let m0 = wg.x * 64u;
    let n0 = wg.y * 64u;
    let z = wg.z;
    let k_lo = z * P.kslice;
    coop_tile(t, m0, n0, k_lo, min(P.k, k_lo + P.kslice));
    for (var i = 0u; i < 8u; i++) {
        let idx = t + i * 128u; // 64 rows × 16 groups of 4
        let n = n0 + idx / 16u;
        let m = m0 + 4u * (idx % 16u);
        let v = cs[(idx / 16u) * CS4 + idx % 16u];
        if (n < P.n) {
            let base = (z * P.n + n) * P.m;
            for (var c = 0u; c < 4u; c++) {
                if (m + c < P.m) {
                    part[base + m + c] = v[c];
                }
            }
        }
    }
}
