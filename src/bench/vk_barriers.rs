//! What a dependent dispatch costs with each kind of Vulkan pipeline barrier (native Vulkan
//! only). wgpu records, before a dispatch that reads what the one before wrote, a
//! `vkCmdPipelineBarrier` of buffer barriers whose stage masks name every shader stage
//! (vertex, fragment and compute, plus top/bottom of pipe). This records chains of tiny
//! dependent copies straight through Vulkan, on wgpu's own device and queue, with the barrier
//! wgpu records and with narrower ones, to see whether the barrier's kind changes its cost.

use ash::vk;
use wgpu::hal::api::Vulkan;

use super::vk::{err, spirv, spirv_lang, RawPipeline};
use crate::gpu::{read_buffer, GpuContext};
use crate::ops::OpError;
use crate::util::rng::Rng;

/// One barrier kind between the chain's dispatches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavour {
    /// No barrier: the dispatches may overlap (the launch cost alone).
    None,
    /// What wgpu records: buffer barriers, every shader stage (+ top/bottom of pipe).
    Wgpu,
    /// The same buffer barriers, compute stage to compute stage.
    ComputeBuffers,
    /// One global memory barrier, compute to compute, shader write → shader read/write.
    ComputeGlobal,
    /// An execution dependency alone, compute to compute (no memory barrier: not a correct
    /// hand-over of data, shown for what the ordering costs).
    ExecutionOnly,
    /// One global memory barrier, all commands to all commands.
    AllCommands,
}

pub const FLAVOURS: [Flavour; 6] = [
    Flavour::None,
    Flavour::Wgpu,
    Flavour::ComputeBuffers,
    Flavour::ComputeGlobal,
    Flavour::ExecutionOnly,
    Flavour::AllCommands,
];

impl Flavour {
    pub fn name(self) -> &'static str {
        match self {
            Flavour::None => "none (independent)",
            Flavour::Wgpu => "wgpu's (buffers, all shader stages)",
            Flavour::ComputeBuffers => "buffers, compute→compute",
            Flavour::ComputeGlobal => "global memory, compute→compute",
            Flavour::ExecutionOnly => "execution only, compute→compute",
            Flavour::AllCommands => "global memory, all commands",
        }
    }
}

const WGSL: &str = "
@group(0) @binding(0) var<storage, read> src: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<u32>>;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
    if (g.x < arrayLength(&dst)) {
        dst[g.x] = src[g.x] + vec4<u32>(1u);
    }
}
";

/// Vulkan objects made here besides the pipeline, destroyed on drop (after the GPU is idle).
struct Objects<'a> {
    dev: &'a ash::Device,
    dpool: vk::DescriptorPool,
    qpool: vk::QueryPool,
    cpool: vk::CommandPool,
    fence: vk::Fence,
}

impl Drop for Objects<'_> {
    fn drop(&mut self) {
        // SAFETY: every handle was created on `dev` (or is null, which destroy ignores), and
        // the fence wait (or the device idle wait below) ended their use on the GPU.
        unsafe {
            let _ = self.dev.device_wait_idle();
            self.dev.destroy_fence(self.fence, None);
            self.dev.destroy_command_pool(self.cpool, None);
            self.dev.destroy_query_pool(self.qpool, None);
            self.dev.destroy_descriptor_pool(self.dpool, None);
        }
    }
}

/// µs per link of a chain of `links` dependent copies of `groups` workgroups × 256 vec4s
/// (the smallest: 1 workgroup, 4 KiB), for each barrier kind in `flavours`, best of three.
/// `None` where the device is not Vulkan. Afterwards a chain with wgpu's barrier runs on
/// seeded random data, and an error says so if its result is not the data plus the number of
/// links (each link adds 1): the chain timed is a real chain of dependent copies.
pub async fn barrier_costs(
    ctx: &GpuContext,
    links: u32,
    groups: u32,
    flavours: &[Flavour],
) -> Result<Option<Vec<(Flavour, f64)>>, OpError> {
    let bytes = groups as u64 * 256 * 16;
    let usage =
        wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
    let bx = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("barrier bench x"),
        size: bytes,
        usage,
        mapped_at_creation: false,
    });
    let by = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("barrier bench y"),
        size: bytes,
        usage,
        mapped_at_creation: false,
    });
    // wgpu must be idle on the queue before we submit to it ourselves
    let _ = ctx.device.poll(wgpu::PollType::wait_indefinitely());
    // SAFETY: the raw handles are only used while `bx`, `by` and the device are alive; the
    // queue is used from this thread alone while wgpu is idle (polled above); every object
    // made here is destroyed before returning (`Objects`, `RawPipeline`).
    unsafe {
        // one buffer guard at a time: each holds wgpu's snatch lock (debug builds panic on
        // taking it twice), and none is held while wgpu runs below
        let Some(raw_x) = bx.as_hal::<Vulkan>().map(|b| b.raw_handle()) else {
            return Ok(None);
        };
        let Some(raw_y) = by.as_hal::<Vulkan>().map(|b| b.raw_handle()) else {
            return Ok(None);
        };
        let Some(hdev) = ctx.device.as_hal::<Vulkan>() else {
            return Ok(None);
        };
        let dev = hdev.raw_device();
        let props = hdev
            .shared_instance()
            .raw_instance()
            .get_physical_device_properties(hdev.raw_physical_device());
        let period = props.limits.timestamp_period as f64;
        let qf = hdev.queue_family_index();
        let queue = hdev.raw_queue();
        let binds = [0, 1].map(|b| {
            vk::DescriptorSetLayoutBinding::default()
                .binding(b)
                .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
                .descriptor_count(1)
                .stage_flags(vk::ShaderStageFlags::COMPUTE)
        });
        let code = spirv(
            WGSL,
            "main",
            &Default::default(),
            spirv_lang(props.api_version),
        )?;
        let pipe = RawPipeline::new(
            dev,
            &code,
            &binds,
            c"main",
            vk::PipelineShaderStageCreateFlags::empty(),
            vk::PipelineCreateFlags::empty(),
        )?;
        let mut o = Objects {
            dev,
            dpool: vk::DescriptorPool::null(),
            qpool: vk::QueryPool::null(),
            cpool: vk::CommandPool::null(),
            fence: vk::Fence::null(),
        };
        let sizes = [vk::DescriptorPoolSize::default()
            .ty(vk::DescriptorType::STORAGE_BUFFER)
            .descriptor_count(4)];
        o.dpool = dev
            .create_descriptor_pool(
                &vk::DescriptorPoolCreateInfo::default()
                    .max_sets(2)
                    .pool_sizes(&sizes),
                None,
            )
            .map_err(|e| err("descriptor pool", e))?;
        let two = [pipe.dsl, pipe.dsl];
        let sets = dev
            .allocate_descriptor_sets(
                &vk::DescriptorSetAllocateInfo::default()
                    .descriptor_pool(o.dpool)
                    .set_layouts(&two),
            )
            .map_err(|e| err("descriptor sets", e))?;
        // set 0 copies x → y, set 1 y → x: link k reads what link k − 1 wrote
        for (set, (s, d)) in sets.iter().zip([(raw_x, raw_y), (raw_y, raw_x)]) {
            let bi = [s, d].map(|b| [vk::DescriptorBufferInfo::default().buffer(b).range(bytes)]);
            let writes = [0usize, 1].map(|i| {
                vk::WriteDescriptorSet::default()
                    .dst_set(*set)
                    .dst_binding(i as u32)
                    .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
                    .buffer_info(&bi[i])
            });
            dev.update_descriptor_sets(&writes, &[]);
        }
        o.qpool = dev
            .create_query_pool(
                &vk::QueryPoolCreateInfo::default()
                    .query_type(vk::QueryType::TIMESTAMP)
                    .query_count(2),
                None,
            )
            .map_err(|e| err("query pool", e))?;
        o.cpool = dev
            .create_command_pool(
                &vk::CommandPoolCreateInfo::default()
                    .queue_family_index(qf)
                    .flags(vk::CommandPoolCreateFlags::RESET_COMMAND_BUFFER),
                None,
            )
            .map_err(|e| err("command pool", e))?;
        let cb = dev
            .allocate_command_buffers(
                &vk::CommandBufferAllocateInfo::default()
                    .command_pool(o.cpool)
                    .level(vk::CommandBufferLevel::PRIMARY)
                    .command_buffer_count(1),
            )
            .map_err(|e| err("command buffer", e))?[0];
        o.fence = dev
            .create_fence(&vk::FenceCreateInfo::default(), None)
            .map_err(|e| err("fence", e))?;

        let all_shaders = vk::PipelineStageFlags::VERTEX_SHADER
            | vk::PipelineStageFlags::FRAGMENT_SHADER
            | vk::PipelineStageFlags::COMPUTE_SHADER;
        let cs = vk::PipelineStageFlags::COMPUTE_SHADER;
        let rw = vk::AccessFlags::SHADER_READ | vk::AccessFlags::SHADER_WRITE;
        // everything before, made visible to everything after
        let all_commands = || {
            let all = vk::PipelineStageFlags::ALL_COMMANDS;
            let g = [vk::MemoryBarrier::default()
                .src_access_mask(vk::AccessFlags::MEMORY_WRITE)
                .dst_access_mask(vk::AccessFlags::MEMORY_READ | vk::AccessFlags::MEMORY_WRITE)];
            dev.cmd_pipeline_barrier(cb, all, all, vk::DependencyFlags::empty(), &g, &[], &[]);
        };
        let record = |f: Flavour, k: u32| {
            // after link k: link k wrote dst (y for even k) and read src
            let (wrote, read) = if k.is_multiple_of(2) {
                (raw_y, raw_x)
            } else {
                (raw_x, raw_y)
            };
            let bufs = [
                vk::BufferMemoryBarrier::default()
                    .buffer(wrote)
                    .size(vk::WHOLE_SIZE)
                    .src_access_mask(rw)
                    .dst_access_mask(vk::AccessFlags::SHADER_READ),
                vk::BufferMemoryBarrier::default()
                    .buffer(read)
                    .size(vk::WHOLE_SIZE)
                    .src_access_mask(vk::AccessFlags::SHADER_READ)
                    .dst_access_mask(rw),
            ];
            let global = [vk::MemoryBarrier::default()
                .src_access_mask(vk::AccessFlags::SHADER_WRITE)
                .dst_access_mask(rw)];
            let flags = vk::DependencyFlags::empty();
            match f {
                Flavour::None => {}
                Flavour::Wgpu => dev.cmd_pipeline_barrier(
                    cb,
                    vk::PipelineStageFlags::TOP_OF_PIPE | all_shaders,
                    vk::PipelineStageFlags::BOTTOM_OF_PIPE | all_shaders,
                    flags,
                    &[],
                    &bufs,
                    &[],
                ),
                Flavour::ComputeBuffers => {
                    dev.cmd_pipeline_barrier(cb, cs, cs, flags, &[], &bufs, &[])
                }
                Flavour::ComputeGlobal => {
                    dev.cmd_pipeline_barrier(cb, cs, cs, flags, &global, &[], &[])
                }
                Flavour::ExecutionOnly => {
                    dev.cmd_pipeline_barrier(cb, cs, cs, flags, &[], &[], &[])
                }
                Flavour::AllCommands => all_commands(),
            }
        };
        let run = |f: Flavour, n: u32| -> Result<f64, OpError> {
            dev.reset_command_buffer(cb, vk::CommandBufferResetFlags::empty())
                .map_err(|e| err("reset", e))?;
            dev.begin_command_buffer(
                cb,
                &vk::CommandBufferBeginInfo::default()
                    .flags(vk::CommandBufferUsageFlags::ONE_TIME_SUBMIT),
            )
            .map_err(|e| err("begin", e))?;
            dev.cmd_reset_query_pool(cb, o.qpool, 0, 2);
            // what wgpu wrote before (the check's data) is visible to the first link
            all_commands();
            dev.cmd_bind_pipeline(cb, vk::PipelineBindPoint::COMPUTE, pipe.pipeline);
            dev.cmd_write_timestamp(cb, vk::PipelineStageFlags::TOP_OF_PIPE, o.qpool, 0);
            for k in 0..n {
                let set = [sets[(k % 2) as usize]];
                dev.cmd_bind_descriptor_sets(
                    cb,
                    vk::PipelineBindPoint::COMPUTE,
                    pipe.layout,
                    0,
                    &set,
                    &[],
                );
                dev.cmd_dispatch(cb, groups, 1, 1);
                if k + 1 < n {
                    record(f, k);
                }
            }
            dev.cmd_write_timestamp(cb, vk::PipelineStageFlags::BOTTOM_OF_PIPE, o.qpool, 1);
            dev.end_command_buffer(cb).map_err(|e| err("end", e))?;
            let cbs = [cb];
            let submit = [vk::SubmitInfo::default().command_buffers(&cbs)];
            dev.queue_submit(queue, &submit, o.fence)
                .map_err(|e| err("submit", e))?;
            dev.wait_for_fences(&[o.fence], true, 10_000_000_000)
                .map_err(|e| err("fence wait", e))?;
            dev.reset_fences(&[o.fence])
                .map_err(|e| err("fence reset", e))?;
            let mut ts = [0u64; 2];
            dev.get_query_pool_results(
                o.qpool,
                0,
                &mut ts,
                vk::QueryResultFlags::TYPE_64 | vk::QueryResultFlags::WAIT,
            )
            .map_err(|e| err("timestamps", e))?;
            Ok(ts[1].wrapping_sub(ts[0]) as f64 * period * 1e-9)
        };
        let mut out = Vec::new();
        for &f in flavours {
            run(f, 16)?; // warm-up
            let mut best = f64::INFINITY;
            for _ in 0..3 {
                best = best.min(run(f, links)?);
            }
            out.push((f, best / links as f64 * 1e6));
        }
        // the check: an even chain ends writing x, x0 + n
        let n = (links.max(2) + 1) & !1;
        let mut rng = Rng::new(0xBA55_1E75);
        let init: Vec<u32> = (0..bytes / 4).map(|_| rng.next_u64() as u32).collect();
        ctx.queue.write_buffer(&bx, 0, bytemuck::cast_slice(&init));
        ctx.queue.submit([]);
        let _ = ctx.device.poll(wgpu::PollType::wait_indefinitely());
        run(Flavour::Wgpu, n)?;
        drop(o);
        drop(pipe);
        drop(hdev);
        let got = read_buffer(ctx, &bx, 0, bytes).await?;
        let got: Vec<u32> = bytemuck::pod_collect_to_vec(&got);
        let bad = got
            .iter()
            .zip(&init)
            .filter(|(g, i)| **g != i.wrapping_add(n))
            .count();
        if bad > 0 {
            return Err(err(
                "barrier benchmark check",
                format!(
                    "{bad} of {} values are not the data + {n} after {n} links",
                    init.len()
                ),
            ));
        }
        Ok(Some(out))
    }
}
