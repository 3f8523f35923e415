// gemm_coop — gemm.wgsl's product y (N, M) = act(x (N, K) · Wᵀ + bias) + res on cooperative
// matrices (tensor cores): 16×16×16 f16 inputs, f32 accumulators. Native only (naga's
// `wgpu_cooperative_matrix`, Vulkan's VK_KHR_cooperative_matrix); the f16 path only, with
// 32-wide subgroups (the host checks both: Caps::coop). Same bindings, params, weight layouts
// and epilogue (gemm_store) as gemm.wgsl, except that W is read as vec4<u32> words.
//
// Tiling: a workgroup of 128 invocations (4 subgroups) owns a 64 (x rows) × 64 (W rows)
// output tile; subgroup g owns the 32 × 32 quarter (g / 2, g % 2) as 2 × 2 accumulator
// fragments. Per K step of 32 the workgroup stages the x tile and the dequantised W tile in
// workgroup memory as vec4<f16>, `[row][k]` with a padded row stride (zeros outside the matrices,
// so any M, N and K work), and each subgroup loads its fragments from there: x as row-major
// A (n × k), W as column-major B (k × m). At the end the fragments go through workgroup
// memory (f32) to gemm_store's epilogue, four outputs of a row per call.

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

const TK: u32 = 32u;
// Staged tiles are vec4s (one store per 4 values); cooperative loads and stores take pointers
// to them with strides counted in vec4s.
const XS4: u32 = 10u; // vec4<f16> row stride of the staged tiles (80 bytes: 8 rows, 8 bank groups)
const CS4: u32 = 17u; // vec4<f32> row stride of the staged output

var<workgroup> xs: array<vec4<f16>, 640>; // 64 x rows × XS4
var<workgroup> ws: array<vec4<f16>, 640>; // 64 W rows × XS4
var<workgroup> cs: array<vec4<f32>, 1088>; // 64 x rows × CS4

// k0 + kq .. +3 masked to k < K, as f16
fn put_w(row: u32, kq: u32, k0: u32, v: vec4<f16>) {
    let kk = vec4<u32>(k0 + kq) + vec4<u32>(0u, 1u, 2u, 3u);
    ws[row * XS4 + kq / 4u] = select(vec4<f16>(0.0), v, kk < vec4<u32>(P.k));
}

// W rows [m0, m0+64) × k [k0, k0+32), dequantised, into ws.
fn load_w(t: u32, m0: u32, k0: u32) {
    let kb = k0 / TK;
    if (FMT == 2u) {
        // q4: a block is one vec4 of words; word j holds k 8j .. 8j+7 (low nibbles 8j .. +3)
        for (var i = 0u; i < 2u; i++) {
            let idx = t + i * 128u; // 64 rows × 4 words
            let row = idx / 4u;
            let j = idx % 4u;
            let gm = m0 + row;
            var lo = vec4<f32>(0.0);
            var hi = vec4<f32>(0.0);
            if (gm < P.m && kb < P.nb) {
                let b = gm * P.nb + kb;
                let sm = unpack2x16float(s[b]);
                let word = w[b][j];
                lo = unpack4x8unorm(word & 0x0F0F0F0Fu) * (sm.x * 255.0) + sm.y;
                hi = unpack4x8unorm((word >> 4u) & 0x0F0F0F0Fu) * (sm.x * 255.0) + sm.y;
            }
            put_w(row, 8u * j, k0, vec4<f16>(lo));
            put_w(row, 8u * j + 4u, k0, vec4<f16>(hi));
        }
    } else if (FMT == 1u) {
        // q8: a block is two vec4s of words; word j holds k 4j .. 4j+3
        let row = t / 2u; // 64 rows × 2 vec4s
        let h = t % 2u;
        let gm = m0 + row;
        var q = vec4<u32>(0u);
        var sc = 0.0;
        if (gm < P.m && kb < P.nb) {
            let b = gm * P.nb + kb;
            let sw = unpack2x16float(s[b / 2u]);
            sc = select(sw.x, sw.y, (b & 1u) == 1u) * 127.0;
            q = w[b * 2u + h];
        }
        for (var j = 0u; j < 4u; j++) {
            put_w(row, 16u * h + 4u * j, k0, vec4<f16>(unpack4x8snorm(q[j]) * sc));
        }
    } else {
        // f16: a row is nb vec4s of 8 halves (padded to nb·8 elements; read only inside it)
        for (var i = 0u; i < 2u; i++) {
            let idx = t + i * 128u; // 64 rows × 4 vec4s
            let row = idx / 4u;
            let j = idx % 4u;
            let gm = m0 + row;
            let q8 = k0 / 8u + j;
            var q = vec4<u32>(0u);
            if (gm < P.m && q8 < P.nb) {
                q = w[gm * P.nb + q8];
            }
            // (naga has no size-changing bitcast u32 → f16 pairs)
            let lo = vec4<f32>(unpack2x16float(q.x), unpack2x16float(q.y));
            let hi = vec4<f32>(unpack2x16float(q.z), unpack2x16float(q.w));
            put_w(row, 8u * j, k0, vec4<f16>(lo));
            put_w(row, 8u * j + 4u, k0, vec4<f16>(hi));
        }
    }
}

// x rows [n0, n0+64) × k [k0, k0+32) into xs (K is a multiple of 4).
fn load_x(t: u32, n0: u32, k0: u32) {
    let k4 = P.k / 4u;
    for (var i = 0u; i < 4u; i++) {
        let idx = t + i * 128u; // 64 rows × 8 vec4s
        let row = idx / 8u;
        let q = idx % 8u;
        let gn = n0 + row;
        let kq = k0 / 4u + q;
        var v = vec4<f16>(0.0);
        if (gn < P.n && kq < k4) {
            v = vec4<f16>(x[gn * k4 + kq]);
        }
        xs[row * XS4 + q] = v;
    }
}

@compute @workgroup_size(128)
fn gemm_coop(
    @builtin(local_invocation_index) t: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
) {
    let m0 = wg.x * 64u;
    let n0 = wg.y * 64u;
    let g = t / 32u; // the subgroup (the host requires 32-wide subgroups)
    let rn = (g / 2u) * 32u; // its x rows in the tile
    let rm = (g % 2u) * 32u; // its W rows in the tile
    var c00: coop_mat16x16<f32, C>;
    var c01: coop_mat16x16<f32, C>;
    var c10: coop_mat16x16<f32, C>;
    var c11: coop_mat16x16<f32, C>;
    for (var k0 = 0u; k0 < P.k; k0 += TK) {
        load_w(t, m0, k0);
        load_x(t, n0, k0);
        workgroupBarrier();
        for (var kk = 0u; kk < TK / 4u; kk += 4u) {
            let a0 = coopLoadT<coop_mat16x16<f16, A>>(&xs[rn * XS4 + kk], XS4);
            let a1 = coopLoadT<coop_mat16x16<f16, A>>(&xs[(rn + 16u) * XS4 + kk], XS4);
            let b0 = coopLoad<coop_mat16x16<f16, B>>(&ws[rm * XS4 + kk], XS4);
            let b1 = coopLoad<coop_mat16x16<f16, B>>(&ws[(rm + 16u) * XS4 + kk], XS4);
            c00 = coopMultiplyAdd(a0, b0, c00);
            c01 = coopMultiplyAdd(a0, b1, c01);
            c10 = coopMultiplyAdd(a1, b0, c10);
            c11 = coopMultiplyAdd(a1, b1, c11);
        }
        workgroupBarrier();
    }
    coopStoreT(c00, &cs[rn * CS4 + rm / 4u], CS4);
    coopStoreT(c01, &cs[rn * CS4 + (rm + 16u) / 4u], CS4);
    coopStoreT(c10, &cs[(rn + 16u) * CS4 + rm / 4u], CS4);
    coopStoreT(c11, &cs[(rn + 16u) * CS4 + (rm + 16u) / 4u], CS4);
    workgroupBarrier();
    for (var i = 0u; i < 8u; i++) {
        let idx = t + i * 128u; // 64 rows × 16 groups of 4
        let row = idx / 16u;
        let q = idx % 16u;
        store(n0 + row, m0 + 4u * q, cs[row * CS4 + q]);
    }
}
