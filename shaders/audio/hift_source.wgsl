// hift_source — HiFT's neural-source-filter excitation and its STFT on the GPU (spec §9 steps
// 1–3; the CPU references are model::audio_out::hift::{sine_source, stft}), so a segment needs
// no F0 read-back and no host work between the mel and the PCM.
//
// Entries, in dispatch order:
//   hift_f0_scan  one workgroup: F0 per frame f0[F] = |h[F]·w + b| (the F0 predictor's Linear
//                 on its last conv's output), then per frame and harmonic k < H the increment
//                 v = f0·(k+1)/sr (f32, correctly rounded) and the running sum of the samples
//                 before the frame, Σ_{F' < F} fs·v(F', k), in fixed point (below): the CPU
//                 reference sums in f64 (torch's CPU cumsum), exactly, and so does this.
//                 pre[F·H + k] = (sum lo, hi, v lo, hi).
//   hift_source   one invocation per sample n (frame F = n / fs, offset j): phase cycles
//                 a = f32(sum + (j+1)·v), sine = sine_amp·sin(2π·(a − ⌊a⌋) + phase_k) where F0 is
//                 voiced, plus the noise; s[n] = tanh(Σ_k lin_w[k]·(…) + lin_b).
// Then hift_stft.wgsl takes the STFT of `src`.

// #include hift_params

// bindings 0–4: what hift_f0_scan uses; hift_source uses 0–2 and 5–7 (3 and 4 bound to dummies)
@group(0) @binding(0) var<storage, read_write> f0: array<f32>;  // (T)
@group(0) @binding(1) var<storage, read_write> pre: array<vec4<u32>>; // (T·H)
@group(0) @binding(2) var<uniform> P: Params;
@group(0) @binding(3) var<storage, read> hin: array<act>;       // (T, ch)
@group(0) @binding(4) var<storage, read> cls: array<f32>;       // (ch)
@group(0) @binding(5) var<storage, read> noise: array<f32>;     // (len, H) sample-major
@group(0) @binding(6) var<storage, read> phw: array<f32>;       // phases (H), then lin_w (H)
@group(0) @binding(7) var<storage, read_write> src: array<f32>; // (len)

const WG: u32 = 256u;  // hift_source's invocations per workgroup
const SWG: u32 = 128u; // hift_f0_scan's: its partial sums fill the 16 KiB every device has
const MAXH: u32 = 16u;
const TWO_PI: f32 = 6.283185307179586;

// Phase sums are integers: the reference adds every sample's increment (an f32) in f64 and
// rounds the sum to f32 before `mod 1`. Here each increment is a fixed-point integer of 2⁻⁴⁰
// cycles in a u64 (vec2<u32> lo, hi), sums are integer adds, and the sum is rounded to f32 by
// integer ops: no floating-point error-free transforms, which compilers may reassociate or
// contract. The two agree exactly while every increment is at least 2⁻¹⁵ cycles (F0·(k+1) ≥
// 0.75 Hz at 24 kHz: the reference's f64 sum is then exact too); below that (unvoiced frames
// near 0 Hz) both sums round, differently, by far less than the f32 rounding of the sum, so the
// phases can differ by one f32 ulp of it at the few samples where that rounding is a near tie.

fn add64(a: vec2<u32>, b: vec2<u32>) -> vec2<u32> {
    let lo = a.x + b.x;
    return vec2<u32>(lo, a.y + b.y + select(0u, 1u, lo < a.x));
}

// a·j for j < 2⁹ and a < 2⁵⁵
fn mul64(a: vec2<u32>, j: u32) -> vec2<u32> {
    let p0 = (a.x & 0xffffu) * j;
    let p1 = (a.x >> 16u) * j;
    let lo = p0 + (p1 << 16u);
    return vec2<u32>(lo, a.y * j + (p1 >> 16u) + select(0u, 1u, lo < p0));
}

// v (f32, ≥ 0) as an integer of 2⁻⁴⁰
fn to_fixed(v: f32) -> vec2<u32> {
    let b = bitcast<u32>(v);
    let e = (b >> 23u) & 0xffu;
    if (e == 0u || v <= 0.0) {
        return vec2<u32>(0u);
    }
    let m = (b & 0x7fffffu) | 0x800000u;
    let s = i32(e) - 110; // m·2^(e − 150) · 2⁴⁰
    if (s < 0) {
        if (s <= -24) {
            return vec2<u32>(0u);
        }
        return vec2<u32>(m >> u32(-s), 0u);
    }
    let us = u32(s);
    if (us == 0u) {
        return vec2<u32>(m, 0u);
    }
    if (us < 32u) {
        return vec2<u32>(m << us, m >> (32u - us));
    }
    return vec2<u32>(0u, m << (us - 32u));
}

// frac(f32(x·2⁻⁴⁰)): x rounded to 24 significant bits (to nearest, ties to even), as the
// reference's f32 sum, then its fractional part (exact in f32)
fn fixed_frac(x: vec2<u32>) -> f32 {
    var len = 32u - countLeadingZeros(x.x);
    if (x.y != 0u) {
        len = 64u - countLeadingZeros(x.y);
    }
    if (len <= 24u) {
        return ldexp(f32(x.x & 0xffffffu), -40); // < 2²⁴·2⁻⁴⁰: all fraction
    }
    let sh = len - 24u; // 1 ..= 40
    var r: u32;
    var rem: vec2<u32>;
    if (sh < 32u) {
        r = (x.x >> sh) | (x.y << (32u - sh));
        rem = vec2<u32>(x.x & ((1u << sh) - 1u), 0u);
    } else {
        r = x.y >> (sh - 32u);
        rem = vec2<u32>(x.x, x.y & ((1u << (sh - 32u)) - 1u));
    }
    var half = vec2<u32>(0u, 1u << ((sh - 1u) & 31u));
    if (sh <= 32u) {
        half = vec2<u32>(1u << (sh - 1u), 0u);
    }
    let above = rem.y > half.y || (rem.y == half.y && rem.x > half.x);
    let tie = rem.x == half.x && rem.y == half.y;
    if (above || (tie && (r & 1u) == 1u)) {
        r += 1u;
    }
    if (sh >= 40u) {
        return 0.0; // an integer number of cycles
    }
    let fb = 40u - sh; // fraction bits kept in r (1 ..= 39)
    var fr = r;
    if (fb < 32u) {
        fr = r & ((1u << fb) - 1u);
    }
    return ldexp(f32(fr), -i32(fb));
}

// f0·(k+1) / sr correctly rounded (what the reference's f32 division gives; Vulkan's division
// may be off by ulps): the product is an IEEE multiply, the quotient a long division of its
// 24-bit significand by the integer rate (P.sri < 2¹⁵), rounded to nearest even with a sticky
// remainder.
fn incr(f: f32, k: u32) -> f32 {
    let m = f * f32(k + 1u);
    let b = bitcast<u32>(m);
    let e = (b >> 23u) & 0xffu;
    if (e == 0u || m <= 0.0) {
        return 0.0;
    }
    let mant = (b & 0x7fffffu) | 0x800000u;
    let sr = P.sri;
    let kk = 33u - countLeadingZeros(sr); // bit length of sr, + 1: the quotient has 25–26 bits
    let q1 = mant / sr;
    let r1 = mant % sr;
    let q2 = (r1 << kk) / sr;
    let sticky = (r1 << kk) % sr != 0u;
    let q = (q1 << kk) + q2;
    let extra = 32u - countLeadingZeros(q) - 24u;
    var r = q >> extra;
    let rb = q & ((1u << extra) - 1u);
    let half = 1u << (extra - 1u);
    if (rb > half || (rb == half && (sticky || (r & 1u) == 1u))) {
        r += 1u;
    }
    return ldexp(f32(r), i32(e) - 150 - i32(kk) + i32(extra));
}

var<workgroup> part: array<vec2<u32>, 2048>; // SWG × MAXH partial sums (16 KiB)

@compute @workgroup_size(128)
fn hift_f0_scan(@builtin(local_invocation_index) t: u32) {
    for (var fr = t; fr < P.frames; fr += SWG) {
        var s = 0.0;
        for (var c = 0u; c < P.ch; c++) {
            s += f32(hin[fr * P.ch + c]) * cls[c];
        }
        f0[fr] = abs(s + P.cls_b);
    }
    storageBarrier();
    workgroupBarrier();
    // this invocation's frames [lo, hi)
    let per = (P.frames + SWG - 1u) / SWG;
    let lo = min(t * per, P.frames);
    let hi = min(lo + per, P.frames);
    for (var k = 0u; k < P.h; k++) {
        var acc = vec2<u32>(0u);
        for (var fr = lo; fr < hi; fr++) {
            acc = add64(acc, mul64(to_fixed(incr(f0[fr], k)), P.fs));
        }
        part[t * MAXH + k] = acc;
    }
    workgroupBarrier();
    // exclusive scan of the WG partials, one invocation per harmonic
    if (t < P.h) {
        var run = vec2<u32>(0u);
        for (var i = 0u; i < SWG; i++) {
            let v = part[i * MAXH + t];
            part[i * MAXH + t] = run;
            run = add64(run, v);
        }
    }
    workgroupBarrier();
    for (var k = 0u; k < P.h; k++) {
        var run = part[t * MAXH + k];
        for (var fr = lo; fr < hi; fr++) {
            let v = to_fixed(incr(f0[fr], k));
            pre[fr * P.h + k] = vec4<u32>(run, v);
            run = add64(run, mul64(v, P.fs));
        }
    }
}

@compute @workgroup_size(256)
fn hift_source(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let n = (wid.y * P.groups_x + wid.x) * WG + t;
    if (n >= P.len) {
        return;
    }
    let fr = n / P.fs;
    let j1 = n % P.fs + 1u;
    let f = f0[fr];
    let voiced = f > P.thr;
    let uv = select(0.0, 1.0, voiced);
    let amp = uv * P.noise_std + (1.0 - uv) * P.sine_amp / 3.0;
    var s = P.lin_b;
    for (var k = 0u; k < P.h; k++) {
        let e = pre[fr * P.h + k];
        var sine = 0.0;
        if (voiced) {
            // the running sum at this sample, rounded once to f32 (as the reference's f64 →
            // f32), mod 1
            let frac = fixed_frac(add64(e.xy, mul64(e.zw, j1)));
            sine = P.sine_amp * sin(TWO_PI * frac + phw[k]);
        }
        s += phw[P.h + k] * (sine * uv + amp * noise[n * P.h + k]);
    }
    src[n] = tanh(clamp(s, -15.0, 15.0));
}
