// rope — rotary position embedding, Qwen2 / HF rotate-half layout, on x (T, H, D):
//   for i < D/2, angle = (p0 + t) · inv_freq[i]:
//   y[i]       = x[i] · cos − x[i + D/2] · sin
//   y[i + D/2] = x[i + D/2] · cos + x[i] · sin
//
// @binding(0) x:        (T, H, D) act   input (unused by rope_inplace: bind anything)
// @binding(1) y:        (T, H, D) act   output; rope_inplace rotates y in place
// @binding(2) inv_freq: (D/2,) f32      θ^(−2i/D), computed once on the CPU like HF's buffer
// @binding(3) P: uniform Params
//
// One thread per rotated pair (t, h, i): it reads both halves before writing, so in place is
// race-free. The angle is formed in f32 as HF does (f32(pos) · inv_freq, one rounding); sin/cos
// come from `shaders/common/trig.wgsl` (reduction + polynomial), because WGSL promises only
// 2^-11 absolute error for its builtins and some adapters (SwiftShader) are that coarse.

struct Params {
    t: u32,
    h: u32,
    half: u32,     // D / 2
    p0: u32,       // position of frame 0
    groups_x: u32, // workgroups along x
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> x: array<act>;
@group(0) @binding(1) var<storage, read_write> y: array<act>;
@group(0) @binding(2) var<storage, read> inv_freq: array<f32>;
@group(0) @binding(3) var<uniform> P: Params;

override WG: u32 = 256;

// #include trig

// (cos, sin) of pair p's angle; p = (t · H + h) · D/2 + i.
fn pair_cos_sin(p: u32) -> vec2<f32> {
    let t = p / P.half / P.h;
    return cos_sin(f32(P.p0 + t) * inv_freq[p % P.half]);
}

// Element index of pair p's first half.
fn first(p: u32) -> u32 {
    return (p / P.half) * 2u * P.half + p % P.half;
}

@compute @workgroup_size(WG)
fn rope(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let p = (wid.y * P.groups_x + wid.x) * WG + lid;
    if (p >= P.t * P.h * P.half) {
        return;
    }
    let q = pair_cos_sin(p);
    let j = first(p);
    let a = f32(x[j]);
    let b = f32(x[j + P.half]);
    y[j] = act(a * q.x - b * q.y);
    y[j + P.half] = act(b * q.x + a * q.y);
}

@compute @workgroup_size(WG)
fn rope_inplace(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let p = (wid.y * P.groups_x + wid.x) * WG + lid;
    if (p >= P.t * P.h * P.half) {
        return;
    }
    let q = pair_cos_sin(p);
    let j = first(p);
    let a = f32(y[j]);
    let b = f32(y[j + P.half]);
    y[j] = act(a * q.x - b * q.y);
    y[j + P.half] = act(b * q.x + a * q.y);
}
