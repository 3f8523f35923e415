// gemm_coopb — gemm_coop.wgsl's product for f16 weights on 128 × 128 tiles with
// double-buffered staging (coopb_mma.wgsl): 8 subgroups of 32, each owning 64 × 32 outputs;
// each output fragment goes through workgroup memory (f32) to gemm_store's epilogue. Same
// bindings, params and epilogue as gemm.wgsl, W read as vec4<f16>. Native only (Caps::coop);
// the host picks it for f16 weights with K a multiple of 4 (`--coop-f16 big`).

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

// #include coopb_mma

// gemm_store's epilogue for the 16 × 16 fragment staged at subgroup g's part of cs
fn emit(g: u32, lane: u32, n: u32, m: u32) {
    let base = g * 16u * CS4;
    for (var i = 0u; i < 2u; i++) {
        let idx = lane + i * 32u; // 16 rows × 4 groups of 4
        let row = idx / 4u;
        let q = idx % 4u;
        store(n + row, m + 4u * q, cs[base + row * CS4 + q]);
    }
}

@compute @workgroup_size(256)
fn gemm_coopb(
    @builtin(local_invocation_index) t: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
) {
    coopb_tile(t, wg.y * BT, wg.x * BT, 0u, P.k);
}
