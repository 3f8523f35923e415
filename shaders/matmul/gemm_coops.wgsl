// gemm_coops — the tensor-core product of f16 weights for few vectors (the flow U-Net's 200
// rows at 2 s of speech), in one pass without split-K: y = act(x · Wᵀ + b) + r, gemm.wgsl's
// bindings with W and x read as 16-byte groups of 8 halves (K and W's row stride multiples
// of 8).
//
// A workgroup of SG·KS subgroups (32-wide) owns 16 x rows × 16·SG W rows; subgroup
// (g, ks) sums the 16 × 16 outputs of W rows 16g .. 16g+15 over every KS-th step of 16 of K
// (the KS shares are added in the epilogue). K goes in chunks of 256: every invocation loads
// its share of a whole chunk (x 16 × 256, W 16·SG × 256 halves) into
// registers at once, so a chunk costs one load latency, not one per 16 or 32 of K as in the
// tiles that stage a K step at a time. While the subgroups multiply chunk c out of workgroup
// memory, chunk c + 1's loads are in flight. Products of ≤ 256 columns are one chunk: one
// load latency, 16 multiply-adds, the epilogue.
//
// With P.cin > 0, x is a convolution's input (B·Tin, Cin) read as its im2col rows (implicit
// im2col, no gather pass): column kk of row n = (b, t) is tap kk / Cin, channel kk % Cin of
// input frame t·stride + tap·dil − pad of sequence b (zeros outside the sequence); Cin a
// multiple of 8, so a group of 8 never straddles two taps.
//
// With LNX = 1 the product is of LayerNorm(x) (K ≤ 256, one chunk): the staged rows are
// normalised in workgroup memory before the multiply-adds, so the LayerNorm before a product
// (the U-Net's norm1 → q/k/v and norm3 → ff) needs no dispatch of its own.
//
// With TR = 1 (P.tr = s) it is a transposed convolution (stride s, no groups or dilation, one
// sequence), as s products, one per output phase (workgroup z): see `tr_r` below. P.n is then
// the output frames.
//
// The 16 × 16 f32 results go through workgroup memory to gemm_store's epilogue. Native only
// (Caps::coop, f16 activations).

enable wgpu_cooperative_matrix;

// #include act_fns

// #include gemm_store

struct Params {
    m: u32,      // W rows
    k: u32,      // columns
    nb: u32,     // W's row stride in groups of 8 halves
    flags: u32,  // bit 0: bias, bit 1: residual
    n: u32,      // rows of x (output rows)
    cin: u32,    // 0: x is (N, K); else the convolution's input channels
    tin: u32,    // input frames per sequence
    tout: u32,   // output frames per sequence
    stride: u32,
    pad: u32,    // left padding (transposed: `padding`)
    dil: u32,
    tr: u32,     // transposed convolution: its stride s (0: not transposed)
    tr_k: u32,   // transposed: the kernel's taps K (W's row stride is K·Cin)
    ln_eps: f32, // LNX: the LayerNorm's epsilon
    _p1: u32,
}

@group(0) @binding(0) var<storage, read> w: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> x: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> bias: array<act>;
@group(0) @binding(4) var<storage, read> res: array<act>;
@group(0) @binding(5) var<storage, read_write> y: array<act>;
@group(0) @binding(6) var<uniform> P: Params;
// LNX: the LayerNorm of x applied before the product (weight, bias f32 (K))
@group(0) @binding(1) var<storage, read> ln_w: array<f32>;
@group(0) @binding(7) var<storage, read> ln_b: array<f32>;

override ACT: u32 = 0; // 0 none, 1 SiLU, 2 GELU (erf), 3 SwiGLU over row pairs
override SG: u32 = 4u; // W-row blocks of 16 per workgroup: 16·SG W rows
override KS: u32 = 1u; // subgroups per W-row block, each taking every KS-th step of K (SG·KS ≤ 4)
override WGS: u32 = 32u * SG * KS;
override NX: u32 = 16u / (SG * KS); // x groups each invocation loads per chunk
override NW: u32 = 16u / KS;        // W groups each invocation loads per chunk
override LNX: u32 = 0u; // 1: x's rows LayerNorm-ed in workgroup memory first (K ≤ 256)
override TR: u32 = 0u; // 1: a transposed convolution (P.tr its stride; a separate pipeline, so
                       // the plain products carry none of its branches)

const KC: u32 = 256u; // halves per chunk
const KG: u32 = 32u;  // groups of 8 halves per chunk row
const ST4: u32 = 66u; // staged row stride in vec4<f16> (KC + 8 halves: rows 4 banks apart)
const CS4: u32 = 4u;  // vec4<f32> row stride of a staged 16 × 16 result

var<workgroup> xs: array<vec4<f16>, 1056>; // 16 x rows × ST4
var<workgroup> ws: array<vec4<f16>, 4224>; // up to 64 W rows × ST4
var<workgroup> cs: array<vec4<f32>, 256>;  // up to 4 subgroups × 16 rows × CS4
var<workgroup> red: array<f32, 128>;       // LNX: per-row partial sums

// LNX: the 16 staged rows (one chunk: K ≤ 256) become LayerNorm(x)·w + b, rounded to f16 —
// layernorm_row's formula (the mean, then the mean of squared deviations, in f32); only the
// K columns (the zero padding past K stays zero). WGS/16 invocations per row.
fn ln_rows(t: u32) {
    let tpr = WGS / 16u;
    let r = t / tpr;
    let part = t % tpr;
    let k4 = P.k / 4u;
    var sum = 0.0;
    for (var c = part; c < k4; c += tpr) {
        let v = vec4<f32>(xs[r * ST4 + c]);
        sum += v.x + v.y + v.z + v.w;
    }
    red[t] = sum;
    workgroupBarrier();
    var tot = 0.0;
    for (var j = 0u; j < tpr; j++) {
        tot += red[r * tpr + j];
    }
    let mean = tot / f32(P.k);
    workgroupBarrier();
    var ss = 0.0;
    for (var c = part; c < k4; c += tpr) {
        let d = vec4<f32>(xs[r * ST4 + c]) - mean;
        ss += dot(d, d);
    }
    red[t] = ss;
    workgroupBarrier();
    var tss = 0.0;
    for (var j = 0u; j < tpr; j++) {
        tss += red[r * tpr + j];
    }
    let inv = inverseSqrt(tss / f32(P.k) + P.ln_eps);
    for (var c = part; c < k4; c += tpr) {
        let i = 4u * c;
        let g = vec4<f32>(ln_w[i], ln_w[i + 1u], ln_w[i + 2u], ln_w[i + 3u]);
        let b = vec4<f32>(ln_b[i], ln_b[i + 1u], ln_b[i + 2u], ln_b[i + 3u]);
        xs[r * ST4 + c] = vec4<f16>((vec4<f32>(xs[r * ST4 + c]) - mean) * inv * g + b);
    }
    workgroupBarrier();
}

// A transposed convolution's output phase r (= wg.z): its rows are the output frames
// t = (u_min + i)·s + r − pad, i < rows; each is a product over its taps k = r + s·m (m <
// ⌈K/s⌉) of input frames u_min + i − m.
var<private> tr_r: u32;
var<private> tr_umin: i32;
var<private> tr_rows: u32;

// Group q (of 8 halves along K) of x's row n; zeros past N or K, or outside the sequence.
fn fetch_x(n: u32, q: u32) -> vec4<u32> {
    let kg = P.k / 8u;
    if (TR == 1u) {
        if (n >= tr_rows || q >= kg) {
            return vec4<u32>(0u);
        }
        let kk = q * 8u;
        let src = tr_umin + i32(n) - i32(kk / P.cin);
        if (src < 0 || src >= i32(P.tin)) {
            return vec4<u32>(0u);
        }
        return x[(u32(src) * P.cin + kk % P.cin) / 8u];
    }
    if (n >= P.n || q >= kg) {
        return vec4<u32>(0u);
    }
    if (P.cin == 0u) {
        return x[n * kg + q];
    }
    let kk = q * 8u;
    let tap = kk / P.cin;
    let c = kk % P.cin;
    let b = n / P.tout;
    let src = i32((n % P.tout) * P.stride + tap * P.dil) - i32(P.pad);
    if (src < 0 || src >= i32(P.tin)) {
        return vec4<u32>(0u);
    }
    return x[((b * P.tin + u32(src)) * P.cin + c) / 8u];
}

fn fetch_w(m: u32, q: u32) -> vec4<u32> {
    if (m >= P.m || q >= P.k / 8u) {
        return vec4<u32>(0u);
    }
    if (TR == 1u) {
        // column (m', c) of the phase's product is tap r + s·m' of W's row
        let kk = q * 8u;
        let tap = tr_r + P.tr * (kk / P.cin);
        if (tap >= P.tr_k) {
            return vec4<u32>(0u);
        }
        return w[m * P.nb + (tap * P.cin + kk % P.cin) / 8u];
    }
    return w[m * P.nb + q];
}

// where share idx of a chunk goes in xs / ws: row idx / KG, group idx % KG (two vec4<f16>)
fn slot(idx: u32) -> u32 {
    return (idx / KG) * ST4 + 2u * (idx % KG);
}

// 4 halves from the 2 words that hold them (exact: f16 → f32 → f16; naga lowers no bitcast
// between u32 and f16 vectors)
fn halves(v: vec2<u32>) -> vec4<f16> {
    return vec4<f16>(vec4<f32>(unpack2x16float(v.x), unpack2x16float(v.y)));
}

@compute @workgroup_size(WGS)
fn gemm_coops(
    @builtin(local_invocation_index) t: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
) {
    let m0 = wg.x * 16u * SG;
    let n0 = wg.y * 16u;
    if (TR == 1u) {
        // phase r's frames: u from ⌈(pad − r)/s⌉ to ⌊(Tout − 1 + pad − r)/s⌋
        tr_r = wg.z;
        let s = i32(P.tr);
        let a = i32(P.pad) - i32(tr_r);
        tr_umin = select(-((-a) / s), (a + s - 1) / s, a >= 0);
        let num = i32(P.n) - 1 + i32(P.pad) - i32(tr_r);
        let umax = select(-((-num + s - 1) / s), num / s, num >= 0);
        tr_rows = u32(max(umax - tr_umin + 1, 0));
    }
    let sub = t / 32u;
    let g = sub % SG;  // the subgroup's W rows: 16g ..
    let ks = sub / SG; // its share of K's steps
    var rx: array<vec4<u32>, 16>;
    var rw: array<vec4<u32>, 16>;
    for (var i = 0u; i < NX; i++) {
        let idx = t + i * WGS;
        rx[i] = fetch_x(n0 + idx / KG, idx % KG);
    }
    for (var i = 0u; i < NW; i++) {
        let idx = t + i * WGS;
        rw[i] = fetch_w(m0 + idx / KG, idx % KG);
    }
    var acc: coop_mat16x16<f32, C>;
    for (var k0 = 0u; k0 < P.k; k0 += KC) {
        for (var i = 0u; i < NX; i++) {
            let o = slot(t + i * WGS);
            xs[o] = halves(rx[i].xy);
            xs[o + 1u] = halves(rx[i].zw);
        }
        for (var i = 0u; i < NW; i++) {
            let o = slot(t + i * WGS);
            ws[o] = halves(rw[i].xy);
            ws[o + 1u] = halves(rw[i].zw);
        }
        workgroupBarrier();
        if (LNX == 1u) {
            ln_rows(t);
        }
        // the next chunk's loads, in flight while this one is multiplied
        let q1 = (k0 + KC) / 8u;
        if (k0 + KC < P.k) {
            for (var i = 0u; i < NX; i++) {
                let idx = t + i * WGS;
                rx[i] = fetch_x(n0 + idx / KG, q1 + idx % KG);
            }
            for (var i = 0u; i < NW; i++) {
                let idx = t + i * WGS;
                rw[i] = fetch_w(m0 + idx / KG, q1 + idx % KG);
            }
        }
        // steps of 16 in this chunk, rounded up to whole rounds of KS (the columns past K
        // are staged zeros, and a round never leaves the chunk: KS divides 16); the loop is
        // uniform, only the columns differ between the KS subgroups
        let rounds = (min(KC, P.k - k0 + 15u) / 16u + KS - 1u) / KS;
        let wb = g * 16u * ST4;
        for (var r = 0u; r < rounds; r++) {
            let s = r * KS + ks;
            let a = coopLoadT<coop_mat16x16<f16, A>>(&xs[4u * s], ST4);
            let b = coopLoad<coop_mat16x16<f16, B>>(&ws[wb + 4u * s], ST4);
            acc = coopMultiplyAdd(a, b, acc);
        }
        workgroupBarrier();
    }
    coopStoreT(acc, &cs[sub * 16u * CS4], CS4);
    workgroupBarrier();
    // 16 rows × 16·SG outputs in groups of 4, each the sum of its KS subgroups' shares
    for (var idx = t; idx < 64u * SG; idx += WGS) {
        let b = idx / 64u;
        let row = (idx % 64u) / 4u;
        let q = idx % 4u;
        var v = vec4<f32>(0.0);
        for (var j = 0u; j < KS; j++) {
            v += cs[((j * SG + b) * 16u + row) * CS4 + q];
        }
        var out_row = n0 + row;
        if (TR == 1u) {
            if (out_row >= tr_rows) {
                continue;
            }
            out_row = u32((tr_umin + i32(out_row)) * i32(P.tr) + i32(tr_r) - i32(P.pad));
        }
        store(out_row, m0 + 16u * b + 4u * q, v);
    }
}
