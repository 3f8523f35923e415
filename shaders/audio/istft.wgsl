// istft — HiFT's inverse STFT (spec §9 step 5), `torch.istft(mag·e^{i·ph}, n_fft, hop, periodic
// Hann, center = True)` of conv_post's output, with HiFT's conventions and its final clamp:
//   mag_k = min(exp(spec[f, k]), 100), ph_k = sin(spec[f, nb + k]), k < nb = n_fft/2 + 1
//   frame f, sample n < n_fft: v = (re_0 + (−1)ⁿ·re_{nb−1} + 2·Σ_{0<k<nb−1} (re_k cos − im_k sin)(2πkn/N)) / N
//   out[i] = clamp(Σ_f v·w[n] / Σ_f w[n]², ±limit) over the frames covering p = i + n_fft/2
//   (p = f·hop + n), dividing only where the window envelope exceeds 1e-11.
// One thread per output sample; each recomputes its ≤ n_fft/hop frames' bins (cheaper than a
// pass through memory at n_fft = 16).
//
// @binding(0) spec: (frames, 2·nb) act
// @binding(1) out:  (len,) f32 (as bits), len = hop·(frames − 1); NaN where not finite
// @binding(2) P:    uniform Params

struct Params {
    frames: u32,
    nb: u32,
    n_fft: u32,
    hop: u32,
    len: u32,
    limit: f32,
    groups_x: u32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> spec: array<act>;
@group(0) @binding(1) var<storage, read_write> out: array<u32>; // f32 bits
@group(0) @binding(2) var<uniform> P: Params;

override WG: u32 = 256;
const TWO_PI: f32 = 6.283185307179586;

// #include trig

@compute @workgroup_size(WG)
fn istft_hift(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * P.groups_x + wid.x) * WG + lid;
    if (i >= P.len) {
        return;
    }
    let p = i + P.n_fft / 2u;
    let inv_n = 1.0 / f32(P.n_fft);
    // frames f with f·hop ≤ p < f·hop + n_fft
    var f_lo = 0u;
    if (p + 1u > P.n_fft) {
        f_lo = (p + 1u - P.n_fft + P.hop - 1u) / P.hop;
    }
    let f_hi = min(p / P.hop, P.frames - 1u);
    var y = 0.0;
    var env = 0.0;
    for (var f = f_lo; f <= f_hi; f++) {
        let n = p - f * P.hop;
        let row = f * 2u * P.nb;
        var v = 0.0;
        for (var k = 0u; k < P.nb; k++) {
            let mag = min(exp(f32(spec[row + k])), 100.0);
            let ph = cos_sin(f32(spec[row + P.nb + k])).y;
            let e = cos_sin(ph);
            let re = mag * e.x;
            if (k == 0u) {
                v += re;
            } else if (k == P.nb - 1u) {
                v += select(-re, re, (n & 1u) == 0u);
            } else {
                let im = mag * e.y;
                let a = cos_sin(TWO_PI * f32((k * n) % P.n_fft) * inv_n);
                v += 2.0 * (re * a.x - im * a.y);
            }
        }
        let w = 0.5 - 0.5 * cos_sin(TWO_PI * f32(n) * inv_n).x;
        y += v * inv_n * w;
        env += w * w;
    }
    var o = y;
    if (env > 1e-11) {
        o = y / env;
    }
    // a non-finite sample stays NaN (by its bits: clamp may flush it, and compilers may assume
    // no NaN in float compares), so the vocoder's NaN guard still sees it
    let bits = bitcast<u32>(o);
    let finite = (bits & 0x7f800000u) != 0x7f800000u;
    out[i] = select(0x7fc00000u, bitcast<u32>(clamp(o, -P.limit, P.limit)), finite);
}
