//! Token and code sampling with HF transformers 4.45 semantics (spec §10.3): repetition
//! penalty → temperature → top-k → top-p → softmax → multinomial; greedy (argmax after the
//! penalty) when the temperature is 0.
//!
//! On the GPU: the repetition penalty (in place on the logits) and a top-k (k ≤ 64) per LM-head
//! part, so only ≤ 64 candidates per part come back, never the 152064 logits. On the CPU: the
//! merge of the parts' candidates, temperature, top-p over the k survivors and the draw. This is
//! exact for HF's order because temperature (T > 0) keeps the order, so the top-k set after it
//! equals the top-k set before it, and after top-k every other score is −inf. One deviation:
//! HF keeps every logit tied with the k-th value; we keep exactly k (ties → lower id first).
//! `top_k = 0` (disabled) or k > 64 falls back to reading all logits back.

use crate::gpu::{BindCache, GpuContext, Recorder};
use crate::ops::{self, TopkScratch, TOPK_MAX};
use crate::tensor::Tensor;
use crate::util::rng::Rng;

use crate::model::ModelError;

/// Parameters of one sampling regime.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SamplingParams {
    /// 0 = greedy.
    pub temperature: f32,
    /// 0 = no top-k.
    pub top_k: usize,
    /// 1 = no top-p.
    pub top_p: f32,
    /// 1 = no penalty.
    pub repetition_penalty: f32,
}

impl SamplingParams {
    /// Text step 0 of a speech turn (spec §10.2.1).
    pub const TEXT_FIRST: SamplingParams = SamplingParams {
        temperature: 0.8,
        top_k: 20,
        top_p: 0.85,
        repetition_penalty: 1.1,
    };
    /// Text steps after an audio segment (§10.2.d).
    pub const TEXT_NEXT: SamplingParams = SamplingParams {
        temperature: 0.3,
        top_k: 20,
        top_p: 0.85,
        repetition_penalty: 1.05,
    };
    /// Audio codes (§10.2.b; also the Base demos' defaults).
    pub const AUDIO: SamplingParams = SamplingParams {
        temperature: 0.5,
        top_k: 5,
        top_p: 0.85,
        repetition_penalty: 1.3,
    };
    /// The top-k the GPU path takes (1 when greedy), or `None` where only the CPU processors
    /// can sample (`top_k` 0 or above [`TOPK_MAX`]).
    pub fn gpu_k(&self) -> Option<usize> {
        let k = if self.temperature == 0.0 {
            1
        } else {
            self.top_k
        };
        (1..=TOPK_MAX).contains(&k).then_some(k)
    }

    /// [`Self::gpu_k`], or the error of a GPU sampler asked for parameters only the CPU
    /// processors can sample.
    pub fn gpu_k_or_err(&self) -> Result<usize, ModelError> {
        self.gpu_k().ok_or_else(|| {
            ModelError::input(format!("top-k {} needs the CPU sampling path", self.top_k))
        })
    }

    /// Whether a GPU draw of the top `k` of `rows` logits takes a uniform from the RNG: where
    /// [`sample_candidates`] draws (sampled, more than one candidate), so both paths consume
    /// the same RNG stream.
    pub fn takes_uniform(&self, k: usize, rows: usize) -> bool {
        self.temperature != 0.0 && k.min(rows) > 1
    }

    /// Greedy after the penalty (Base demos without `--do_sample`, §16).
    pub const fn greedy(repetition_penalty: f32) -> SamplingParams {
        SamplingParams {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            repetition_penalty,
        }
    }

    pub fn validate(&self) -> Result<(), ModelError> {
        let ok = self.temperature.is_finite()
            && self.temperature >= 0.0
            && self.top_p > 0.0
            && self.top_p <= 1.0
            && self.repetition_penalty.is_finite()
            && self.repetition_penalty > 0.0;
        if ok {
            Ok(())
        } else {
            Err(ModelError::input(format!(
                "invalid sampling parameters {self:?} (temperature ≥ 0, 0 < top_p ≤ 1, \
                 repetition_penalty > 0)"
            )))
        }
    }
}

/// HF 4.45 processors on full logits (the CPU reference; also the fallback path): returns the
/// processed scores, −inf for removed entries.
pub fn process_reference(logits: &[f32], history: &[u32], p: &SamplingParams) -> Vec<f32> {
    let mut s =
        crate::reference::sampling::repetition_penalty(logits, history, p.repetition_penalty);
    if p.temperature == 0.0 {
        return s;
    }
    for x in s.iter_mut() {
        *x /= p.temperature;
    }
    if p.top_k > 0 && p.top_k < s.len() {
        // TopKLogitsWarper: remove scores < the k-th largest (ties with it are kept)
        let mut sorted = s.clone();
        sorted.sort_by(|a, b| b.partial_cmp(a).unwrap_or(std::cmp::Ordering::Equal));
        let kth = sorted[p.top_k - 1];
        for x in s.iter_mut() {
            if *x < kth {
                *x = f32::NEG_INFINITY;
            }
        }
    }
    if p.top_p < 1.0 {
        // TopPLogitsWarper: sort ascending, cumulative softmax, remove cum ≤ 1 − top_p,
        // always keep the largest
        let mut idx: Vec<usize> = (0..s.len()).collect();
        idx.sort_by(|&a, &b| s[a].partial_cmp(&s[b]).unwrap_or(std::cmp::Ordering::Equal));
        let probs = softmax(&idx.iter().map(|&i| s[i]).collect::<Vec<_>>());
        let mut cum = 0f64;
        let n = idx.len();
        let mut remove = Vec::new();
        for (r, &i) in idx.iter().enumerate() {
            cum += probs[r];
            if cum <= 1.0 - p.top_p as f64 && r < n - 1 {
                remove.push(i);
            }
        }
        for i in remove {
            s[i] = f32::NEG_INFINITY;
        }
    }
    s
}

fn softmax(x: &[f32]) -> Vec<f64> {
    let m = x.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let e: Vec<f64> = x
        .iter()
        .map(|v| {
            if v.is_finite() {
                (*v as f64 - m).exp()
            } else {
                0.0
            }
        })
        .collect();
    let z: f64 = e.iter().sum();
    e.iter().map(|v| v / z).collect()
}

/// Draws from processed scores (−inf = removed): softmax, then inverse CDF with one uniform
/// over the candidates in descending order (ties: lower id first), so every path that keeps
/// the same candidates maps the same uniform to the same id.
pub fn draw(ids: &[u32], scores: &[f32], rng: &mut Rng) -> u32 {
    let mut order: Vec<usize> = (0..ids.len())
        .filter(|&i| scores[i] > f32::NEG_INFINITY)
        .collect();
    if order.is_empty() {
        return ids[0];
    }
    order.sort_by(|&a, &b| {
        scores[b]
            .partial_cmp(&scores[a])
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(ids[a].cmp(&ids[b]))
    });
    let kept: Vec<f32> = order.iter().map(|&i| scores[i]).collect();
    let p = softmax(&kept);
    let u = rng.f64();
    let mut cum = 0.0;
    for (&i, q) in order.iter().zip(&p) {
        cum += q;
        if u < cum {
            return ids[i];
        }
    }
    ids[order[order.len() - 1]]
}

/// Candidates sorted descending (ties: lower id first) → temperature, top-p, draw. `cands`
/// are already the top-k after the penalty. Greedy takes the first.
pub fn sample_candidates(cands: &[(u32, f32)], p: &SamplingParams, rng: &mut Rng) -> u32 {
    if p.temperature == 0.0 || cands.len() == 1 {
        return cands[0].0;
    }
    let ids: Vec<u32> = cands.iter().map(|c| c.0).collect();
    let mut s: Vec<f32> = cands.iter().map(|c| c.1 / p.temperature).collect();
    if p.top_p < 1.0 {
        // ascending order is the reverse of ours; remove the smallest while cum ≤ 1 − top_p
        let probs = softmax(&s);
        let mut cum = 0f64;
        for r in (1..s.len()).rev() {
            cum += probs[r];
            if cum <= 1.0 - p.top_p as f64 {
                s[r] = f32::NEG_INFINITY;
            } else {
                break;
            }
        }
    }
    draw(&ids, &s, rng)
}

/// GPU-side sampler state for logits stored in parts (one per LM-head part).
pub struct GpuSampler {
    hist: wgpu::Buffer,
    hist_cap: usize,
    mask: wgpu::Buffer,
    scratch: TopkScratch,
    vals: wgpu::Buffer,
    idx: wgpu::Buffer,
    /// k values then k ids, copied together so one read-back takes both.
    pair: wgpu::Buffer,
    /// Read-back buffers of ids drawn on the GPU, one per draw in flight.
    staging: [wgpu::Buffer; 2],
    parts: usize,
    binds: BindCache,
}

/// A text id drawn on the GPU and not read back yet ([`GpuSampler::submit_draw`]): it lies in
/// the sampler's history at `pos` ([`GpuSampler::history`]).
pub struct TokenInFlight {
    slot: usize,
    pos: usize,
    index: wgpu::SubmissionIndex,
    before: Rng,
}

impl TokenInFlight {
    /// The RNG as it was before this draw (to drop a draw that will not be read).
    pub fn rng_before(&self) -> &Rng {
        &self.before
    }

    /// Where the id lies in the sampler's history buffer.
    pub fn pos(&self) -> usize {
        self.pos
    }
}

impl GpuSampler {
    /// For logits parts of at most `max_rows` rows and penalty histories of `hist_cap` ids.
    pub fn new(ctx: &GpuContext, max_rows: usize, parts: usize, hist_cap: usize) -> Self {
        let parts = parts.max(1);
        GpuSampler {
            hist: ctx.storage("sampler.hist", (hist_cap.max(1) * parts * 4) as u64),
            hist_cap: hist_cap.max(1),
            mask: ctx.storage("sampler.mask", ops::penalty_mask_bytes(max_rows)),
            scratch: TopkScratch::for_parts(ctx, max_rows, parts),
            vals: ctx.storage("sampler.vals", (parts * TOPK_MAX * 4) as u64),
            idx: ctx.storage("sampler.idx", (parts * TOPK_MAX * 4) as u64),
            pair: ctx.storage("sampler.pair", (2 * TOPK_MAX * 4) as u64),
            staging: [0, 1].map(|_| {
                ctx.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("sampler.id.read"),
                    size: 4,
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                })
            }),
            parts,
            binds: BindCache::default(),
        }
    }

    /// Records the sampling of one id into `out[slot]` entirely on the GPU from the logits
    /// `parts` = (first row, logits of its rows; one part holding every row, or an LM head's
    /// parts): the penalty over the first `n_hist` ids of `hist` on each part, then one top-k
    /// and draw with the uniform `u` over all of them ([`ops::topk_draw_parts`]: the draw in the
    /// pass that finishes the top-k); ids in `hist` and the drawn id are vocabulary ids.
    /// Parameters that need the CPU path (k = 0 or > TOPK_MAX) are an error here: callers
    /// check [`SamplingParams::gpu_k`] first.
    #[allow(clippy::too_many_arguments)]
    pub fn record_draw(
        &self,
        rec: &mut Recorder,
        parts: &[(usize, &Tensor)],
        hist: &wgpu::Buffer,
        n_hist: usize,
        p: &SamplingParams,
        u: f64,
        out: &wgpu::Buffer,
        slot: usize,
    ) -> Result<(), ModelError> {
        p.validate()?;
        let k = p.gpu_k_or_err()?;
        if parts.is_empty() || parts.len() > self.parts {
            return Err(ModelError::input(format!(
                "{} logits parts for a sampler made for 1 to {}",
                parts.len(),
                self.parts
            )));
        }
        if n_hist > 0 && p.repetition_penalty != 1.0 {
            for (first, t) in parts {
                ops::repetition_penalty_part(
                    rec,
                    t,
                    hist,
                    n_hist,
                    p.repetition_penalty,
                    &self.mask,
                    *first,
                )?;
            }
        }
        let rows: usize = parts.iter().map(|(_, t)| t.numel()).sum();
        // the draw in the pass that finishes the top-k (one dispatch fewer than topk +
        // sample_draw, the same id)
        ops::topk_draw_parts(
            rec,
            parts,
            k.min(rows),
            &self.scratch,
            (&self.vals, &self.idx),
            (p.temperature, p.top_p, u),
            out,
            slot,
        )?;
        Ok(())
    }

    /// Whether an id can be drawn after `n_hist` ids of history with [`Self::submit_draw`]: `p`
    /// samples on the GPU ([`SamplingParams::gpu_k`]), the sampler was made for `parts` logits
    /// parts, and the history buffer has room for the id.
    pub fn draws_on_gpu(&self, parts: usize, p: &SamplingParams, n_hist: usize) -> bool {
        p.gpu_k().is_some() && (1..=self.parts).contains(&parts) && n_hist < self.hist_cap
    }

    /// The penalty history on the GPU: [`Self::load_history`]'s ids, then each id drawn by
    /// [`Self::submit_draw`] at its position.
    pub fn history(&self) -> &wgpu::Buffer {
        &self.hist
    }

    /// Writes the penalty history (the whole sequence so far) for [`Self::submit_draw`].
    pub fn load_history(&self, ctx: &GpuContext, history: &[u32]) -> Result<(), ModelError> {
        if history.len() > self.hist_cap {
            return Err(ModelError::input(format!(
                "penalty history of {} ids exceeds the sampler's {}",
                history.len(),
                self.hist_cap
            )));
        }
        if !history.is_empty() {
            ctx.queue
                .write_buffer(&self.hist, 0, bytemuck::cast_slice(history));
        }
        Ok(())
    }

    /// Records and submits the draw of one id from the logits `parts` = (first row, logits of
    /// its rows; one part holding every row, or the LM head's parts) entirely on the GPU, with the first `n_hist` ids of [`Self::history`] as the penalty history; the id
    /// is written to the history at `n_hist` (so the next draw's history holds it, and
    /// [`super::Session::step_id`] can feed it) and copied for read-back through buffer
    /// `n_hist` mod 2, so consecutive draws in flight take different ones). The RNG gives a uniform where
    /// [`sample_candidates`] would take one, so [`Self::sample`]'s stream is kept.
    pub fn submit_draw(
        &self,
        ctx: &GpuContext,
        parts: &[(usize, &Tensor)],
        n_hist: usize,
        p: &SamplingParams,
        rng: &mut Rng,
    ) -> Result<TokenInFlight, ModelError> {
        let slot = n_hist % self.staging.len();
        p.validate()?;
        let k = p.gpu_k_or_err()?;
        if n_hist >= self.hist_cap {
            return Err(ModelError::input(format!(
                "a draw after {n_hist} ids (the history holds {})",
                self.hist_cap
            )));
        }
        let before = rng.clone();
        let rows: usize = parts.iter().map(|(_, t)| t.numel()).sum();
        let u = if p.takes_uniform(k, rows) {
            rng.f64()
        } else {
            0.0
        };
        let mut rec = Recorder::new(ctx, "sample.draw").with_cache(&self.binds);
        self.record_draw(
            &mut rec, parts, &self.hist, n_hist, p, u, &self.hist, n_hist,
        )?;
        rec.encoder()?.copy_buffer_to_buffer(
            &self.hist,
            4 * n_hist as u64,
            &self.staging[slot],
            0,
            4,
        );
        let index = rec.submit_index()?;
        Ok(TokenInFlight {
            slot,
            pos: n_hist,
            index,
            before,
        })
    }

    /// Waits for a submitted draw (only for it: work submitted after it keeps running) and
    /// reads its id.
    pub async fn read_draw(&self, ctx: &GpuContext, f: &TokenInFlight) -> Result<u32, ModelError> {
        let bytes = crate::gpu::map_read(ctx, &self.staging[f.slot], f.index.clone(), 4).await?;
        bytes
            .get(..4)
            .map(bytemuck::pod_read_unaligned::<u32>)
            .ok_or_else(|| ModelError::input("the drawn id's read-back came back short"))
    }

    /// Samples one id from `parts` = (first row, logits (rows)) with `history` for the penalty.
    /// The logits are modified in place (penalty).
    pub async fn sample(
        &self,
        ctx: &GpuContext,
        parts: &[(usize, &Tensor)],
        history: &[u32],
        p: &SamplingParams,
        rng: &mut Rng,
    ) -> Result<u32, ModelError> {
        p.validate()?;
        if parts.len() > self.parts {
            return Err(ModelError::input(
                "more logits parts than the sampler was made for",
            ));
        }
        let Some(k) = p.gpu_k() else {
            // full read-back: the CPU reference processors
            let mut all = Vec::new();
            for (_, t) in parts {
                all.extend(t.to_vec(ctx).await?);
            }
            let s = process_reference(&all, history, p);
            if p.temperature == 0.0 {
                return Ok(crate::reference::sampling::argmax(&s).0 as u32);
            }
            let ids: Vec<u32> = (0..s.len() as u32).collect();
            return Ok(draw(&ids, &s, rng));
        };
        if history.len() > self.hist_cap {
            return Err(ModelError::input(format!(
                "penalty history of {} ids exceeds the sampler's {}",
                history.len(),
                self.hist_cap
            )));
        }
        // One submission per part (one in all for a single-part head): penalty in place, top-k,
        // read back k values and ids.
        let mut cands: Vec<(u32, f32)> = Vec::with_capacity(k * parts.len());
        for (r0, t) in parts {
            let rows = t.numel();
            let local: Vec<u32> = history
                .iter()
                .filter(|&&id| (id as usize) >= *r0 && (id as usize) < r0 + rows)
                .map(|&id| id - *r0 as u32)
                .collect();
            let mut rec = Recorder::new(ctx, "sample").with_cache(&self.binds);
            if !local.is_empty() && p.repetition_penalty != 1.0 {
                ctx.queue
                    .write_buffer(&self.hist, 0, bytemuck::cast_slice(&local));
                ops::repetition_penalty(
                    &mut rec,
                    t,
                    &self.hist,
                    local.len(),
                    p.repetition_penalty,
                    &self.mask,
                )?;
            }
            let kp = k.min(rows);
            ops::topk(&mut rec, t, kp, &self.scratch, &self.vals, &self.idx)?;
            let kb = (kp * 4) as u64;
            let enc = rec.encoder()?;
            enc.copy_buffer_to_buffer(&self.vals, 0, &self.pair, 0, kb);
            enc.copy_buffer_to_buffer(&self.idx, 0, &self.pair, kb, kb);
            rec.submit()?;
            let both = crate::gpu::read_buffer(ctx, &self.pair, 0, 2 * kb).await?;
            let (v, i) = both.split_at(kb as usize);
            let v: Vec<f32> = bytemuck::pod_collect_to_vec(v);
            let i: Vec<u32> = bytemuck::pod_collect_to_vec(i);
            cands.extend(i.iter().zip(&v).map(|(id, x)| (id + *r0 as u32, *x)));
        }
        cands.sort_by(|a, b| {
            b.1.partial_cmp(&a.1)
                .unwrap_or(std::cmp::Ordering::Equal)
                .then(a.0.cmp(&b.0))
        });
        cands.truncate(k);
        Ok(sample_candidates(&cands, p, rng))
    }
}
