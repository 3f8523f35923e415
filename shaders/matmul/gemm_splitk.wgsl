// gemm_splitk — gemm.wgsl's product split along K, for products whose 64 × 64 tiles are too
// few to fill the GPU (the flow U-Net's and the encoder's: a few hundred rows of x against a
// few hundred W rows). Each K step of a tile waits on its global loads, so a tile's time is
// its number of K steps; splitting K into S slices of whole steps cuts that chain S-fold and
// gives the GPU S times the workgroups. Two entries, one dispatch each:
//
//   gemm_part   workgroup (m tile, n tile, slice z) sums k in [z·kslice, (z+1)·kslice) into
//               f32 partials part[(z·N + n)·M + m] (no epilogue)
//   gemm_reduce one thread per 4 outputs of a row: Σ_z of the partials in order z = 0, 1, …,
//               then gemm's epilogue (`store`: bias → activation → residual; SwiGLU over
//               row pairs)
//
// @binding(0) w:    weight words (as gemm.wgsl)      gemm_part only (a dummy otherwise)
// @binding(1) s:    scales                           gemm_part only
// @binding(2) x:    (N, K/4) act4                    gemm_part only
// @binding(3) part: (S, N, M) f32
// @binding(4) P:    uniform Params
// @binding(5) bias: (M,) act                         gemm_reduce, when P.flags & 1
// @binding(6) res:  (N, M_out) act                   gemm_reduce, when P.flags & 2
// @binding(7) y:    (N, M_out) act                   gemm_reduce (gemm_part: a dummy)

struct Params {
    m: u32,
    k: u32,
    nb: u32,
    flags: u32,  // bit 0: bias, bit 1: residual
    n: u32,
    kslice: u32, // k per slice, a multiple of TK
    splits: u32, // S
    groups_x: u32, // gemm_reduce: workgroups along x
}

@group(0) @binding(0) var<storage, read> w: array<u32>;
@group(0) @binding(1) var<storage, read> s: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<act4>;
@group(0) @binding(3) var<storage, read_write> part: array<f32>;
@group(0) @binding(4) var<uniform> P: Params;
@group(0) @binding(5) var<storage, read> bias: array<act>;
@group(0) @binding(6) var<storage, read> res: array<act>;
@group(0) @binding(7) var<storage, read_write> y: array<act>;

override ACT: u32 = 0; // 0 none, 1 SiLU, 2 GELU (erf), 3 SwiGLU over row pairs
override FMT: u32 = 0; // weight format: 0 f16, 1 q8, 2 q4

// #include act_fns

// #include gemm_tile64

// #include gemm_store

fn put_part(z: u32, n: u32, m0: u32, v: vec4<f32>) {
    if (n >= P.n) {
        return;
    }
    let base = (z * P.n + n) * P.m;
    for (var c = 0u; c < 4u; c++) {
        if (m0 + c < P.m) {
            part[base + m0 + c] = v[c];
        }
    }
}

@compute @workgroup_size(16, 16)
fn gemm_part(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wg: vec3<u32>) {
    let tx = lid.x;
    let ty = lid.y;
    let m0 = wg.x * TN;
    let n0 = wg.y * TM;
    let z = wg.z;
    let a = tile_acc(tx, ty, m0, n0, z * P.kslice, min(P.k, (z + 1u) * P.kslice));
    let mm = m0 + tx * 4u;
    put_part(z, n0 + ty * 4u, mm, a.r0);
    put_part(z, n0 + ty * 4u + 1u, mm, a.r1);
    put_part(z, n0 + ty * 4u + 2u, mm, a.r2);
    put_part(z, n0 + ty * 4u + 3u, mm, a.r3);
}

fn summed(n: u32, m: u32) -> f32 {
    var acc = 0.0;
    for (var z = 0u; z < P.splits; z++) {
        acc += part[(z * P.n + n) * P.m + m];
    }
    return acc;
}

@compute @workgroup_size(256)
fn gemm_reduce(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * P.groups_x + wid.x) * 256u + lid;
    let m4 = (P.m + 3u) / 4u;
    if (i >= P.n * m4) {
        return;
    }
    let n = i / m4;
    let m0 = (i % m4) * 4u;
    var v = vec4<f32>(0.0);
    for (var c = 0u; c < 4u; c++) {
        if (m0 + c < P.m) {
            v[c] = summed(n, m0 + c);
        }
    }
    store(n, m0, v);
}
