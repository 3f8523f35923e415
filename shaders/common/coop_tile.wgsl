// coop_tile — the staging of gemm's operands for coop_mma.wgsl (include both): W (f16 words,
// or q8/q4 blocks dequantised here) and x (act4 rows, K a multiple of 4), 32 k at a time.
// The including file declares `w` (weight words as vec4<u32>), `s` (scales), `x` (act4 rows)
// and a uniform `P` with m, k, nb, n, and the override FMT.

// K per step: 32 or 64 (one or two q4/q8 blocks; the fetches below work 32 at a time).
override TK: u32 = 32u;

// W values k0 + kq .. +3 (kq within the 32-wide part at column c0 of the step) masked to
// k < K, as f16
fn put_w(row: u32, c0: u32, kq: u32, k0: u32, v: vec4<f16>) {
    let kk = vec4<u32>(k0 + kq) + vec4<u32>(0u, 1u, 2u, 3u);
    ws[row * XS4 + (c0 + kq) / 4u] = select(vec4<f16>(0.0), v, kk < vec4<u32>(P.k));
}

// One invocation's raw share of a W tile (all of its loads are issued before any is used).
// q4: words a.x, a.y with their (scale, min) words
// b.x, b.y; q8: the words a with the scale f; f16: a and b, 8 halves each. Rows past M
// fetch zeros (a zero q4/q8 scale word dequantises to 0).
struct WRaw {
    a: vec4<u32>,
    b: vec4<u32>,
    f: f32,
}

// W rows [m0, m0+64) × k [k0, k0+32): this invocation's words.
fn fetch_w(t: u32, m0: u32, k0: u32) -> WRaw {
    let kb = k0 / 32u; // the q4/q8 block (fetches are 32 wide)
    var o = WRaw(vec4<u32>(0u), vec4<u32>(0u), 0.0);
    if (FMT == 2u) {
        // q4: a block is one vec4 of words; invocation t takes words (t % 4) of rows t / 4
        // and 32 + t / 4
        let gm = m0 + t / 4u;
        if (kb < P.nb) {
            if (gm < P.m) {
                let b = gm * P.nb + kb;
                o.a.x = w[b][t % 4u];
                o.b.x = s[b];
            }
            if (gm + 32u < P.m) {
                let b = (gm + 32u) * P.nb + kb;
                o.a.y = w[b][t % 4u];
                o.b.y = s[b];
            }
        }
    } else if (FMT == 1u) {
        // q8: a block is two vec4s of words; invocation t takes half t % 2 of row t / 2
        let gm = m0 + t / 2u;
        if (gm < P.m && kb < P.nb) {
            let b = gm * P.nb + kb;
            let sw = unpack2x16float(s[b / 2u]);
            o.f = select(sw.x, sw.y, (b & 1u) == 1u) * 127.0;
            o.a = w[b * 2u + t % 2u];
        }
    } else {
        // f16: a row is nb vec4s of 8 halves (padded to nb·8 elements; read only inside it);
        // invocation t takes vec4 t % 4 of rows t / 4 and 32 + t / 4
        let q8 = k0 / 8u + t % 4u;
        let gm = m0 + t / 4u;
        if (q8 < P.nb) {
            if (gm < P.m) {
                o.a = w[gm * P.nb + q8];
            }
            if (gm + 32u < P.m) {
                o.b = w[(gm + 32u) * P.nb + q8];
            }
        }
    }
    return o;
}

// Dequantises fetch_w's words for k0 .. k0+31 into ws columns c0 .. c0+31.
fn put_w_raw(t: u32, c0: u32, k0: u32, o: WRaw) {
    if (FMT == 2u) {
        // word j holds k 8j .. 8j+7 (low nibbles 8j .. +3)
        let j = t % 4u;
        for (var i = 0u; i < 2u; i++) {
            let row = t / 4u + 32u * i;
            let sm = unpack2x16float(select(o.b.x, o.b.y, i == 1u));
            let word = select(o.a.x, o.a.y, i == 1u);
            let lo = unpack4x8unorm(word & 0x0F0F0F0Fu) * (sm.x * 255.0) + sm.y;
            let hi = unpack4x8unorm((word >> 4u) & 0x0F0F0F0Fu) * (sm.x * 255.0) + sm.y;
            put_w(row, c0, 8u * j, k0, vec4<f16>(lo));
            put_w(row, c0, 8u * j + 4u, k0, vec4<f16>(hi));
        }
    } else if (FMT == 1u) {
        // word j of half h holds k 16h + 4j .. +3
        let row = t / 2u;
        let h = t % 2u;
        for (var j = 0u; j < 4u; j++) {
            put_w(row, c0, 16u * h + 4u * j, k0, vec4<f16>(unpack4x8snorm(o.a[j]) * o.f));
        }
    } else {
        // (naga has no size-changing bitcast u32 → f16 pairs)
        let j = t % 4u;
        for (var i = 0u; i < 2u; i++) {
            let row = t / 4u + 32u * i;
            let q = select(o.a, o.b, i == 1u);
            let lo = vec4<f32>(unpack2x16float(q.x), unpack2x16float(q.y));
            let hi = vec4<f32>(unpack2x16float(q.z), unpack2x16float(q.w));
            put_w(row, c0, 8u * j, k0, vec4<f16>(lo));
            put_w(row, c0, 8u * j + 4u, k0, vec4<f16>(hi));
        }
    }
}

// x rows [n0, n0+64) × k [k0, k0+32) (K is a multiple of 4): invocation t's four vec4s,
// rows t / 8 + 16i, vec4 t % 8 of the part; zeros outside x.
struct XRaw {
    a: vec4<f16>,
    b: vec4<f16>,
    c: vec4<f16>,
    d: vec4<f16>,
}

fn fetch_x1(row: u32, kq: u32) -> vec4<f16> {
    if (row < P.n && kq < P.k / 4u) {
        return vec4<f16>(x[row * (P.k / 4u) + kq]);
    }
    return vec4<f16>(0.0);
}

fn fetch_x(t: u32, n0: u32, k0: u32) -> XRaw {
    let kq = k0 / 4u + t % 8u;
    let r = n0 + t / 8u;
    return XRaw(fetch_x1(r, kq), fetch_x1(r + 16u, kq), fetch_x1(r + 32u, kq), fetch_x1(r + 48u, kq));
}

// fetch_x's vec4s into xs columns c0 .. c0+31
fn put_x(t: u32, c0: u32, o: XRaw) {
    let i = (t / 8u) * XS4 + c0 / 4u + t % 8u;
    xs[i] = o.a;
    xs[i + 16u * XS4] = o.b;
    xs[i + 32u * XS4] = o.c;
    xs[i + 48u * XS4] = o.d;
}

// coop_mma's staging: every load of the step first, then the dequantising stores.
fn stage(t: u32, m0: u32, n0: u32, k0: u32) {
    let wr0 = fetch_w(t, m0, k0);
    let xr0 = fetch_x(t, n0, k0);
    var wr1: WRaw;
    var xr1: XRaw;
    if (TK == 64u) {
        wr1 = fetch_w(t, m0, k0 + 32u);
        xr1 = fetch_x(t, n0, k0 + 32u);
    }
    put_w_raw(t, 0u, k0, wr0);
    put_x(t, 0u, xr0);
    if (TK == 64u) {
        put_w_raw(t, 32u, k0 + 32u, wr1);
        put_x(t, 32u, xr1);
    }
}
