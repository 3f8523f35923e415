// gemv — y[n] = act(W·norm(x[n]) + bias) + res[n] for NB input vectors: weight rows of f16, q8
// or q4, read once for all NB vectors, f32 accumulation. Fusions that save whole dispatches in
// the decode step: an RMSNorm of x (NORM = 1: every workgroup recomputes x's inverse RMS, x is
// tiny next to W), and SwiGLU over interleaved rows (ACT = 3: rows 2i and 2i+1 are gate_i and
// up_i, y[i] = SiLU(gate_i)·up_i, so y has M/2 entries; R is even, so pairs share a group).
//
// @binding(0) w:      weight data, (M, nb) blocks of vec4<u32>, nb = ⌈K/B⌉ per row, rows padded with 0
//                       f16: B = 8,  1 vec4 per block (8 halves, low half of each u32 first)
//                       q8:  B = 32, 2 vec4 per block (i8, lowest byte first)
//                       q4:  B = 32, 1 vec4 per block (u32 j: bytes = q[8j+b] | q[8j+4+b] << 4)
// @binding(1) s:      (M·nb) scales: q8 f16 pairs packed in u32; q4 u32 = (scale f16, min f16); f16: unused
// @binding(2) x:      (NB, ⌈K/4⌉) act4   input vectors, each row padded to a multiple of 4 elements
// @binding(3) bias:   (M,) act           read when P.flags & 1
// @binding(4) res:    (NB, M) act        added after the activation when P.flags & 2 (residual)
// @binding(5) y:      (NB, M) act        output
// @binding(6) P:      uniform Params
// @binding(7) g:      (K,) f32           RMSNorm weight (read when NORM = 1)
//
// TPR threads share a group of R consecutive rows (R·WG/TPR rows per workgroup): each x chunk
// is loaded once and used for R rows, which keeps the q4/q8 kernels from being bound by x loads.
// The subgroup variants set TPR to the subgroup size and reduce with subgroupAdd. Workgroups are laid out 2-D (x ≤ 65535): the LM
// head has 152064 rows. Dequantisation: `unpack4x8unorm`/`unpack4x8snorm` turn 4 packed bytes
// into a vec4<f32> in one step (core WGSL, no extension), so q4/q8 cost few ALU ops per weight.

struct Params {
    m: u32,        // rows
    k: u32,        // columns (logical)
    nb: u32,       // blocks per row
    flags: u32,    // bit 0: bias, bit 1: residual add
    groups_x: u32, // workgroups along x
    xs: u32,       // stride between input vectors, in act4 units
    n: u32,        // number of input vectors in this dispatch (≤ NB)
    n0: u32,       // index of this dispatch's first vector in x, res and y
    eps: f32,      // RMSNorm epsilon (NORM = 1)
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
@group(0) @binding(7) var<storage, read> g: array<vec4<f32>>;

override WG: u32 = 256;
override TPR: u32 = 32; // threads per row group, a power of two ≤ WG
override NB: u32 = 1;   // input vectors per dispatch
override R: u32 = 1;    // rows per group; R·NB ≤ 4 (accumulator slot r·NB + n)
override ACT: u32 = 0;  // 0 none, 1 SiLU, 2 GELU (erf), 3 SwiGLU over row pairs
override NORM: u32 = 0; // 1: x is RMS-normalised and scaled by g on the fly

const MAX_WG: u32 = 256u;
var<workgroup> partial: array<vec4<f32>, MAX_WG>;
var<workgroup> inv_rms: vec4<f32>;

fn xv(n: u32, i: u32) -> vec4<f32> {
    return vec4<f32>(x[(P.n0 + n) * P.xs + i]);
}

// NORM = 1: inverse RMS of each of the NB vectors, computed by the whole workgroup.
// Every thread must call this (it has barriers).
fn compute_norm(lid: u32) {
    var ss = vec4<f32>(0.0);
    let k4 = (P.k + 3u) / 4u;
    for (var i = lid; i < k4; i += WG) {
        for (var n = 0u; n < NB; n++) {
            let v = xv(n, i);
            ss[n] += dot(v, v); // padding lanes of x are zero by construction
        }
    }
    partial[lid] = ss;
    workgroupBarrier();
    for (var st = WG / 2u; st > 0u; st >>= 1u) {
        if (lid < st) {
            partial[lid] += partial[lid + st];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        inv_rms = inverseSqrt(partial[0] / f32(P.k) + vec4<f32>(P.eps));
    }
    workgroupBarrier();
}

// x[n][8c .. 8c+8) as two vec4 (RMS-normalised when NORM = 1); lanes at or beyond K are
// zeroed (ragged rows: the loads there may touch padding or the next vector, which `select`
// discards, NaN included).
fn x8(n: u32, c: u32) -> array<vec4<f32>, 2> {
    var a = xv(n, 2u * c);
    var b = xv(n, 2u * c + 1u);
    if (NORM == 1u) {
        a *= g[2u * c] * inv_rms[n];
        b *= g[2u * c + 1u] * inv_rms[n];
    }
    let k0 = 8u * c;
    if (k0 + 8u > P.k) {
        let i = vec4<u32>(k0) + vec4<u32>(0u, 1u, 2u, 3u);
        a = select(vec4<f32>(0.0), a, i < vec4<u32>(P.k));
        b = select(vec4<f32>(0.0), b, i + vec4<u32>(4u) < vec4<u32>(P.k));
    }
    return array<vec4<f32>, 2>(a, b);
}

// Partial dot products of rows row0 .. row0+R for NB vectors, strided over the lanes.
fn group_partial_f16(row0: u32, lane: u32) -> vec4<f32> {
    var acc = vec4<f32>(0.0);
    for (var c = lane; c < P.nb; c += TPR) {
        for (var n = 0u; n < NB; n++) {
            let xx = x8(n, c);
            for (var r = 0u; r < R; r++) {
                let row = min(row0 + r, P.m - 1u); // rows past M compute garbage, never stored
                let wv = w[row * P.nb + c];
                let wa = vec4<f32>(unpack2x16float(wv.x), unpack2x16float(wv.y));
                let wb = vec4<f32>(unpack2x16float(wv.z), unpack2x16float(wv.w));
                acc[r * NB + n] += dot(wa, xx[0]) + dot(wb, xx[1]);
            }
        }
    }
    return acc;
}

fn group_partial_q8(row0: u32, lane: u32) -> vec4<f32> {
    var acc = vec4<f32>(0.0);
    for (var c = lane; c < P.nb; c += TPR) {
        for (var n = 0u; n < NB; n++) {
            // x chunk in named registers (a local array would be spilled to memory)
            let x0 = x8(n, 4u * c);
            let x1 = x8(n, 4u * c + 1u);
            let x2 = x8(n, 4u * c + 2u);
            let x3 = x8(n, 4u * c + 3u);
            for (var r = 0u; r < R; r++) {
                let b = min(row0 + r, P.m - 1u) * P.nb + c;
                let sw = unpack2x16float(s[b / 2u]);
                let sc = select(sw.x, sw.y, (b & 1u) == 1u) * 127.0;
                let w0 = w[2u * b];
                let w1 = w[2u * b + 1u];
                var d = dot(unpack4x8snorm(w0.x), x0[0]) + dot(unpack4x8snorm(w0.y), x0[1]);
                d += dot(unpack4x8snorm(w0.z), x1[0]) + dot(unpack4x8snorm(w0.w), x1[1]);
                d += dot(unpack4x8snorm(w1.x), x2[0]) + dot(unpack4x8snorm(w1.y), x2[1]);
                d += dot(unpack4x8snorm(w1.z), x3[0]) + dot(unpack4x8snorm(w1.w), x3[1]);
                acc[r * NB + n] += sc * d;
            }
        }
    }
    return acc;
}

fn group_partial_q4(row0: u32, lane: u32) -> vec4<f32> {
    var acc = vec4<f32>(0.0);
    let mask = vec4<u32>(0x0F0F0F0Fu);
    for (var c = lane; c < P.nb; c += TPR) {
        for (var n = 0u; n < NB; n++) {
            let x0 = x8(n, 4u * c);
            let x1 = x8(n, 4u * c + 1u);
            let x2 = x8(n, 4u * c + 2u);
            let x3 = x8(n, 4u * c + 3u);
            let xs = x0[0] + x0[1] + x1[0] + x1[1] + x2[0] + x2[1] + x3[0] + x3[1];
            let xsum = dot(xs, vec4<f32>(1.0));
            for (var r = 0u; r < R; r++) {
                let b = min(row0 + r, P.m - 1u) * P.nb + c;
                let sm = unpack2x16float(s[b]);
                let wv = w[b];
                let lo = wv & mask;
                let hi = (wv >> vec4<u32>(4u)) & mask;
                var d = dot(unpack4x8unorm(lo.x), x0[0]) + dot(unpack4x8unorm(hi.x), x0[1]);
                d += dot(unpack4x8unorm(lo.y), x1[0]) + dot(unpack4x8unorm(hi.y), x1[1]);
                d += dot(unpack4x8unorm(lo.z), x2[0]) + dot(unpack4x8unorm(hi.z), x2[1]);
                d += dot(unpack4x8unorm(lo.w), x3[0]) + dot(unpack4x8unorm(hi.w), x3[1]);
                acc[r * NB + n] += sm.x * 255.0 * d + sm.y * xsum;
            }
        }
    }
    return acc;
}

// #include act_fns

// #include gemv_tail

@compute @workgroup_size(WG)
fn gemv_f16(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    if (NORM == 1u) {
        compute_norm(lid);
    }
    let row0 = row0_of(wid, lid);
    var acc = vec4<f32>(0.0);
    if (row0 < P.m) {
        acc = group_partial_f16(row0, lid % TPR);
    }
    reduce_and_finish(row0, lid % TPR, lid, acc);
}

@compute @workgroup_size(WG)
fn gemv_q8(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    if (NORM == 1u) {
        compute_norm(lid);
    }
    let row0 = row0_of(wid, lid);
    var acc = vec4<f32>(0.0);
    if (row0 < P.m) {
        acc = group_partial_q8(row0, lid % TPR);
    }
    reduce_and_finish(row0, lid % TPR, lid, acc);
}

@compute @workgroup_size(WG)
fn gemv_q4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    if (NORM == 1u) {
        compute_norm(lid);
    }
    let row0 = row0_of(wid, lid);
    var acc = vec4<f32>(0.0);
    if (row0 < P.m) {
        acc = group_partial_q4(row0, lid % TPR);
    }
    reduce_and_finish(row0, lid % TPR, lid, acc);
}

// #if subgroups
// One row group per subgroup: the runtime sets TPR to the adapter's fixed subgroup size.
@compute @workgroup_size(WG)
fn gemv_f16_sg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
               @builtin(subgroup_invocation_id) sid: u32) {
    if (NORM == 1u) {
        compute_norm(lid);
    }
    let row0 = row0_of(wid, lid);
    var acc = vec4<f32>(0.0);
    if (row0 < P.m) {
        acc = group_partial_f16(row0, sid);
    }
    let sum = subgroupAdd(acc);
    if (sid == 0u) {
        finish(row0, sum);
    }
}

@compute @workgroup_size(WG)
fn gemv_q8_sg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
              @builtin(subgroup_invocation_id) sid: u32) {
    if (NORM == 1u) {
        compute_norm(lid);
    }
    let row0 = row0_of(wid, lid);
    var acc = vec4<f32>(0.0);
    if (row0 < P.m) {
        acc = group_partial_q8(row0, sid);
    }
    let sum = subgroupAdd(acc);
    if (sid == 0u) {
        finish(row0, sum);
    }
}

@compute @workgroup_size(WG)
fn gemv_q4_sg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
              @builtin(subgroup_invocation_id) sid: u32) {
    if (NORM == 1u) {
        compute_norm(lid);
    }
    let row0 = row0_of(wid, lid);
    var acc = vec4<f32>(0.0);
    if (row0 < P.m) {
        acc = group_partial_q4(row0, sid);
    }
    let sum = subgroupAdd(acc);
    if (sid == 0u) {
        finish(row0, sum);
    }
}
// #endif
