//! Streaming audio out (spec §10.4, §11).
//!
//! **Per segment** (the default, the reference's behaviour): a finished segment is vocoded
//! whole and joined to the previous one by the inserted 240-sample cross-fade ([`super::stitch`]).
//!
//! **Chunked** (optional, off by default): playback starts before the segment ends. The
//! segment's code frames accumulate; each time `n − L` reaches a multiple of C (frames C,
//! lookahead L) the whole prefix of n frames is decoded again (decoder → Pre-Net → CFM → HiFT,
//! the prefix's own noise being the prefix of the segment's) and the samples up to
//! `safe_end(n) = min(4(n − L)·480, (4n − 1)·480 − 240)` are emitted; the 240 samples after
//! that are kept and cross-faded into the next decode, so successive decodes (which differ
//! slightly: GroupNorm statistics over the prefix, the partial attention chunk, HiFT's
//! non-causal convolutions at the prefix's end) join without a click and the sample count stays
//! exact. `end_segment` decodes the whole segment, exactly as per-segment mode does, and emits
//! the rest: every segment yields exactly (4N − 1)·480 samples, and everything after the last
//! cross-fade is the whole-segment output itself. The schedule depends only on the frame
//! count, so the output does not depend on how frames are grouped into pushes.
//! [`chunked_deviation`] measures the difference from whole-segment decoding.

use super::{check_finite, fade, NoiseStream, SegmentNoise, Vocoder, CROSSFADE};
use crate::gpu::GpuContext;
use crate::model::ModelError;
use crate::ops::RVQ_LEVELS;

/// The chunked mode's options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkOpts {
    /// C ≥ 1: code frames of new audio per prefix decode.
    pub frames: usize,
    /// L: code frames at the end of a prefix whose audio is held back (a prefix of n frames
    /// emits mel frames below 4(n − L); the rest waits for the next decode).
    pub lookahead: usize,
}

impl ChunkOpts {
    pub const DEFAULT_LOOKAHEAD: usize = 3;

    /// Checked options: C = 0 is an input error.
    pub fn new(frames: usize, lookahead: usize) -> Result<Self, ModelError> {
        if frames == 0 {
            return Err(ModelError::input(
                "chunk size 0: a chunked stream decodes at least 1 code frame per chunk \
                 (whole-segment streaming is the default mode)",
            ));
        }
        Ok(ChunkOpts { frames, lookahead })
    }
}

/// Samples over which two successive prefix decodes are cross-faded (10 ms, the length of the
/// reference's cross-fade between segments).
pub const CHUNK_OVERLAP: usize = CROSSFADE;

/// What the decodes of one chunked segment contributed (recorded when tracing is on).
#[derive(Clone, Debug, Default)]
pub struct ChunkTrace {
    /// Decodes run (prefixes and the final whole one; the final one is a reused prefix decode
    /// when no frame followed it).
    pub runs: usize,
    /// Per emission: (prefix frames, first sample, end sample) of the segment samples it
    /// produced (the cross-fade into it included).
    pub decodes: Vec<(usize, usize, usize)>,
    /// (T, bins): mel row f from the decode whose samples hold the row's centre sample
    /// `f·480 + 240` — the mel the chunked output was made from.
    pub composite_mel: Vec<f32>,
    /// The final (whole-segment) decode's mel (T, bins) and PCM.
    pub whole_mel: Vec<f32>,
    pub whole_pcm: Vec<f32>,
}

/// The segment being received.
struct Open {
    /// Codes (n, 8) so far.
    codes: Vec<u32>,
    noise: NoiseStream,
    /// Prefix length (frames) of the next scheduled decode (chunked mode).
    next: usize,
    /// Segment samples produced so far.
    emitted: usize,
    /// Samples `[emitted, emitted + tail.len())` of the last prefix decode, to fade out.
    tail: Vec<f32>,
    /// The last decode (frames, PCM, mel when tracing): reused at the end if no frame followed.
    last: Option<(usize, Vec<f32>, Option<Vec<f32>>)>,
    /// Output held until more than 240 samples exist (the inserted cross-fade needs them).
    head: Vec<f32>,
    started: bool,
    /// The segment's last ≤ 240 samples.
    own_tail: Vec<f32>,
    trace: Option<ChunkTrace>,
}

/// A stream's state without the vocoder, so the wasm engine can keep it between calls.
/// [`VocodeStream`] is the same with the vocoder borrowed.
pub struct StreamState {
    seed: u64,
    /// Segments finished.
    index: u64,
    chunk: Option<ChunkOpts>,
    /// The previous segment's last 240 samples, if it was longer than 240.
    prev_tail: Option<Vec<f32>>,
    open: Option<Open>,
    trace: bool,
    last_trace: Option<ChunkTrace>,
}

impl StreamState {
    /// Per-segment streaming (the default).
    pub fn whole(seed: u64) -> Self {
        StreamState {
            seed,
            index: 0,
            chunk: None,
            prev_tail: None,
            open: None,
            trace: false,
            last_trace: None,
        }
    }

    /// Chunked streaming.
    pub fn chunked(seed: u64, opts: ChunkOpts) -> Result<Self, ModelError> {
        let opts = ChunkOpts::new(opts.frames, opts.lookahead)?;
        Ok(StreamState {
            chunk: Some(opts),
            ..Self::whole(seed)
        })
    }

    pub fn chunk_opts(&self) -> Option<ChunkOpts> {
        self.chunk
    }

    /// Segments finished so far.
    pub fn segments(&self) -> u64 {
        self.index
    }

    /// Frames of the open segment (0 if none).
    pub fn open_frames(&self) -> usize {
        self.open.as_ref().map_or(0, |o| o.codes.len() / RVQ_LEVELS)
    }

    /// The noise seed of segment `index`: `seed + index·0x9E3779B9` (both modes).
    pub fn segment_seed(seed: u64, index: u64) -> u64 {
        seed.wrapping_add(index.wrapping_mul(0x9E37_79B9))
    }

    /// Records a [`ChunkTrace`] of each following segment (mel read-backs: for measuring).
    pub fn set_trace(&mut self, on: bool) {
        self.trace = on;
    }

    /// The trace of the last finished segment.
    pub fn take_trace(&mut self) -> Option<ChunkTrace> {
        self.last_trace.take()
    }

    /// A whole segment (N, 8) at once; returns the samples to play (the cross-fade with the
    /// previous segment, then the segment). In chunked mode the same as pushing the frames and
    /// ending the segment. An input error if a segment is open.
    pub async fn push(
        &mut self,
        voc: &Vocoder,
        ctx: &GpuContext,
        codes: &[u32],
    ) -> Result<Vec<f32>, ModelError> {
        if self.open.is_some() {
            return Err(ModelError::input(
                "a segment is open (frames pushed one by one); end it before pushing a whole one",
            ));
        }
        voc.decoder.check_codes(codes)?;
        let mut out = self.push_frames(voc, ctx, codes).await?;
        out.extend(self.end_segment(voc, ctx).await?);
        Ok(out)
    }

    /// Adds code frames (n, 8) to the open segment (opening one if none). Returns the samples
    /// to play now: empty in per-segment mode, and in chunked mode until a decode is due.
    pub async fn push_frames(
        &mut self,
        voc: &Vocoder,
        ctx: &GpuContext,
        codes: &[u32],
    ) -> Result<Vec<f32>, ModelError> {
        if codes.is_empty() {
            return Ok(Vec::new());
        }
        let add = voc.decoder.check_codes(codes)?;
        let total = self.open_frames() + add;
        if total > voc.decoder.max_frames() {
            return Err(ModelError::input(format!(
                "the segment would hold {total} frames, over one segment's limit of {} (the \
                 decoder's positional table): end the segment first",
                voc.decoder.max_frames()
            )));
        }
        let trace = self.trace;
        let chunk = self.chunk;
        let seed = Self::segment_seed(self.seed, self.index);
        let seg = self.open.get_or_insert_with(|| Open {
            codes: Vec::new(),
            noise: voc.noise_stream(seed),
            next: chunk.map_or(usize::MAX, |c| c.frames + c.lookahead),
            emitted: 0,
            tail: Vec::new(),
            last: None,
            head: Vec::new(),
            started: false,
            own_tail: Vec::new(),
            trace: trace.then(ChunkTrace::default),
        });
        seg.codes.extend_from_slice(codes);
        let Some(c) = chunk else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        while seg.next <= total {
            let n = seg.next;
            let (pcm, mel) = decode(voc, ctx, seg, n, trace).await?;
            let e = safe_end(voc, n, c.lookahead);
            if e >= seg.emitted + seg.tail.len() {
                let from = seg.emitted;
                let mut part = fade(&seg.tail, &pcm[from..from + seg.tail.len()]);
                part.extend_from_slice(&pcm[from + seg.tail.len()..e]);
                seg.tail = pcm[e..(e + CHUNK_OVERLAP).min(pcm.len())].to_vec();
                seg.emitted = e;
                if let (Some(tr), Some(m)) = (seg.trace.as_mut(), mel.as_ref()) {
                    record(tr, voc, n, from, e, m, false);
                }
                out.extend(deliver(&self.prev_tail, seg, part, false));
            }
            seg.last = Some((n, pcm, mel));
            seg.next += c.frames;
        }
        Ok(out)
    }

    /// Ends the open segment: decodes it whole and returns the rest of its samples (the
    /// segment's samples over all calls add up to (4N − 1)·480, plus the inserted cross-fade
    /// before every segment after the first). An input error if no frame was pushed.
    pub async fn end_segment(
        &mut self,
        voc: &Vocoder,
        ctx: &GpuContext,
    ) -> Result<Vec<f32>, ModelError> {
        let trace = self.trace;
        let Some(seg) = self.open.as_mut() else {
            return Err(ModelError::input(
                "the segment is empty: no code frames were pushed since the last segment ended",
            ));
        };
        let n = seg.codes.len() / RVQ_LEVELS;
        let (pcm, mel) = match seg.last.take() {
            Some((m, pcm, mel)) if m == n => (pcm, mel),
            _ => decode(voc, ctx, seg, n, trace).await?,
        };
        let from = seg.emitted;
        let mut part = fade(&seg.tail, &pcm[from..from + seg.tail.len()]);
        part.extend_from_slice(&pcm[from + seg.tail.len()..]);
        seg.tail.clear();
        seg.emitted = pcm.len();
        if let (Some(tr), Some(m)) = (seg.trace.as_mut(), mel.as_ref()) {
            record(tr, voc, n, from, pcm.len(), m, true);
            tr.whole_mel = m.clone();
            tr.whole_pcm = pcm;
        }
        let out = deliver(&self.prev_tail, seg, part, true);
        let done = self.open.take();
        if let Some(done) = done {
            self.prev_tail = (done.emitted > CROSSFADE).then_some(done.own_tail);
            self.last_trace = done.trace;
        }
        self.index += 1;
        Ok(out)
    }
}

/// Emits up to here: the mel frames below 4(n − L) of a prefix of n frames, and at least the
/// overlap before the prefix's last sample.
fn safe_end(voc: &Vocoder, n: usize, lookahead: usize) -> usize {
    let fs = voc.hift.params.frame_samples;
    (4 * n.saturating_sub(lookahead) * fs).min(voc.segment_samples(n).saturating_sub(CHUNK_OVERLAP))
}

/// Decodes the first `n` frames of the open segment: PCM, and its mel if `keep_mel`.
async fn decode(
    voc: &Vocoder,
    ctx: &GpuContext,
    seg: &mut Open,
    n: usize,
    keep_mel: bool,
) -> Result<(Vec<f32>, Option<Vec<f32>>), ModelError> {
    let noise: SegmentNoise = seg
        .noise
        .prefix(Vocoder::mel_frames(n), voc.segment_samples(n));
    let codes = &seg.codes[..n * RVQ_LEVELS];
    if let Some(tr) = seg.trace.as_mut() {
        tr.runs += 1;
    }
    if !keep_mel {
        return Ok((voc.segment(ctx, codes, &noise).await?, None));
    }
    let (_, _, mel) = voc.mel(ctx, codes, &noise.cfm)?;
    let m = mel.to_vec(ctx).await?;
    let pcm = voc.hift.forward(ctx, &mel, &noise.source).await?;
    check_finite(&pcm)?;
    Ok((pcm, Some(m)))
}

/// Adds a decode that produced segment samples `[from, to)` to the trace: its mel rows whose
/// centre sample lies below `to` (all rows when `last`) extend the composite mel.
fn record(
    tr: &mut ChunkTrace,
    voc: &Vocoder,
    n: usize,
    from: usize,
    to: usize,
    mel: &[f32],
    last: bool,
) {
    let fs = voc.hift.params.frame_samples;
    let bins = voc.unet.mel;
    let rows = mel.len() / bins.max(1);
    let have = tr.composite_mel.len() / bins.max(1);
    let upto = if last {
        rows
    } else {
        ((to + fs / 2).saturating_sub(1) / fs).min(rows)
    };
    if upto > have {
        tr.composite_mel
            .extend_from_slice(&mel[have * bins..upto * bins]);
    }
    tr.decodes.push((n, from, to));
}

/// Segment samples → samples to play: the first ones are held until more than 240 exist, then
/// the inserted cross-fade with the previous segment goes first (the reference's rule: only
/// between segments both longer than 240 samples).
fn deliver(prev_tail: &Option<Vec<f32>>, seg: &mut Open, part: Vec<f32>, last: bool) -> Vec<f32> {
    seg.own_tail.extend_from_slice(&part);
    let excess = seg.own_tail.len().saturating_sub(CROSSFADE);
    seg.own_tail.drain(..excess);
    if seg.started {
        return part;
    }
    seg.head.extend(part);
    match prev_tail {
        Some(p) if seg.head.len() > CROSSFADE => {
            seg.started = true;
            let mut out = fade(p, &seg.head[..CROSSFADE]);
            out.append(&mut seg.head);
            out
        }
        Some(_) if !last => Vec::new(),
        _ => {
            seg.started = true;
            std::mem::take(&mut seg.head)
        }
    }
}

/// Streaming with the vocoder borrowed: per segment ([`VocodeStream::new`], the default) or
/// chunked ([`VocodeStream::chunked`]). Unlike the reference demo, the first segment is not
/// held back until the second arrives. Segment i's noise comes from `seed + i·0x9E3779B9` in
/// both modes, so they are directly comparable.
pub struct VocodeStream<'a> {
    voc: &'a Vocoder,
    pub state: StreamState,
}

impl<'a> VocodeStream<'a> {
    pub fn new(voc: &'a Vocoder, seed: u64) -> Self {
        VocodeStream {
            voc,
            state: StreamState::whole(seed),
        }
    }

    pub fn chunked(voc: &'a Vocoder, seed: u64, opts: ChunkOpts) -> Result<Self, ModelError> {
        Ok(VocodeStream {
            voc,
            state: StreamState::chunked(seed, opts)?,
        })
    }

    /// Vocodes one whole segment (N, 8) and returns the samples to emit, in order.
    pub async fn push(&mut self, ctx: &GpuContext, codes: &[u32]) -> Result<Vec<f32>, ModelError> {
        self.state.push(self.voc, ctx, codes).await
    }

    /// See [`StreamState::push_frames`].
    pub async fn push_frames(
        &mut self,
        ctx: &GpuContext,
        codes: &[u32],
    ) -> Result<Vec<f32>, ModelError> {
        self.state.push_frames(self.voc, ctx, codes).await
    }

    /// See [`StreamState::end_segment`].
    pub async fn end_segment(&mut self, ctx: &GpuContext) -> Result<Vec<f32>, ModelError> {
        self.state.end_segment(self.voc, ctx).await
    }
}

/// Chunked against whole-segment decoding of one segment.
#[derive(Clone, Debug)]
pub struct Deviation {
    pub frames: usize,
    pub opts: ChunkOpts,
    /// (frames pushed when the chunk arrived, its samples), in order; the last is the end's.
    pub chunks: Vec<(usize, usize)>,
    /// Decodes run, the final whole-segment one included.
    pub decodes: usize,
    /// The chunked output and the whole-segment output (equal lengths).
    pub chunked: Vec<f32>,
    pub whole: Vec<f32>,
    /// 10·log10(Σ whole² / Σ (chunked − whole)²); infinite when identical.
    pub snr_db: f64,
    pub max_abs: f32,
    /// Mean |composite mel − whole-segment mel| over (T, 80): the flow mel each output
    /// sample was made from against the whole decode's (see [`ChunkTrace`]).
    pub mel_l1: f64,
    /// Mean |whole-segment mel|, the scale `mel_l1` is to be read against.
    pub mel_mean_abs: f64,
}

/// Decodes one segment (N, 8) chunked — frame by frame, as the LLM delivers them — and whole
/// (the chunked stream's final decode, the same computation as per-segment mode), with noise
/// from `seed` (segment 0), and compares them.
pub async fn chunked_deviation(
    voc: &Vocoder,
    ctx: &GpuContext,
    codes: &[u32],
    seed: u64,
    opts: ChunkOpts,
) -> Result<Deviation, ModelError> {
    let n = voc.decoder.check_codes(codes)?;
    let mut s = StreamState::chunked(seed, opts)?;
    s.set_trace(true);
    let mut chunked = Vec::new();
    let mut chunks = Vec::new();
    for (f, frame) in codes.chunks(RVQ_LEVELS).enumerate() {
        let out = s.push_frames(voc, ctx, frame).await?;
        if !out.is_empty() {
            chunks.push((f + 1, out.len()));
            chunked.extend(out);
        }
    }
    let out = s.end_segment(voc, ctx).await?;
    chunks.push((n, out.len()));
    chunked.extend(out);
    let tr = s
        .take_trace()
        .ok_or_else(|| ModelError::input("chunked stream kept no trace"))?;
    if tr.whole_pcm.len() != chunked.len() || tr.composite_mel.len() != tr.whole_mel.len() {
        return Err(ModelError::input(format!(
            "chunked output has {} samples and {} mel values, whole {} and {}",
            chunked.len(),
            tr.composite_mel.len(),
            tr.whole_pcm.len(),
            tr.whole_mel.len()
        )));
    }
    let (mut sig, mut err, mut max_abs) = (0f64, 0f64, 0f32);
    for (a, b) in chunked.iter().zip(&tr.whole_pcm) {
        sig += (*b as f64).powi(2);
        err += ((a - b) as f64).powi(2);
        max_abs = max_abs.max((a - b).abs());
    }
    let snr_db = if err == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (sig / err).log10()
    };
    let m = tr.whole_mel.len().max(1) as f64;
    let mel_l1 = tr
        .composite_mel
        .iter()
        .zip(&tr.whole_mel)
        .map(|(a, b)| (a - b).abs() as f64)
        .sum::<f64>()
        / m;
    let mel_mean_abs = tr.whole_mel.iter().map(|v| v.abs() as f64).sum::<f64>() / m;
    Ok(Deviation {
        frames: n,
        opts,
        chunks,
        decodes: tr.runs,
        chunked,
        whole: tr.whole_pcm,
        snr_db,
        max_abs,
        mel_l1,
        mel_mean_abs,
    })
}
