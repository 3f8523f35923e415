// mma_peak — the tensor-core throughput limit for `bca bench kernels` (the compute analogue
// of the copy kernel's bandwidth): each workgroup is one 32-wide subgroup running P.reps
// rounds of 8 independent 16×16×16 f16 → f32 multiply-adds on fragments loaded once
// (MODE 0), reloaded every round from a small storage buffer (MODE 1, L1-resident: the cost
// of loading fragments straight from buffers) or from workgroup memory (MODE 2). The results
// are stored so nothing is optimised away.

enable wgpu_cooperative_matrix;

struct Params {
    reps: u32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<storage, read> x: array<vec4<f16>>;
@group(0) @binding(1) var<storage, read_write> y: array<vec4<f32>>;
@group(0) @binding(2) var<uniform> P: Params;

override MODE: u32 = 0;

var<workgroup> xs: array<vec4<f16>, 512>; // 6 fragments of 16 rows × 4 vec4 (+ room)

@compute @workgroup_size(32)
fn mma_peak(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    for (var i = t; i < 512u; i += 32u) {
        xs[i] = x[i];
    }
    workgroupBarrier();
    var a0 = coopLoadT<coop_mat16x16<f16, A>>(&x[0u], 4u);
    var a1 = coopLoadT<coop_mat16x16<f16, A>>(&x[64u], 4u);
    var b0 = coopLoad<coop_mat16x16<f16, B>>(&x[128u], 4u);
    var b1 = coopLoad<coop_mat16x16<f16, B>>(&x[192u], 4u);
    var b2 = coopLoad<coop_mat16x16<f16, B>>(&x[256u], 4u);
    var b3 = coopLoad<coop_mat16x16<f16, B>>(&x[320u], 4u);
    var c00: coop_mat16x16<f32, C>;
    var c01: coop_mat16x16<f32, C>;
    var c02: coop_mat16x16<f32, C>;
    var c03: coop_mat16x16<f32, C>;
    var c10: coop_mat16x16<f32, C>;
    var c11: coop_mat16x16<f32, C>;
    var c12: coop_mat16x16<f32, C>;
    var c13: coop_mat16x16<f32, C>;
    for (var r = 0u; r < P.reps; r++) {
        let o = (r & 7u) * 4u; // a moving offset so the loads are not hoisted
        if (MODE == 1u) {
            a0 = coopLoadT<coop_mat16x16<f16, A>>(&x[o], 4u);
            a1 = coopLoadT<coop_mat16x16<f16, A>>(&x[64u + o], 4u);
            b0 = coopLoad<coop_mat16x16<f16, B>>(&x[128u + o], 4u);
            b1 = coopLoad<coop_mat16x16<f16, B>>(&x[192u + o], 4u);
            b2 = coopLoad<coop_mat16x16<f16, B>>(&x[256u + o], 4u);
            b3 = coopLoad<coop_mat16x16<f16, B>>(&x[320u + o], 4u);
        } else if (MODE == 2u) {
            a0 = coopLoadT<coop_mat16x16<f16, A>>(&xs[o], 4u);
            a1 = coopLoadT<coop_mat16x16<f16, A>>(&xs[64u + o], 4u);
            b0 = coopLoad<coop_mat16x16<f16, B>>(&xs[128u + o], 4u);
            b1 = coopLoad<coop_mat16x16<f16, B>>(&xs[192u + o], 4u);
            b2 = coopLoad<coop_mat16x16<f16, B>>(&xs[256u + o], 4u);
            b3 = coopLoad<coop_mat16x16<f16, B>>(&xs[320u + o], 4u);
        }
        c00 = coopMultiplyAdd(a0, b0, c00);
        c01 = coopMultiplyAdd(a0, b1, c01);
        c02 = coopMultiplyAdd(a0, b2, c02);
        c03 = coopMultiplyAdd(a0, b3, c03);
        c10 = coopMultiplyAdd(a1, b0, c10);
        c11 = coopMultiplyAdd(a1, b1, c11);
        c12 = coopMultiplyAdd(a1, b2, c12);
        c13 = coopMultiplyAdd(a1, b3, c13);
    }
    let base = wg.x * 512u; // 8 fragments of 16 rows × 4 vec4
    coopStoreT(c00, &y[base], 4u);
    coopStoreT(c01, &y[base + 64u], 4u);
    coopStoreT(c02, &y[base + 128u], 4u);
    coopStoreT(c03, &y[base + 192u], 4u);
    coopStoreT(c10, &y[base + 256u], 4u);
    coopStoreT(c11, &y[base + 320u], 4u);
    coopStoreT(c12, &y[base + 384u], 4u);
    coopStoreT(c13, &y[base + 448u], 4u);
}
