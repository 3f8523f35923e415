// trig — accurate sin/cos for f32 angles, pulled into kernels by `// #include trig`.
// WGSL only promises 2^-11 absolute error for sin/cos (SwiftShader is that coarse), too loose
// for RoPE at late positions and for HiFT's Snake. Cody–Waite reduction to [−π/4, π/4], then
// Taylor polynomials (|error| < 2e-8 there).

fn reduce_2pi(a: f32) -> f32 {
    // a − k·2π, 2π = 6.28125 + 0.00193530717958647692 (6.28125 has 8 significant bits, so
    // k·6.28125 is exact for the k that occur)
    let k = round(a * 0.15915494309189535);
    return (a - k * 6.28125) - k * 0.0019353071795864769;
}

// (cos a, sin a)
fn cos_sin(a: f32) -> vec2<f32> {
    let r = reduce_2pi(a);
    let q = round(r * 0.63661977236758134); // quadrant, r / (π/2)
    let t = (r - q * 1.5703125) - q * 0.00048382679489661923; // π/2 = 1.5703125 + …
    let t2 = t * t;
    let s = t * (1.0 + t2 * (-1.0 / 6.0 + t2 * (1.0 / 120.0 + t2 * (-1.0 / 5040.0 + t2 * (1.0 / 362880.0)))));
    let c = 1.0 + t2 * (-0.5 + t2 * (1.0 / 24.0 + t2 * (-1.0 / 720.0 + t2 * (1.0 / 40320.0))));
    let qi = i32(q) & 3;
    if (qi == 0) {
        return vec2<f32>(c, s);
    } else if (qi == 1) {
        return vec2<f32>(-s, c);
    } else if (qi == 2) {
        return vec2<f32>(-c, -s);
    }
    return vec2<f32>(s, -c);
}
