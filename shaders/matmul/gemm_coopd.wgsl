// gemm_coopd — gemm_coop.wgsl's product for f16 weights with fragments loaded straight from
// the storage buffers (coopd_mma.wgsl): GN × GM subgroups of 32 per workgroup, each owning a
// (16·FN) × 64 output tile; the result goes through workgroup memory (f32) to gemm_store's
// epilogue, 16 rows at a time. Same
// bindings, params and epilogue as gemm.wgsl, W read as vec4<f16>. Native only (Caps::coop);
// the host picks it for f16 weights with N ≥ 16·FN, M ≥ 64, K a multiple of 16.

enable wgpu_cooperative_matrix;

struct Params {
    m: u32,      // W rows
    k: u32,      // columns
    nb: u32,     // f16: row stride / 8
    flags: u32,  // bit 0: bias, bit 1: residual
    n: u32,      // rows of x
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<storage, read> w: array<vec4<f16>>;
@group(0) @binding(2) var<storage, read> x: array<act4>;
@group(0) @binding(3) var<storage, read> bias: array<act>;
@group(0) @binding(4) var<storage, read> res: array<act>;
@group(0) @binding(5) var<storage, read_write> y: array<act>;
@group(0) @binding(6) var<uniform> P: Params;

override ACT: u32 = 0; // 0 none, 1 SiLU, 2 GELU (erf), 3 SwiGLU over row pairs

// #include act_fns

// #include gemm_store

// #include coopd_mma

override WGS: u32 = 32u * GN * GM;

// gemm_store's epilogue for the 16-row band staged at subgroup g's part of cs
fn emit(g: u32, lane: u32, n: u32, m0: u32) {
    let base = g * 16u * CS4;
    for (var i = 0u; i < 8u; i++) {
        let idx = lane + i * 32u; // 16 rows × 16 groups of 4
        let row = idx / 16u;
        let q = idx % 16u;
        store(n + row, m0 + 4u * q, cs[base + row * CS4 + q]);
    }
}

@compute @workgroup_size(WGS)
fn gemm_coopd(
    @builtin(local_invocation_index) t: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
) {
    let g = t / 32u;
    let o = coopd_origin(g, wg);
    coopd_tile(g, t % 32u, o.x, o.y, 0u, P.k);
}
