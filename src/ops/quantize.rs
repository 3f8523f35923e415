use crate::gpu::{grid, Binding, KernelKey, Recorder};
use crate::tensor::{quant::QBLOCK, Matrix, WeightFormat};

use super::{check_len, shape_err, OpError};

// Mirrors shaders/quant/quantize.wgsl: src, data, scales, params.
const BINDINGS: &[Binding] = &[
    Binding::Read,
    Binding::ReadWrite,
    Binding::ReadWrite,
    Binding::Uniform,
];

const WG: u32 = 64;

/// Quantises a row-major f16 matrix `(rows, cols)` held in `src` (as a checkpoint stores it)
/// into a new q8 or q4 [`Matrix`] on the GPU.
pub fn quantize(
    rec: &mut Recorder,
    src: &wgpu::Buffer,
    rows: usize,
    cols: usize,
    format: WeightFormat,
) -> Result<Matrix, OpError> {
    const OP: &str = "quantize";
    let ctx = rec.ctx();
    if rows == 0 || cols == 0 {
        return Err(shape_err(OP, format!("empty matrix {rows}×{cols}")));
    }
    check_len(OP, "src", src, ((rows * cols).div_ceil(2) * 4) as u64)?;
    let nb = cols.div_ceil(QBLOCK);
    let blocks = rows * nb;
    let (entry, data_words, scale_words, threads) = match format {
        WeightFormat::Q8 => (
            "quantize_q8",
            blocks * 8,
            blocks.div_ceil(2),
            blocks.div_ceil(2),
        ),
        WeightFormat::Q4 => ("quantize_q4", blocks * 4, blocks, blocks),
        WeightFormat::F16 => {
            return Err(shape_err(OP, "target format must be q8 or q4"));
        }
    };
    let data = ctx.storage("Wq", (data_words * 4) as u64);
    let scales = ctx.storage("Wq.s", (scale_words * 4) as u64);
    let key = KernelKey {
        family: "quantize",
        entry,
        act: ctx.act(),
        subgroups: false,
        constants: vec![("WG", WG)],
    };
    let p = ctx.pipeline(&key, BINDINGS)?;
    let g = grid(
        (threads as u32).div_ceil(WG),
        ctx.limits.max_compute_workgroups_per_dimension,
    );
    let params: [u32; 4] = [rows as u32, cols as u32, nb as u32, g[0]];
    let u = rec.params(bytemuck::cast_slice(&params));
    let group = rec.bind(&p, &crate::binds![src, &data, &scales, &u]);
    rec.dispatch(&p, &group, g)?;
    Ok(match format {
        WeightFormat::Q8 => Matrix::Q8 {
            data,
            scales,
            rows,
            cols,
        },
        _ => Matrix::Q4 {
            data,
            scales,
            rows,
            cols,
        },
    })
}
