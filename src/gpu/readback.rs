//! The one GPU → CPU readback path, for native and wasm alike.
//!
//! WebGPU surprises: a buffer can be mapped only if it was created with MAP_READ, and a
//! MAP_READ buffer may only also be COPY_DST — so we copy into a staging buffer first. The map
//! callback fires only when the device is polled: natively we must call `device.poll`, in the
//! browser the event loop does it and we simply await. Copies need 4-byte-aligned sizes.

use super::{GpuContext, GpuError};

/// Copies `len` bytes at `offset` of `src` (which needs COPY_SRC) back to the CPU.
pub async fn read_buffer(
    ctx: &GpuContext,
    src: &wgpu::Buffer,
    offset: u64,
    len: u64,
) -> Result<Vec<u8>, GpuError> {
    ctx.check()?;
    if len == 0 {
        return Ok(Vec::new());
    }
    let padded = len.div_ceil(4) * 4;
    if !offset.is_multiple_of(4) || offset + padded > src.size() {
        return Err(GpuError::Readback(format!(
            "range {offset}..{} outside the {}-byte buffer or unaligned",
            offset + padded,
            src.size()
        )));
    }
    let staging = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("readback"),
        size: padded,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut enc = ctx
        .device
        .create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("readback"),
        });
    enc.copy_buffer_to_buffer(src, offset, &staging, 0, padded);
    let index = ctx.queue.submit([enc.finish()]);
    map_read(ctx, &staging, index, len).await
}

/// The first `len` bytes of `staging` (MAP_READ) once submission `index`, the last one that
/// writes it, has run: natively this waits for that submission alone, so later ones keep the
/// GPU busy (the pipelined audio frames read one frame while the next runs). Unmapped after.
pub async fn map_read(
    ctx: &GpuContext,
    staging: &wgpu::Buffer,
    index: wgpu::SubmissionIndex,
    len: u64,
) -> Result<Vec<u8>, GpuError> {
    let (tx, rx) = futures_channel::oneshot::channel();
    staging.map_async(wgpu::MapMode::Read, .., move |r| {
        let _ = tx.send(r);
    });
    #[cfg(not(target_arch = "wasm32"))]
    ctx.device
        .poll(wgpu::PollType::Wait {
            submission_index: Some(index),
            timeout: None,
        })
        .map_err(|e| GpuError::Readback(e.to_string()))?;
    #[cfg(target_arch = "wasm32")]
    let _ = index; // the browser's event loop runs the callback
    let mapped = rx
        .await
        .map_err(|_| GpuError::Readback("map callback dropped".into()))?;
    // A lost device or an earlier validation error explains a failed map better than the map.
    ctx.check()?;
    mapped.map_err(|e| GpuError::Readback(e.to_string()))?;
    let data = {
        let view = staging
            .get_mapped_range(..)
            .map_err(|e| GpuError::Readback(e.to_string()))?;
        view[..len as usize].to_vec()
    };
    staging.unmap();
    Ok(data)
}

impl GpuContext {
    /// Reads `n` f32 values from the start of `src`.
    pub async fn read_f32(&self, src: &wgpu::Buffer, n: usize) -> Result<Vec<f32>, GpuError> {
        let bytes = read_buffer(self, src, 0, (n * 4) as u64).await?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    /// Reads `n` activations (f16 or f32 as negotiated) as f32.
    pub async fn read_act(&self, src: &wgpu::Buffer, n: usize) -> Result<Vec<f32>, GpuError> {
        match self.act() {
            super::ActDType::F32 => self.read_f32(src, n).await,
            super::ActDType::F16 => {
                let bytes = read_buffer(self, src, 0, (n * 2) as u64).await?;
                let h: Vec<half::f16> = bytemuck::pod_collect_to_vec(&bytes);
                Ok(h.into_iter().map(f32::from).collect())
            }
        }
    }
}
