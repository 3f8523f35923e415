// coop_f16_part — the bindings, params and partials' store shared by the split-K tensor-core
// products of f16 weights (gemm_coopd_split.wgsl, gemm_coopb_split.wgsl): gemm_splitk.wgsl's
// bindings and params with W read as vec4<f16>, and `emit`, which writes the 16 rows × BAND4
// vec4s staged in `cs` at subgroup g's part (row stride CS4) to slice `slice`'s partials
// part[(slice·N + n)·M + m] (M % 4 == 0, so a row's partials are whole vec4s; rows and
// columns past the matrix are dropped).

struct Params {
    m: u32,
    k: u32,
    nb: u32,
    flags: u32,
    n: u32,
    kslice: u32, // k per slice, a multiple of the tile's K step
    splits: u32,
    groups_x: u32,
}

@group(0) @binding(0) var<storage, read> w: array<vec4<f16>>;
@group(0) @binding(2) var<storage, read> x: array<act4>;
@group(0) @binding(3) var<storage, read_write> part: array<vec4<f32>>;
@group(0) @binding(4) var<uniform> P: Params;

var<private> slice: u32;

fn emit(g: u32, lane: u32, n: u32, m0: u32) {
    let base = g * 16u * CS4;
    let m4 = P.m / 4u;
    for (var i = 0u; i < BAND4 / 2u; i++) {
        let idx = lane + i * 32u;
        let row = idx / BAND4;
        let q = idx % BAND4;
        if (n + row < P.n && m0 / 4u + q < m4) {
            part[(slice * P.n + n + row) * m4 + m0 / 4u + q] = cs[base + row * CS4 + q];
        }
    }
}
