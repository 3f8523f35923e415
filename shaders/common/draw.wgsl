// The draw over the k sorted candidates of topk (sample_draw.wgsl, and topk.wgsl's `_draw`
// entries, which sample in the pass that finishes the top-k): temperature, top-p, then the
// inverse-CDF draw with uniform u. The including file defines dv(j) / di(j), candidate j's value
// and id. One invocation runs it.

const KMAX: u32 = 64u;

fn draw_candidates(k_in: u32, temperature: f32, top_p: f32, u: f32) -> u32 {
    let k = min(k_in, KMAX);
    if (temperature == 0.0 || k <= 1u) {
        return di(0u);
    }
    var s: array<f32, KMAX>;
    for (var j = 0u; j < k; j++) {
        s[j] = dv(j) / temperature;
    }
    // top-p: from the smallest, remove while the cumulative probability ≤ 1 − top_p
    var kept = k;
    if (top_p < 1.0) {
        var z = 0.0;
        for (var j = 0u; j < k; j++) {
            z += exp(s[j] - s[0]);
        }
        var cum = 0.0;
        for (var r = k - 1u; r >= 1u; r--) {
            cum += exp(s[r] - s[0]) / z;
            if (cum <= 1.0 - top_p) {
                kept = r;
            } else {
                break;
            }
        }
    }
    var z = 0.0;
    for (var j = 0u; j < kept; j++) {
        z += exp(s[j] - s[0]);
    }
    var cum = 0.0;
    for (var j = 0u; j < kept; j++) {
        cum += exp(s[j] - s[0]) / z;
        if (u < cum) {
            return di(j);
        }
    }
    return di(kept - 1u);
}
