//! One store of model weights for every stage.
//!
//! Rule: tensors with role `Linear` or `Embedding` (2-D, possibly huge) live on the GPU as
//! [`Matrix`] parts (row ranges, each within one storage binding); conv kernels and codebooks
//! ([`is_gpu_raw`]) live on the GPU in their checkpoint layout ([`RawTensor`]) and stages lay
//! them out there (`ops::relayout`); the rest (norms, biases, positional tables, HiFT's two
//! small linears) is small and kept as host f32 ([`HostTensor`]).
//!
//! Natively [`Weights::open`] reads an HF folder (bf16 safetensors + `hift.pt`) or a converted
//! web folder (`manifest.json` + shards) and uploads matrices lazily on first use. The browser
//! loader fills the same store with [`Weights::insert_matrix`] / [`Weights::insert_host`] as
//! shards stream in.

use std::cell::RefCell;
use std::collections::HashMap;

use crate::gpu::{GpuContext, GpuError};
use crate::ops::OpError;
use crate::tensor::{Matrix, RawTensor, Tensor, WeightFormat};
use crate::weights::spec::{model_tensors, Role};
use crate::weights::{OmniConfig, WeightError};

/// Everything that can go wrong building or running a model stage.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Weights(#[from] WeightError),
    #[error(transparent)]
    Op(#[from] OpError),
    #[error(transparent)]
    Gpu(#[from] GpuError),
    #[error("{0}")]
    Input(String),
}

impl ModelError {
    pub fn input(msg: impl Into<String>) -> Self {
        ModelError::Input(msg.into())
    }
}

/// A small tensor kept on the host as f32.
#[derive(Clone, Debug)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// A row range of a (possibly split) matrix.
pub struct MatrixPart {
    pub row_start: usize,
    pub matrix: Matrix,
}

#[cfg(not(target_arch = "wasm32"))]
enum Backing {
    Hf(
        crate::weights::safetensors::SafetensorsSource,
        HashMap<String, HostTensor>,
    ),
    Web(Box<crate::weights::convert::WebSource>),
}

/// The weight store of one model.
pub struct Weights {
    pub config: OmniConfig,
    /// Format used for matrices that arrive unquantised (HF bf16 folder): f16, q8 or q4.
    pub format: WeightFormat,
    roles: HashMap<String, (Role, Vec<usize>)>,
    matrices: RefCell<HashMap<String, std::rc::Rc<Vec<MatrixPart>>>>,
    host: RefCell<HashMap<String, std::rc::Rc<HostTensor>>>,
    raw: RefCell<HashMap<String, std::rc::Rc<RawTensor>>>,
    /// The RVQ codebooks laid out for the kernels, shared by the bridge and the decoder.
    codebooks: RefCell<Option<std::rc::Rc<crate::ops::Codebooks>>>,
    /// Matrices [`Weights::matrix`] joined from row parts → the first rows of those parts.
    joined: RefCell<HashMap<String, Vec<usize>>>,
    #[cfg(not(target_arch = "wasm32"))]
    backing: Option<Backing>,
}

/// Whether tensors of `role` are stored as GPU matrices (else host f32).
pub fn is_matrix(role: Role) -> bool {
    matches!(role, Role::Linear | Role::Embedding)
}

/// Whether a non-matrix tensor of `role` is kept on the GPU in its checkpoint layout
/// ([`RawTensor`]) by the streaming loader: conv kernels and codebooks, the bulk of the
/// non-matrix bytes (≈ 700 MiB as f32 in the real model), which stages lay out on the GPU.
pub fn is_gpu_raw(role: Role) -> bool {
    matches!(role, Role::Conv | Role::Codebook)
}

impl Weights {
    /// An empty store for `config` (the browser loader inserts into it).
    pub fn empty(config: OmniConfig, format: WeightFormat) -> Self {
        let roles = model_tensors(&config)
            .into_iter()
            .map(|s| (s.name, (s.role, s.shape)))
            .collect();
        Weights {
            config,
            format,
            roles,
            matrices: RefCell::new(HashMap::new()),
            host: RefCell::new(HashMap::new()),
            raw: RefCell::new(HashMap::new()),
            codebooks: RefCell::new(None),
            joined: RefCell::new(HashMap::new()),
            #[cfg(not(target_arch = "wasm32"))]
            backing: None,
        }
    }

    /// Opens an HF folder (`config.json` + safetensors + `hift.pt`) or a converted web folder
    /// (`manifest.json`). Both are validated first (`bca check` rules).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(dir: &std::path::Path, format: WeightFormat) -> Result<Self, ModelError> {
        use crate::weights::convert::{load_hift, manifest_config, WebSource};
        use crate::weights::safetensors::SafetensorsSource;
        if dir.join("manifest.json").exists() {
            let web = WebSource::open(dir)?;
            let cfg = manifest_config(&web.manifest)?;
            let mut w = Weights::empty(cfg, format);
            w.backing = Some(Backing::Web(Box::new(web)));
            Ok(w)
        } else {
            let summary = crate::weights::check::check_hf(dir)?;
            let src = SafetensorsSource::open_dir(dir)?;
            let (_, hift) = load_hift(&dir.join("hift.pt"))?;
            let hift = hift
                .into_iter()
                .map(|t| {
                    (
                        t.name,
                        HostTensor {
                            shape: t.shape,
                            data: t.data,
                        },
                    )
                })
                .collect();
            let mut w = Weights::empty(summary.config, format);
            w.backing = Some(Backing::Hf(src, hift));
            Ok(w)
        }
    }

    /// Fills an empty store from a converted model held in memory: the manifest and the bytes
    /// of its shards (tests and the simple browser path; the streaming loader uploads part by
    /// part instead). Matrices go to the GPU; everything else is kept as host f32.
    pub fn from_manifest(
        ctx: &GpuContext,
        manifest: &crate::weights::manifest::Manifest,
        shards: &[&[u8]],
    ) -> Result<Self, ModelError> {
        use crate::weights::dtype::{self, DType};
        use crate::weights::manifest::{parse_format, row_elems, Span};
        use crate::weights::spec::Format;
        let cfg = OmniConfig::from_value(manifest.config.clone(), "manifest.json")
            .map_err(WeightError::from)?;
        let format = match manifest.quant.as_str() {
            "q4" => WeightFormat::Q4,
            "q8" => WeightFormat::Q8,
            _ => WeightFormat::F16,
        };
        let store = Weights::empty(cfg, format);
        let span = |name: &str, s: &Span| -> Result<&[u8], ModelError> {
            shards
                .get(s.shard)
                .and_then(|b| b.get(s.offset as usize..(s.offset + s.length) as usize))
                .ok_or_else(|| {
                    WeightError::Manifest {
                        file: "manifest.json".into(),
                        msg: format!("{name}: span {s:?} outside its shard"),
                    }
                    .into()
                })
        };
        for e in &manifest.tensors {
            let name = e.name.as_str();
            let fmt = parse_format(&e.format).ok_or_else(|| WeightError::UnknownFormat {
                name: name.into(),
                format: e.format.clone(),
            })?;
            let cols = row_elems(&e.shape);
            let as_matrix = store
                .roles
                .get(name)
                .map(|(r, _)| is_matrix(*r))
                .unwrap_or(false)
                || matches!(fmt, Format::Q8 | Format::Q4);
            if as_matrix {
                let mut parts = Vec::new();
                for p in &e.parts {
                    let rows = p.rows[1] - p.rows[0];
                    let data = span(name, &p.data)?;
                    let matrix = match fmt {
                        Format::Q8 | Format::Q4 => {
                            let sc = p.scales.as_ref().ok_or_else(|| WeightError::Manifest {
                                file: "manifest.json".into(),
                                msg: format!("{name}: quantised part without scales"),
                            })?;
                            let data = ctx.upload(name, data);
                            let scales = ctx.upload(name, span(name, sc)?);
                            if fmt == Format::Q8 {
                                Matrix::Q8 {
                                    data,
                                    scales,
                                    rows,
                                    cols,
                                }
                            } else {
                                Matrix::Q4 {
                                    data,
                                    scales,
                                    rows,
                                    cols,
                                }
                            }
                        }
                        Format::F16 => {
                            let v = dtype::to_f32(DType::F16, data);
                            Matrix::f16_from_f32(ctx, name, rows, cols, &v)
                        }
                        Format::F32 => {
                            let v = dtype::to_f32(DType::F32, data);
                            Matrix::f16_from_f32(ctx, name, rows, cols, &v)
                        }
                    };
                    parts.push(MatrixPart {
                        row_start: p.rows[0],
                        matrix,
                    });
                }
                store.insert_matrix(name, parts);
            } else {
                let dt = if fmt == Format::F16 {
                    DType::F16
                } else {
                    DType::F32
                };
                let mut data = Vec::new();
                for p in &e.parts {
                    data.extend(dtype::to_f32(dt, span(name, &p.data)?));
                }
                store.insert_host(
                    name,
                    HostTensor {
                        shape: e.shape.clone(),
                        data,
                    },
                );
            }
        }
        Ok(store)
    }

    /// Shape of tensor `name` as the config implies it (None: not a tensor of this model).
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.roles.get(name).map(|(_, s)| s.as_slice())
    }

    /// Registers a matrix uploaded by a loader (parts sorted by first row), in place of any
    /// earlier one of that name.
    pub fn insert_matrix(&self, name: &str, parts: Vec<MatrixPart>) {
        self.joined.borrow_mut().remove(name);
        self.matrices
            .borrow_mut()
            .insert(name.to_string(), std::rc::Rc::new(parts));
    }

    /// A matrix a stage derived from checkpoint matrices (re-laid out) and registered with
    /// [`Weights::insert_derived`]: a second load of the stage (a new conversation on the same
    /// model) finds it after the sources were evicted.
    pub fn derived(&self, key: &str) -> Option<Matrix> {
        self.matrices
            .borrow()
            .get(key)
            .and_then(|p| p.first().map(|p| p.matrix.clone()))
    }

    /// Registers a derived matrix under `key` (not a checkpoint name).
    pub fn insert_derived(&self, key: &str, m: Matrix) {
        self.insert_matrix(
            key,
            vec![MatrixPart {
                row_start: 0,
                matrix: m,
            }],
        );
    }

    /// Drops the store's reference to a matrix (a stage that re-laid it out keeps its own
    /// copy; the GPU memory goes when the last clone does).
    pub fn evict(&self, name: &str) {
        self.joined.borrow_mut().remove(name);
        self.matrices.borrow_mut().remove(name);
    }

    /// Registers a small host tensor read by a loader.
    pub fn insert_host(&self, name: &str, t: HostTensor) {
        self.host
            .borrow_mut()
            .insert(name.to_string(), std::rc::Rc::new(t));
    }

    /// Registers a raw GPU tensor streamed in by a loader.
    pub fn insert_raw(&self, name: &str, t: RawTensor) {
        self.raw
            .borrow_mut()
            .insert(name.to_string(), std::rc::Rc::new(t));
    }

    /// A non-matrix tensor on the GPU in its checkpoint layout (conv kernels, codebooks): as
    /// the streaming loader left it, else uploaded once from the host copy.
    pub fn raw(&self, ctx: &GpuContext, name: &str) -> Result<std::rc::Rc<RawTensor>, ModelError> {
        if let Some(t) = self.raw.borrow().get(name) {
            return Ok(t.clone());
        }
        let held = self.host.borrow().get(name).cloned();
        let t = match held {
            Some(h) => RawTensor::from_f32(ctx, name, &h.shape, &h.data),
            None => {
                let h = self.load_host(name)?;
                RawTensor::from_f32(ctx, name, &h.shape, &h.data)
            }
        };
        let t = std::rc::Rc::new(t);
        self.raw.borrow_mut().insert(name.to_string(), t.clone());
        Ok(t)
    }

    /// The bridge's 8 RVQ codebooks `(N_i, P·d)` in one f32 GPU buffer with their norms
    /// (`Codebooks::from_raw`, once; the bridge and the audio decoder share it).
    pub fn rvq_codebooks(
        &self,
        ctx: &GpuContext,
    ) -> Result<std::rc::Rc<crate::ops::Codebooks>, ModelError> {
        if let Some(c) = self.codebooks.borrow().as_ref() {
            return Ok(c.clone());
        }
        const P: &str = super::audio_in::Bridge::PREFIX;
        let a = &self.config.audio;
        let big = a.d_model * a.avg_pooler;
        let sizes = &a.vq_config.codebook_sizes;
        let mut levels = Vec::new();
        for (i, &n) in sizes.iter().enumerate() {
            let name = format!("{P}.vq_list.{i}.codebook.embed");
            let c = self.raw(ctx, &name)?;
            if c.shape != [n, big] {
                return Err(ModelError::input(format!(
                    "{name} is {:?}, want [{n}, {big}]",
                    c.shape
                )));
            }
            levels.push(c);
        }
        let refs: Vec<&RawTensor> = levels.iter().map(|c| c.as_ref()).collect();
        let mut rec = crate::gpu::Recorder::new(ctx, "rvq.codebooks");
        let cb = crate::ops::Codebooks::from_raw(&mut rec, "rvq.codebooks", &refs)?;
        rec.submit()?;
        let cb = std::rc::Rc::new(cb);
        *self.codebooks.borrow_mut() = Some(cb.clone());
        Ok(cb)
    }

    /// Host f32 copy of a small tensor (norm, bias, positional table, HiFT linear …).
    pub fn host(&self, name: &str) -> Result<std::rc::Rc<HostTensor>, ModelError> {
        if let Some(t) = self.host.borrow().get(name) {
            return Ok(t.clone());
        }
        if cfg!(target_arch = "wasm32") && self.raw.borrow().contains_key(name) {
            return Err(ModelError::input(format!(
                "{name} is kept on the GPU (read it with Weights::raw)"
            )));
        }
        let t = std::rc::Rc::new(self.load_host(name)?);
        self.host.borrow_mut().insert(name.to_string(), t.clone());
        Ok(t)
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn load_host(&self, name: &str) -> Result<HostTensor, ModelError> {
        use crate::weights::WeightSource;
        let missing = || WeightError::MissingTensor { name: name.into() };
        match &self.backing {
            Some(Backing::Hf(src, hift)) => {
                if let Some(t) = hift.get(name) {
                    return Ok(t.clone());
                }
                let info = src.info(name).ok_or_else(missing)?;
                Ok(HostTensor {
                    shape: info.shape,
                    data: src.read_f32(name)?,
                })
            }
            Some(Backing::Web(web)) => {
                let e = web.entry(name).ok_or_else(missing)?;
                Ok(HostTensor {
                    shape: e.shape.clone(),
                    data: web.read_f32(name)?,
                })
            }
            None => Err(missing().into()),
        }
    }

    #[cfg(target_arch = "wasm32")]
    fn load_host(&self, name: &str) -> Result<HostTensor, ModelError> {
        Err(WeightError::MissingTensor { name: name.into() }.into())
    }

    /// All row parts of a matrix (the LM head and embeddings of the real model are split).
    pub fn matrix_parts(
        &self,
        ctx: &GpuContext,
        name: &str,
    ) -> Result<std::rc::Rc<Vec<MatrixPart>>, ModelError> {
        if let Some(m) = self.matrices.borrow().get(name) {
            return Ok(m.clone());
        }
        let m = std::rc::Rc::new(self.load_matrix(ctx, name)?);
        self.matrices
            .borrow_mut()
            .insert(name.to_string(), m.clone());
        Ok(m)
    }

    /// A matrix read in one storage binding (all but the vocabulary tables and the audio
    /// head's FFN, which go through [`Weights::matrix_parts`]). One stored in row parts (a
    /// conversion whose `--max-binding` is below its size: the real model's gate/up/down at
    /// f16 and the default 128 MiB) is joined on the GPU into one buffer, where the device
    /// binds that much, and its parts are dropped; [`Weights::digest`] still hashes it part by
    /// part as `bca check --digests` does.
    pub fn matrix(&self, ctx: &GpuContext, name: &str) -> Result<Matrix, ModelError> {
        let parts = self.matrix_parts(ctx, name)?;
        if let [one] = parts.as_slice() {
            return Ok(one.matrix.clone());
        }
        let whole = join_parts(ctx, name, &parts)?;
        let starts = parts.iter().map(|p| p.row_start).collect();
        drop(parts);
        self.insert_matrix(
            name,
            vec![MatrixPart {
                row_start: 0,
                matrix: whole.clone(),
            }],
        );
        self.joined.borrow_mut().insert(name.to_string(), starts);
        Ok(whole)
    }

    /// Small tensor uploaded as an activation-dtype tensor (biases, norm weights).
    pub fn tensor(&self, ctx: &GpuContext, name: &str) -> Result<Tensor, ModelError> {
        let h = self.host(name)?;
        Ok(Tensor::from_f32(ctx, name, &h.shape, &h.data))
    }

    /// Small tensor uploaded as raw f32 (what fused-norm epilogues and norms read).
    pub fn f32_buffer(&self, ctx: &GpuContext, name: &str) -> Result<wgpu::Buffer, ModelError> {
        let h = self.host(name)?;
        Ok(ctx.upload(name, bytemuck::cast_slice(&h.data)))
    }

    /// A convolution's bias (f32, and cast once to the activation dtype).
    pub fn conv_bias(
        &self,
        ctx: &GpuContext,
        name: &str,
    ) -> Result<crate::ops::ConvBias, ModelError> {
        let h = self.host(name)?;
        let mut rec = crate::gpu::Recorder::new(ctx, "conv bias");
        let b = crate::ops::ConvBias::upload(&mut rec, name, &h.data)?;
        rec.submit()?;
        Ok(b)
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn load_matrix(&self, ctx: &GpuContext, name: &str) -> Result<Vec<MatrixPart>, ModelError> {
        use crate::weights::manifest::{parse_format, row_elems};
        use crate::weights::spec::Format;
        let missing = || WeightError::MissingTensor { name: name.into() };
        if let Some((role, _)) = self.roles.get(name) {
            if !is_matrix(*role) {
                return Err(ModelError::input(format!(
                    "{name} is a {role:?} tensor, not a matrix"
                )));
            }
        }
        match &self.backing {
            Some(Backing::Web(web)) => {
                let e = web.entry(name).ok_or_else(missing)?;
                let cols = row_elems(&e.shape);
                match parse_format(&e.format) {
                    Some(Format::Q8) | Some(Format::Q4) => {
                        let q8 = parse_format(&e.format) == Some(Format::Q8);
                        let parts = web.quant_parts(name)?;
                        Ok(e.parts
                            .iter()
                            .zip(parts)
                            .map(|(p, q)| {
                                let data = ctx.upload(name, bytemuck::cast_slice(&q.data));
                                let scales = ctx.upload(name, bytemuck::cast_slice(&q.scales));
                                let matrix = if q8 {
                                    Matrix::Q8 {
                                        data,
                                        scales,
                                        rows: q.rows,
                                        cols,
                                    }
                                } else {
                                    Matrix::Q4 {
                                        data,
                                        scales,
                                        rows: q.rows,
                                        cols,
                                    }
                                };
                                MatrixPart {
                                    row_start: p.rows[0],
                                    matrix,
                                }
                            })
                            .collect())
                    }
                    Some(_) => {
                        let all = web.read_f32(name)?;
                        let mut out = Vec::new();
                        for p in &e.parts {
                            let rows = p.rows[1] - p.rows[0];
                            let vals = all
                                .get(p.rows[0] * cols..p.rows[1] * cols)
                                .ok_or_else(missing)?;
                            out.push(MatrixPart {
                                row_start: p.rows[0],
                                matrix: Matrix::f16_from_f32(ctx, name, rows, cols, vals),
                            });
                        }
                        Ok(out)
                    }
                    None => Err(WeightError::UnknownFormat {
                        name: name.into(),
                        format: e.format.clone(),
                    }
                    .into()),
                }
            }
            Some(Backing::Hf(..)) => {
                let h = self.load_host(name)?;
                // Embedding tables are gathered from f16 (as in the web format); the rest
                // takes the requested format.
                let fmt = match self.roles.get(name) {
                    Some((Role::Embedding, _)) => WeightFormat::F16,
                    _ => self.format,
                };
                let rows = h.shape.first().copied().unwrap_or(1);
                let cols = h.data.len() / rows.max(1);
                // Same row split as `bca convert` so big tables fit one binding.
                let max = ctx.limits.max_storage_buffer_binding_size;
                let bytes_per_row = (cols as u64 * 2).max(1);
                let rows_per = ((max / bytes_per_row) as usize).clamp(1, rows.max(1));
                let mut out = Vec::new();
                let mut r0 = 0;
                while r0 < rows {
                    let r1 = (r0 + rows_per).min(rows);
                    out.push(MatrixPart {
                        row_start: r0,
                        matrix: Matrix::from_f32(
                            ctx,
                            name,
                            r1 - r0,
                            cols,
                            &h.data[r0 * cols..r1 * cols],
                            fmt,
                        ),
                    });
                    r0 = r1;
                }
                Ok(out)
            }
            None => Err(missing().into()),
        }
    }

    #[cfg(target_arch = "wasm32")]
    fn load_matrix(&self, _ctx: &GpuContext, name: &str) -> Result<Vec<MatrixPart>, ModelError> {
        Err(WeightError::MissingTensor { name: name.into() }.into())
    }
}

/// One matrix from its row parts, copied on the GPU into buffers of the whole
/// ([`Weights::matrix`]). Refuses parts that do not tile the rows in order with one layout,
/// and a whole the device cannot bind.
fn join_parts(ctx: &GpuContext, name: &str, parts: &[MatrixPart]) -> Result<Matrix, ModelError> {
    let bad = |why: String| ModelError::input(format!("{name}: row parts {why}"));
    let Some(first) = parts.first().map(|p| &p.matrix) else {
        return Err(bad("missing (none stored)".into()));
    };
    let mut rows = 0;
    let mut at = Vec::with_capacity(parts.len());
    for p in parts {
        let m = &p.matrix;
        if m.format() != first.format()
            || m.cols() != first.cols()
            || m.blocks_per_row() != first.blocks_per_row()
        {
            return Err(bad(format!(
                "differ in layout ({} {}×{} after {} {}×{})",
                m.format(),
                m.rows(),
                m.cols(),
                first.format(),
                first.rows(),
                first.cols()
            )));
        }
        if p.row_start != rows {
            return Err(bad(format!(
                "do not tile the rows: a part starts at row {} after {rows} rows",
                p.row_start
            )));
        }
        at.push(first.row_offsets(rows).ok_or_else(|| {
            bad(format!(
                "cannot be joined: q8 scales of a part starting at row {rows} begin mid-word \
                 (convert again with this build, which keeps q8 parts word-aligned)"
            ))
        })?);
        rows += m.rows();
    }
    let cols = first.cols();
    let (data, scales) = (
        parts.iter().map(|p| p.matrix.data_bytes()).sum::<u64>(),
        parts.iter().map(|p| p.matrix.scale_bytes()).sum::<u64>(),
    );
    let (limit, which) = crate::weights::manifest::binding_limit(
        ctx.limits.max_storage_buffer_binding_size,
        ctx.limits.max_buffer_size,
    );
    if data.max(scales) > limit {
        let e =
            crate::weights::manifest::joined_too_big(name, rows, data.max(scales), limit, which);
        return Err(e.into());
    }
    let whole = match first {
        Matrix::F16 { stride, .. } => Matrix::F16 {
            buf: ctx.storage(name, data),
            rows,
            cols,
            stride: *stride,
        },
        Matrix::Q8 { .. } => Matrix::Q8 {
            data: ctx.storage(name, data),
            scales: ctx.storage(name, scales),
            rows,
            cols,
        },
        Matrix::Q4 { .. } => Matrix::Q4 {
            data: ctx.storage(name, data),
            scales: ctx.storage(name, scales),
            rows,
            cols,
        },
    };
    let mut rec = crate::gpu::Recorder::new(ctx, "join row parts");
    let enc = rec.encoder()?;
    for (p, (d, s)) in parts.iter().zip(at) {
        let m = &p.matrix;
        enc.copy_buffer_to_buffer(m.data(), 0, whole.data(), d, m.data_bytes());
        if let (Some(from), Some(to)) = (m.scales(), whole.scales()) {
            enc.copy_buffer_to_buffer(from, 0, to, s, m.scale_bytes());
        }
    }
    rec.submit()?;
    Ok(whole)
}

/// Bytes read back at once by [`Weights::digest`].
const DIGEST_CHUNK: usize = 4 << 20;

impl Weights {
    /// SHA-256 (hex) of tensor `name` as the store holds it, matrices read back from the GPU:
    /// `data ‖ scales` of every part (f16 rows without their padding), host tensors as f32
    /// little-endian. Equals `bca check --digests` of the converted folder when the load was
    /// bit-exact.
    pub async fn digest(&self, ctx: &GpuContext, name: &str) -> Result<String, ModelError> {
        use crate::gpu::read_buffer;
        use crate::weights::manifest::digest_f32;
        use sha2::{Digest, Sha256};
        let raw = self.raw.borrow().get(name).cloned();
        if let Some(t) = raw {
            return raw_digest(ctx, &t).await;
        }
        let is_mat = self.matrices.borrow().contains_key(name)
            || self.roles.get(name).is_some_and(|(r, _)| is_matrix(*r));
        if !is_mat {
            return Ok(digest_f32(&self.host(name)?.data));
        }
        let parts = self.matrix_parts(ctx, name)?;
        // the stored parts' row ranges, also of a matrix joined from them
        let mut segments = Vec::new();
        for p in parts.iter() {
            let rows = p.matrix.rows();
            match self.joined.borrow().get(name) {
                Some(starts) => {
                    let ends = starts.iter().skip(1).copied().chain([rows]);
                    segments.extend(starts.iter().zip(ends).map(|(&a, b)| (&p.matrix, a, b)));
                }
                None => segments.push((&p.matrix, 0, rows)),
            }
        }
        let mut h = Sha256::new();
        for (m, r0, r1) in segments {
            match m {
                Matrix::F16 {
                    buf, cols, stride, ..
                } => {
                    // in slices of rows, so wasm memory never holds a whole large matrix
                    let per = (DIGEST_CHUNK / (stride * 2)).max(1);
                    let mut r = r0;
                    while r < r1 {
                        let n = per.min(r1 - r);
                        let off = (r * stride * 2) as u64;
                        let b = read_buffer(ctx, buf, off, (n * stride * 2) as u64).await?;
                        for i in 0..n {
                            h.update(&b[i * stride * 2..(i * stride + cols) * 2]);
                        }
                        r += n;
                    }
                }
                Matrix::Q8 { data, scales, .. } | Matrix::Q4 { data, scales, .. } => {
                    // the rows' bytes as one part of them stores them (q8: the scales of a
                    // part's last odd block fill a word)
                    let end = if r1 == m.rows() {
                        Some((m.data_bytes(), m.scale_bytes()))
                    } else {
                        m.row_offsets(r1)
                    };
                    let (Some((d0, s0)), Some((d1, s1))) = (m.row_offsets(r0), end) else {
                        return Err(ModelError::input(format!(
                            "{name}: a part boundary splits a q8 scale word"
                        )));
                    };
                    for (b, o0, o1) in [(data, d0, d1), (scales, s0, s1)] {
                        let mut o = o0;
                        while o < o1 {
                            let n = (DIGEST_CHUNK as u64).min(o1 - o);
                            h.update(read_buffer(ctx, b, o, n).await?);
                            o += n;
                        }
                    }
                }
            }
        }
        Ok(hex::encode(h.finalize()))
    }

    /// Names of every tensor in the store (loaded so far).
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.matrices.borrow().keys().cloned().collect();
        v.extend(self.host.borrow().keys().cloned());
        v.extend(self.raw.borrow().keys().cloned());
        v.sort();
        v.dedup();
        v
    }
}

/// [`Weights::digest`] of a raw tensor: its values as f32 little-endian (as `digest_f32`),
/// read back in slices so wasm memory never holds a large one whole.
async fn raw_digest(ctx: &GpuContext, t: &RawTensor) -> Result<String, ModelError> {
    use crate::gpu::read_buffer;
    use crate::tensor::RawDType;
    use crate::weights::dtype::{self, DType};
    use sha2::{Digest, Sha256};
    let (size, dt) = match t.dtype {
        RawDType::F16 => (2usize, DType::F16),
        RawDType::F32 => (4usize, DType::F32),
    };
    let n = t.numel();
    let per = DIGEST_CHUNK / 4; // elements per slice (a multiple of 2: f16 pairs stay whole)
    let mut h = Sha256::new();
    let mut e0 = 0;
    while e0 < n {
        let k = per.min(n - e0);
        let bytes = ((k * size).div_ceil(4) * 4) as u64;
        let b = read_buffer(ctx, &t.buf, (e0 * size) as u64, bytes).await?;
        for v in dtype::to_f32(dt, &b).iter().take(k) {
            h.update(v.to_le_bytes());
        }
        e0 += k;
    }
    Ok(hex::encode(h.finalize()))
}
