//! Activations and simple arithmetic (shaders/elementwise/elementwise.wgsl). Passing the same
//! tensor as input and output runs the `_inplace` entry (a buffer may not be bound both
//! read-only and writable in one dispatch).

use crate::gpu::{grid, Binding, KernelKey, Recorder};
use crate::tensor::Tensor;

use super::{check_act, check_len, shape_err, OpError};

// Mirrors shaders/elementwise/elementwise.wgsl: a, b, y, alpha, params.
const BINDINGS: &[Binding] = &[
    Binding::Read,
    Binding::Read,
    Binding::ReadWrite,
    Binding::Read,
    Binding::Uniform,
];

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    c: u32,
    blen: u32,
    s: f32,
    sa: u32,
    oa: u32,
    sb: u32,
    ob: u32,
    groups_x: u32,
    s2: f32,
    _pad: [u32; 2],
}

const WG: u32 = 256;

/// A unary activation (or scaling) applied element by element.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Unary {
    /// Exact GELU `x/2·(1 + erf(x/√2))` (erf to ≈1e-7).
    Gelu,
    /// `x · sigmoid(x)`.
    Silu,
    /// `tanh(x)`, guarded for large |x|.
    Tanh,
    /// `x · tanh(softplus(x))`.
    Mish,
    /// ELU with α = 1.
    Elu,
    /// `x` for x ≥ 0, `slope · x` otherwise.
    LeakyRelu(f32),
    /// `x · s`.
    Scale(f32),
}

impl Unary {
    fn code(self) -> (u32, f32) {
        match self {
            Unary::Gelu => (0, 0.0),
            Unary::Silu => (1, 0.0),
            Unary::Tanh => (2, 0.0),
            Unary::Mish => (3, 0.0),
            Unary::Elu => (4, 0.0),
            Unary::LeakyRelu(s) => (5, s),
            Unary::Scale(s) => (6, s),
        }
    }
}

/// A binary operation; `b` either has `a`'s shape or is one row broadcast over `a`'s rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binary {
    Add,
    Mul,
}

struct Launch<'a> {
    entry: &'static str,
    op: u32,
    a: &'a wgpu::Buffer,
    b: &'a wgpu::Buffer,
    y: &'a wgpu::Buffer,
    alpha: &'a wgpu::Buffer,
    params: Params,
}

fn launch(rec: &mut Recorder, l: Launch) -> Result<(), OpError> {
    let ctx = rec.ctx();
    let key = KernelKey {
        family: "elementwise",
        entry: l.entry,
        act: ctx.act(),
        subgroups: false,
        constants: vec![("WG", WG), ("OP", l.op)],
    };
    let p = ctx.pipeline(&key, BINDINGS)?;
    let g = grid(
        l.params.n.div_ceil(WG),
        ctx.limits.max_compute_workgroups_per_dimension,
    );
    let params = Params {
        groups_x: g[0],
        ..l.params
    };
    let ubuf = rec.params(bytemuck::bytes_of(&params));
    let group = rec.bind(&p, &crate::binds![l.a, l.b, l.y, l.alpha, &ubuf]);
    rec.dispatch(&p, &group, g)?;
    Ok(())
}

fn check_same(op: &'static str, x: &Tensor, y: &Tensor) -> Result<(), OpError> {
    if y.shape != x.shape {
        return Err(shape_err(
            op,
            format!("y is {:?}, x is {:?}", y.shape, x.shape),
        ));
    }
    if x.numel() == 0 || x.numel() > u32::MAX as usize {
        return Err(shape_err(
            op,
            format!("x {:?} is empty or too large", x.shape),
        ));
    }
    Ok(())
}

fn check_bytes(op: &'static str, ts: &[(&str, &Tensor)]) -> Result<(), OpError> {
    for (name, t) in ts {
        check_len(op, name, &t.buf, (t.numel() * t.dtype.size()) as u64)?;
    }
    Ok(())
}

/// `y = f(x)`; pass the same tensor twice to apply in place.
pub fn unary(rec: &mut Recorder, f: Unary, x: &Tensor, y: &Tensor) -> Result<(), OpError> {
    const OP: &str = "unary";
    let ctx = rec.ctx();
    check_same(OP, x, y)?;
    check_act(OP, ctx, &[("x", x), ("y", y)])?;
    check_bytes(OP, &[("x", x), ("y", y)])?;
    let inplace = x.buf == y.buf;
    let (op, s) = f.code();
    launch(
        rec,
        Launch {
            entry: if inplace {
                "elementwise_unary_inplace"
            } else {
                "elementwise_unary"
            },
            op,
            a: if inplace { &ctx.dummy } else { &x.buf },
            b: &ctx.dummy,
            y: &y.buf,
            alpha: &ctx.dummy,
            params: Params {
                n: x.numel() as u32,
                s,
                ..Default::default()
            },
        },
    )
}

/// `y = a ∘ b` where `b` has `a`'s shape, or `b` is a vector of `a`'s last dimension broadcast
/// over its rows (e.g. (T, C) + (C) bias). Pass `a` again as `y` to update it in place.
pub fn binary(
    rec: &mut Recorder,
    f: Binary,
    a: &Tensor,
    b: &Tensor,
    y: &Tensor,
) -> Result<(), OpError> {
    const OP: &str = "binary";
    let ctx = rec.ctx();
    check_same(OP, a, y)?;
    let row = a.shape.last().copied().unwrap_or(0);
    let broadcast = b.shape.len() == 1 && b.shape[0] == row && a.shape.len() > 1;
    if b.shape != a.shape && !broadcast {
        return Err(shape_err(
            OP,
            format!(
                "b is {:?}, a is {:?} (b must match a or be one row of it)",
                b.shape, a.shape
            ),
        ));
    }
    check_act(OP, ctx, &[("a", a), ("b", b), ("y", y)])?;
    check_bytes(OP, &[("a", a), ("b", b), ("y", y)])?;
    if b.buf == y.buf {
        return Err(shape_err(OP, "y aliases b (only y = a may alias)"));
    }
    let inplace = a.buf == y.buf;
    launch(
        rec,
        Launch {
            entry: if inplace {
                "elementwise_binary_inplace"
            } else {
                "elementwise_binary"
            },
            op: match f {
                Binary::Add => 0,
                Binary::Mul => 1,
            },
            a: if inplace { &ctx.dummy } else { &a.buf },
            b: &b.buf,
            y: &y.buf,
            alpha: &ctx.dummy,
            params: Params {
                n: a.numel() as u32,
                blen: b.numel() as u32,
                ..Default::default()
            },
        },
    )
}

/// One Euler step of classifier-free guidance on a batch of two copies of the state:
/// `x (2T, C)` holds `[x; x]`, `v (2T, C)` holds `[v_cond; v_uncond]`; both halves of `x`
/// become `x + a·v_cond − b·v_uncond` (f32 arithmetic, one rounding to the activation dtype).
pub fn cfg_euler(
    rec: &mut Recorder,
    x: &Tensor,
    v: &Tensor,
    a: f32,
    b: f32,
) -> Result<(), OpError> {
    const OP: &str = "cfg_euler";
    let ctx = rec.ctx();
    check_same(OP, x, v)?;
    let rows = x.shape.first().copied().unwrap_or(0);
    if x.shape.len() != 2 || !rows.is_multiple_of(2) {
        return Err(shape_err(
            OP,
            format!("x must be (2T, C), got {:?}", x.shape),
        ));
    }
    check_act(OP, ctx, &[("x", x), ("v", v)])?;
    check_bytes(OP, &[("x", x), ("v", v)])?;
    if x.buf == v.buf {
        return Err(shape_err(OP, "v aliases x"));
    }
    launch(
        rec,
        Launch {
            entry: "elementwise_cfg_euler",
            op: 0,
            a: &ctx.dummy,
            b: &v.buf,
            y: &x.buf,
            alpha: &ctx.dummy,
            params: Params {
                n: (x.numel() / 2) as u32,
                s: a,
                s2: b,
                ..Default::default()
            },
        },
    )
}

/// HiFT Snake on `x` (T, C): `y = x + 1/(α[c] + 1e-9) · sin²(α[c]·x)`, `alpha` f32 (C) as
/// stored in the checkpoint (linear, not exp'd). `y` must not alias `x`.
pub fn snake(
    rec: &mut Recorder,
    x: &Tensor,
    alpha: &wgpu::Buffer,
    y: &Tensor,
) -> Result<(), OpError> {
    const OP: &str = "snake";
    let ctx = rec.ctx();
    check_same(OP, x, y)?;
    let [_, c] = x.shape[..] else {
        return Err(shape_err(
            OP,
            format!("x must be (T, C), got {:?}", x.shape),
        ));
    };
    check_act(OP, ctx, &[("x", x), ("y", y)])?;
    check_bytes(OP, &[("x", x), ("y", y)])?;
    check_len(OP, "alpha", alpha, (c * 4) as u64)?;
    if x.buf == y.buf {
        return Err(shape_err(OP, "y aliases x (in-place is not supported)"));
    }
    launch(
        rec,
        Launch {
            entry: "elementwise_snake",
            op: 0,
            a: &x.buf,
            b: &ctx.dummy,
            y: &y.buf,
            alpha,
            params: Params {
                n: x.numel() as u32,
                c: c as u32,
                ..Default::default()
            },
        },
    )
}

/// SwiGLU `y (T, I) = SiLU(gate) · up` from two (T, I) tensors.
pub fn swiglu(rec: &mut Recorder, gate: &Tensor, up: &Tensor, y: &Tensor) -> Result<(), OpError> {
    const OP: &str = "swiglu";
    check_same(OP, gate, y)?;
    if up.shape != gate.shape {
        return Err(shape_err(
            OP,
            format!("up is {:?}, gate is {:?}", up.shape, gate.shape),
        ));
    }
    let i = gate.shape.last().copied().unwrap_or(0);
    swiglu_launch(rec, OP, gate, up, y, i, (i, 0, i, 0))
}

/// Checks `gate_up (T, 2I)` against `y (T, I)` and returns 2I.
fn gate_up_width(op: &'static str, gate_up: &Tensor, y: &Tensor) -> Result<usize, OpError> {
    let [t, i2] = gate_up.shape[..] else {
        return Err(shape_err(
            op,
            format!("gate_up must be (T, 2I), got {:?}", gate_up.shape),
        ));
    };
    if i2 % 2 != 0 || y.shape != [t, i2 / 2] || t == 0 || i2 == 0 {
        return Err(shape_err(
            op,
            format!(
                "y is {:?}, gate_up is {:?} (want y = (T, I), gate_up = (T, 2I))",
                y.shape, gate_up.shape
            ),
        ));
    }
    Ok(i2)
}

/// SwiGLU from one fused (T, 2I) tensor `[gate | up]` (the gate+up product's output) → y (T, I).
pub fn swiglu_fused(rec: &mut Recorder, gate_up: &Tensor, y: &Tensor) -> Result<(), OpError> {
    const OP: &str = "swiglu_fused";
    let i2 = gate_up_width(OP, gate_up, y)?;
    let i = i2 / 2;
    swiglu_launch(rec, OP, gate_up, gate_up, y, i, (i2, 0, i2, i))
}

/// SwiGLU of interleaved pairs: `gate_up (T, 2I)` holds `(gate_j, up_j)` at columns
/// `2j, 2j + 1` (the product of a row-interleaved gate/up matrix without its epilogue) → y (T, I).
pub fn swiglu_pairs(rec: &mut Recorder, gate_up: &Tensor, y: &Tensor) -> Result<(), OpError> {
    const OP: &str = "swiglu_pairs";
    gate_up_width(OP, gate_up, y)?;
    // every output is its own "row" of one element: gate at 2i, up at 2i + 1
    swiglu_launch(rec, OP, gate_up, gate_up, y, 1, (2, 0, 2, 1))
}

fn swiglu_launch(
    rec: &mut Recorder,
    op: &'static str,
    a: &Tensor,
    b: &Tensor,
    y: &Tensor,
    i: usize,
    (sa, oa, sb, ob): (usize, usize, usize, usize),
) -> Result<(), OpError> {
    let ctx = rec.ctx();
    check_act(op, ctx, &[("gate", a), ("up", b), ("y", y)])?;
    check_bytes(op, &[("gate", a), ("up", b), ("y", y)])?;
    if y.buf == a.buf || y.buf == b.buf {
        return Err(shape_err(
            op,
            "y aliases an input (in-place is not supported)",
        ));
    }
    if y.numel() == 0 || a.numel() > u32::MAX as usize {
        return Err(shape_err(
            op,
            format!("gate {:?} is empty or too large", a.shape),
        ));
    }
    launch(
        rec,
        Launch {
            entry: "elementwise_swiglu",
            op: 0,
            a: &a.buf,
            b: &b.buf,
            y: &y.buf,
            alpha: &ctx.dummy,
            params: Params {
                n: y.numel() as u32,
                c: i as u32,
                sa: sa as u32,
                oa: oa as u32,
                sb: sb as u32,
                ob: ob as u32,
                ..Default::default()
            },
        },
    )
}
