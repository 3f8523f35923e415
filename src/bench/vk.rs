//! What the raw-Vulkan benchmarks (`vk_barriers`, `vk_stats`) share: their errors, WGSL
//! written to SPIR-V as wgpu's Vulkan backend writes it for the engine's native pipelines, and
//! a compute pipeline of one descriptor set, destroyed on drop.

use std::ffi::CStr;

use ash::vk;
use wgpu::naga;

use crate::gpu::GpuError;
use crate::ops::OpError;

pub(super) fn err(what: &str, e: impl std::fmt::Display) -> OpError {
    OpError::Gpu(GpuError::Internal(format!("raw Vulkan: {what}: {e}")))
}

/// The SPIR-V version wgpu writes for a device of Vulkan `api` (the highest that version
/// takes).
pub(super) fn spirv_lang(api: u32) -> (u8, u8) {
    match (vk::api_version_major(api), vk::api_version_minor(api)) {
        (1, 0) => (1, 0),
        (1, 1) => (1, 3),
        (1, 2) => (1, 5),
        _ => (1, 6),
    }
}

/// `src`'s entry `entry` as SPIR-V `lang`, the way wgpu's Vulkan backend writes a module with
/// overrides for the engine's native pipelines: `constants` substituted, no bounds checks,
/// loop bounding or division checks, workgroup memory not zeroed.
pub(super) fn spirv(
    src: &str,
    entry: &str,
    constants: &naga::back::PipelineConstants,
    lang: (u8, u8),
) -> Result<Vec<u32>, OpError> {
    let module = naga::front::wgsl::parse_str(src).map_err(|e| err("WGSL", e))?;
    let info = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::all(),
    )
    .validate(&module)
    .map_err(|e| err("validation", e))?;
    let stage = Some((naga::ShaderStage::Compute, entry));
    let (module, info) =
        naga::back::pipeline_constants::process_overrides(&module, &info, stage, constants)
            .map_err(|e| err("constants", e))?;
    let unchecked = naga::proc::BoundsCheckPolicy::Unchecked;
    let options = naga::back::spv::Options {
        lang_version: lang,
        bounds_check_policies: naga::proc::BoundsCheckPolicies {
            index: unchecked,
            buffer: unchecked,
            image_load: unchecked,
            binding_array: unchecked,
        },
        zero_initialize_workgroup_memory: naga::back::spv::ZeroInitializeWorkgroupMemoryMode::None,
        force_loop_bounding: false,
        emit_int_div_checks: false,
        ..Default::default()
    };
    let pipe = naga::back::spv::PipelineOptions {
        shader_stage: naga::ShaderStage::Compute,
        entry_point: entry.into(),
    };
    naga::back::spv::write_vec(&module, &info, &options, Some(&pipe)).map_err(|e| err("SPIR-V", e))
}

/// A compute pipeline whose layout is one descriptor set; every handle it made is destroyed
/// on drop (null ones are ignored), so a failure half-way leaves nothing behind.
pub(super) struct RawPipeline<'a> {
    dev: &'a ash::Device,
    module: vk::ShaderModule,
    pub dsl: vk::DescriptorSetLayout,
    pub layout: vk::PipelineLayout,
    pub pipeline: vk::Pipeline,
}

impl<'a> RawPipeline<'a> {
    /// # Safety
    /// `dev` must outlive the pipeline's use on the GPU (the caller waits before dropping it).
    pub(super) unsafe fn new(
        dev: &'a ash::Device,
        code: &[u32],
        binds: &[vk::DescriptorSetLayoutBinding<'_>],
        entry: &CStr,
        stage_flags: vk::PipelineShaderStageCreateFlags,
        create_flags: vk::PipelineCreateFlags,
    ) -> Result<Self, OpError> {
        let mut p = RawPipeline {
            dev,
            module: vk::ShaderModule::null(),
            dsl: vk::DescriptorSetLayout::null(),
            layout: vk::PipelineLayout::null(),
            pipeline: vk::Pipeline::null(),
        };
        // SAFETY: plain object creation on `dev`; what is made is owned by `p`.
        unsafe {
            p.module = dev
                .create_shader_module(&vk::ShaderModuleCreateInfo::default().code(code), None)
                .map_err(|e| err("shader module", e))?;
            p.dsl = dev
                .create_descriptor_set_layout(
                    &vk::DescriptorSetLayoutCreateInfo::default().bindings(binds),
                    None,
                )
                .map_err(|e| err("set layout", e))?;
            let dsls = [p.dsl];
            p.layout = dev
                .create_pipeline_layout(
                    &vk::PipelineLayoutCreateInfo::default().set_layouts(&dsls),
                    None,
                )
                .map_err(|e| err("pipeline layout", e))?;
            let stage = vk::PipelineShaderStageCreateInfo::default()
                .flags(stage_flags)
                .stage(vk::ShaderStageFlags::COMPUTE)
                .module(p.module)
                .name(entry);
            let info = [vk::ComputePipelineCreateInfo::default()
                .stage(stage)
                .layout(p.layout)
                .flags(create_flags)];
            let made = dev
                .create_compute_pipelines(vk::PipelineCache::null(), &info, None)
                .map_err(|(_, e)| err("pipeline", e))?;
            p.pipeline = made.first().copied().unwrap_or_default();
        }
        Ok(p)
    }
}

impl Drop for RawPipeline<'_> {
    fn drop(&mut self) {
        // SAFETY: every handle was made on `dev` (or is null, which destroy ignores), and the
        // owner waited for the GPU to finish with them.
        unsafe {
            self.dev.destroy_pipeline(self.pipeline, None);
            self.dev.destroy_pipeline_layout(self.layout, None);
            self.dev.destroy_descriptor_set_layout(self.dsl, None);
            self.dev.destroy_shader_module(self.module, None);
        }
    }
}
