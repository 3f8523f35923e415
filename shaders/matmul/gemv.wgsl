// gemv — y = W·x (+ bias): a row of f16 weights times an activation vector, f32 accumulation.
//
// @binding(0) w:    (M, KP/8) vec4<u32>  f16 weights, 8 per vec4 (2 per u32, low half first);
//                                         rows padded with zeros to KP = ⌈K/8⌉·8
// @binding(1) x:    (⌈K/4⌉,) act4         input vector (the buffer is padded to 16 bytes)
// @binding(2) bias: (M,) act              read only when P.flags & 1
// @binding(3) y:    (M,) act              output
// @binding(4) P:    uniform Params
//
// `act`/`act4` are f16 or f32 (chosen by the header the runtime prepends). Weights stay packed
// f16 in both cases: `unpack2x16float` is core WGSL, so the f32 path needs no `shader-f16`.
// TPR threads share one row; WG / TPR rows per workgroup. Workgroups are laid out 2-D
// (x up to 65535) because the LM head has 152064 rows.

struct Params {
    m: u32,        // rows
    k: u32,        // columns (logical)
    kp8: u32,      // row stride in vec4<u32> units = KP / 8
    flags: u32,    // bit 0: add bias
    groups_x: u32, // workgroups along x (for the 2-D → 1-D row mapping)
}

@group(0) @binding(0) var<storage, read> w: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read> x: array<act4>;
@group(0) @binding(2) var<storage, read> bias: array<act>;
@group(0) @binding(3) var<storage, read_write> y: array<act>;
@group(0) @binding(4) var<uniform> P: Params;

override WG: u32 = 256;
override TPR: u32 = 32; // threads per row, a power of two ≤ WG

const MAX_WG: u32 = 256u;
var<workgroup> partial: array<f32, MAX_WG>;

fn dot8(wv: vec4<u32>, xa: vec4<f32>, xb: vec4<f32>) -> f32 {
    let w01 = unpack2x16float(wv.x);
    let w23 = unpack2x16float(wv.y);
    let w45 = unpack2x16float(wv.z);
    let w67 = unpack2x16float(wv.w);
    return dot(vec4<f32>(w01, w23), xa) + dot(vec4<f32>(w45, w67), xb);
}

// Scalar f16 weight (row, col) for the ragged tail.
fn w_at(row: u32, col: u32) -> f32 {
    let v = w[row * P.kp8 + col / 8u];
    let word = v[(col % 8u) / 2u];
    let pair = unpack2x16float(word);
    return select(pair.x, pair.y, (col & 1u) == 1u);
}

// Partial dot product of one row, strided over this thread's lane.
fn row_partial(row: u32, lane: u32) -> f32 {
    var acc = 0.0;
    let full = P.k / 8u;
    let base = row * P.kp8;
    for (var c = lane; c < full; c += TPR) {
        acc += dot8(w[base + c], vec4<f32>(x[2u * c]), vec4<f32>(x[2u * c + 1u]));
    }
    // ragged tail: K % 8 leftover columns, one per lane
    let col = full * 8u + lane;
    if (lane < 8u && col < P.k) {
        acc += w_at(row, col) * f32(x[col / 4u][col % 4u]);
    }
    return acc;
}

fn finish(row: u32, sum: f32) {
    var v = sum;
    if ((P.flags & 1u) != 0u) {
        v += f32(bias[row]);
    }
    y[row] = act(v);
}

@compute @workgroup_size(WG)
fn gemv(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let rows_per_wg = WG / TPR;
    let group = wid.y * P.groups_x + wid.x;
    let row = group * rows_per_wg + lid / TPR;
    let lane = lid % TPR;
    var acc = 0.0;
    if (row < P.m) {
        acc = row_partial(row, lane);
    }
    partial[lid] = acc;
    workgroupBarrier();
    // tree reduction inside each TPR-wide segment (every thread reaches every barrier)
    for (var s = TPR / 2u; s > 0u; s >>= 1u) {
        if (lane < s) {
            partial[lid] += partial[lid + s];
        }
        workgroupBarrier();
    }
    if (lane == 0u && row < P.m) {
        finish(row, partial[lid]);
    }
}

// #if subgroups
// One row per subgroup: the runtime sets TPR to the adapter's (fixed) subgroup size.
@compute @workgroup_size(WG)
fn gemv_sg(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_invocation_id) sid: u32,
) {
    let rows_per_wg = WG / TPR;
    let group = wid.y * P.groups_x + wid.x;
    let row = group * rows_per_wg + lid / TPR;
    var acc = 0.0;
    if (row < P.m) {
        acc = row_partial(row, sid);
    }
    let sum = subgroupAdd(acc);
    if (sid == 0u && row < P.m) {
        finish(row, sum);
    }
}
// #endif
