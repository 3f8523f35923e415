//! Pipelines are created lazily, cached by [`KernelKey`] (never evicted), labelled with the
//! key, and checked for validation errors right after creation.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{kernels, GpuContext, GpuError, KernelKey};

/// One binding of a kernel's group 0, in binding order (mirrors the shader's header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binding {
    /// `var<storage, read>`
    Read,
    /// `var<storage, read_write>`
    ReadWrite,
    /// `var<uniform>`
    Uniform,
}

pub struct CachedPipeline {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
    /// `family:entry` (profiles group dispatches by it).
    pub name: String,
}

#[derive(Default)]
pub struct PipelineCache {
    map: Mutex<HashMap<KernelKey, Arc<CachedPipeline>>>,
}

impl PipelineCache {
    /// The keys of every pipeline compiled so far.
    pub fn keys(&self) -> Vec<KernelKey> {
        self.map
            .lock()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }
    pub fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl GpuContext {
    /// The pipeline for `key` whose group 0 has `bindings`, compiled on first use.
    pub fn pipeline(
        &self,
        key: &KernelKey,
        bindings: &[Binding],
    ) -> Result<Arc<CachedPipeline>, GpuError> {
        if let Some(p) = self
            .pipelines
            .map
            .lock()
            .map_err(|_| GpuError::Internal("pipeline cache poisoned".into()))?
            .get(key)
        {
            return Ok(p.clone());
        }
        self.check()?;
        let label = key.to_string();
        let mut src = kernels::source(key)?;
        if self.caps.params_in_storage {
            // every kernel declares its params `var<uniform>` (see Caps::params_in_storage)
            src = src.replace("var<uniform>", "var<storage, read>");
        }
        let desc = wgpu::ShaderModuleDescriptor {
            label: Some(&label),
            source: wgpu::ShaderSource::Wgsl(src.into()),
        };
        #[cfg(not(target_arch = "wasm32"))]
        let module = if self.caps.trusted_shaders {
            // SAFETY: every op checks its buffers' sizes against the shapes it dispatches
            // before recording (`check_len` and the shape checks), every kernel bounds its
            // indices by those shapes (tested against CPU references on ragged shapes), and
            // the Vulkan backend still enables robust buffer access where the driver has it.
            // What this skips is naga's clamping of every index it cannot prove in range,
            // which cost 1.9–3.3× on the attention and matrix kernels (BENCHMARKS.md).
            unsafe {
                self.device
                    .create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked())
            }
        } else {
            self.device.create_shader_module(desc)
        };
        #[cfg(target_arch = "wasm32")]
        let module = self.device.create_shader_module(desc);
        let entries: Vec<wgpu::BindGroupLayoutEntry> = bindings
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupLayoutEntry {
                binding: i as u32,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: match b {
                    Binding::Read => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Storage { read_only: true },
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    Binding::ReadWrite => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Storage { read_only: false },
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    Binding::Uniform if self.caps.params_in_storage => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Storage { read_only: true },
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    Binding::Uniform => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                },
                count: None,
            })
            .collect();
        let layout = self
            .device
            .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some(&label),
                entries: &entries,
            });
        let pl = self
            .device
            .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(&label),
                bind_group_layouts: &[Some(&layout)],
                immediate_size: 0,
            });
        let constants: Vec<(&str, f64)> =
            key.constants.iter().map(|(k, v)| (*k, *v as f64)).collect();
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(&label),
                layout: Some(&pl),
                module: &module,
                entry_point: Some(key.entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: &constants,
                    zero_initialize_workgroup_memory: false,
                },
                cache: None,
            });
        // Natively, shader and pipeline errors arrive synchronously; on the web they surface
        // at the next check (submit/readback). Either way the key names the culprit.
        self.check().map_err(|e| match e {
            GpuError::Validation(m) => GpuError::Validation(format!("pipeline {label}: {m}")),
            other => other,
        })?;
        let cached = Arc::new(CachedPipeline {
            pipeline,
            layout,
            name: format!("{}:{}", key.family, key.entry),
        });
        self.pipelines
            .map
            .lock()
            .map_err(|_| GpuError::Internal("pipeline cache poisoned".into()))?
            .insert(key.clone(), cached.clone());
        Ok(cached)
    }
}
