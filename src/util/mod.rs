//! Small helpers shared by tests, tools and the engine.

pub mod npy;
pub mod rng;

/// Rounds `x` up to a multiple of `m` (`m > 0`).
pub const fn round_up(x: usize, m: usize) -> usize {
    x.div_ceil(m) * m
}
