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
