//! Records many dispatches into one command encoder and one compute pass, so that a whole
//! step (later: a whole token) is a single submission.

use super::{GpuContext, GpuError};

pub struct Recorder<'a> {
    ctx: &'a GpuContext,
    encoder: Option<wgpu::CommandEncoder>,
    pass: Option<wgpu::ComputePass<'static>>,
    dispatches: usize,
    /// Timestamp writes for the next pass opened (benchmarks).
    timestamps: Option<(wgpu::QuerySet, u32)>,
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
        }
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
        pipeline: &wgpu::ComputePipeline,
        group: &wgpu::BindGroup,
        workgroups: [u32; 3],
    ) -> Result<(), GpuError> {
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

    /// Submits everything recorded.
    pub fn submit(mut self) -> Result<(), GpuError> {
        self.pass = None;
        let enc = self
            .encoder
            .take()
            .ok_or_else(|| GpuError::Internal("recorder already finished".into()))?;
        self.ctx.queue.submit([enc.finish()]);
        self.ctx.check()
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
