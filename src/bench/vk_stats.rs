//! What the Vulkan driver made of the kernels (native Vulkan only): registers, local memory
//! (spills and arrays the compiler could not keep in registers), shared memory, as the driver
//! reports them through `VK_KHR_pipeline_executable_properties` (NVIDIA's does; Mesa's
//! lavapipe does not). wgpu's device does not enable that extension, so each kernel's SPIR-V
//! is written again here the way wgpu's Vulkan backend writes a module with overrides for the
//! engine's native pipelines (every runtime check off, workgroup memory not zeroed, the
//! pipeline's constants substituted) and compiled on a second `VkDevice` of the same GPU.

use ash::vk;
use wgpu::hal::api::Vulkan;
use wgpu::naga;

use super::vk::{err, spirv, spirv_lang, RawPipeline};
use crate::gpu::{kernels, GpuContext, KernelKey};
use crate::ops::OpError;

const EXTENSION: &std::ffi::CStr = c"VK_KHR_pipeline_executable_properties";

/// One kernel's statistics, in the driver's words and order (e.g. "Register Count").
#[derive(Clone, Debug, serde::Serialize)]
pub struct KernelStats {
    pub kernel: String,
    pub stats: Vec<(String, String)>,
}

/// `key`'s SPIR-V as wgpu's Vulkan backend writes it for the engine's native pipelines: WGSL
/// from `kernels::source`, the key's constants substituted, SPIR-V `lang` (wgpu picks 1.6 on a
/// Vulkan 1.3 device), no bounds checks, loop bounding or division checks, workgroup memory
/// not zeroed.
pub fn spirv_for(key: &KernelKey, lang: (u8, u8)) -> Result<Vec<u32>, OpError> {
    let constants: naga::back::PipelineConstants = key
        .constants
        .iter()
        .map(|(k, v)| (k.to_string(), *v as f64))
        .collect();
    spirv(&kernels::source(key)?, key.entry, &constants, lang)
}

/// The descriptor set layout bindings `key`'s module declares (group 0, compute).
fn bindings(key: &KernelKey) -> Result<Vec<vk::DescriptorSetLayoutBinding<'static>>, OpError> {
    let src = kernels::source(key)?;
    let module = naga::front::wgsl::parse_str(&src).map_err(|e| err("WGSL", e))?;
    Ok(module
        .global_variables
        .iter()
        .filter_map(|(_, g)| {
            let rb = g.binding.as_ref()?;
            let ty = match g.space {
                naga::AddressSpace::Uniform => vk::DescriptorType::UNIFORM_BUFFER,
                _ => vk::DescriptorType::STORAGE_BUFFER,
            };
            Some(
                vk::DescriptorSetLayoutBinding::default()
                    .binding(rb.binding)
                    .descriptor_type(ty)
                    .descriptor_count(1)
                    .stage_flags(vk::ShaderStageFlags::COMPUTE),
            )
        })
        .collect())
}

/// The driver's statistics for every pipeline `ctx` has compiled whose key contains `filter`,
/// sorted by key. `None` where the device is not Vulkan or the driver lacks the extension. A
/// kernel the driver refuses here is listed with the error as its only entry.
pub fn pipeline_stats(ctx: &GpuContext, filter: &str) -> Result<Option<Vec<KernelStats>>, OpError> {
    let mut keys: Vec<KernelKey> = ctx
        .pipelines
        .keys()
        .into_iter()
        .filter(|k| k.to_string().contains(filter))
        .collect();
    keys.sort_by_key(|k| k.to_string());
    // SAFETY: the second device is made from wgpu's instance and physical device, used only
    // here and destroyed (with everything made on it) before returning; wgpu's own device is
    // only read (its handles, never its queue).
    unsafe {
        let Some(hdev) = ctx.device.as_hal::<Vulkan>() else {
            return Ok(None);
        };
        let inst = hdev.shared_instance().raw_instance();
        let pd = hdev.raw_physical_device();
        let exts = inst
            .enumerate_device_extension_properties(pd)
            .map_err(|e| err("device extensions", e))?;
        if !exts
            .iter()
            .any(|e| e.extension_name_as_c_str() == Ok(EXTENSION))
        {
            return Ok(None);
        }
        let lang = spirv_lang(inst.get_physical_device_properties(pd).api_version);
        // every feature the GPU has (f16, int8, 16-bit storage, subgroups …), and the extension's
        let mut f11 = vk::PhysicalDeviceVulkan11Features::default();
        let mut f12 = vk::PhysicalDeviceVulkan12Features::default();
        let mut f13 = vk::PhysicalDeviceVulkan13Features::default();
        let mut all = vk::PhysicalDeviceFeatures2::default()
            .push_next(&mut f11)
            .push_next(&mut f12)
            .push_next(&mut f13);
        inst.get_physical_device_features2(pd, &mut all);
        let base = all.features;
        let (mut f11, mut f12, mut f13) = (f11, f12, f13);
        f11.p_next = std::ptr::null_mut();
        f12.p_next = std::ptr::null_mut();
        f13.p_next = std::ptr::null_mut();
        let mut pe = vk::PhysicalDevicePipelineExecutablePropertiesFeaturesKHR::default()
            .pipeline_executable_info(true);
        let prio = [1.0f32];
        let queues = [vk::DeviceQueueCreateInfo::default()
            .queue_family_index(hdev.queue_family_index())
            .queue_priorities(&prio)];
        let names = [EXTENSION.as_ptr()];
        let info = vk::DeviceCreateInfo::default()
            .queue_create_infos(&queues)
            .enabled_extension_names(&names)
            .enabled_features(&base)
            .push_next(&mut pe)
            .push_next(&mut f11)
            .push_next(&mut f12)
            .push_next(&mut f13);
        let dev = inst
            .create_device(pd, &info, None)
            .map_err(|e| err("second device", e))?;
        let pex = ash::khr::pipeline_executable_properties::Device::new(inst, &dev);
        let mut out = Vec::new();
        for key in keys {
            let stats = match compile_and_read(&dev, &pex, &key, lang) {
                Ok(s) => s,
                Err(e) => vec![("error".to_string(), e.to_string())],
            };
            out.push(KernelStats {
                kernel: key.to_string(),
                stats,
            });
        }
        dev.destroy_device(None);
        Ok(Some(out))
    }
}

/// Compiles `key` on `dev` with statistics captured and reads them; destroys what it made.
unsafe fn compile_and_read(
    dev: &ash::Device,
    pex: &ash::khr::pipeline_executable_properties::Device,
    key: &KernelKey,
    lang: (u8, u8),
) -> Result<Vec<(String, String)>, OpError> {
    let code = spirv_for(key, lang)?;
    let entry = std::ffi::CString::new(key.entry).map_err(|e| err("entry name", e))?;
    // SAFETY: the pipeline is made on `dev` and dropped (destroyed) before returning; it never
    // runs on the GPU.
    unsafe {
        let p = RawPipeline::new(
            dev,
            &code,
            &bindings(key)?,
            &entry,
            // as wgpu creates its stages where the device has subgroups
            vk::PipelineShaderStageCreateFlags::ALLOW_VARYING_SUBGROUP_SIZE,
            vk::PipelineCreateFlags::CAPTURE_STATISTICS_KHR,
        )?;
        read_stats(pex, p.pipeline)
    }
}

unsafe fn read_stats(
    pex: &ash::khr::pipeline_executable_properties::Device,
    p: vk::Pipeline,
) -> Result<Vec<(String, String)>, OpError> {
    // SAFETY: `p` was created with CAPTURE_STATISTICS on the device `pex` belongs to.
    unsafe {
        let execs = pex
            .get_pipeline_executable_properties(&vk::PipelineInfoKHR::default().pipeline(p))
            .map_err(|e| err("executables", e))?;
        let mut out = Vec::new();
        for i in 0..execs.len() as u32 {
            let ei = vk::PipelineExecutableInfoKHR::default()
                .pipeline(p)
                .executable_index(i);
            for st in pex
                .get_pipeline_executable_statistics(&ei)
                .map_err(|e| err("statistics", e))?
            {
                let name = st
                    .name_as_c_str()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let v = match st.format {
                    vk::PipelineExecutableStatisticFormatKHR::BOOL32 => {
                        (st.value.b32 != 0).to_string()
                    }
                    vk::PipelineExecutableStatisticFormatKHR::INT64 => st.value.i64.to_string(),
                    vk::PipelineExecutableStatisticFormatKHR::UINT64 => {
                        // NVIDIA's driver (580.159) reports "Local Memory Size" as 2^36 plus
                        // the bytes (2^36 exactly where nothing is in local memory): the
                        // bytes are shown
                        let u = st.value.u64;
                        if name == "Local Memory Size" {
                            (u & ((1u64 << 36) - 1)).to_string()
                        } else {
                            u.to_string()
                        }
                    }
                    _ => format!("{:.3}", st.value.f64),
                };
                out.push((name, v));
            }
        }
        Ok(out)
    }
}
