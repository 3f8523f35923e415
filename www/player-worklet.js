// Streamed playback (AudioWorklet, audio thread): a queue of PCM chunks at the context's rate
// (24 kHz, the vocoder's), played as they arrive. Messages in: { pcm: Float32Array } to queue,
// { flush: true } to drop everything queued (barge-in), { streaming: bool } while a reply is
// still coming (running dry then is an underrun; after it, the end). Out, every ~100 ms and when it drains:
// { played, queued, underruns } (samples played so far, samples waiting, times it ran dry
// while a reply was still streaming).
class PcmPlayer extends AudioWorkletProcessor {
  constructor() {
    super();
    this.queue = [];
    this.offset = 0; // into queue[0]
    this.queued = 0;
    this.played = 0;
    this.underruns = 0;
    this.wasPlaying = false;
    this.sinceReport = 0;
    this.streaming = false;
    this.port.onmessage = (e) => {
      const m = e.data;
      if (typeof m.streaming === "boolean") this.streaming = m.streaming;
      if (m.flush) {
        this.queue = [];
        this.offset = 0;
        this.queued = 0;
        this.wasPlaying = false;
        this.report();
      } else if (m.pcm && m.pcm.length) {
        this.queue.push(m.pcm);
        this.queued += m.pcm.length;
      }
    };
  }
  report() {
    this.port.postMessage({ played: this.played, queued: this.queued, underruns: this.underruns });
    this.sinceReport = 0;
  }
  process(_inputs, outputs) {
    const out = outputs[0][0];
    let i = 0;
    while (i < out.length && this.queue.length) {
      const head = this.queue[0];
      const n = Math.min(out.length - i, head.length - this.offset);
      out.set(head.subarray(this.offset, this.offset + n), i);
      i += n;
      this.offset += n;
      if (this.offset === head.length) { this.queue.shift(); this.offset = 0; }
    }
    this.played += i;
    this.queued -= i;
    for (let c = 1; c < outputs[0].length; c++) outputs[0][c].set(out);
    if (i < out.length) {
      out.fill(0, i);
      if (this.wasPlaying) {
        if (this.streaming) this.underruns++;
        this.wasPlaying = false;
        this.report();
      }
    } else {
      this.wasPlaying = true;
    }
    this.sinceReport += out.length;
    if (this.sinceReport >= sampleRate / 10) this.report();
    return true;
  }
}

registerProcessor("pcm-player", PcmPlayer);
