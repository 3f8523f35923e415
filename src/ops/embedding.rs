//! Row gathers from f16 tables (shaders/elementwise/embedding.wgsl).
//!
//! Tables use the [`Matrix::F16`] layout (rows padded to ⌈C/8⌉·8 columns), so a loader uploads
//! them exactly like a linear weight. The 8 audio-code tables are stacked into ONE matrix
//! (table 0's rows, then table 1's, …) to stay within the storage-buffer-per-stage limit.
//! Out-of-range ids give a zero row (`embedding`) or add nothing (`audio_embed`); no read
//! leaves the table.

use crate::gpu::{grid, Binding, KernelKey, Recorder};
use crate::tensor::{Matrix, Tensor};

use super::{check_act, check_len, shape_err, OpError};

// Mirrors shaders/elementwise/embedding.wgsl: table, ids, y, params.
const BINDINGS: &[Binding] = &[
    Binding::Read,
    Binding::Read,
    Binding::ReadWrite,
    Binding::Uniform,
];

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    t: u32,
    c: u32,
    pairs: u32,
    stride2: u32,
    v: u32,
    groups_x: u32,
    first: u32,
    keep: u32,
    off: [u32; 8],
    rows: [u32; 8],
}

const WG: u32 = 256;
/// Audio codebooks per frame.
pub const CODEBOOKS: usize = 8;

fn check_out(
    op: &'static str,
    rec: &Recorder,
    table: &Matrix,
    y: &Tensor,
) -> Result<usize, OpError> {
    let [t, c] = y.shape[..] else {
        return Err(shape_err(
            op,
            format!("y must be (T, C), got {:?}", y.shape),
        ));
    };
    if c != table.cols() || t == 0 || c == 0 {
        return Err(shape_err(
            op,
            format!(
                "y is {:?}, the table is {}×{}",
                y.shape,
                table.rows(),
                table.cols()
            ),
        ));
    }
    check_act(op, rec.ctx(), &[("y", y)])?;
    check_len(op, "y", &y.buf, (t * c * y.dtype.size()) as u64)?;
    let Matrix::F16 {
        buf, rows, stride, ..
    } = table
    else {
        return Err(shape_err(
            op,
            format!(
                "the table is {}, embeddings are gathered from f16",
                table.format()
            ),
        ));
    };
    check_len(op, "table", buf, (rows * stride * 2) as u64)?;
    Ok(t)
}

fn launch(
    rec: &mut Recorder,
    entry: &'static str,
    table: &Matrix,
    ids: &wgpu::Buffer,
    y: &Tensor,
    mut params: Params,
) -> Result<(), OpError> {
    let ctx = rec.ctx();
    let Matrix::F16 { buf, stride, .. } = table else {
        return Err(shape_err(
            "embedding",
            format!(
                "the table is {}, embeddings are gathered from f16",
                table.format()
            ),
        ));
    };
    let key = KernelKey {
        family: "embedding",
        entry,
        act: ctx.act(),
        subgroups: false,
        constants: vec![("WG", WG)],
    };
    let p = ctx.pipeline(&key, BINDINGS)?;
    let g = grid(
        (params.t * params.pairs).div_ceil(WG),
        ctx.limits.max_compute_workgroups_per_dimension,
    );
    params.groups_x = g[0];
    params.stride2 = (*stride / 2) as u32;
    let ubuf = rec.params(bytemuck::bytes_of(&params));
    let group = rec.bind(&p, &crate::binds![buf, ids, &y.buf, &ubuf]);
    rec.dispatch(&p, &group, g)?;
    Ok(())
}

/// `y[t] = table[ids[t]]`: `table` (V, C) f16, `ids` u32 (T), `y` (T, C).
pub fn embedding(
    rec: &mut Recorder,
    table: &Matrix,
    ids: &wgpu::Buffer,
    y: &Tensor,
) -> Result<(), OpError> {
    embedding_part(rec, table, ids, y, 0, false)
}

/// [`embedding`] over one row part of a table stored in parts: `table` holds rows
/// `first..first + V` of it, and `ids` are ids of the whole table. An id outside the part
/// gives a zero row, or with `keep` leaves y's row as it is. So a gather over every part in
/// turn (the first without `keep`, the others with it) writes each row of y once, from the
/// part that holds its id, whatever the ids (they may still be on the GPU).
pub fn embedding_part(
    rec: &mut Recorder,
    table: &Matrix,
    ids: &wgpu::Buffer,
    y: &Tensor,
    first: usize,
    keep: bool,
) -> Result<(), OpError> {
    const OP: &str = "embedding";
    let t = check_out(OP, rec, table, y)?;
    check_len(OP, "ids", ids, (t * 4) as u64)?;
    let c = table.cols();
    let first = u32::try_from(first)
        .ok()
        .filter(|f| f.checked_add(table.rows() as u32).is_some())
        .ok_or_else(|| {
            shape_err(
                OP,
                format!("a part from row {first} of {} rows", table.rows()),
            )
        })?;
    launch(
        rec,
        "embedding",
        table,
        ids,
        y,
        Params {
            t: t as u32,
            c: c as u32,
            pairs: c.div_ceil(2) as u32,
            v: table.rows() as u32,
            first,
            keep: u32::from(keep),
            ..Default::default()
        },
    )
}

/// `y[t] = Σ_{i=0..7} table_i[codes[t, i]]` (f32 sum in order 0 → 7): `tables` is the 8
/// tables stacked row-wise, table i having `rows[i]` (= codebook_size_i + 1) rows; `codes`
/// u32 (T, 8); `y` (T, C).
pub fn audio_embed(
    rec: &mut Recorder,
    tables: &Matrix,
    rows: &[usize; CODEBOOKS],
    codes: &wgpu::Buffer,
    y: &Tensor,
) -> Result<(), OpError> {
    const OP: &str = "audio_embed";
    let total: usize = rows.iter().sum();
    if total != tables.rows() {
        return Err(shape_err(
            OP,
            format!(
                "the table rows {rows:?} sum to {total}, the stacked tables are {}×{}",
                tables.rows(),
                tables.cols()
            ),
        ));
    }
    let t = check_out(OP, rec, tables, y)?;
    check_len(OP, "codes", codes, (t * CODEBOOKS * 4) as u64)?;
    let c = tables.cols();
    let mut params = Params {
        t: t as u32,
        c: c as u32,
        pairs: c.div_ceil(2) as u32,
        v: total as u32,
        ..Default::default()
    };
    let mut start = 0;
    for (i, r) in rows.iter().enumerate() {
        params.off[i] = start as u32;
        params.rows[i] = *r as u32;
        start += r;
    }
    launch(rec, "embedding_audio", tables, codes, y, params)
}
