//! Attention references: dense f64 softmax with an explicit visibility mask.

/// `out (Tq, Hq, D)` = softmax over visible keys of `scale · q·k`, times `v`.
/// `q (Tq, Hq, D)`, `k`, `v (Tk, Hkv, D)`; query head `h` uses kv head `h / (Hq / Hkv)`;
/// `visible(i, j)` says whether query row `i` may see key row `j` (every query must see one).
pub fn attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    (tq, tk): (usize, usize),
    (hq, hkv, d): (usize, usize, usize),
    scale: f32,
    visible: impl Fn(usize, usize) -> bool,
) -> Vec<f32> {
    let group = hq / hkv;
    let mut out = vec![0.0f32; tq * hq * d];
    for i in 0..tq {
        for h in 0..hq {
            let kh = h / group;
            let qr = &q[(i * hq + h) * d..][..d];
            let keys: Vec<usize> = (0..tk).filter(|&j| visible(i, j)).collect();
            let scores: Vec<f64> = keys
                .iter()
                .map(|&j| {
                    let kr = &k[(j * hkv + kh) * d..][..d];
                    let dot: f64 = qr.iter().zip(kr).map(|(a, b)| *a as f64 * *b as f64).sum();
                    dot * scale as f64
                })
                .collect();
            let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
            let sum: f64 = e.iter().sum();
            for dd in 0..d {
                let acc: f64 = keys
                    .iter()
                    .zip(&e)
                    .map(|(&j, p)| p * v[(j * hkv + kh) * d + dd] as f64)
                    .sum();
                out[(i * hq + h) * d + dd] = (acc / sum) as f32;
            }
        }
    }
    out
}

/// The cache layout `(2, H, Tmax, D)` holding `k`, `v (T, H, D)` at positions `0..T` and
/// `fill` everywhere else.
pub fn cache_layout(
    k: &[f32],
    v: &[f32],
    (t, h, d): (usize, usize, usize),
    tmax: usize,
    fill: f32,
) -> Vec<f32> {
    let mut c = vec![fill; 2 * h * tmax * d];
    kv_append(&mut c, k, v, (t, h, d), tmax, 0);
    c
}

/// Writes `k`, `v (T, H, D)` at positions `p0..p0+T` of a `(2, H, Tmax, D)` cache.
pub fn kv_append(
    cache: &mut [f32],
    k: &[f32],
    v: &[f32],
    (t, h, d): (usize, usize, usize),
    tmax: usize,
    p0: usize,
) {
    for (which, src) in [k, v].into_iter().enumerate() {
        for ti in 0..t {
            for hi in 0..h {
                for dd in 0..d {
                    cache[((which * h + hi) * tmax + p0 + ti) * d + dd] =
                        src[(ti * h + hi) * d + dd];
                }
            }
        }
    }
}
