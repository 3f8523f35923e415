// #include attn_combine
// The decode attention's combine: the splits' partials of a head (acc (S, Hq, D), then (m, l)
// (S, Hq, 2) in `part`, as attn_decode.wgsl's pass 1 and attn_decode_gqa.wgsl write them)
// rescaled to the global max, summed and divided. Shared by `attn_decode_combine` (its own
// dispatch: one head per workgroup of 128) and `attn_decode_gqa_sync` (after the splits, in
// their dispatch: two heads per workgroup of 256), so both give the same bits.
//
// The includer declares `part`, `out`, `xq`, `xd`, `P` (hq, nsplit), `D`, `XQ`, `LOWEST`,
// includes xq_block, and gives the workgroup memory through four functions:
// - `cst_set(i, v)` / `cst_get(i)`: 2048 f32, the split statistics a pass stages (m_s of head
//   slot k at k·CS …, l_s at 1024 + k·CS …);
// - `wo_set(i, v)` / `wo_get(i)`: 128 act per head slot, the output as `out` holds it, in the
//   activation dtype, so each value is rounded as stored (an H100's compiler kept an f32
//   array's copy of act(a / l) at f32 precision, and the int8 x then differed from quantising
//   `out`).
//
// The chain is one round of loads and one barrier: every invocation issues its dim's partials
// of the first CB splits together with the split statistics it stages, then, after the
// barrier, finds the max over the staged m_s itself (a loop over workgroup memory, no reduction
// tree) and sums w_s = exp(m_s − m) times its partials and l_s. Splits beyond CB come CB at a
// time; beyond CS (1024 / head slots) the passes rescale what came before to the new max.

const CB: u32 = 32u; // partials per invocation in flight at once

// The partials of splits s .. s + CB − 1 for dim d of head h (splits past the last read the
// last again: their weight is masked to 0 by the caller).
fn combine_loads(h: u32, d: u32, s: u32) -> array<f32, CB> {
    var v: array<f32, CB>;
    let dc = min(d, D - 1u);
    for (var i = 0u; i < CB; i++) {
        v[i] = part[(min(s + i, P.nsplit - 1u) * P.hq + h) * D + dc];
    }
    return v;
}

// Heads h0 .. h0 + nh − 1 (nh ≤ hs) by a workgroup of hs·128 invocations: head slot t / 128,
// dim t % 128. A slot past nh combines the last head again and writes nothing.
fn attn_combine(h0: u32, nh: u32, hs: u32, t: u32) {
    let slot = t / 128u;
    let dt = t % 128u;
    let h = h0 + min(slot, nh - 1u);
    let cs = 1024u / hs;
    let mo = slot * cs;
    let lo = 1024u + slot * cs;
    let ml = P.nsplit * P.hq * D;
    var m = LOWEST;
    var l = 0.0;
    var a = 0.0;
    for (var s0 = 0u; s0 < P.nsplit; s0 += cs) {
        let ns = min(cs, P.nsplit - s0);
        var pv = combine_loads(h, dt, s0);
        workgroupBarrier(); // the previous pass's statistics are read
        for (var s = dt; s < ns; s += 128u) {
            let i = ml + ((s0 + s) * P.hq + h) * 2u;
            cst_set(mo + s, part[i]);
            cst_set(lo + s, part[i + 1u]);
        }
        workgroupBarrier();
        var mp = m;
        for (var s = 0u; s < ns; s++) {
            mp = max(mp, cst_get(mo + s));
        }
        // a and l so far, rescaled to the new max (0 and 0 on the first pass)
        let r = exp(m - mp);
        a *= r;
        l *= r;
        m = mp;
        for (var b = 0u; b < ns; b += CB) {
            if (b > 0u) {
                pv = combine_loads(h, dt, s0 + b);
            }
            for (var i = 0u; i < CB; i++) {
                let s = min(b + i, ns - 1u);
                let w = select(0.0, exp(cst_get(mo + s) - m), b + i < ns);
                l += w * cst_get(lo + s);
                a += w * pv[i];
            }
        }
    }
    let o = act(a / l);
    if (slot < nh && dt < D) {
        out[h * D + dt] = o;
    }
    if (XQ == 1u) {
        wo_set(t, o);
        workgroupBarrier();
        let nb = max(D / 32u, 1u); // blocks per head (XQ needs D a multiple of 32)
        let bs = t / nb;
        if (bs < nh) {
            let bi = t % nb;
            var v: array<vec4<f32>, 8>;
            for (var j = 0u; j < 8u; j++) {
                let e = bs * 128u + 32u * bi + 4u * j;
                v[j] = vec4<f32>(f32(wo_get(e)), f32(wo_get(e + 1u)), f32(wo_get(e + 2u)),
                                 f32(wo_get(e + 3u)));
            }
            let b = xq_block(v);
            let blk = (h0 + bs) * nb + bi;
            for (var j = 0u; j < 8u; j++) {
                xq[blk * 8u + j] = b.q[j];
            }
            xd[blk] = b.d;
        }
    }
}
