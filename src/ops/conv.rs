//! Conv1d, ConvTranspose1d and AvgPool1d on time-major activations (shaders/conv/*.wgsl).

use half::f16;

use crate::gpu::{grid, Binding, GpuContext, KernelKey, Recorder};
use crate::tensor::{Matrix, RawDType, RawTensor, Tensor};

use super::relayout::{relayout, Strided};

use super::{check_act, check_len, shape_err, OpError};

// Mirrors shaders/conv/conv1d.wgsl: x, w, bias, y, params.
const BINDINGS: &[Binding] = &[
    Binding::Read,
    Binding::Read,
    Binding::Read,
    Binding::ReadWrite,
    Binding::Uniform,
];
// Mirrors shaders/conv/avgpool1d.wgsl: x, y, params.
const POOL_BINDINGS: &[Binding] = &[Binding::Read, Binding::ReadWrite, Binding::Uniform];

const WG: u32 = 256;

/// A convolution weight in the kernels' layout: f16 `(Cout, K, Cin_gp)` with Cin_gp = Cin_g
/// rounded up to even (zero pad), packed 2 per u32. Element (co, k, ci) multiplies input
/// channel `g·Cin_g + ci`, g = co / Cout_g, at tap k. Conv1d and ConvTranspose1d weights both
/// become this layout at upload, so one inner loop (contiguous over input channels, like the
/// time-major input frames) serves both.
pub struct ConvWeight {
    pub buf: wgpu::Buffer,
    /// Output channels.
    pub cout: usize,
    /// Input channels per group.
    pub cin_g: usize,
    /// Kernel taps.
    pub k: usize,
    pub groups: usize,
}

impl ConvWeight {
    fn pack(
        ctx: &GpuContext,
        label: &str,
        cout: usize,
        cin_g: usize,
        k: usize,
        groups: usize,
        at: impl Fn(usize, usize, usize) -> f32,
    ) -> ConvWeight {
        let cin_gp = cin_g.div_ceil(2) * 2;
        let mut packed = vec![f16::ZERO; cout * k * cin_gp];
        for co in 0..cout {
            for kk in 0..k {
                for ci in 0..cin_g {
                    packed[(co * k + kk) * cin_gp + ci] = f16::from_f32(at(co, kk, ci));
                }
            }
        }
        ConvWeight {
            buf: ctx.upload(label, bytemuck::cast_slice(&packed)),
            cout,
            cin_g,
            k,
            groups,
        }
    }

    /// Shape `[a, b, k]` of a raw 3-D conv weight.
    fn raw_dims(op: &'static str, w: &RawTensor) -> Result<[usize; 3], OpError> {
        match w.shape[..] {
            [a, b, k] if a > 0 && b > 0 && k > 0 => Ok([a, b, k]),
            _ => Err(shape_err(op, format!("weight is {:?}, want 3-D", w.shape))),
        }
    }

    /// Lays a raw weight out on the GPU as a `(cout, cin_g, k, groups)` conv weight, one
    /// [`relayout`] per block `(first output channel, channels, source offset, source stride
    /// per output channel, source stride per input channel)`; taps are contiguous (stride 1)
    /// in every PyTorch conv layout.
    fn from_raw(
        rec: &mut Recorder,
        label: &str,
        w: &RawTensor,
        [cout, cin_g, k, groups]: [usize; 4],
        blocks: &[(usize, usize, usize, usize, usize)],
    ) -> Result<ConvWeight, OpError> {
        let cin_gp = cin_g.div_ceil(2) * 2;
        let buf = rec.ctx().storage(label, (cout * k * cin_gp * 2) as u64);
        for &(co0, n, sbase, sx, sz) in blocks {
            let s = Strided {
                x: n,
                y: k,
                z: cin_gp,
                zvalid: cin_g,
                sbase,
                sx,
                sy: 1,
                sz,
                dbase: co0 * k * cin_gp,
                dx: k * cin_gp,
                dy: cin_gp,
            };
            relayout(rec, &w.buf, w.dtype, &buf, RawDType::F16, &s)?;
        }
        Ok(ConvWeight {
            buf,
            cout,
            cin_g,
            k,
            groups,
        })
    }

    /// [`ConvWeight::conv1d`] from a raw PyTorch `Conv1d.weight` (Cout, Cin/groups, K) that
    /// is already on the GPU: laid out there by one [`relayout`] (records, does not submit).
    pub fn conv1d_raw(
        rec: &mut Recorder,
        label: &str,
        w: &RawTensor,
        groups: usize,
    ) -> Result<ConvWeight, OpError> {
        let [cout, cin_g, k] = Self::raw_dims("conv1d", w)?;
        if groups == 0 || !cout.is_multiple_of(groups) {
            return Err(shape_err(
                "conv1d",
                format!("{groups} groups do not divide Cout {cout}"),
            ));
        }
        let block = (0, cout, 0, cin_g * k, k);
        Self::from_raw(rec, label, w, [cout, cin_g, k, groups], &[block])
    }

    /// The slice of input channels `c0..c0 + c` of a raw `Conv1d.weight` (Cout, Cin, K),
    /// groups 1, as its own conv weight (a conv over concatenated inputs run as a sum of
    /// convs over each input).
    pub fn conv1d_raw_inputs(
        rec: &mut Recorder,
        label: &str,
        w: &RawTensor,
        c0: usize,
        c: usize,
    ) -> Result<ConvWeight, OpError> {
        let [cout, cin, k] = Self::raw_dims("conv1d", w)?;
        if c == 0 || c0 + c > cin {
            return Err(shape_err(
                "conv1d",
                format!("input channels {c0}..{} outside the weight's {cin}", c0 + c),
            ));
        }
        let block = (0, cout, c0 * k, cin * k, k);
        Self::from_raw(rec, label, w, [cout, c, k, 1], &[block])
    }

    /// [`ConvWeight::conv_transpose1d`] from a raw PyTorch `ConvTranspose1d.weight`
    /// (Cin, Cout/groups, K) on the GPU: one [`relayout`] per group.
    pub fn conv_transpose1d_raw(
        rec: &mut Recorder,
        label: &str,
        w: &RawTensor,
        groups: usize,
    ) -> Result<ConvWeight, OpError> {
        let [cin, cout_g, k] = Self::raw_dims("conv_transpose1d", w)?;
        if groups == 0 || !cin.is_multiple_of(groups) {
            return Err(shape_err(
                "conv_transpose1d",
                format!("{groups} groups do not divide Cin {cin}"),
            ));
        }
        let cin_g = cin / groups;
        // group g: output channels g·Cout_g.., source (g·Cin_g + ci, co, kk)
        let blocks: Vec<_> = (0..groups)
            .map(|g| (g * cout_g, cout_g, g * cin_g * cout_g * k, k, cout_g * k))
            .collect();
        Self::from_raw(rec, label, w, [cout_g * groups, cin_g, k, groups], &blocks)
    }

    /// From a PyTorch `Conv1d.weight` (Cout, Cin/groups, K), row-major f32.
    pub fn conv1d(
        ctx: &GpuContext,
        label: &str,
        w: &[f32],
        cout: usize,
        cin_g: usize,
        k: usize,
        groups: usize,
    ) -> Result<ConvWeight, OpError> {
        if w.len() != cout * cin_g * k || groups == 0 || !cout.is_multiple_of(groups) {
            return Err(shape_err(
                "conv1d",
                format!(
                    "weight has {} values, want ({cout}, {cin_g}, {k}) with {groups} groups dividing Cout",
                    w.len()
                ),
            ));
        }
        Ok(Self::pack(
            ctx,
            label,
            cout,
            cin_g,
            k,
            groups,
            |co, kk, ci| w[(co * cin_g + ci) * k + kk],
        ))
    }

    /// From a PyTorch `ConvTranspose1d.weight` (Cin, Cout/groups, K), row-major f32.
    pub fn conv_transpose1d(
        ctx: &GpuContext,
        label: &str,
        w: &[f32],
        cin: usize,
        cout_g: usize,
        k: usize,
        groups: usize,
    ) -> Result<ConvWeight, OpError> {
        if w.len() != cin * cout_g * k || groups == 0 || !cin.is_multiple_of(groups) {
            return Err(shape_err(
                "conv_transpose1d",
                format!(
                    "weight has {} values, want ({cin}, {cout_g}, {k}) with {groups} groups dividing Cin",
                    w.len()
                ),
            ));
        }
        let cin_g = cin / groups;
        Ok(Self::pack(
            ctx,
            label,
            cout_g * groups,
            cin_g,
            k,
            groups,
            |co, kk, ci| {
                let g = co / cout_g;
                w[((g * cin_g + ci) * cout_g + co % cout_g) * k + kk]
            },
        ))
    }
}

/// A convolution's bias `(Cout,)`: f32 for the direct kernels, and in the activation dtype
/// for the tiled product's epilogue, converted once when the weights are loaded.
pub struct ConvBias {
    pub f32: wgpu::Buffer,
    pub act: Tensor,
}

impl ConvBias {
    /// From an f32 buffer of `cout` values already on the GPU (records the cast, if any).
    pub fn new(rec: &mut Recorder, f32: wgpu::Buffer, cout: usize) -> Result<ConvBias, OpError> {
        let act = super::relayout::f32_to_act(rec, &f32, &[cout])?;
        Ok(ConvBias { f32, act })
    }

    /// Uploads `b` (f32).
    pub fn upload(rec: &mut Recorder, label: &str, b: &[f32]) -> Result<ConvBias, OpError> {
        let buf = rec.ctx().upload(label, bytemuck::cast_slice(b));
        Self::new(rec, buf, b.len())
    }

    pub fn len(&self) -> usize {
        self.act.numel()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Conv1d hyper-parameters (PyTorch semantics; `pad_left`/`pad_right` separate so a causal
/// conv is `pad_left = dilation·(K−1)`, `pad_right = 0`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv1dSpec {
    pub stride: usize,
    pub pad_left: usize,
    pub pad_right: usize,
    pub dilation: usize,
}

impl Conv1dSpec {
    /// Output frames for `t` input frames and `k` taps (None when the input is too short).
    pub fn out_len(&self, t: usize, k: usize) -> Option<usize> {
        let span = self.dilation * k.saturating_sub(1) + 1;
        let padded = t + self.pad_left + self.pad_right;
        (padded >= span && self.stride > 0).then(|| (padded - span) / self.stride + 1)
    }
}

/// ConvTranspose1d hyper-parameters (PyTorch semantics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvTranspose1dSpec {
    pub stride: usize,
    pub padding: usize,
    pub output_padding: usize,
    pub dilation: usize,
}

impl ConvTranspose1dSpec {
    /// `(T−1)·s − 2p + d·(K−1) + output_padding + 1` (None when that is not positive).
    pub fn out_len(&self, t: usize, k: usize) -> Option<usize> {
        let full = t.saturating_sub(1) * self.stride
            + self.dilation * k.saturating_sub(1)
            + self.output_padding
            + 1;
        (t > 0 && full > 2 * self.padding).then(|| full - 2 * self.padding)
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    tin: u32,
    cin: u32,
    tout: u32,
    cout: u32,
    k: u32,
    stride: u32,
    pad: u32,
    dil: u32,
    cin_g: u32,
    cout_g: u32,
    wpk: u32,
    flags: u32,
    groups_x: u32,
    batch: u32,
    _pad: [u32; 2],
}

#[allow(clippy::too_many_arguments)]
fn conv_common(
    rec: &mut Recorder,
    op: &'static str,
    entry: &'static str,
    x: &Tensor,
    w: &ConvWeight,
    bias: Option<&ConvBias>,
    y: &Tensor,
    residual: Option<&Tensor>,
    batch: usize,
    tout: Option<usize>,
    (stride, pad, dil): (usize, usize, usize),
) -> Result<(), OpError> {
    let ctx = rec.ctx();
    let [rows, cin] = x.shape[..] else {
        return Err(shape_err(
            op,
            format!("x must be (T, Cin), got {:?}", x.shape),
        ));
    };
    if batch == 0 || !rows.is_multiple_of(batch) {
        return Err(shape_err(
            op,
            format!("x {:?} is not {batch} sequences of equal length", x.shape),
        ));
    }
    let tin = rows / batch;
    if cin != w.cin_g * w.groups || tin == 0 || w.k == 0 || w.cout == 0 {
        return Err(shape_err(
            op,
            format!(
                "x is {:?}, the weight wants Cin = {}·{} (Cout {}, K {})",
                x.shape, w.groups, w.cin_g, w.cout, w.k
            ),
        ));
    }
    let Some(tout) = tout else {
        return Err(shape_err(
            op,
            format!(
                "x {:?} is too short for K = {} with this padding",
                x.shape, w.k
            ),
        ));
    };
    if y.shape != [batch * tout, w.cout] {
        return Err(shape_err(
            op,
            format!(
                "y is {:?}, want [{}, {}] for x {:?} ({batch} sequences)",
                y.shape,
                batch * tout,
                w.cout,
                x.shape
            ),
        ));
    }
    if stride == 0 || dil == 0 {
        return Err(shape_err(op, "stride and dilation must be ≥ 1"));
    }
    check_act(op, ctx, &[("x", x), ("y", y)])?;
    check_len(op, "x", &x.buf, (x.numel() * x.dtype.size()) as u64)?;
    check_len(op, "y", &y.buf, (y.numel() * y.dtype.size()) as u64)?;
    let wpk = w.cin_g.div_ceil(2);
    check_len(op, "weight", &w.buf, (w.cout * w.k * wpk * 4) as u64)?;
    if let Some(b) = bias {
        check_len(op, "bias", &b.f32, (w.cout * 4) as u64)?;
        if b.act.shape != [w.cout] {
            return Err(shape_err(
                op,
                format!("bias is {:?}, Cout is {}", b.act.shape, w.cout),
            ));
        }
    }
    if x.buf == y.buf {
        return Err(shape_err(op, "y aliases x"));
    }
    if let Some(r) = residual {
        if r.shape != y.shape || r.buf == y.buf || r.buf == x.buf {
            return Err(shape_err(
                op,
                format!(
                    "the residual {:?} must be y's shape {:?} in a buffer of its own",
                    r.shape, y.shape
                ),
            ));
        }
        check_act(op, ctx, &[("residual", r)])?;
    }
    if entry == "conv1d_transpose"
        && convt_coops(
            rec,
            x,
            w,
            bias,
            y,
            residual,
            (tin, tout),
            (stride, pad, dil),
        )?
    {
        return Ok(());
    }
    if entry == "conv1d" && gemm_fits(ctx, w, batch * tout) {
        let dims = (batch, tin, tout);
        return conv1d_gemm(rec, x, w, bias, y, residual, dims, (stride, pad, dil));
    }
    conv_dispatch(
        rec,
        entry,
        (x, w, bias, &y.buf),
        batch * tout * w.cout,
        (batch, tin, tout),
        (stride, pad, dil),
    )?;
    match residual {
        Some(r) => super::binary(rec, super::Binary::Add, y, r, y),
        None => Ok(()),
    }
}

/// Records `entry` of conv1d.wgsl over `threads` invocations with `w`'s shape and the
/// geometry as params: the direct kernels (`out` = y) or `im2col` (`out` = the columns).
fn conv_dispatch(
    rec: &mut Recorder,
    entry: &'static str,
    (x, w, bias, out): (&Tensor, &ConvWeight, Option<&ConvBias>, &wgpu::Buffer),
    threads: usize,
    (batch, tin, tout): (usize, usize, usize),
    (stride, pad, dil): (usize, usize, usize),
) -> Result<(), OpError> {
    let ctx = rec.ctx();
    let key = KernelKey {
        family: "conv1d",
        entry,
        act: ctx.act(),
        subgroups: false,
        constants: vec![("WG", WG)],
    };
    let p = ctx.pipeline(&key, BINDINGS)?;
    let g = grid(
        threads.div_ceil(WG as usize) as u32,
        ctx.limits.max_compute_workgroups_per_dimension,
    );
    let params = Params {
        tin: tin as u32,
        cin: (w.cin_g * w.groups) as u32,
        tout: tout as u32,
        cout: w.cout as u32,
        k: w.k as u32,
        stride: stride as u32,
        pad: pad as u32,
        dil: dil as u32,
        cin_g: w.cin_g as u32,
        cout_g: (w.cout / w.groups) as u32,
        wpk: w.cin_g.div_ceil(2) as u32,
        flags: bias.is_some() as u32,
        groups_x: g[0],
        batch: batch as u32,
        _pad: [0; 2],
    };
    let ubuf = rec.params(bytemuck::bytes_of(&params));
    let group = rec.bind(
        &p,
        &crate::binds![
            &x.buf,
            &w.buf,
            bias.map(|b| &b.f32).unwrap_or(&ctx.dummy),
            out,
            &ubuf
        ],
    );
    rec.dispatch(&p, &group, g)?;
    Ok(())
}

/// Output frames from which a convolution goes through im2col and the tiled product.
pub const CONV_GEMM_MIN_T: usize = 16;
/// Largest im2col buffer (bytes) the tiled path builds; longer inputs use the direct kernel.
const CONV_GEMM_MAX_BYTES: u64 = 256 << 20;

/// Whether a (checked) Conv1d goes through [`conv1d_gemm`]: one group, input channels a
/// multiple of 8 (the weight rows are then an unpadded f16 matrix of K·Cin columns), enough
/// output frames and an im2col buffer within bounds.
fn gemm_fits(ctx: &GpuContext, w: &ConvWeight, tout: usize) -> bool {
    let bytes = (tout * w.k * w.cin_g * ctx.act().size()) as u64;
    w.groups == 1
        && w.cin_g.is_multiple_of(8)
        && tout >= CONV_GEMM_MIN_T
        && bytes <= CONV_GEMM_MAX_BYTES.min(ctx.limits.max_storage_buffer_binding_size)
}

/// A transposed convolution on tensor cores where it can (one sequence, no groups or
/// dilation, Cin a multiple of 8; not with `--coops-max-n 0` or `--coops-conv-max-n 0`, and
/// at any length: the direct kernel is far slower): `gemm_coops` as one product per output
/// phase, W read as its taps `r + s·m` (no gather, no weight copy). Says whether it recorded
/// it.
#[allow(clippy::too_many_arguments)]
fn convt_coops(
    rec: &mut Recorder,
    x: &Tensor,
    w: &ConvWeight,
    bias: Option<&ConvBias>,
    y: &Tensor,
    residual: Option<&Tensor>,
    (tin, tout): (usize, usize),
    (stride, pad, dil): (usize, usize, usize),
) -> Result<bool, OpError> {
    let ctx = rec.ctx();
    let cin = w.cin_g;
    let lim = ctx.limits.max_compute_workgroups_per_dimension as usize;
    if ctx.coops_max_n == 0
        || ctx.coops_conv_max_n == 0
        || w.groups != 1
        || dil != 1
        || stride == 0
        || !cin.is_multiple_of(8)
        || (tout.div_ceil(stride) + 1).div_ceil(16) > lim
        || stride > lim
    {
        return Ok(false);
    }
    let taps = w.k.div_ceil(stride);
    let wm = Matrix::F16 {
        buf: w.buf.clone(),
        rows: w.cout,
        cols: taps * cin,
        stride: w.k * cin,
    };
    if !super::gemv::coops_takes(ctx, &wm) || tout > u32::MAX as usize / 2 {
        return Ok(false);
    }
    let geom = super::gemv::ConvGeom {
        cin: cin as u32,
        tin: tin as u32,
        tout: tout as u32,
        stride: 0,
        pad: pad as u32,
        dil: 0,
        tr: stride as u32,
        tr_k: w.k as u32,
    };
    let epi = super::Epilogue {
        bias: bias.map(|b| &b.act),
        residual,
        ..Default::default()
    };
    let dims = (tout, w.cout, taps * cin);
    super::gemv::gemm_coops(rec, &wm, &x.buf, y, epi, dims, Some(geom))?;
    Ok(true)
}

/// Conv1d as a matrix product: the im2col rows `(B·Tout, K·Cin)` gathered by one kernel
/// (taps outside a sequence read zeros, so the padding is never materialised), then the
/// tiled [`super::gemv`] with the weight `(Cout, K, Cin)` read as a `(Cout, K·Cin)` f16
/// matrix. A 1×1 convolution with stride 1 and no padding is the product on `x` itself.
#[allow(clippy::too_many_arguments)]
fn conv1d_gemm(
    rec: &mut Recorder,
    x: &Tensor,
    w: &ConvWeight,
    bias: Option<&ConvBias>,
    y: &Tensor,
    residual: Option<&Tensor>,
    (batch, tin, tout): (usize, usize, usize),
    (stride, pad, dil): (usize, usize, usize),
) -> Result<(), OpError> {
    let ctx = rec.ctx();
    let act = ctx.act();
    let (cin, k) = (w.cin_g, w.k);
    let wm = Matrix::F16 {
        buf: w.buf.clone(),
        rows: w.cout,
        cols: k * cin,
        stride: k * cin,
    };
    let epi = super::Epilogue {
        bias: bias.map(|b| &b.act),
        residual,
        ..Default::default()
    };
    if k == 1 && stride == 1 && pad == 0 && tout == tin {
        return super::gemv(rec, &wm, x, y, epi);
    }
    // few frames on tensor cores: the product reads x as its im2col rows (no gather pass)
    let rows = batch * tout;
    if cin.is_multiple_of(8) && super::gemv::coops_fits_upto(ctx, &wm, rows, ctx.coops_conv_max_n) {
        let geom = super::gemv::ConvGeom {
            cin: cin as u32,
            tin: tin as u32,
            tout: tout as u32,
            stride: stride as u32,
            pad: pad as u32,
            dil: dil as u32,
            tr: 0,
            tr_k: 0,
        };
        let dims = (batch * tout, w.cout, k * cin);
        super::gemv::gemm_coops(rec, &wm, &x.buf, y, epi, dims, Some(geom))?;
        return Ok(());
    }
    let cols = ctx.acquire((batch * tout * k * cin * act.size()) as u64);
    conv_dispatch(
        rec,
        "im2col",
        (x, w, None, &cols.buffer),
        batch * tout * k * cin,
        (batch, tin, tout),
        (stride, pad, dil),
    )?;
    let xcol = Tensor {
        buf: cols.buffer.clone(),
        shape: vec![batch * tout, k * cin],
        dtype: act,
    };
    super::gemv(rec, &wm, &xcol, y, epi)?;
    ctx.release(cols);
    Ok(())
}

/// PyTorch Conv1d on `x` (Tin, Cin) → `y` (Tout, Cout).
pub fn conv1d(
    rec: &mut Recorder,
    x: &Tensor,
    w: &ConvWeight,
    bias: Option<&ConvBias>,
    spec: Conv1dSpec,
    y: &Tensor,
) -> Result<(), OpError> {
    conv1d_batch(rec, x, w, bias, spec, 1, y)
}

/// [`conv1d`] over `batch` sequences of equal length packed one after another: `x`
/// (B·Tin, Cin) → `y` (B·Tout, Cout), each sequence padded on its own.
pub fn conv1d_batch(
    rec: &mut Recorder,
    x: &Tensor,
    w: &ConvWeight,
    bias: Option<&ConvBias>,
    spec: Conv1dSpec,
    batch: usize,
    y: &Tensor,
) -> Result<(), OpError> {
    conv1d_batch_res(rec, x, w, bias, spec, batch, y, None)
}

/// [`conv1d_batch`] plus `residual` (y's shape, another buffer) added to the output: in the
/// product's epilogue where the convolution is a matrix product, else by an add after it.
#[allow(clippy::too_many_arguments)]
pub fn conv1d_batch_res(
    rec: &mut Recorder,
    x: &Tensor,
    w: &ConvWeight,
    bias: Option<&ConvBias>,
    spec: Conv1dSpec,
    batch: usize,
    y: &Tensor,
    residual: Option<&Tensor>,
) -> Result<(), OpError> {
    let tin = x.shape.first().copied().unwrap_or(0) / batch.max(1);
    let tout = if w.k == 0 || spec.dilation == 0 {
        None
    } else {
        spec.out_len(tin, w.k)
    };
    conv_common(
        rec,
        "conv1d",
        "conv1d",
        x,
        w,
        bias,
        y,
        residual,
        batch,
        tout,
        (spec.stride, spec.pad_left, spec.dilation),
    )
}

/// PyTorch ConvTranspose1d on `x` (Tin, Cin) → `y` (Tout, Cout).
pub fn conv_transpose1d(
    rec: &mut Recorder,
    x: &Tensor,
    w: &ConvWeight,
    bias: Option<&ConvBias>,
    spec: ConvTranspose1dSpec,
    y: &Tensor,
) -> Result<(), OpError> {
    let tin = x.shape.first().copied().unwrap_or(0);
    let tout = if w.k == 0 || tin == 0 {
        None
    } else {
        spec.out_len(tin, w.k)
    };
    conv_common(
        rec,
        "conv_transpose1d",
        "conv1d_transpose",
        x,
        w,
        bias,
        y,
        None,
        1,
        tout,
        (spec.stride, spec.padding, spec.dilation),
    )
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct PoolParams {
    tout: u32,
    c: u32,
    k: u32,
    groups_x: u32,
}

/// AvgPool1d(kernel = stride = k) on `x` (T, C) → `y` (⌊T/k⌋, C).
pub fn avgpool1d(rec: &mut Recorder, x: &Tensor, k: usize, y: &Tensor) -> Result<(), OpError> {
    const OP: &str = "avgpool1d";
    let ctx = rec.ctx();
    let [t, c] = x.shape[..] else {
        return Err(shape_err(
            OP,
            format!("x must be (T, C), got {:?}", x.shape),
        ));
    };
    if k == 0 || t < k || c == 0 {
        return Err(shape_err(
            OP,
            format!("x {:?} has fewer than k = {k} frames", x.shape),
        ));
    }
    let tout = t / k;
    if y.shape != [tout, c] {
        return Err(shape_err(
            OP,
            format!(
                "y is {:?}, want [{tout}, {c}] for x {:?}, k = {k}",
                y.shape, x.shape
            ),
        ));
    }
    check_act(OP, ctx, &[("x", x), ("y", y)])?;
    check_len(OP, "x", &x.buf, (x.numel() * x.dtype.size()) as u64)?;
    check_len(OP, "y", &y.buf, (y.numel() * y.dtype.size()) as u64)?;
    if x.buf == y.buf {
        return Err(shape_err(OP, "y aliases x"));
    }
    let key = KernelKey {
        family: "avgpool1d",
        entry: "avgpool1d",
        act: ctx.act(),
        subgroups: false,
        constants: vec![("WG", WG)],
    };
    let p = ctx.pipeline(&key, POOL_BINDINGS)?;
    let g = grid(
        (tout * c).div_ceil(WG as usize) as u32,
        ctx.limits.max_compute_workgroups_per_dimension,
    );
    let params = PoolParams {
        tout: tout as u32,
        c: c as u32,
        k: k as u32,
        groups_x: g[0],
    };
    let ubuf = rec.params(bytemuck::bytes_of(&params));
    let group = rec.bind(&p, &crate::binds![&x.buf, &y.buf, &ubuf]);
    rec.dispatch(&p, &group, g)?;
    Ok(())
}
