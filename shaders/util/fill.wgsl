// fill — GPU-side filling of buffers with seeded pseudo-random data, for benchmarks at full
// model size (generating gigabytes of weights on the CPU would take minutes).
//
// @binding(0) out: (n,) u32   the buffer to fill
// @binding(1) P:   uniform Params
//
// Entries: `fill_bits` writes uniformly random u32 words (valid q4/q8 weight data);
// `fill_f16` writes two f16 per word, each (hash01 − 0.5)·amp + off, with separate
// (amp, off) for the low and high half (f16 weights, q8 scales, q4 scale/min pairs).

struct Params {
    n: u32,
    seed: u32,
    groups_x: u32,
    _pad: u32,
    lo_amp: f32,
    lo_off: f32,
    hi_amp: f32,
    hi_off: f32,
}

@group(0) @binding(0) var<storage, read_write> out: array<u32>;
@group(0) @binding(1) var<uniform> P: Params;

override WG: u32 = 256;

fn pcg(v: u32) -> u32 {
    let state = v * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

fn index(wid: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * P.groups_x + wid.x) * WG + lid;
}

@compute @workgroup_size(WG)
fn fill_bits(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, lid);
    if (i < P.n) {
        out[i] = pcg(i ^ pcg(P.seed));
    }
}

@compute @workgroup_size(WG)
fn fill_f16(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = index(wid, lid);
    if (i < P.n) {
        let h = pcg(i ^ pcg(P.seed));
        let a = f32(h & 0xffffu) / 65535.0 - 0.5;
        let b = f32(h >> 16u) / 65535.0 - 0.5;
        out[i] = pack2x16float(vec2<f32>(a * P.lo_amp + P.lo_off, b * P.hi_amp + P.hi_off));
    }
}
