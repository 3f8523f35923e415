// hift_params — the params of hift_source.wgsl and hift_stft.wgsl (one struct: the host
// fills one and binds it to both families).

struct Params {
    frames: u32,   // mel frames T
    ch: u32,       // channels of the F0 predictor's last conv
    h: u32,        // harmonics + 1 (≤ 16)
    fs: u32,       // samples per frame (480)
    len: u32,      // samples T·fs
    n_fft: u32,
    hop: u32,
    sframes: u32,  // STFT frames len / hop + 1
    sri: u32,      // the sampling rate, an integer < 2¹⁵
    thr: f32,      // voiced threshold
    sine_amp: f32,
    noise_std: f32,
    lin_b: f32,
    cls_b: f32,    // the F0 Linear's bias
    groups_x: u32, // workgroups along x (2-D grids)
    _pad: u32,
}
