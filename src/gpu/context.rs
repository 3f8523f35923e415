use std::sync::{Arc, Mutex};

use super::{BufferPool, GpuError, PipelineCache};

/// What the caller may ask of the runtime.
#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    /// Run the f32 activation path even where `shader-f16` exists (for tests and comparisons).
    pub force_f32: bool,
    /// Never request subgroups (to test the portable kernels on an adapter that has them).
    pub no_subgroups: bool,
    /// Prefer a low-power adapter (laptops); the default asks for high performance.
    pub low_power: bool,
    /// Fail with [`GpuError::MissingFeature`] instead of falling back to f32 without `shader-f16`.
    pub require_f16: bool,
    /// Rows per lane group in the matrix–vector kernels (tuning knob; default 1, SwiGLU 2).
    pub gemv_rows: Option<u32>,
    /// Invocations per row in the int8 matrix–vector kernels (32 … 256, a power of two and a
    /// multiple of the subgroup size; tuning knob; default by shape, see `ops::gemv`).
    pub gemv_tpr: Option<u32>,
    /// Quantise x for the int8 products with the looping one-workgroup kernel (`gemv_xq`)
    /// instead of one block per invocation (`gemv_xq1`; for comparisons and tests). With a
    /// folded norm the two sum the squares in different orders, so results differ in the
    /// last bits.
    pub xq_loop: bool,
    /// The decode attention leaves the int8 quantisation of its output to the product after it
    /// (`gemv_xq`) instead of writing it itself (`ops::attn_decode_xq`; for comparisons).
    pub no_attn_xq: bool,
    /// The W_pack product leaves RoPE and the KV-cache append to a `rope_kv` dispatch after it
    /// instead of doing them in its own epilogue (`Epilogue::rope`; for comparisons).
    pub no_fused_rope: bool,
    /// A split-K product followed by a LayerNorm leaves the norm to a `layernorm` dispatch
    /// instead of its reduce pass (`Epilogue::layernorm`; for comparisons).
    pub no_fused_ln: bool,
    /// A q4/q8 product whose output feeds another one leaves its int8 quantisation to a
    /// `gemv_xq` dispatch instead of writing it itself (`Epilogue::xq_out`; for comparisons).
    pub no_fused_xqo: bool,
    /// Invocations per workgroup of the products that write their output as int8 x (256, 512
    /// or 1024; a tuning knob).
    pub xqo_wg: Option<u32>,
    /// RMSNorms stay a quantisation dispatch of their own before the product they feed instead
    /// of being deferred into it (`Epilogue::deferred_norm`; for comparisons).
    pub no_defer_norm: bool,
    /// Outputs per lane group of those products, 1 or 2 (a tuning knob).
    pub xqo_outs: Option<u32>,
    /// q4/q8 blocks in flight per lane in those products, 1 to 4 (a tuning knob; default by
    /// the blocks a lane has of a row: 3 where it has 3, else 2 from 4, 4 for q8 from 8, 1
    /// below 3).
    pub xqo_xu: Option<u32>,
    /// Keys per split of the decode attention with head dims a multiple of 4 (32 or 64;
    /// tuning knob; default 32 up to 1024 keys, 64 beyond).
    pub attn_decode_keys: Option<u32>,
    /// Force the tile of the matrix–matrix kernel (64 or 128; default: chosen by shape).
    pub gemm_tile: Option<u32>,
    /// Force the K slices of the 64-tile matrix–matrix kernel (1: never split; default:
    /// chosen by shape, see `ops::GEMM_SPLIT_TARGET`).
    pub gemm_split: Option<usize>,
    /// Force the query rows per workgroup of `attn_rows` (16, 32 or 64; default 64); 0 runs
    /// the general `attn_tiled` kernel instead, for comparisons.
    pub attn_rows_block: Option<u32>,
    /// Force the key-range splits of `attn_rows` (1 never splits; default by grid size).
    pub attn_splits: Option<u32>,
    /// q4/q8 matrix–vector products without int8 activations (dequantise and FMA instead).
    pub no_int8: bool,
    /// Keep naga's bounds checks in native shader code (the default skips them natively:
    /// see [`Caps::trusted_shaders`]; browsers always check).
    pub checked_shaders: bool,
    /// Time every dispatch and print a per-kernel table to stderr when the context drops
    /// (native; each dispatch gets its own pass, so overall timings change).
    pub profile: bool,
    /// Never use cooperative matrices (tensor cores) even where the adapter has them.
    pub no_coop: bool,
    /// The tensor-core product's K step, 32 or 64 (a tuning knob; default
    /// [`COOP_K_STEP`]).
    pub coop_k_step: Option<u32>,
    /// Which tensor-core kernel f16-weight products use (a tuning knob; default
    /// [`COOP_F16`]).
    pub coop_f16: Option<CoopF16>,
    /// Subgroups the f16-weight tensor-core products aim for through split-K (a tuning knob;
    /// defaults [`crate::ops::COOPB_SPLIT_TARGET`] and [`crate::ops::COOPD_SPLIT_TARGET`]).
    pub coop_split_target: Option<usize>,
    /// The direct tensor-core product's tile `[FN, GN, GM]`: (16·FN) × 64 per subgroup,
    /// GN × GM subgroups per workgroup (a tuning knob; default [`COOPD_SHAPE`]).
    pub coopd_shape: Option<[u32; 3]>,
    /// f16-weight tensor-core products of at most this many vectors (and convolutions with
    /// that many output frames) take the one-pass chunked kernel (`gemm_coops.wgsl`) instead
    /// of the split-K tile; 0 never (a knob; default [`COOPS_MAX_N`]).
    pub coops_max_n: Option<usize>,
    /// The same bound for convolutions (output frames; default: `coops_max_n`'s).
    pub coops_conv_max_n: Option<usize>,
    /// That kernel's `(SG, KS)`: 16·SG W rows per workgroup, KS subgroups sharing each
    /// block's K steps, SG·KS ≤ 4 (a tuning knob).
    pub coops_shape: Option<(u32, u32)>,
    /// Subgroups per workgroup of the tensor-core attention (`attn_coop.wgsl`), 1, 2 or 4:
    /// 16 query rows each (a tuning knob; default 4).
    pub attn_coop_sg: Option<u32>,
    /// The tensor-core attention loads each K/V tile when it starts on it instead of during
    /// the previous one (a knob for comparisons).
    pub no_attn_prefetch: bool,
    /// HiFT's F0, sine source and source STFT on the host, with a read-back of F0 (the earlier
    /// way; a knob for comparisons).
    pub host_source: bool,
    /// The decode attention always takes its split passes (`attn_decode_gqa` and the combine)
    /// instead of the one-pass kernel for short caches (`attn_decode_head`, up to
    /// `ops::ONE_PASS_MAX_KEYS` keys; a knob for comparisons).
    pub no_attn_one_pass: bool,
    /// The decode attention's GQA pass with 64-key splits (past 1024 keys) reduces through
    /// workgroup memory even where the adapter has subgroups (the portable pass; a knob for
    /// comparisons).
    pub no_attn_sg: bool,
    /// The LLM keeps gate and up as two products and a SwiGLU dispatch even where they can be
    /// one interleaved matrix (the path a GPU too small to bind the interleaved matrix takes;
    /// a knob for tests and comparisons).
    pub no_fused_mlp: bool,
    /// Request at most this `maxStorageBufferBindingSize` (and `maxBufferSize`) even where the
    /// adapter allows more: tests of what a smaller GPU does (the engine's own needs are
    /// still checked against the adapter).
    pub max_binding: Option<u64>,
}

/// The tensor-core kernel of products with f16 weights (q8/q4 always take `gemm_coop.wgsl`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum CoopF16 {
    /// `gemm_coop.wgsl`: 64 × 64 tiles staged through workgroup memory each K step.
    Staged,
    /// `gemm_coopd.wgsl`: fragments loaded straight from the buffers.
    Direct,
    /// `gemm_coopb.wgsl`: 128 × 128 tiles, double-buffered staging.
    Big,
}

/// The default of [`GpuOptions::coops_max_n`]: the flow U-Net's CFG pair at 2 s and 5 s (200
/// and 500 rows) takes it; at 10 s (1000 rows) the split-K 128 × 128 tile is faster
/// (BENCHMARKS.md, twelfth session).
pub const COOPS_MAX_N: usize = 512;

/// The default [`CoopF16`].
pub const COOP_F16: CoopF16 = CoopF16::Big;

/// The direct tensor-core product's default tile `[FN, GN, GM]` (see
/// [`GpuOptions::coopd_shape`]).
pub const COOPD_SHAPE: [u32; 3] = [4, 2, 2];

/// `coop_tile.wgsl`'s default K step (measured on an H100: 64 and 32 within 3 %, 64 ahead on
/// 30 s of audio in; fetching a step ahead into registers was 10–15 % slower, and was removed).
pub const COOP_K_STEP: u32 = 64;

/// Capabilities negotiated with the adapter; kernels pick their variant from these.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Caps {
    /// `shader-f16` enabled: f16 activations. Otherwise the portable f32 path.
    pub f16: bool,
    /// Subgroup operations enabled (native only with wgpu 30).
    pub subgroups: bool,
    /// Subgroup size when the adapter has one fixed size (min == max), else 0.
    pub subgroup_size: u32,
    /// Timestamp queries enabled (benchmarks and profiling).
    pub timestamps: bool,
    /// Kernel params are bound as read-only storage instead of uniform buffers. Set on CPU
    /// adapters: Mesa 22's lavapipe inlines uniform values into a freshly compiled shader
    /// variant at every dispatch of some kernels and never frees it (measured: 1.7 ms and
    /// ≈ 200 KB per gemv dispatch, 2 MB per decoded token of the tiny model; with storage
    /// params the same loop is 7.7× faster and flat). GPUs keep uniform buffers.
    pub params_in_storage: bool,
    /// Native shader modules are created without naga's inserted bounds checks (measured on
    /// an H100: attention 3.3×, small products 1.9× faster). Browsers keep their own checks.
    pub trusted_shaders: bool,
    /// Cooperative matrices (`wgpu_cooperative_matrix`: tensor cores through
    /// `VK_KHR_cooperative_matrix`) with 16×16×16 f16 inputs and f32 accumulators, on the f16
    /// path with 32-wide subgroups. Native only (wgpu's WebGPU backend has no such feature);
    /// the tiled products, the head-dim-64 attention and the RVQ scoring then run the `*_coop`
    /// kernels instead of the FMA ones.
    pub coop: bool,
}

/// Workgroup memory the cooperative-matrix product needs (its staging tiles).
pub(crate) const COOP_WG_STORAGE: u32 = 36864;
/// Workgroup memory of the 128 × 128 tensor-core tile (`gemm_coopb.wgsl`, 48 KB); adapters
/// with less take the direct tile instead (a kernel over the limit is not reported as an error
/// by the driver: its first dispatch never finished on an H100).
pub const COOPB_WG_STORAGE: u32 = 49152;

/// The adapter offers subgroup-scope 16×16×16 cooperative matrices with f16 A/B and f32 C.
fn coop_16x16_f16(adapter: &wgpu::Adapter) -> bool {
    adapter.cooperative_matrix_properties().iter().any(|p| {
        p.m_size == 16
            && p.n_size == 16
            && p.k_size == 16
            && p.ab_type == wgpu::CooperativeScalarType::F16
            && p.cr_type == wgpu::CooperativeScalarType::F32
    })
}

/// The limits we raised to the adapter's values (the rest stay at WebGPU defaults).
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct NegotiatedLimits {
    pub max_buffer_size: u64,
    pub max_storage_buffer_binding_size: u64,
    pub max_compute_workgroup_storage_size: u32,
    pub max_compute_invocations_per_workgroup: u32,
    pub max_compute_workgroup_size_x: u32,
    pub max_compute_workgroups_per_dimension: u32,
    pub max_storage_buffers_per_shader_stage: u32,
    pub min_storage_buffer_offset_alignment: u32,
}

/// Minimums below which no kernel of ours can run (WebGPU's defaults, which every
/// conformant adapter offers; a lower one means a broken or non-WebGPU adapter).
const NEED_INVOCATIONS: u32 = 256;
const NEED_WG_STORAGE: u32 = 16384;
const NEED_STORAGE_BUFFERS: u32 = 8;
const NEED_BINDING: u64 = 128 << 20;

/// Bytes of one param ring: ~1000 dispatches' params at a 256-byte alignment.
pub(crate) const RING_BYTES: u64 = 256 << 10;

#[derive(Default)]
pub(crate) struct ErrorSink {
    /// First uncaptured error since the last check (later ones are usually consequences).
    pub first: Option<GpuError>,
    /// Set once the device is lost; every later call fails with it.
    pub lost: Option<String>,
}

pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub caps: Caps,
    pub limits: NegotiatedLimits,
    pub pipelines: PipelineCache,
    pub pool: BufferPool,
    /// See [`GpuOptions::gemv_rows`].
    pub gemv_rows: Option<u32>,
    /// See [`GpuOptions::gemv_tpr`].
    pub gemv_tpr: Option<u32>,
    /// See [`GpuOptions::xq_loop`].
    pub xq_loop: bool,
    /// See [`GpuOptions::no_attn_xq`].
    pub no_attn_xq: bool,
    /// See [`GpuOptions::no_fused_rope`].
    pub no_fused_rope: bool,
    /// See [`GpuOptions::no_fused_ln`].
    pub no_fused_ln: bool,
    /// See [`GpuOptions::no_fused_xqo`].
    pub no_fused_xqo: bool,
    /// See [`GpuOptions::xqo_wg`].
    pub xqo_wg: Option<u32>,
    /// See [`GpuOptions::no_defer_norm`].
    pub no_defer_norm: bool,
    /// See [`GpuOptions::xqo_outs`].
    pub xqo_outs: Option<u32>,
    /// See [`GpuOptions::xqo_xu`].
    pub xqo_xu: Option<u32>,
    /// See [`GpuOptions::attn_decode_keys`].
    pub attn_decode_keys: Option<u32>,
    /// See [`GpuOptions::gemm_tile`].
    pub gemm_tile: Option<u32>,
    /// See [`GpuOptions::gemm_split`].
    pub gemm_split: Option<usize>,
    /// See [`GpuOptions::attn_rows_block`].
    pub attn_rows_block: Option<u32>,
    /// See [`GpuOptions::attn_splits`].
    pub attn_splits: Option<u32>,
    /// See [`GpuOptions::coop_k_step`] (resolved).
    pub coop_k_step: u32,
    /// See [`GpuOptions::coop_f16`] (resolved).
    pub coop_f16: CoopF16,
    /// See [`GpuOptions::coop_split_target`].
    pub coop_split_target: Option<usize>,
    /// See [`GpuOptions::coopd_shape`] (resolved).
    pub coopd_shape: [u32; 3],
    /// See [`GpuOptions::coops_max_n`] (resolved).
    pub coops_max_n: usize,
    /// See [`GpuOptions::coops_conv_max_n`] (resolved).
    pub coops_conv_max_n: usize,
    /// See [`GpuOptions::coops_shape`].
    pub coops_shape: Option<(u32, u32)>,
    /// See [`GpuOptions::attn_coop_sg`].
    pub attn_coop_sg: Option<u32>,
    /// See [`GpuOptions::no_attn_prefetch`].
    pub no_attn_prefetch: bool,
    /// See [`GpuOptions::host_source`].
    pub host_source: bool,
    /// See [`GpuOptions::no_attn_one_pass`].
    pub no_attn_one_pass: bool,
    /// See [`GpuOptions::no_attn_sg`].
    pub no_attn_sg: bool,
    /// See [`GpuOptions::no_fused_mlp`].
    pub no_fused_mlp: bool,
    /// q4/q8 decode products quantise x to int8 and use packed dot products (gemv_i8.wgsl).
    pub int8: bool,
    pub(crate) sink: Arc<Mutex<ErrorSink>>,
    /// A 16-byte storage buffer bound where an optional input (e.g. a bias) is absent.
    pub(crate) dummy: wgpu::Buffer,
    /// A second small buffer for unused *writable* bindings: browsers reject a dispatch that
    /// binds one buffer writable twice, or writable and read-only at once.
    pub(crate) dummy_rw: wgpu::Buffer,
    /// A third, for kernels with two optional writable outputs.
    pub(crate) dummy_rw2: wgpu::Buffer,
    /// Idle param rings of recorders without a bind cache (see [`super::Recorder::params`]).
    pub(crate) rings: Mutex<Vec<wgpu::Buffer>>,
    /// Offset alignment of a params slot in a ring (uniform and storage alignment, whichever
    /// is larger).
    pub(crate) param_align: u64,
    /// Per-kernel GPU times while profiling (benchmarks, native only).
    pub(crate) profile: Mutex<Option<super::recorder::Profile>>,
}

impl GpuContext {
    /// Finds an adapter, negotiates features and limits, and creates the device.
    pub async fn new(opts: &GpuOptions) -> Result<Self, GpuError> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: if opts.low_power {
                    wgpu::PowerPreference::LowPower
                } else {
                    wgpu::PowerPreference::HighPerformance
                },
                ..Default::default()
            })
            .await
            .map_err(|e| GpuError::NoAdapter(e.to_string()))?;
        Self::from_adapter(adapter, opts).await
    }

    pub async fn from_adapter(adapter: wgpu::Adapter, opts: &GpuOptions) -> Result<Self, GpuError> {
        let info = adapter.get_info();
        let have = adapter.features();
        let al = adapter.limits();
        // the shape knobs go into shader overrides whose arrays are sized for these values
        let pow2 = |v: u32| matches!(v, 1 | 2 | 4);
        if let Some((sg, ks)) = opts.coops_shape {
            if !pow2(sg) || !pow2(ks) || sg * ks > 4 {
                return Err(GpuError::BadOption(format!(
                    "coops_shape {sg}x{ks}: SG and KS each 1, 2 or 4, SG·KS ≤ 4"
                )));
            }
        }
        if let Some(sg) = opts.attn_coop_sg.filter(|v| !pow2(*v)) {
            return Err(GpuError::BadOption(format!("attn_coop_sg {sg}: 1, 2 or 4")));
        }
        if let Some([f, gn, gm]) = opts.coopd_shape {
            if !matches!(f, 2 | 4) || gn == 0 || gm == 0 || gn * gm > 4 {
                return Err(GpuError::BadOption(format!(
                    "coopd_shape {f}x{gn}x{gm}: FN 2 or 4, GN·GM ≤ 4"
                )));
            }
        }

        let check = |limit: &'static str, have: u64, need: u64| {
            if have < need {
                Err(GpuError::LimitTooLow { limit, have, need })
            } else {
                Ok(())
            }
        };
        check(
            "maxComputeInvocationsPerWorkgroup",
            al.max_compute_invocations_per_workgroup as u64,
            NEED_INVOCATIONS as u64,
        )?;
        check(
            "maxComputeWorkgroupSizeX",
            al.max_compute_workgroup_size_x as u64,
            NEED_INVOCATIONS as u64,
        )?;
        check(
            "maxComputeWorkgroupStorageSize",
            al.max_compute_workgroup_storage_size as u64,
            NEED_WG_STORAGE as u64,
        )?;
        check(
            "maxStorageBuffersPerShaderStage",
            al.max_storage_buffers_per_shader_stage as u64,
            NEED_STORAGE_BUFFERS as u64,
        )?;
        check(
            "maxStorageBufferBindingSize",
            al.max_storage_buffer_binding_size,
            NEED_BINDING,
        )?;

        if opts.require_f16 && !have.contains(wgpu::Features::SHADER_F16) {
            return Err(GpuError::MissingFeature {
                feature: "shader-f16",
                why: "the f16 activation path (run without requiring it to use the f32 path)",
            });
        }
        let mut features = wgpu::Features::empty();
        let f16 = !opts.force_f32 && have.contains(wgpu::Features::SHADER_F16);
        if f16 {
            features |= wgpu::Features::SHADER_F16;
        }
        let subgroups = !opts.no_subgroups && have.contains(wgpu::Features::SUBGROUP);
        if subgroups {
            features |= wgpu::Features::SUBGROUP;
        }
        let timestamps = have.contains(wgpu::Features::TIMESTAMP_QUERY);
        if timestamps {
            features |= wgpu::Features::TIMESTAMP_QUERY;
        }
        let fixed_sg = info.subgroup_min_size == info.subgroup_max_size;
        let coop = cfg!(not(target_arch = "wasm32"))
            && !opts.no_coop
            && f16
            && subgroups
            && fixed_sg
            && info.subgroup_min_size == 32
            && al.max_compute_workgroup_storage_size >= COOP_WG_STORAGE
            && have.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX)
            && coop_16x16_f16(&adapter);
        if coop {
            features |= wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX;
        }

        // Raise what the model needs to what the adapter offers; keep the rest at defaults.
        let limits = wgpu::Limits {
            max_buffer_size: opts
                .max_binding
                .map_or(al.max_buffer_size, |m| m.min(al.max_buffer_size)),
            max_storage_buffer_binding_size: opts
                .max_binding
                .map_or(al.max_storage_buffer_binding_size, |m| {
                    m.min(al.max_storage_buffer_binding_size)
                }),
            max_compute_workgroup_storage_size: al.max_compute_workgroup_storage_size,
            max_compute_invocations_per_workgroup: al.max_compute_invocations_per_workgroup,
            max_compute_workgroup_size_x: al.max_compute_workgroup_size_x,
            max_compute_workgroup_size_y: al.max_compute_workgroup_size_y,
            max_compute_workgroups_per_dimension: al.max_compute_workgroups_per_dimension,
            max_storage_buffers_per_shader_stage: al.max_storage_buffers_per_shader_stage,
            max_bindings_per_bind_group: al.max_bindings_per_bind_group,
            ..Default::default()
        };

        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("bca"),
                required_features: features,
                required_limits: limits.clone(),
                memory_hints: wgpu::MemoryHints::Performance,
                // SAFETY: the one experimental feature we may request is cooperative matrices,
                // used by the *_coop kernels and the f16 products' gemm_coopd/gemm_coopb only.
                // Their fragment loads and stores stay inside workgroup arrays of fixed size,
                // except gemm_coopd's loads from storage buffers, whose tiles are clamped inside
                // the matrices so that every fragment row lies in bounds. All of them are tested
                // against the CPU reference on ragged shapes.
                experimental_features: if coop {
                    unsafe { wgpu::ExperimentalFeatures::enabled() }
                } else {
                    wgpu::ExperimentalFeatures::disabled()
                },
                ..Default::default()
            })
            .await
            .map_err(|e| GpuError::RequestDevice(e.to_string()))?;

        let sink = Arc::new(Mutex::new(ErrorSink::default()));
        {
            let sink = sink.clone();
            device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
                if let Ok(mut s) = sink.lock() {
                    if s.first.is_none() {
                        s.first = Some(GpuError::from(e));
                    }
                }
            }));
        }
        {
            let sink = sink.clone();
            device.set_device_lost_callback(move |reason, msg| {
                if let Ok(mut s) = sink.lock() {
                    s.lost = Some(format!("{reason:?}: {msg}"));
                }
            });
        }

        let caps = Caps {
            f16,
            subgroups,
            subgroup_size: if subgroups && fixed_sg {
                info.subgroup_min_size
            } else {
                0
            },
            timestamps,
            params_in_storage: info.device_type == wgpu::DeviceType::Cpu,
            trusted_shaders: !opts.checked_shaders && cfg!(not(target_arch = "wasm32")),
            coop,
        };
        let dl = device.limits();
        let limits = NegotiatedLimits {
            max_buffer_size: dl.max_buffer_size,
            max_storage_buffer_binding_size: dl.max_storage_buffer_binding_size,
            max_compute_workgroup_storage_size: dl.max_compute_workgroup_storage_size,
            max_compute_invocations_per_workgroup: dl.max_compute_invocations_per_workgroup,
            max_compute_workgroup_size_x: dl.max_compute_workgroup_size_x,
            max_compute_workgroups_per_dimension: dl.max_compute_workgroups_per_dimension,
            max_storage_buffers_per_shader_stage: dl.max_storage_buffers_per_shader_stage,
            min_storage_buffer_offset_alignment: dl.min_storage_buffer_offset_alignment,
        };
        let dummy = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("dummy"),
            size: 16,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        let dummy_rw = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("dummy_rw"),
            size: 16,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        let dummy_rw2 = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("dummy_rw2"),
            size: 16,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        let mut ctx = GpuContext {
            device,
            queue,
            info,
            caps,
            limits,
            pipelines: PipelineCache::default(),
            pool: BufferPool::default(),
            gemv_rows: opts.gemv_rows,
            gemv_tpr: opts.gemv_tpr,
            xq_loop: opts.xq_loop,
            no_attn_xq: opts.no_attn_xq,
            no_fused_rope: opts.no_fused_rope,
            no_fused_ln: opts.no_fused_ln,
            no_fused_xqo: opts.no_fused_xqo,
            xqo_wg: opts.xqo_wg,
            no_defer_norm: opts.no_defer_norm,
            xqo_outs: opts.xqo_outs,
            xqo_xu: opts.xqo_xu,
            attn_decode_keys: opts.attn_decode_keys,
            gemm_tile: opts.gemm_tile,
            gemm_split: opts.gemm_split,
            attn_rows_block: opts.attn_rows_block,
            attn_splits: opts.attn_splits,
            coop_k_step: opts.coop_k_step.unwrap_or(COOP_K_STEP),
            coop_f16: opts.coop_f16.unwrap_or(COOP_F16),
            coop_split_target: opts.coop_split_target.map(|t| t.max(1)),
            coopd_shape: opts.coopd_shape.unwrap_or(COOPD_SHAPE),
            coops_max_n: opts.coops_max_n.unwrap_or(COOPS_MAX_N),
            coops_conv_max_n: opts
                .coops_conv_max_n
                .or(opts.coops_max_n)
                .unwrap_or(COOPS_MAX_N),
            coops_shape: opts.coops_shape,
            attn_coop_sg: opts.attn_coop_sg,
            no_attn_prefetch: opts.no_attn_prefetch,
            host_source: opts.host_source,
            no_attn_one_pass: opts.no_attn_one_pass,
            no_attn_sg: opts.no_attn_sg,
            no_fused_mlp: opts.no_fused_mlp,
            int8: !opts.no_int8,
            sink,
            dummy,
            dummy_rw,
            dummy_rw2,
            rings: Mutex::new(Vec::new()),
            profile: Mutex::new(None),
            param_align: u64::from(
                dl.min_uniform_buffer_offset_alignment
                    .max(dl.min_storage_buffer_offset_alignment)
                    .max(16),
            ),
        };
        if ctx.caps.coop {
            // A driver may advertise cooperative matrices and still fail to build our kernels:
            // build the product's default pipeline now (it is cached for later use) and fall
            // back to the portable kernels if that fails, instead of failing every product.
            if let Err(e) = crate::ops::probe_coop(&ctx) {
                eprintln!("warning: cooperative matrices advertised but unusable, not used: {e}");
                ctx.caps.coop = false;
            }
        }
        if opts.profile {
            ctx.profile_start()?;
        }
        Ok(ctx)
    }

    /// The activation dtype kernels use on this device.
    pub fn act(&self) -> super::ActDType {
        if self.caps.f16 {
            super::ActDType::F16
        } else {
            super::ActDType::F32
        }
    }

    /// Fails with the device-lost reason, or the first uncaptured error since the last call.
    pub fn check(&self) -> Result<(), GpuError> {
        let mut s = self
            .sink
            .lock()
            .map_err(|_| GpuError::Internal("error sink poisoned".into()))?;
        if let Some(reason) = &s.lost {
            return Err(GpuError::DeviceLost(reason.clone()));
        }
        match s.first.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Creates a storage buffer (with COPY_SRC/COPY_DST) initialised from `data`.
    /// The size is rounded up to 16 bytes so kernels may read whole `vec4`s.
    pub fn upload(&self, label: &str, data: &[u8]) -> wgpu::Buffer {
        let size = crate::util::round_up(data.len().max(16), 16) as u64;
        let buf = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_DST
                | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        // write_buffer needs a multiple of 4 bytes; pad the tail chunk
        let whole = data.len() / 4 * 4;
        if whole > 0 {
            self.queue.write_buffer(&buf, 0, &data[..whole]);
        }
        if whole < data.len() {
            let mut tail = [0u8; 4];
            tail[..data.len() - whole].copy_from_slice(&data[whole..]);
            self.queue.write_buffer(&buf, whole as u64, &tail);
        }
        buf
    }

    /// Starts timing every dispatch (each gets a compute pass with timestamp writes, and each
    /// submit waits for its timestamps: for profiles, not for speed). Native only.
    pub fn profile_start(&self) -> Result<(), GpuError> {
        if !self.caps.timestamps || cfg!(target_arch = "wasm32") {
            return Err(GpuError::MissingFeature {
                feature: "timestamp-query",
                why: "profiling",
            });
        }
        if let Ok(mut p) = self.profile.lock() {
            *p = Some(Default::default());
        }
        Ok(())
    }

    /// Stops profiling and returns what was measured since [`Self::profile_start`].
    pub fn profile_take(&self) -> Option<super::recorder::Profile> {
        self.profile.lock().ok().and_then(|mut p| p.take())
    }

    pub(crate) fn profiling(&self) -> bool {
        self.profile.lock().map(|p| p.is_some()).unwrap_or(false)
    }

    /// Reads `n` dispatches' resolved timestamps and adds them to the profile.
    pub(crate) fn record_profile(
        &self,
        resolved: &wgpu::Buffer,
        n: usize,
        names: &[String],
    ) -> Result<(), GpuError> {
        #[cfg(not(target_arch = "wasm32"))]
        {
            let per = 2 * super::recorder::PROF_PER_SET;
            let bytes = pollster::block_on(super::read_buffer(self, resolved, 0, resolved.size()))?;
            let ts: Vec<u64> = bytemuck::pod_collect_to_vec(&bytes);
            let period = f64::from(self.queue.get_timestamp_period());
            if let Ok(mut guard) = self.profile.lock() {
                if let Some(p) = guard.as_mut() {
                    for (i, name) in names.iter().enumerate().take(n) {
                        let at = (i / super::recorder::PROF_PER_SET) * per
                            + 2 * (i % super::recorder::PROF_PER_SET);
                        let ns = ts[at + 1].saturating_sub(ts[at]) as f64 * period;
                        let e = p.kernels.entry(name.clone()).or_insert((0, 0.0));
                        e.0 += 1;
                        e.1 += ns;
                    }
                }
            }
        }
        #[cfg(target_arch = "wasm32")]
        let _ = (resolved, n, names);
        Ok(())
    }

    /// A param ring of [`RING_BYTES`] from the idle ones in `pool` (the context's
    /// [`Self::rings`], or a bind cache's own), or a new one.
    pub(crate) fn take_ring(&self, pool: &Mutex<Vec<wgpu::Buffer>>) -> wgpu::Buffer {
        if let Some(b) = pool.lock().ok().and_then(|mut r| r.pop()) {
            return b;
        }
        let kind = if self.caps.params_in_storage {
            wgpu::BufferUsages::STORAGE
        } else {
            wgpu::BufferUsages::UNIFORM
        };
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("params.ring"),
            size: RING_BYTES,
            usage: kind | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// Gives rings back once their contents are written and submitted (or never will be).
    /// Queue order makes reuse safe: a later recorder's `write_buffer` runs after every
    /// earlier submission has read the ring.
    pub(crate) fn return_rings(
        pool: &Mutex<Vec<wgpu::Buffer>>,
        rings: impl IntoIterator<Item = wgpu::Buffer>,
    ) {
        if let Ok(mut r) = pool.lock() {
            r.extend(rings);
        }
    }

    /// A storage buffer of `size` bytes (rounded up to 16), contents undefined.
    pub fn storage(&self, label: &str, size: u64) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: size.max(16).div_ceil(16) * 16,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_DST
                | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        })
    }

    /// A plain-text report of the adapter and what was negotiated (`bca info`, the web page).
    pub fn report(&self) -> serde_json::Value {
        serde_json::json!({
            "adapter": self.info.name,
            "backend": format!("{:?}", self.info.backend),
            "device_type": format!("{:?}", self.info.device_type),
            "driver": self.info.driver,
            "driver_info": self.info.driver_info,
            "vendor": format!("0x{:04x}", self.info.vendor),
            "device": format!("0x{:04x}", self.info.device),
            "features": {
                "shader_f16": self.caps.f16,
                "subgroups": self.caps.subgroups,
                "subgroup_size": self.caps.subgroup_size,
                "timestamp_query": self.caps.timestamps,
                "shader_bounds_checks": !self.caps.trusted_shaders,
                "cooperative_matrix": self.caps.coop,
            },
            "activation_dtype": self.act().name(),
            "limits": self.limits,
        })
    }
}

impl Drop for GpuContext {
    fn drop(&mut self) {
        let Some(p) = self.profile_take() else {
            return;
        };
        let rows = p.table();
        let total: f64 = rows.iter().map(|r| r.2).sum();
        eprintln!("GPU profile: {total:.3} ms of kernel time over all profiled dispatches");
        eprintln!(
            "{:>10} {:>9} {:>7} {:>9}  kernel",
            "ms", "calls", "share", "µs/call"
        );
        for (name, n, ms, share) in rows {
            eprintln!(
                "{ms:>10.3} {n:>9} {:>6.1}% {:>9.2}  {name}",
                share * 100.0,
                ms * 1e3 / n.max(1) as f64
            );
        }
    }
}
