// gemm_reduce_ln — gemm_splitk.wgsl's reduce pass fused with the LayerNorm that follows the
// product (the flow U-Net's and the audio decoder's o_proj → norm): one workgroup per row n sums
// the split-K partials of its M outputs (in slice order, as gemm_reduce), applies gemm's
// epilogue (bias → residual; no activation) and stores y, then normalises the row as stored
// (rounded to act) with layernorm.wgsl's code (common/layernorm_row.wgsl): the same y and the same
// normalised row, one dispatch instead of two.
//
// @binding(0) part: (S, N, M) f32     split-K partials
// @binding(1) P:    uniform Params
// @binding(2) bias: (M,) act          when P.flags & 1
// @binding(3) res:  (N, M) act        when P.flags & 2
// @binding(4) y:    (N, M) act        the product
// @binding(5) w:    (M,) f32          LayerNorm scale
// @binding(6) b:    (M,) f32          LayerNorm shift
// @binding(7) out:  (N, M) act        the normalised rows (not y)

struct Params {
    m: u32,
    n: u32,
    flags: u32,  // bit 0: bias, bit 1: residual
    splits: u32, // S
    eps: f32,
    groups_x: u32, // workgroups along x (2-D → 1-D row mapping)
    _p0: u32,
    _p1: u32,
}

@group(0) @binding(0) var<storage, read> part: array<f32>;
@group(0) @binding(1) var<uniform> P: Params;
@group(0) @binding(2) var<storage, read> bias: array<act>;
@group(0) @binding(3) var<storage, read> res: array<act>;
@group(0) @binding(4) var<storage, read_write> y: array<act>;
@group(0) @binding(5) var<storage, read> w: array<f32>;
@group(0) @binding(6) var<storage, read> b: array<f32>;
@group(0) @binding(7) var<storage, read_write> out: array<act>;

// layernorm.wgsl's workgroup size (layernorm_row's reduction)
const WG: u32 = 256u;
const ACT: u32 = 0u; // gemm_store's activation: none
var<workgroup> red: array<f32, WG>;

fn ln_in(i: u32) -> f32 {
    return f32(y[i]);
}

fn ln_out(i: u32, v: f32) {
    out[i] = act(v);
}

// #include layernorm_row

fn summed(n: u32, m: u32) -> f32 {
    var acc = 0.0;
    for (var z = 0u; z < P.splits; z++) {
        acc += part[(z * P.n + n) * P.m + m];
    }
    return acc;
}

// #include act_fns

// #include gemm_store

@compute @workgroup_size(WG)
fn gemm_reduce_ln(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let n = wid.y * P.groups_x + wid.x;
    if (n >= P.n) {
        return; // uniform per workgroup
    }
    // the reduce: 4 outputs per invocation and round, as gemm_reduce
    for (var m0 = 4u * lid; m0 < P.m; m0 += 4u * WG) {
        var v = vec4<f32>(0.0);
        for (var c = 0u; c < 4u; c++) {
            if (m0 + c < P.m) {
                v[c] = summed(n, m0 + c);
            }
        }
        store(n, m0, v);
    }
    // every invocation's stores of the row, visible to the workgroup
    storageBarrier();
    layernorm_row(lid, n * P.m, P.m, P.eps);
}
