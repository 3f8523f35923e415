// gemm_coop — gemm.wgsl's product y (N, M) = act(x (N, K) · Wᵀ + bias) + res on cooperative
// matrices (tensor cores): 16×16×16 f16 inputs, f32 accumulators. Native only (naga's
// `wgpu_cooperative_matrix`, Vulkan's VK_KHR_cooperative_matrix); the f16 path only, with
// 32-wide subgroups (the host checks both: Caps::coop). Same bindings, params, weight layouts
// and epilogue (gemm_store) as gemm.wgsl, except that W is read as vec4<u32> words.
//
// A workgroup of 128 invocations (4 subgroups) owns a 64 (x rows) × 64 (W rows) output tile
// (staged by coop_tile.wgsl, summed by coop_mma.wgsl); the result goes through workgroup memory (f32) to gemm_store's epilogue,
// four outputs of a row per call.

enable wgpu_cooperative_matrix;

struct Params {
    m: u32,      // W rows
    k: u32,      // columns (logical)
    nb: u32,     // blocks per row (q: K/32 rounded up; f16: stride/8)
    flags: u32,  // bit 0: bias, bit 1: residual
    n: u32,      // rows of x
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<storage, read> w: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read> s: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<act4>;
@group(0) @binding(3) var<storage, read> bias: array<act>;
@group(0) @binding(4) var<storage, read> res: array<act>;
@group(0) @binding(5) var<storage, read_write> y: array<act>;
@group(0) @binding(6) var<uniform> P: Params;

override ACT: u32 = 0; // 0 none, 1 SiLU, 2 GELU (erf), 3 SwiGLU over row pairs
override FMT: u32 = 0; // weight format: 0 f16, 1 q8, 2 q4

// #include act_fns

// #include gemm_store

// #include coop_tile

// #include coop_mma

@compute @workgroup_size(128)
fn gemm_coop(
    @builtin(local_invocation_index) t: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
) {
    let m0 = wg.x * 64u;
    let n0 = wg.y * 64u;
    coop_tile(t, m0, n0, 0u, P.k);
    for (var i = 0u; i < 8u; i++) {
        let idx = t + i * 128u; // 64 rows × 16 groups of 4
        let row = idx / 16u;
        let q = idx % 16u;
        store(n0 + row, m0 + 4u * q, cs[row * CS4 + q]);
    }
}
