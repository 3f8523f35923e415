// conv1d — PyTorch Conv1d / ConvTranspose1d on time-major activations, f32 accumulation.
//
// @binding(0) x:    (B·Tin, Cin) act   B sequences of Tin frames, one after another
// @binding(1) w:    (Cout, K, Cin_gp/2) u32  f16 pairs; element (co, k, ci) is the weight from
//                   input channel g·Cin_g + ci (g = co / Cout_g) at tap k; Cin_gp = Cin_g
//                   rounded up to even, the pad zero. Built by `ConvWeight::conv1d` from
//                   PyTorch's (Cout, Cin_g, K) or `ConvWeight::conv_transpose1d` from
//                   ConvTranspose1d's (Cin, Cout_g, K)
// @binding(2) bias: (Cout,) f32               read only when P.flags & 1
// @binding(3) y:    (B·Tout, Cout) act
// @binding(4) P: uniform Params
//
// One thread per output (t, co), consecutive threads along co (they share x reads).
//   conv1d:           y[t, co] = Σ_k Σ_ci w[co, k, ci] · x[t·s − pad_l + k·d, g·Cin_g + ci]
//   conv1d_transpose: y[t, co] = Σ_k Σ_ci w[co, k, ci] · x[(t + pad − k·d) / s, g·Cin_g + ci]
//                     for the taps where t + pad − k·d is a non-negative multiple of s
// Out-of-range input frames (outside the output's own sequence) are the zero padding.
//
// im2col (the tiled path's gather, binding 3 is then the output): cols (B·Tout, K·Cin) with
//   cols[b·Tout + t, k·Cin + ci] = x[b·Tin + t·s − pad_l + k·d, ci], 0 outside the sequence.

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
    batch: u32,     // sequences
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
    if (i >= P.batch * P.tout * P.cout) {
        return;
    }
    let b0 = (i / (P.tout * P.cout)) * P.tin; // first input frame of this sequence
    let t = (i / P.cout) % P.tout;
    let co = i % P.cout;
    let c0 = (co / P.cout_g) * P.cin_g;
    var acc = 0.0;
    for (var k = 0u; k < P.k; k++) {
        // input frame t·s − pad + k·d, in signed arithmetic (negative = left padding)
        let tin = i32(t * P.stride + k * P.dil) - i32(P.pad);
        if (tin >= 0 && u32(tin) < P.tin) {
            acc += tap(co, k, b0 + u32(tin), c0);
        }
    }
    finish(i, co, acc);
}

@compute @workgroup_size(WG)
fn conv1d_transpose(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = out_index(wid, lid);
    if (i >= P.batch * P.tout * P.cout) {
        return;
    }
    let b0 = (i / (P.tout * P.cout)) * P.tin;
    let t = (i / P.cout) % P.tout;
    let co = i % P.cout;
    let c0 = (co / P.cout_g) * P.cin_g;
    var acc = 0.0;
    for (var k = 0u; k < P.k; k++) {
        let num = i32(t + P.pad) - i32(k * P.dil);
        if (num >= 0 && u32(num) % P.stride == 0u) {
            let tin = u32(num) / P.stride;
            if (tin < P.tin) {
                acc += tap(co, k, b0 + tin, c0);
            }
        }
    }
    finish(i, co, acc);
}

@compute @workgroup_size(WG)
fn im2col(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = out_index(wid, lid);
    let width = P.k * P.cin;
    if (i >= P.batch * P.tout * width) {
        return;
    }
    let row = i / width;
    let col = i % width;
    let b = row / P.tout;
    let t = row % P.tout;
    let k = col / P.cin;
    let ci = col % P.cin;
    let tin = i32(t * P.stride + k * P.dil) - i32(P.pad);
    var v = 0.0;
    if (tin >= 0 && u32(tin) < P.tin) {
        v = f32(x[(b * P.tin + u32(tin)) * P.cin + ci]);
    }
    y[i] = act(v);
}
