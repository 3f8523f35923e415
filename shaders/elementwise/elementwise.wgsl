// elementwise — activations and simple arithmetic over flat activation tensors, one element
// per thread (2-D grid of workgroups when there are more than 65535).
//
// @binding(0) a:     (N,) act          first operand / x / gate source   (dummy when unused)
// @binding(1) b:     (blen,) act       second operand / up source        (dummy when unused)
// @binding(2) y:     (N,) act          output; the *_inplace entries update y instead of reading a
// @binding(3) alpha: (C,) f32          Snake α per channel               (dummy when unused)
// @binding(4) P: uniform Params
//
// Entries:
//   elementwise_unary[_inplace]   y = f(a), f picked by the override OP:
//       0 GELU (exact, erf form)  1 SiLU  2 tanh  3 Mish  4 ELU(α=1)  5 LeakyReLU(P.s)  6 a·P.s
//   elementwise_binary[_inplace]  y = a ∘ b[i % blen] (blen = N: same shape; blen = C: a row
//       broadcast over (T, C)); ∘ by OP: 0 add, 1 mul
//   elementwise_snake             y = a + 1/(α[c] + 1e-9) · sin²(α[c]·a), c = i % C (HiFT Snake,
//       α used as stored, "linear scale")
//   elementwise_swiglu            y[t, j] = SiLU(a[t·sa + oa + j]) · b[t·sb + ob + j], j < C:
//       two (T, I) tensors (sa = sb = I, oa = ob = 0) or one fused (T, 2I) [gate | up] bound to
//       both a and b (sa = sb = 2I, oa = 0, ob = I)
//   elementwise_cfg_euler         one Euler step with classifier-free guidance on a batch of
//       two copies of the state: y (2N) = [x; x], b (2N) = [v_cond; v_uncond];
//       x ← x + P.s·v_cond − P.s2·v_uncond, written to both halves (i < N = P.n)

struct Params {
    n: u32,        // output elements
    c: u32,        // row length (snake channels, swiglu I)
    blen: u32,     // binary: length of b (index i % blen)
    s: f32,        // LeakyReLU slope or scale factor
    sa: u32,       // swiglu: row stride of a
    oa: u32,       // swiglu: column offset into a
    sb: u32,       // swiglu: row stride of b
    ob: u32,       // swiglu: column offset into b
    groups_x: u32, // workgroups along x
    s2: f32,       // cfg_euler: the unconditional velocity's factor
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> a: array<act>;
@group(0) @binding(1) var<storage, read> b: array<act>;
@group(0) @binding(2) var<storage, read_write> y: array<act>;
@group(0) @binding(3) var<storage, read> alpha: array<f32>;
@group(0) @binding(4) var<uniform> P: Params;

override WG: u32 = 256;
override OP: u32 = 0;

// #include act_fns

// erfc(z) for z ≥ 0 (Numerical Recipes `erfcc`, Chebyshev fit: relative error < 1.2e-7 over the
// whole range, so also accurate in GELU's negative tail where erfc is tiny).
fn erfc_pos(z: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.5 * z);
    let p = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806
        + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223
        + t * 0.17087277))))))));
    return t * exp(-z * z + p);
}

// erf(z) for |z| < 0.5 by its Maclaurin series (truncation < 1e-9): 1 − erfc would cancel here.
fn erf_small(z: f32) -> f32 {
    let z2 = z * z;
    let p = 1.0 + z2 * (-1.0 / 3.0 + z2 * (0.1 + z2 * (-1.0 / 42.0 + z2 * (1.0 / 216.0
        + z2 * (-1.0 / 1320.0 + z2 * (1.0 / 9360.0))))));
    return 1.1283791670955126 * z * p;
}

// GELU(x) = x/2 · (1 + erf(x/√2)) = x/2 · erfc(−x/√2). Measured erf error < 2e-7 (test
// gelu_erf_accuracy).
fn gelu(x: f32) -> f32 {
    let z = x * 0.70710678118654752;
    if (abs(z) < 0.5) {
        return 0.5 * x * (1.0 + erf_small(z));
    }
    let c = erfc_pos(abs(z));
    return 0.5 * x * select(c, 2.0 - c, x >= 0.0);
}

// Numerically stable logistic: never exponentiates a positive number.
fn sigmoid(x: f32) -> f32 {
    let e = exp(-abs(x));
    return select(e / (1.0 + e), 1.0 / (1.0 + e), x >= 0.0);
}

// tanh guarded against the overflow to NaN some stacks show for |x| > ~44 (tanh(15) = 1 in f32).
fn tanh_safe(x: f32) -> f32 {
    return tanh(clamp(x, -15.0, 15.0));
}

// ELU(α = 1); a short series near 0 where exp(x) − 1 would cancel.
fn elu(x: f32) -> f32 {
    if (x > 0.0) {
        return x;
    }
    if (x > -0.01) {
        return x * (1.0 + x * (0.5 + x * (1.0 / 6.0 + x * (1.0 / 24.0))));
    }
    return exp(x) - 1.0;
}

fn unary(x: f32) -> f32 {
    switch OP {
        case 0u: { return gelu(x); }
        case 1u: { return x * sigmoid(x); }
        case 2u: { return tanh_safe(x); }
        case 3u: { return mish(x); }
        case 4u: { return elu(x); }
        case 5u: { return select(P.s * x, x, x >= 0.0); }
        default: { return x * P.s; }
    }
}

fn binary(u: f32, v: f32) -> f32 {
    switch OP {
        case 1u: { return u * v; }
        default: { return u + v; }
    }
}

// accurate sin for the large arguments Snake can see
// #include trig

fn index(wid: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * P.groups_x + wid.x) * WG + lid;
}

@compute @workgroup_size(WG)
fn elementwise_unary(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, lid);
    if (i < P.n) {
        y[i] = act(unary(f32(a[i])));
    }
}

@compute @workgroup_size(WG)
fn elementwise_unary_inplace(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, lid);
    if (i < P.n) {
        y[i] = act(unary(f32(y[i])));
    }
}

@compute @workgroup_size(WG)
fn elementwise_binary(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, lid);
    if (i < P.n) {
        y[i] = act(binary(f32(a[i]), f32(b[i % P.blen])));
    }
}

@compute @workgroup_size(WG)
fn elementwise_binary_inplace(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, lid);
    if (i < P.n) {
        y[i] = act(binary(f32(y[i]), f32(b[i % P.blen])));
    }
}

@compute @workgroup_size(WG)
fn elementwise_snake(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, lid);
    if (i < P.n) {
        let x = f32(a[i]);
        let al = alpha[i % P.c];
        let s = cos_sin(al * x).y;
        y[i] = act(x + s * s / (al + 1e-9));
    }
}

@compute @workgroup_size(WG)
fn elementwise_swiglu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, lid);
    if (i < P.n) {
        let t = i / P.c;
        let j = i % P.c;
        let g = f32(a[t * P.sa + P.oa + j]);
        let u = f32(b[t * P.sb + P.ob + j]);
        y[i] = act(g * sigmoid(g) * u);
    }
}

@compute @workgroup_size(WG)
fn elementwise_cfg_euler(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, lid);
    if (i < P.n) {
        let x = act(f32(y[i]) + P.s * f32(b[i]) - P.s2 * f32(b[i + P.n]));
        y[i] = x;
        y[i + P.n] = x;
    }
}
