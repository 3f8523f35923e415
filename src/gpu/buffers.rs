//! A pool of storage buffers bucketed by power-of-two size, so temporary buffers of
//! one-off ops (tests, tools, prefill scratch) are reused instead of reallocated.
//! Decode-time buffers are allocated once per session and never go through here.

use std::collections::HashMap;
use std::sync::Mutex;

use super::GpuContext;

#[derive(Default)]
pub struct BufferPool {
    free: Mutex<HashMap<u64, Vec<wgpu::Buffer>>>,
}

/// A buffer borrowed from the pool; give it back with [`GpuContext::release`].
pub struct PooledBuffer {
    pub buffer: wgpu::Buffer,
    /// Bytes asked for (the buffer itself may be larger).
    pub len: u64,
}

fn bucket(size: u64) -> u64 {
    size.max(256).next_power_of_two()
}

impl BufferPool {
    /// Buffers waiting for reuse (for tests and memory reports).
    pub fn idle(&self) -> usize {
        self.free
            .lock()
            .map(|m| m.values().map(Vec::len).sum())
            .unwrap_or(0)
    }
}

impl GpuContext {
    /// A storage buffer of at least `len` bytes, from the pool when one is free.
    pub fn acquire(&self, len: u64) -> PooledBuffer {
        let b = bucket(len);
        let reused = self
            .pool
            .free
            .lock()
            .ok()
            .and_then(|mut m| m.get_mut(&b).and_then(Vec::pop));
        let buffer = reused.unwrap_or_else(|| self.storage("pooled", b));
        PooledBuffer { buffer, len }
    }

    /// Returns a buffer to the pool.
    pub fn release(&self, p: PooledBuffer) {
        if let Ok(mut m) = self.pool.free.lock() {
            m.entry(p.buffer.size()).or_default().push(p.buffer);
        }
    }
}

/// Scratch buffers for a computation repeated with the same shapes (the flow's Euler steps):
/// [`Arena::take`] hands out a fresh or recycled buffer, and [`Arena::reset`] takes back every
/// buffer handed out since the last reset, so the next repetition gets the same buffers in the
/// same order. That saves creating (and zero-filling) hundreds of buffers per step, and lets a
/// [`super::BindCache`] find the step's bind groups again.
///
/// The contract: nothing taken before a reset is used after it. The caller resets between
/// repetitions whose tensors are all dropped.
#[derive(Default)]
pub struct Arena {
    state: Mutex<ArenaState>,
}

#[derive(Default)]
struct ArenaState {
    free: HashMap<u64, Vec<wgpu::Buffer>>,
    used: Vec<wgpu::Buffer>,
}

impl Arena {
    /// A storage buffer of at least `len` bytes (power-of-two bucket).
    pub fn take(&self, ctx: &GpuContext, len: u64) -> wgpu::Buffer {
        let b = bucket(len);
        let Ok(mut st) = self.state.lock() else {
            return ctx.storage("scratch", b);
        };
        let buf = st
            .free
            .get_mut(&b)
            .and_then(Vec::pop)
            .unwrap_or_else(|| ctx.storage("scratch", b));
        st.used.push(buf.clone());
        buf
    }

    /// Every buffer taken since the last reset is free again; the next takes of the same sizes
    /// return them in the order they were first taken.
    pub fn reset(&self) {
        if let Ok(mut st) = self.state.lock() {
            let used = std::mem::take(&mut st.used);
            for b in used.into_iter().rev() {
                st.free.entry(b.size()).or_default().push(b);
            }
        }
    }

    /// Buffers held (taken or free).
    pub fn len(&self) -> usize {
        self.state
            .lock()
            .map(|s| s.used.len() + s.free.values().map(Vec::len).sum::<usize>())
            .unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
