//! The streaming loader: a converted model arrives shard by shard, in chunks of any size, and
//! its tensors go to the GPU *as the bytes arrive* — no shard is ever held whole in memory.
//!
//! The caller (the browser worker; natively a test) drives it:
//! `new(manifest)` (validates the manifest and the adapter's limits before any download) →
//! for each shard `begin_shard(i)`, `push(chunk)`…, `end_shard()` (size + SHA-256, computed
//! incrementally) → `finish()` → a filled [`Weights`] store.
//!
//! Memory: a matrix part's bytes are staged in at most [`FLUSH`] bytes (plus one row) before a
//! `queue.write_buffer`; conv kernels and codebooks stream the same way into raw GPU buffers;
//! only small host tensors (norms, biases, positional tables) are kept whole. A shard that
//! fails its hash is refused and the model is never installed; a shard can be restarted
//! (`begin_shard` again) after an error.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use super::weights::{is_gpu_raw, HostTensor, MatrixPart, ModelError, Weights};
use crate::gpu::GpuContext;
use crate::tensor::{Matrix, RawDType, RawTensor, WeightFormat};
use crate::weights::dtype::{self, DType};
use crate::weights::manifest::{
    check_limits, parse_format, parse_manifest, row_elems, stored_as_matrix, validate_manifest,
    Manifest,
};
use crate::weights::spec::{model_tensors, Format, Role};
use crate::weights::WeightError;

/// Bytes staged per matrix part before they are written to its GPU buffer.
pub const FLUSH: usize = 1 << 20;

/// Options of a load.
#[derive(Clone, Debug, Default)]
pub struct StreamOptions {
    /// Lower the adapter's binding limit (tests of the "model too big" refusal).
    pub max_binding: Option<u64>,
}

/// One span of a shard and where its bytes go.
#[derive(Clone, Copy, Debug)]
struct Target {
    offset: u64,
    length: u64,
    tensor: usize,
    part: usize,
    scales: bool,
}

/// Where a target's bytes accumulate while it streams.
enum Sink {
    /// A GPU buffer written in flushes. `row_in`/`row_out`: bytes per row in the shard and in
    /// the buffer (f16 matrices pad rows to 8 elements); 0 for a contiguous copy.
    Gpu {
        buf: wgpu::Buffer,
        stage: Vec<u8>,
        /// Bytes of the span already written to `buf` (in shard layout).
        written: u64,
        row_in: usize,
        row_out: usize,
    },
    Host(Vec<u8>),
}

/// Where a manifest tensor ends up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// GPU matrix parts (linears, embeddings, anything quantised).
    Matrix,
    /// One GPU buffer in the checkpoint layout (conv kernels, codebooks: see `is_gpu_raw`).
    Raw,
    /// Host f32 (norms, biases, positional tables, small HiFT tensors).
    Host,
}

enum Done {
    Gpu(wgpu::Buffer),
    Host(Vec<u8>),
}

struct Current {
    shard: usize,
    pos: u64,
    hasher: Sha256,
    /// First target of the shard not yet complete.
    next: usize,
    sink: Option<Sink>,
}

pub struct StreamLoader {
    manifest: Manifest,
    store: Weights,
    /// Per manifest tensor: format and where it goes.
    kinds: Vec<(Format, Kind)>,
    /// Per shard, its spans sorted by offset.
    targets: Vec<Vec<Target>>,
    /// Per shard, per target: the finished bytes (GPU buffer or host bytes).
    done: Vec<Vec<Option<Done>>>,
    complete: Vec<bool>,
    cur: Option<Current>,
    /// Largest number of bytes staged at once (tests check the memory bound).
    pub peak_stage: usize,
}

fn invalid(msg: String) -> ModelError {
    ModelError::Weights(WeightError::Invalid(msg))
}

impl StreamLoader {
    /// Validates `manifest_json` (named `file` in errors; `config_json`, the folder's
    /// `config.json` if any, must equal its config) and the adapter's limits. Nothing is
    /// downloaded before this succeeds.
    pub fn new(
        ctx: &GpuContext,
        manifest_json: &[u8],
        config_json: Option<&[u8]>,
        file: &str,
        opts: &StreamOptions,
    ) -> Result<Self, ModelError> {
        let manifest = parse_manifest(manifest_json, file)?;
        if let Some(c) = config_json {
            let v: serde_json::Value =
                serde_json::from_slice(c).map_err(|e| WeightError::HeaderNotJson {
                    file: "config.json".into(),
                    msg: e.to_string(),
                })?;
            if !crate::weights::manifest::same_json(&v, &manifest.config) {
                return Err(WeightError::ConfigMismatch {
                    msg: "config.json differs from the manifest's config".into(),
                }
                .into());
            }
        }
        let v = validate_manifest(&manifest, file)?;
        let limit = opts
            .max_binding
            .unwrap_or(u64::MAX)
            .min(ctx.limits.max_storage_buffer_binding_size);
        let roles: HashMap<String, Role> = model_tensors(&v.config)
            .into_iter()
            .map(|s| (s.name, s.role))
            .collect();
        check_limits(&manifest, &roles, limit, ctx.limits.max_buffer_size)?;
        // HiFT's tensors only decide what stays raw on the GPU (its two small linears stay
        // host tensors: the f0 and source heads run on the host)
        let hift_roles: HashMap<String, Role> =
            crate::weights::manifest::hift_web_specs(&crate::weights::hift::HiftConfig::default())
                .into_iter()
                .map(|s| (s.name, s.role))
                .collect();
        let mut kinds = Vec::new();
        let mut targets = vec![Vec::new(); manifest.shards.len()];
        for (ti, t) in manifest.tensors.iter().enumerate() {
            let fmt = parse_format(&t.format).unwrap_or(Format::F32);
            let matrix = stored_as_matrix(&roles, &t.name, fmt);
            if matrix && fmt == Format::F32 {
                return Err(invalid(format!(
                    "{}: an f32 matrix is not supported",
                    t.name
                )));
            }
            // raw on the GPU: a conv kernel or codebook in one part, f16 or f32 (a tensor split
            // for the binding limit stays on the host, where `Weights::raw` uploads it)
            let raw = !matrix
                && t.parts.len() == 1
                && matches!(fmt, Format::F16 | Format::F32)
                && roles
                    .get(&t.name)
                    .or(hift_roles.get(&t.name))
                    .is_some_and(|r| is_gpu_raw(*r));
            let kind = match (matrix, raw) {
                (true, _) => Kind::Matrix,
                (false, true) => Kind::Raw,
                (false, false) => Kind::Host,
            };
            kinds.push((fmt, kind));
            for (pi, p) in t.parts.iter().enumerate() {
                for (s, scales) in [(Some(p.data), false), (p.scales, true)] {
                    if let Some(s) = s {
                        targets[s.shard].push(Target {
                            offset: s.offset,
                            length: s.length,
                            tensor: ti,
                            part: pi,
                            scales,
                        });
                    }
                }
            }
        }
        for t in &mut targets {
            t.sort_by_key(|t| t.offset);
        }
        let format = match v.quant {
            crate::weights::spec::Quant::Q4 => WeightFormat::Q4,
            crate::weights::spec::Quant::Q8 => WeightFormat::Q8,
            crate::weights::spec::Quant::F16 => WeightFormat::F16,
        };
        let done = targets
            .iter()
            .map(|t| t.iter().map(|_| None).collect())
            .collect();
        Ok(StreamLoader {
            complete: vec![false; manifest.shards.len()],
            store: Weights::empty(v.config, format),
            manifest,
            kinds,
            targets,
            done,
            cur: None,
            peak_stage: 0,
        })
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Starts (or restarts) shard `i`: whatever it delivered before is dropped.
    pub fn begin_shard(&mut self, i: usize) -> Result<(), ModelError> {
        if i >= self.manifest.shards.len() {
            return Err(invalid(format!(
                "shard {i} of {}",
                self.manifest.shards.len()
            )));
        }
        for d in &mut self.done[i] {
            *d = None;
        }
        self.complete[i] = false;
        self.cur = Some(Current {
            shard: i,
            pos: 0,
            hasher: Sha256::new(),
            next: 0,
            sink: None,
        });
        Ok(())
    }

    /// Feeds the next bytes of the current shard (any chunk size).
    pub fn push(&mut self, ctx: &GpuContext, chunk: &[u8]) -> Result<(), ModelError> {
        let Some(cur) = self.cur.as_mut() else {
            return Err(invalid("push before begin_shard".into()));
        };
        let info = &self.manifest.shards[cur.shard];
        let end = cur.pos + chunk.len() as u64;
        if end > info.bytes {
            return Err(WeightError::SizeMismatch {
                file: info.file.clone(),
                got: end,
                want: info.bytes,
            }
            .into());
        }
        cur.hasher.update(chunk);
        let targets = &self.targets[cur.shard];
        while let Some(t) = targets.get(cur.next) {
            if t.offset >= end {
                break;
            }
            let t_end = t.offset + t.length;
            let a = t.offset.max(cur.pos);
            let b = t_end.min(end);
            if a < b {
                let bytes = &chunk[(a - cur.pos) as usize..(b - cur.pos) as usize];
                let sink = match cur.sink.take() {
                    Some(s) => s,
                    None => new_sink(ctx, &self.manifest, &self.kinds, t),
                };
                let mut sink = sink;
                feed(ctx, &mut sink, bytes, false);
                self.peak_stage = self.peak_stage.max(staged(&sink));
                cur.sink = Some(sink);
            }
            if t_end <= end {
                // the target is complete (a zero-length one completes at once)
                let mut sink = match cur.sink.take() {
                    Some(s) => s,
                    None => new_sink(ctx, &self.manifest, &self.kinds, t),
                };
                feed(ctx, &mut sink, &[], true);
                self.done[cur.shard][cur.next] = Some(match sink {
                    Sink::Gpu { buf, .. } => Done::Gpu(buf),
                    Sink::Host(v) => Done::Host(v),
                });
                cur.next += 1;
            } else {
                break;
            }
        }
        cur.pos = end;
        Ok(())
    }

    /// Ends the current shard: its size and SHA-256 must match the manifest.
    pub fn end_shard(&mut self) -> Result<(), ModelError> {
        let Some(cur) = self.cur.take() else {
            return Err(invalid("end_shard before begin_shard".into()));
        };
        let info = &self.manifest.shards[cur.shard];
        if cur.pos != info.bytes {
            return Err(WeightError::Truncated {
                file: info.file.clone(),
                got: cur.pos,
                want: info.bytes,
            }
            .into());
        }
        let got = hex::encode(cur.hasher.finalize());
        if got != info.sha256 {
            for d in &mut self.done[cur.shard] {
                *d = None;
            }
            return Err(WeightError::HashMismatch {
                file: info.file.clone(),
                got,
                want: info.sha256.clone(),
            }
            .into());
        }
        self.complete[cur.shard] = true;
        Ok(())
    }

    /// Bytes of every shard (what a full download moves).
    pub fn total_bytes(&self) -> u64 {
        self.manifest.shards.iter().map(|s| s.bytes).sum()
    }

    /// Assembles the store once every shard is complete.
    pub fn finish(mut self) -> Result<Weights, ModelError> {
        if let Some(i) = self.complete.iter().position(|c| !c) {
            return Err(invalid(format!(
                "{} was not loaded",
                self.manifest.shards[i].file
            )));
        }
        // (tensor, part, scales) → finished bytes
        let mut by_part: HashMap<(usize, usize, bool), Done> = HashMap::new();
        for (shard, ts) in self.targets.iter().enumerate() {
            for (k, t) in ts.iter().enumerate() {
                if let Some(d) = self.done[shard][k].take() {
                    by_part.insert((t.tensor, t.part, t.scales), d);
                }
            }
        }
        for (ti, t) in self.manifest.tensors.iter().enumerate() {
            let (fmt, kind) = self.kinds[ti];
            let cols = row_elems(&t.shape);
            let missing = || invalid(format!("{}: a part never arrived", t.name));
            if kind == Kind::Raw {
                let Some(Done::Gpu(buf)) = by_part.remove(&(ti, 0, false)) else {
                    return Err(missing());
                };
                let dtype = if fmt == Format::F16 {
                    RawDType::F16
                } else {
                    RawDType::F32
                };
                self.store.insert_raw(
                    &t.name,
                    RawTensor {
                        buf,
                        shape: t.shape.clone(),
                        dtype,
                    },
                );
            } else if kind == Kind::Matrix {
                let mut parts = Vec::new();
                for (pi, p) in t.parts.iter().enumerate() {
                    let rows = p.rows[1] - p.rows[0];
                    let Some(Done::Gpu(data)) = by_part.remove(&(ti, pi, false)) else {
                        return Err(missing());
                    };
                    let matrix = match fmt {
                        Format::F16 => Matrix::F16 {
                            buf: data,
                            rows,
                            cols,
                            stride: cols.div_ceil(8) * 8,
                        },
                        Format::Q8 | Format::Q4 => {
                            let Some(Done::Gpu(scales)) = by_part.remove(&(ti, pi, true)) else {
                                return Err(missing());
                            };
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
                        Format::F32 => return Err(missing()),
                    };
                    parts.push(MatrixPart {
                        row_start: p.rows[0],
                        matrix,
                    });
                }
                self.store.insert_matrix(&t.name, parts);
            } else {
                let dt = if fmt == Format::F16 {
                    DType::F16
                } else {
                    DType::F32
                };
                let mut data = Vec::new();
                for pi in 0..t.parts.len() {
                    let Some(Done::Host(b)) = by_part.remove(&(ti, pi, false)) else {
                        return Err(missing());
                    };
                    data.extend(dtype::to_f32(dt, &b));
                }
                self.store.insert_host(
                    &t.name,
                    HostTensor {
                        shape: t.shape.clone(),
                        data,
                    },
                );
            }
        }
        Ok(self.store)
    }
}

fn new_sink(ctx: &GpuContext, m: &Manifest, kinds: &[(Format, Kind)], t: &Target) -> Sink {
    let e = &m.tensors[t.tensor];
    let (fmt, kind) = kinds[t.tensor];
    if kind == Kind::Host {
        return Sink::Host(Vec::with_capacity(t.length as usize));
    }
    let (row_in, row_out, size) = if kind == Kind::Matrix && fmt == Format::F16 && !t.scales {
        let cols = row_elems(&e.shape);
        let p = &e.parts[t.part];
        let rows = p.rows[1] - p.rows[0];
        let stride = cols.div_ceil(8) * 8;
        (cols * 2, stride * 2, (rows * stride * 2) as u64)
    } else {
        (0, 0, t.length)
    };
    Sink::Gpu {
        buf: ctx.storage(&e.name, size),
        stage: Vec::new(),
        written: 0,
        row_in,
        row_out,
    }
}

fn staged(s: &Sink) -> usize {
    match s {
        Sink::Gpu { stage, .. } => stage.len(),
        Sink::Host(_) => 0,
    }
}

/// Appends `bytes`; writes staged bytes to the GPU once [`FLUSH`] are staged or at the end.
fn feed(ctx: &GpuContext, sink: &mut Sink, bytes: &[u8], last: bool) {
    match sink {
        Sink::Host(v) => v.extend_from_slice(bytes),
        Sink::Gpu {
            buf,
            stage,
            written,
            row_in,
            row_out,
        } => {
            // copy at most what fills the stage, flush, repeat: the stage never exceeds FLUSH
            // plus one row, whatever the chunk size
            let mut rest = bytes;
            loop {
                let room = FLUSH.saturating_sub(stage.len()).max(1);
                let take = rest.len().min(room);
                stage.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
                let full = stage.len() >= FLUSH;
                if full || (last && rest.is_empty()) {
                    flush(
                        ctx,
                        buf,
                        stage,
                        written,
                        *row_in,
                        *row_out,
                        last && rest.is_empty(),
                    );
                }
                if rest.is_empty() {
                    break;
                }
            }
        }
    }
}

/// Writes the staged bytes that can go now: whole rows (padded to the buffer's row stride) for
/// f16 matrices, a multiple of 4 bytes otherwise (`write_buffer` needs 4-byte sizes); the tail
/// waits for the next flush unless this is the last one (then it is zero-padded).
fn flush(
    ctx: &GpuContext,
    buf: &wgpu::Buffer,
    stage: &mut Vec<u8>,
    written: &mut u64,
    row_in: usize,
    row_out: usize,
    last: bool,
) {
    if let Some(rows) = stage.len().checked_div(row_in) {
        if rows == 0 {
            return;
        }
        let dst = (*written / row_in as u64) * row_out as u64;
        if row_in == row_out {
            ctx.queue.write_buffer(buf, dst, &stage[..rows * row_in]);
        } else {
            let mut padded = vec![0u8; rows * row_out];
            for r in 0..rows {
                padded[r * row_out..r * row_out + row_in]
                    .copy_from_slice(&stage[r * row_in..(r + 1) * row_in]);
            }
            ctx.queue.write_buffer(buf, dst, &padded);
        }
        stage.drain(..rows * row_in);
        *written += (rows * row_in) as u64;
    } else {
        let n = if last {
            stage.resize(stage.len().div_ceil(4) * 4, 0);
            stage.len()
        } else {
            stage.len() / 4 * 4
        };
        if n > 0 {
            ctx.queue.write_buffer(buf, *written, &stage[..n]);
            stage.drain(..n);
            *written += n as u64;
        }
    }
}
