//! Records many dispatches into one command encoder and one compute pass, so that a whole
//! step (later: a whole token) is a single submission.
//!
//! Kernel params do not get a buffer each: [`Recorder::params`] appends them to a param
//! ring (one buffer of [`RING_BYTES`](super::context::RING_BYTES), more when full) that is
//! written once, at submit. A [`BindCache`] attached with [`Recorder::with_cache`] keeps the
//! bind groups of a session whose buffers stay put (a decode step binds the same buffers at
//! the same ring offsets every token), so a repeated step creates no GPU objects at all.

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::sync::Mutex;

use super::context::RING_BYTES;
use super::pipelines::CachedPipeline;
use super::{GpuContext, GpuError};

/// A kernel's params in the recorder's ring.
pub struct Param {
    buf: wgpu::Buffer,
    offset: u64,
    size: u64,
}

/// One binding of a bind group, in binding order: a whole buffer or a params slot.
#[derive(Clone, Copy)]
pub enum Bind<'b> {
    Buf(&'b wgpu::Buffer),
    Param(&'b Param),
}

impl<'b> From<&'b wgpu::Buffer> for Bind<'b> {
    fn from(b: &'b wgpu::Buffer) -> Self {
        Bind::Buf(b)
    }
}

impl<'b> From<&'b Param> for Bind<'b> {
    fn from(p: &'b Param) -> Self {
        Bind::Param(p)
    }
}

/// `binds![a, b, &params]`: a bind-group entry list from buffers and params slots.
#[macro_export]
macro_rules! binds {
    ($($e:expr),* $(,)?) => { [$($crate::gpu::Bind::from($e)),*] };
}

type BindKey = (wgpu::BindGroupLayout, Vec<(wgpu::Buffer, u64, u64)>);

/// Bind groups kept across steps, keyed by layout and bound ranges. Holding a bind group
/// keeps its buffers alive, so a cache belongs to something whose buffers live as long as
/// it does (a decode session), not to the context. Cleared when it passes [`Self::MAX`].
/// It also keeps its own idle param rings: a repeated step then gets the same ring at the same
/// offsets whatever other recorders (other sessions, other threads) did in between, so its
/// bind groups match.
#[derive(Default)]
pub struct BindCache {
    map: Mutex<HashMap<BindKey, wgpu::BindGroup>>,
    rings: Mutex<Vec<wgpu::Buffer>>,
}

impl BindCache {
    /// Entries kept before the cache starts over (a session's steps need a few hundred).
    pub const MAX: usize = 8192;

    /// Bind groups held now.
    pub fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

pub struct Recorder<'a> {
    ctx: &'a GpuContext,
    encoder: Option<wgpu::CommandEncoder>,
    pass: Option<wgpu::ComputePass<'static>>,
    dispatches: usize,
    /// Timestamp writes for the next pass opened (benchmarks).
    timestamps: Option<(wgpu::QuerySet, u32)>,
    /// Param rings in use, the bytes staged for each, and how many of them are written
    /// (at submit, or at a [`Recorder::flush`]).
    rings: Vec<(wgpu::Buffer, Vec<u8>, usize)>,
    cache: Option<&'a BindCache>,
    /// Where [`Recorder::scratch`] takes its buffers from (none: fresh buffers).
    arena: Option<&'a super::Arena>,
    /// Per-dispatch timestamps while the context profiles ([`GpuContext::profile_start`]).
    prof: Option<Prof>,
}

/// Query sets of a profiled recorder and the kernel name of each dispatch.
#[derive(Default)]
struct Prof {
    sets: Vec<wgpu::QuerySet>,
    names: Vec<String>,
}

/// Dispatches per query set (two timestamps each; WebGPU caps a set at 4096 queries).
pub(crate) const PROF_PER_SET: usize = 2048;

/// Accumulated GPU time per kernel while profiling: name → (dispatches, nanoseconds).
#[derive(Default)]
pub struct Profile {
    pub kernels: HashMap<String, (u64, f64)>,
}

impl Profile {
    /// Kernels by total time, longest first: (name, dispatches, total ms, share of the sum).
    pub fn table(&self) -> Vec<(String, u64, f64, f64)> {
        let total: f64 = self.kernels.values().map(|v| v.1).sum::<f64>().max(1e-9);
        let mut rows: Vec<_> = self
            .kernels
            .iter()
            .map(|(k, (n, ns))| (k.clone(), *n, ns / 1e6, ns / total))
            .collect();
        rows.sort_by(|a, b| b.2.partial_cmp(&a.2).unwrap_or(std::cmp::Ordering::Equal));
        rows
    }
}

impl<'a> Recorder<'a> {
    pub fn new(ctx: &'a GpuContext, label: &str) -> Self {
        let encoder = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) });
        Recorder {
            ctx,
            encoder: Some(encoder),
            pass: None,
            dispatches: 0,
            timestamps: None,
            rings: Vec::new(),
            cache: None,
            arena: None,
            prof: ctx.profiling().then(Prof::default),
        }
    }

    /// A dispatch in a pass of its own, timed by the pass's timestamp writes.
    fn profiled_dispatch(
        &mut self,
        pipeline: &CachedPipeline,
        group: &wgpu::BindGroup,
        workgroups: [u32; 3],
    ) -> Result<(), GpuError> {
        self.pass = None;
        let ctx = self.ctx;
        let prof = self
            .prof
            .as_mut()
            .ok_or_else(|| GpuError::Internal("not profiling".into()))?;
        let i = prof.names.len();
        if i % PROF_PER_SET == 0 {
            prof.sets
                .push(ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("profile"),
                    ty: wgpu::QueryType::Timestamp,
                    count: (2 * PROF_PER_SET) as u32,
                }));
        }
        prof.names.push(pipeline.name.clone());
        let qs = prof.sets[i / PROF_PER_SET].clone();
        let slot = (2 * (i % PROF_PER_SET)) as u32;
        let enc = self
            .encoder
            .as_mut()
            .ok_or_else(|| GpuError::Internal("recorder already finished".into()))?;
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: None,
            timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                query_set: &qs,
                beginning_of_pass_write_index: Some(slot),
                end_of_pass_write_index: Some(slot + 1),
            }),
        });
        pass.set_pipeline(&pipeline.pipeline);
        pass.set_bind_group(0, group, &[]);
        pass.dispatch_workgroups(workgroups[0], workgroups[1], workgroups[2]);
        Ok(())
    }

    /// Resolves a profiled recorder's timestamps into `enc` and returns the buffer holding them.
    fn resolve_profile(&self, enc: &mut wgpu::CommandEncoder) -> Option<(wgpu::Buffer, usize)> {
        let prof = self.prof.as_ref()?;
        let n = prof.names.len();
        if n == 0 {
            return None;
        }
        let per = (2 * PROF_PER_SET * 8) as u64;
        let buf = self.ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("profile.resolve"),
            size: per * prof.sets.len() as u64,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        for (j, qs) in prof.sets.iter().enumerate() {
            let used = (n - j * PROF_PER_SET).min(PROF_PER_SET);
            enc.resolve_query_set(qs, 0..(2 * used) as u32, &buf, j as u64 * per);
        }
        Some((buf, n))
    }

    /// Where this recorder's param rings come from and go back to.
    fn ring_pool(&self) -> &'a Mutex<Vec<wgpu::Buffer>> {
        match self.cache {
            Some(c) => &c.rings,
            None => &self.ctx.rings,
        }
    }

    /// Keeps this recorder's bind groups in `cache` and reuses the ones already there.
    pub fn with_cache(mut self, cache: &'a BindCache) -> Self {
        self.cache = Some(cache);
        self
    }

    /// Takes scratch tensors from `arena` (see [`super::Arena`] for the contract).
    pub fn with_arena(mut self, arena: &'a super::Arena) -> Self {
        self.arena = Some(arena);
        self
    }

    /// An uninitialised activation tensor of `shape`: from the attached arena, else fresh.
    pub fn scratch(&self, label: &str, shape: &[usize]) -> crate::tensor::Tensor {
        let dtype = self.ctx.act();
        let bytes = (shape.iter().product::<usize>() * dtype.size()) as u64;
        let buf = match self.arena {
            Some(a) => a.take(self.ctx, bytes),
            None => self.ctx.storage(label, bytes),
        };
        crate::tensor::Tensor {
            buf,
            shape: shape.to_vec(),
            dtype,
        }
    }

    /// Stages `data` (a `#[repr(C)]` params struct) in the param ring.
    pub fn params(&mut self, data: &[u8]) -> Param {
        let align = self.ctx.param_align;
        let size = crate::util::round_up(data.len().max(16), 16) as u64;
        let fits = |staged: &Vec<u8>| {
            crate::util::round_up(staged.len(), align as usize) as u64 + size <= RING_BYTES
        };
        if !self.rings.last().is_some_and(|(_, st, _)| fits(st)) {
            self.rings.push((
                self.ctx.take_ring(self.ring_pool()),
                Vec::with_capacity(16 << 10),
                0,
            ));
        }
        let last = self.rings.len() - 1;
        let (buf, staged, _) = &mut self.rings[last];
        let offset = crate::util::round_up(staged.len(), align as usize);
        staged.resize(offset, 0);
        staged.extend_from_slice(data);
        staged.resize(offset + size as usize, 0);
        Param {
            buf: buf.clone(),
            offset: offset as u64,
            size,
        }
    }

    /// A bind group of `entries` (in binding order) for `pipeline`'s group 0, from the
    /// attached [`BindCache`] when it holds one.
    pub fn bind(&mut self, pipeline: &CachedPipeline, entries: &[Bind]) -> wgpu::BindGroup {
        let range = |b: &Bind| match b {
            Bind::Buf(b) => ((*b).clone(), 0, 0),
            Bind::Param(p) => (p.buf.clone(), p.offset, p.size),
        };
        let key = self.cache.map(|_| {
            (
                pipeline.layout.clone(),
                entries.iter().map(range).collect::<Vec<_>>(),
            )
        });
        if let (Some(cache), Some(key)) = (self.cache, key.as_ref()) {
            if let Some(g) = cache.map.lock().ok().and_then(|m| m.get(key).cloned()) {
                return g;
            }
        }
        let resources: Vec<wgpu::BindGroupEntry> = entries
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: match b {
                    Bind::Buf(b) => b.as_entire_binding(),
                    Bind::Param(p) => wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: &p.buf,
                        offset: p.offset,
                        size: NonZeroU64::new(p.size),
                    }),
                },
            })
            .collect();
        let group = self
            .ctx
            .device
            .create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout: &pipeline.layout,
                entries: &resources,
            });
        if let (Some(cache), Some(key)) = (self.cache, key) {
            if let Ok(mut m) = cache.map.lock() {
                if m.len() >= BindCache::MAX {
                    m.clear();
                }
                m.insert(key, group.clone());
            }
        }
        group
    }

    /// The next compute pass writes timestamps `index` (begin) and `index + 1` (end) of `qs`.
    pub fn time_next_pass(&mut self, qs: &wgpu::QuerySet, index: u32) {
        self.pass = None;
        self.timestamps = Some((qs.clone(), index));
    }

    pub fn ctx(&self) -> &'a GpuContext {
        self.ctx
    }

    /// Number of dispatches recorded so far.
    pub fn dispatches(&self) -> usize {
        self.dispatches
    }

    /// Records one dispatch of `pipeline` with `group` bound at 0.
    pub fn dispatch(
        &mut self,
        pipeline: &CachedPipeline,
        group: &wgpu::BindGroup,
        workgroups: [u32; 3],
    ) -> Result<(), GpuError> {
        if self.prof.is_some() {
            self.profiled_dispatch(pipeline, group, workgroups)?;
            self.dispatches += 1;
            return Ok(());
        }
        let pipeline = &pipeline.pipeline;
        if self.pass.is_none() {
            let enc = self
                .encoder
                .as_mut()
                .ok_or_else(|| GpuError::Internal("recorder already finished".into()))?;
            let ts = self.timestamps.take();
            let pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: None,
                timestamp_writes: ts.as_ref().map(|(qs, i)| wgpu::ComputePassTimestampWrites {
                    query_set: qs,
                    beginning_of_pass_write_index: Some(*i),
                    end_of_pass_write_index: Some(*i + 1),
                }),
            });
            self.pass = Some(pass.forget_lifetime());
        }
        if let Some(pass) = self.pass.as_mut() {
            pass.set_pipeline(pipeline);
            pass.set_bind_group(0, group, &[]);
            pass.dispatch_workgroups(workgroups[0], workgroups[1], workgroups[2]);
        }
        self.dispatches += 1;
        Ok(())
    }

    /// Ends the open pass (needed before copies) and gives access to the encoder.
    pub fn encoder(&mut self) -> Result<&mut wgpu::CommandEncoder, GpuError> {
        self.pass = None;
        self.encoder
            .as_mut()
            .ok_or_else(|| GpuError::Internal("recorder already finished".into()))
    }

    /// Writes the params staged since the last write.
    fn write_rings(&mut self) {
        for (buf, staged, written) in &mut self.rings {
            staged.resize(crate::util::round_up(staged.len(), 4), 0);
            if staged.len() > *written {
                self.ctx
                    .queue
                    .write_buffer(buf, *written as u64, &staged[*written..]);
                *written = staged.len();
            }
        }
    }

    /// Ends the open pass and takes the encoder out.
    fn take_encoder(&mut self) -> Result<wgpu::CommandEncoder, GpuError> {
        self.pass = None;
        self.encoder
            .take()
            .ok_or_else(|| GpuError::Internal("recorder already finished".into()))
    }

    /// Submits what is recorded so far and goes on recording into a new command buffer, so
    /// the GPU starts on a long recording (the flow's Euler steps) while the CPU records the
    /// rest. Params keep their ring slots (the submitted work reads them). No-op while
    /// profiling (the timestamps are resolved once, at submit).
    pub fn flush(&mut self) -> Result<(), GpuError> {
        if self.prof.is_some() {
            return Ok(());
        }
        let enc = self.take_encoder()?;
        self.write_rings();
        self.ctx.queue.submit([enc.finish()]);
        self.encoder = Some(self.ctx.device.create_command_encoder(
            &wgpu::CommandEncoderDescriptor {
                label: Some("flushed"),
            },
        ));
        self.ctx.check()
    }

    /// Submits everything recorded.
    pub fn submit(self) -> Result<(), GpuError> {
        self.submit_index().map(|_| ())
    }

    /// [`Self::submit`], returning the submission's index (to wait for it alone).
    pub fn submit_index(mut self) -> Result<wgpu::SubmissionIndex, GpuError> {
        let mut enc = self.take_encoder()?;
        let resolved = self.resolve_profile(&mut enc);
        self.write_rings();
        let index = self.ctx.queue.submit([enc.finish()]);
        self.ctx.check()?;
        if let (Some((buf, n)), Some(prof)) = (resolved, self.prof.as_ref()) {
            self.ctx.record_profile(&buf, n, &prof.names)?;
        }
        Ok(index)
    }
}

impl Drop for Recorder<'_> {
    fn drop(&mut self) {
        self.pass = None;
        // reversed, so that the next recorder takes them in the same order (same ring at the
        // same offset for the same step: its cached bind groups match)
        GpuContext::return_rings(
            self.ring_pool(),
            std::mem::take(&mut self.rings)
                .into_iter()
                .rev()
                .map(|(b, _, _)| b),
        );
    }
}

/// Splits `n` workgroups into a 2-D grid within the per-dimension limit.
pub fn grid(n: u32, max_per_dim: u32) -> [u32; 3] {
    if n <= max_per_dim {
        [n.max(1), 1, 1]
    } else {
        let y = n.div_ceil(max_per_dim);
        [n.div_ceil(y), y, 1]
    }
}
