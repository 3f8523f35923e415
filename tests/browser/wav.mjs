// WAV reading shared by the browser suites.

// 16-bit PCM mono WAV → { rate, samples: number[] in [-1, 1] }
export function readWav16(bytes) {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let o = 12, rate = 0, bits = 0, ch = 0;
  while (o + 8 <= bytes.length) {
    const id = String.fromCharCode(...bytes.subarray(o, o + 4));
    const len = dv.getUint32(o + 4, true);
    if (id === "fmt ") { ch = dv.getUint16(o + 10, true); rate = dv.getUint32(o + 12, true); bits = dv.getUint16(o + 22, true); }
    if (id === "data") {
      if (bits !== 16 || ch !== 1) throw new Error(`want 16-bit mono, got ${bits}-bit × ${ch}`);
      const samples = [];
      for (let i = 0; i < len / 2; i++) samples.push(dv.getInt16(o + 8 + 2 * i, true) / 32768);
      return { rate, samples };
    }
    o += 8 + len + (len & 1);
  }
  throw new Error("no data chunk");
}
