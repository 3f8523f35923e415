// The end of every matrix–vector kernel (gemv, gemv_i8): the lane-group reduction and the
// epilogue (bias → activation → residual → store). Expects the including file to declare
// P (with m, n, n0, flags, groups_x), bias, res, y, WG, TPR, R, NB, ACT and `partial`.

// The epilogue of row `row0 + r` for vector n: bias → activation → residual (SwiGLU: the
// output of the pair r, r + 1, for even r). Its output index is `out_index`.
fn out_value(row0: u32, r: u32, n: u32, sums: vec4<f32>) -> f32 {
    let m_out = select(P.m, P.m / 2u, ACT == 3u);
    let row = row0 + r;
    var v = sums[r * NB + n];
    var o = row;
    if (ACT == 3u) {
        v = silu(v) * sums[(r + 1u) * NB + n];
        o = row / 2u;
    } else {
        if ((P.flags & 1u) != 0u) {
            v += f32(bias[row]);
        }
        if (ACT == 1u) {
            v = silu(v);
        } else if (ACT == 2u) {
            v = 0.5 * v * (1.0 + erf_approx(v * 0.70710678118654752));
        }
    }
    if ((P.flags & 2u) != 0u) {
        v += f32(res[(P.n0 + n) * m_out + o]);
    }
    return v;
}

// Where row `row`'s output goes within its vector (SwiGLU: pairs of rows make one output).
fn out_index(row: u32) -> u32 {
    return select(row, row / 2u, ACT == 3u);
}

// Epilogue for a whole group: bias → activation → residual → store.
fn finish(row0: u32, sums: vec4<f32>) {
    let m_out = select(P.m, P.m / 2u, ACT == 3u);
    for (var r = 0u; r < R; r++) {
        let row = row0 + r;
        if (row >= P.m || (ACT == 3u && (r & 1u) == 1u)) {
            continue;
        }
        for (var n = 0u; n < NB; n++) {
            if (n >= P.n) {
                break;
            }
            y[(P.n0 + n) * m_out + out_index(row)] = act(out_value(row0, r, n, sums));
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
    return wid.y * P.groups_x + wid.x;
}

fn row0_of(wid: vec3<u32>, lid: u32) -> u32 {
    return (wg_linear(wid) * (WG / TPR) + lid / TPR) * R;
}
