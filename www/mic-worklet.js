// Microphone capture (AudioWorklet, audio thread): hands the main thread blocks of mono PCM at
// the context's rate with their RMS level. ~2048 samples a block keeps message traffic low.
const BLOCK = 2048;

class MicCapture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.buf = new Float32Array(BLOCK);
    this.n = 0;
  }
  process(inputs) {
    const input = inputs[0];
    if (!input || input.length === 0) return true;
    const ch0 = input[0];
    const chs = input.length;
    for (let i = 0; i < ch0.length; i++) {
      let s = 0;
      for (let c = 0; c < chs; c++) s += input[c][i];
      this.buf[this.n++] = s / chs;
      if (this.n === BLOCK) {
        let e = 0;
        for (let j = 0; j < BLOCK; j++) e += this.buf[j] * this.buf[j];
        const samples = this.buf;
        this.port.postMessage({ samples, rms: Math.sqrt(e / BLOCK) }, [samples.buffer]);
        this.buf = new Float32Array(BLOCK);
        this.n = 0;
      }
    }
    return true;
  }
}

registerProcessor("mic-capture", MicCapture);
