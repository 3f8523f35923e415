// hift_stft — the STFT of HiFT's source (hift_source.wgsl's `src`; the CPU reference is
// model::audio_out::hift::stft): one invocation per frame (n_fft ≤ 32, hop, periodic Hann,
// center, reflect padding), rows [re_0..re_nb, im_0..im_nb] in act, the window folded into the
// twiddles tw (nb × n_fft cos rows, then nb × n_fft sin rows, computed in f64 on the host).

// #include hift_params

@group(0) @binding(0) var<storage, read> src: array<f32>;      // (len)
@group(0) @binding(1) var<storage, read> tw: array<f32>;       // (2, nb, n_fft)
@group(0) @binding(2) var<storage, read_write> spec: array<act>; // (sframes, 2·nb)
@group(0) @binding(3) var<uniform> P: Params;

const WG: u32 = 256u;

@compute @workgroup_size(256)
fn hift_stft(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let fr = (wid.y * P.groups_x + wid.x) * WG + t;
    if (fr >= P.sframes) {
        return;
    }
    let half = i32(P.n_fft / 2u);
    let l = i32(P.len);
    let nb = P.n_fft / 2u + 1u;
    var seg: array<f32, 32>;
    for (var i = 0u; i < P.n_fft; i++) {
        // reflect padding by n_fft/2 on both sides
        var j = i32(fr * P.hop + i) - half;
        if (j < 0) {
            j = -j;
        }
        if (j >= l) {
            j = 2 * (l - 1) - j;
        }
        seg[i] = src[u32(clamp(j, 0, l - 1))];
    }
    for (var k = 0u; k < nb; k++) {
        var re = 0.0;
        var im = 0.0;
        for (var i = 0u; i < P.n_fft; i++) {
            re += seg[i] * tw[k * P.n_fft + i];
            im -= seg[i] * tw[(nb + k) * P.n_fft + i];
        }
        spec[fr * 2u * nb + k] = act(re);
        spec[fr * 2u * nb + nb + k] = act(im);
    }
}
