// embedding — row gathers from f16 tables (token embeddings, the 8 audio-code tables).
//
// @binding(0) table: (V, S/2) u32   f16 rows packed 2 per u32 (low half first), the
//                                   `Matrix::F16` layout: C columns padded with zeros to the
//                                   row stride S = ⌈C/8⌉·8; embedding_audio: the 8 tables
//                                   stacked, table i starting at row P.off[i]
// @binding(1) ids:   (T,) u32 ids | (T, 8) u32 codes
// @binding(2) y:     (T, C) act    output
// @binding(3) P: uniform Params
//
// One thread per (frame, column pair). An out-of-range id (≥ V) gives a zero row; an
// out-of-range code (≥ P.rows[i]) contributes nothing: no read ever leaves the table.
// A table stored in row parts: `embedding` over part p takes P.first = its first row (ids
// below it wrap past V, so they are out of range too) and, after the first part, P.keep = 1:
// an id outside this part leaves y as it is, so the parts in turn write each row once.

struct Params {
    t: u32,
    c: u32,
    pairs: u32,     // ⌈C/2⌉ column pairs per row
    stride2: u32,   // row stride in u32 words = S / 2
    v: u32,         // embedding: rows of the table
    groups_x: u32,  // workgroups along x
    first: u32,     // embedding: the first row of this table part
    keep: u32,      // embedding: 1 = an id outside the part leaves y as it is
    off: array<vec4<u32>, 2>,  // embedding_audio: first row of table i (i = 0..7)
    rows: array<vec4<u32>, 2>, // embedding_audio: rows of table i (codebook_size + 1)
}

@group(0) @binding(0) var<storage, read> table: array<u32>;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read_write> y: array<act>;
@group(0) @binding(3) var<uniform> P: Params;

override WG: u32 = 256;

fn store(t: u32, j: u32, v: vec2<f32>) {
    let col = 2u * j;
    y[t * P.c + col] = act(v.x);
    if (col + 1u < P.c) {
        y[t * P.c + col + 1u] = act(v.y);
    }
}

@compute @workgroup_size(WG)
fn embedding(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * P.groups_x + wid.x) * WG + lid;
    if (i >= P.t * P.pairs) {
        return;
    }
    let t = i / P.pairs;
    let j = i % P.pairs;
    let id = ids[t] - P.first; // u32: wraps past V below the part
    var v = vec2<f32>(0.0);
    if (id < P.v) {
        v = unpack2x16float(table[id * P.stride2 + j]);
    } else if (P.keep != 0u) {
        return;
    }
    store(t, j, v);
}

@compute @workgroup_size(WG)
fn embedding_audio(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * P.groups_x + wid.x) * WG + lid;
    if (i >= P.t * P.pairs) {
        return;
    }
    let t = i / P.pairs;
    let j = i % P.pairs;
    var acc = vec2<f32>(0.0);
    for (var k = 0u; k < 8u; k++) { // order 0 → 7, f32 accumulation
        let code = ids[t * 8u + k];
        if (code < P.rows[k / 4u][k % 4u]) {
            acc += unpack2x16float(table[(P.off[k / 4u][k % 4u] + code) * P.stride2 + j]);
        }
    }
    store(t, j, acc);
}
