// The end of every matrix–vector kernel (gemv, gemv_i8): the lane-group reduction and the
// epilogue (bias → activation → residual → store). Expects the including file to declare
// P (with m, n, n0, flags, groups_x), bias, res, y, WG, TPR, R, NB, ACT and `partial`.

// The params' fields as pipeline constants where the host fixes them (the one-vector int8
// products: every decode step's). The weights' first addresses then need no load of the params
// (a uniform read: every workgroup issued its first weight loads only after it came back, a
// round trip at the start of every dispatch; without it qkv, o_proj and down took 18, 12 and
// 11 µs per q4 token less on an H100, BENCHMARKS.md fifteenth session). Each field is read from the
// params where its constant is left at its default (the products of several vectors, and the
// fields SwiGLU leaves unfixed). The code reads the fields through these functions only.
override SM: u32 = 0u;           // m
override SK: u32 = 0u;           // k
override SNB: u32 = 0u;          // nb
override SGX: u32 = 0u;          // groups_x
override SFL: u32 = 0xffffffffu; // flags
override SEPS: u32 = 0xffffffffu; // eps, as its f32 bits
override ONE: u32 = 0u;          // 1: one vector (n = 1, n0 = 0)
override SQH: u32 = 0u;          // _p0: query heads (RoPE entries)
override STM: u32 = 0u;          // _p2: cache positions (RoPE entries)

fn pm() -> u32 { if (SM != 0u) { return SM; } return P.m; }
fn pk() -> u32 { if (SK != 0u) { return SK; } return P.k; }
fn pnb() -> u32 { if (SNB != 0u) { return SNB; } return P.nb; }
fn pgx() -> u32 { if (SGX != 0u) { return SGX; } return P.groups_x; }
fn pfl() -> u32 { if (SFL != 0xffffffffu) { return SFL; } return P.flags; }
fn peps() -> f32 { if (SEPS != 0xffffffffu) { return bitcast<f32>(SEPS); } return P.eps; }
fn pxs() -> u32 { if (ONE != 0u) { return 0u; } return P.xs; }
fn pn() -> u32 { if (ONE != 0u) { return 1u; } return P.n; }
fn pn0() -> u32 { if (ONE != 0u) { return 0u; } return P.n0; }
fn pqh() -> u32 { if (SQH != 0u) { return SQH; } return P._p0; }
fn ptm() -> u32 { if (STM != 0u) { return STM; } return P._p2; }

// The epilogue of row `row0 + r` for vector n: bias → activation → residual (SwiGLU: the
// output of the pair r, r + 1, for even r). Its output index is `out_index`.
fn out_value(row0: u32, r: u32, n: u32, sums: vec4<f32>) -> f32 {
    let m_out = select(pm(), pm() / 2u, ACT == 3u);
    let row = row0 + r;
    var b = 0.0;
    if ((pfl() & 1u) != 0u && ACT != 3u) {
        b = f32(bias[row]);
    }
    var rv = 0.0;
    if ((pfl() & 2u) != 0u) {
        rv = f32(res[(pn0() + n) * m_out + out_index(row)]);
    }
    return epi_apply(r, n, sums, b, rv);
}

// out_value's arithmetic on the bias b and residual rv of its row (each used where its flag
// is set; the bias not with SwiGLU).
fn epi_apply(r: u32, n: u32, sums: vec4<f32>, b: f32, rv: f32) -> f32 {
    var v = sums[r * NB + n];
    if (ACT == 3u) {
        v = silu(v) * sums[(r + 1u) * NB + n];
    } else {
        if ((pfl() & 1u) != 0u) {
            v += b;
        }
        if (ACT == 1u) {
            v = silu(v);
        } else if (ACT == 2u) {
            v = 0.5 * v * (1.0 + erf_approx(v * 0.70710678118654752));
        }
    }
    if ((pfl() & 2u) != 0u) {
        v += rv;
    }
    return v;
}

// A lane group's epilogue operands for vector 0 that the host asks (override PF: 1 bias, 2
// residual, set where its flags are), loaded before its product so that their latency hides
// behind the weights' instead of following the reduction. They stay in their stored type until
// the epilogue: a conversion here would wait on the load before the product's loads are
// issued. Only where asked, because the registers they hold through the product can cost more
// than the load (gate/up, with neither, lost 39 µs per q4 token on an H100 when it kept them
// for a runtime flag). Rows past M read row M − 1 (their outputs are not stored).
override PF: u32 = 0u;

struct EpiPre {
    b: vec4<act>,
    r: vec4<act>,
}

fn epi_load(row0: u32) -> EpiPre {
    let m_out = select(pm(), pm() / 2u, ACT == 3u);
    var e: EpiPre;
    for (var r = 0u; r < R; r++) {
        let row = min(row0 + r, pm() - 1u);
        if ((PF & 1u) != 0u) {
            e.b[r] = bias[row];
        }
        if ((PF & 2u) != 0u) {
            e.r[r] = res[pn0() * m_out + out_index(row)];
        }
    }
    return e;
}

// out_value of vector 0 with the operands epi_load gave (the others loaded here).
fn out_value_pre(row0: u32, r: u32, sums: vec4<f32>, e: EpiPre) -> f32 {
    let m_out = select(pm(), pm() / 2u, ACT == 3u);
    let row = row0 + r;
    var b = f32(e.b[r]);
    if ((PF & 1u) == 0u && (pfl() & 1u) != 0u && ACT != 3u) {
        b = f32(bias[row]);
    }
    var rv = f32(e.r[r]);
    if ((PF & 2u) == 0u && (pfl() & 2u) != 0u) {
        rv = f32(res[pn0() * m_out + out_index(row)]);
    }
    return epi_apply(r, 0u, sums, b, rv);
}

// Where row `row`'s output goes within its vector (SwiGLU: pairs of rows make one output).
fn out_index(row: u32) -> u32 {
    return select(row, row / 2u, ACT == 3u);
}

// Epilogue for a whole group: bias → activation → residual → store.
fn finish(row0: u32, sums: vec4<f32>) {
    let m_out = select(pm(), pm() / 2u, ACT == 3u);
    for (var r = 0u; r < R; r++) {
        let row = row0 + r;
        if (row >= pm() || (ACT == 3u && (r & 1u) == 1u)) {
            continue;
        }
        for (var n = 0u; n < NB; n++) {
            if (n >= pn()) {
                break;
            }
            y[(pn0() + n) * m_out + out_index(row)] = act(out_value(row0, r, n, sums));
        }
    }
}

// The lane group's sums (tree over `partial`), valid in its first invocation (lane 0).
fn reduce_tree(lane: u32, lid: u32, acc: vec4<f32>) -> vec4<f32> {
    partial[lid] = acc;
    workgroupBarrier();
    for (var st = TPR / 2u; st > 0u; st >>= 1u) {
        if (lane < st) {
            partial[lid] += partial[lid + st];
        }
        workgroupBarrier();
    }
    return partial[lid];
}

fn reduce_and_finish(row0: u32, lane: u32, lid: u32, acc: vec4<f32>) {
    let sums = reduce_tree(lane, lid, acc);
    if (lane == 0u) {
        finish(row0, sums);
    }
}

// The workgroup's index in the (possibly 2-D) grid.
fn wg_linear(wid: vec3<u32>) -> u32 {
    return wid.y * pgx() + wid.x;
}

fn row0_of(wid: vec3<u32>, lid: u32) -> u32 {
    return (wg_linear(wid) * (WG / TPR) + lid / TPR) * R;
}
