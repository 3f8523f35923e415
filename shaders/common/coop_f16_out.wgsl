// coop_f16_out — the bindings, params and epilogue shared by the one-pass tensor-core products
// of f16 weights (gemm_coopd.wgsl, gemm_coopb.wgsl): gemm.wgsl's bindings and params with W
// read as vec4<f16>, and `emit`, which sends the 16 rows × BAND4 vec4s staged in `cs` at
// subgroup g's part (row stride CS4; both from the tile's include) through gemm_store's
// epilogue. The including file also includes act_fns and gemm_store.

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

fn emit(g: u32, lane: u32, n: u32, m0: u32) {
    let base = g * 16u * CS4;
    for (var i = 0u; i < BAND4 / 2u; i++) {
        let idx = lane + i * 32u; // 16 rows × BAND4 groups of 4, 32 lanes
        let row = idx / BAND4;
        let q = idx % BAND4;
        store(n + row, m0 + 4u * q, cs[base + row * CS4 + q]);
    }
}
