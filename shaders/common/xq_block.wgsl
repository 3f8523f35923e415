// One 32-value block of an int8 x for gemv_i8.wgsl, as gemv_xq.wgsl lays it out: 8 words of
// int8 (pack4x8snorm of x / max|x|: ⌊0.5 + 127·x/max|x|⌋, k ascending from the low byte) and
// (scale = max|x| / 127, Σ x). Shared by every kernel that writes x in this form, so they agree
// to the bit.

struct XqBlock {
    q: array<u32, 8>,
    d: vec2<f32>,
}

fn xq_block(a: array<vec4<f32>, 8>) -> XqBlock {
    var m4 = vec4<f32>(0.0);
    var s4 = vec4<f32>(0.0);
    for (var j = 0u; j < 8u; j++) {
        m4 = max(m4, abs(a[j]));
        s4 += a[j];
    }
    let amax = max(max(m4.x, m4.y), max(m4.z, m4.w));
    let inv = select(0.0, 1.0 / amax, amax > 0.0);
    var b: XqBlock;
    for (var j = 0u; j < 8u; j++) {
        b.q[j] = pack4x8snorm(a[j] * inv);
    }
    b.d = vec2<f32>(amax / 127.0, s4.x + s4.y + s4.z + s4.w);
    return b;
}
