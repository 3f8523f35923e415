// conv1d — PyTorch Conv1d / ConvTranspose1d on time-major activations, f32 accumulation.
//
// @binding(0) x:    (Tin, Cin) act
// @binding(1) w:    (Cout, K, Cin_gp/2) u32  f16 pairs; element (co, k, ci) is the weight from
//                   input channel g·Cin_g + ci (g = co / Cout_g) at tap k; Cin_gp = Cin_g
//                   rounded up to even, the pad zero. Built by `ConvWeight::conv1d` from
//                   PyTorch's (Cout, Cin_g, K) or `ConvWeight::conv_transpose1d` from
//                   ConvTranspose1d's (Cin, Cout_g, K)
// @binding(2) bias: (Cout,) f32               read only when P.flags & 1
// @binding(3) y:    (Tout, Cout) act
// @binding(4) P: uniform Params
//
// One thread per output (t, co), consecutive threads along co (they share x reads).
//   conv1d:           y[t, co] = Σ_k Σ_ci w[co, k, ci] · x[t·s − pad_l + k·d, g·Cin_g + ci]
//   conv1d_transpose: y[t, co] = Σ_k Σ_ci w[co, k, ci] · x[(t + pad − k·d) / s, g·Cin_g + ci]
//                     for the taps where t + pad − k·d is a non-negative multiple of s
// Out-of-range input frames are the zero padding.

struct Params {
    tin: u32,
    cin: u32,
    tout: u32,
    cout: u32,
    k: u32,
    stride: u32,
    pad: u32,       // conv1d: left padding; transpose: `padding`
    dil: u32,
    cin_g: u32,     // input channels per group
    cout_g: u32,    // output channels per group
    wpk: u32,       // u32 words per tap = Cin_gp / 2
    flags: u32,     // bit 0: bias
    groups_x: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> x: array<act>;
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<act>;
@group(0) @binding(4) var<uniform> P: Params;

override WG: u32 = 256;

// Σ_ci w[co, k, ci] · x[tin, c0 + ci].
fn tap(co: u32, k: u32, tin: u32, c0: u32) -> f32 {
    let wb = (co * P.k + k) * P.wpk;
    let xb = tin * P.cin + c0;
    let full = P.cin_g / 2u;
    var acc = 0.0;
    for (var j = 0u; j < full; j++) {
        let wv = unpack2x16float(w[wb + j]);
        acc += wv.x * f32(x[xb + 2u * j]) + wv.y * f32(x[xb + 2u * j + 1u]);
    }
    if ((P.cin_g & 1u) == 1u) { // odd Cin_g: the last pair's second weight is padding
        acc += unpack2x16float(w[wb + full]).x * f32(x[xb + 2u * full]);
    }
    return acc;
}

fn out_index(wid: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * P.groups_x + wid.x) * WG + lid;
}

fn finish(i: u32, co: u32, acc: f32) {
    var v = acc;
    if ((P.flags & 1u) != 0u) {
        v += bias[co];
    }
    y[i] = act(v);
}

@compute @workgroup_size(WG)
fn conv1d(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = out_index(wid, lid);
    if (i >= P.tout * P.cout) {
        return;
    }
    let t = i / P.cout;
    let co = i % P.cout;
    let c0 = (co / P.cout_g) * P.cin_g;
    var acc = 0.0;
    for (var k = 0u; k < P.k; k++) {
        // input frame t·s − pad + k·d, in signed arithmetic (negative = left padding)
        let tin = i32(t * P.stride + k * P.dil) - i32(P.pad);
        if (tin >= 0 && u32(tin) < P.tin) {
            acc += tap(co, k, u32(tin), c0);
        }
    }
    finish(i, co, acc);
}

@compute @workgroup_size(WG)
fn conv1d_transpose(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = out_index(wid, lid);
    if (i >= P.tout * P.cout) {
        return;
    }
    let t = i / P.cout;
    let co = i % P.cout;
    let c0 = (co / P.cout_g) * P.cin_g;
    var acc = 0.0;
    for (var k = 0u; k < P.k; k++) {
        let num = i32(t + P.pad) - i32(k * P.dil);
        if (num >= 0 && u32(num) % P.stride == 0u) {
            let tin = u32(num) / P.stride;
            if (tin < P.tin) {
                acc += tap(co, k, tin, c0);
            }
        }
    }
    finish(i, co, acc);
}
