#!/usr/bin/env python3
"""Goldens for audio out (spec §7–§9): codes → decoder hidden → Pre-Net mu → CFM mel → HiFT PCM.

Independent references:
  * audio decoder (§4 decode + §7) and Pre-Net (§8.1): plain PyTorch written here from the spec
    (no package ships them);
  * U-Net estimator: CosyVoice's `CausalConditionalDecoder` (PyPI cosyvoice-minicpmo==0.1.0,
    `cosyvoice/flow/decoder.py`, with matcha's blocks and diffusers==0.29.2) — the Euler/CFG
    loop is written here after `ConditionalCFM.solve_euler` (its own wrapper needs speaker
    inputs Baichuan does not have);
  * HiFT: CosyVoice's `HiFTGenerator` + `ConvRNNF0Predictor`, with `m_source` replaced by
    `SourceModuleHnNSF` (SineGen: cumsum then mod 1), as Baichuan's vocoder uses (spec §9);
    its `torch.stft` / `torch.istft` are the STFT reference.
The package is imported by path from its wheel (no install, so its heavy imports are avoided):
  pip download cosyvoice-minicpmo==0.1.0 --no-deps -d /tmp/cosy_dl && unzip it to /tmp/cosy_dl/whl
  pip install diffusers==0.29.2 einops conformer   (into /work/.venv-golden)
Random parts (CFM start noise, SineGen phases and noise) are drawn here and stored, and the
Rust tests inject them. Weights: the repo's own `bca tiny --seed 0` checkpoint.

Usage: /work/.venv-golden/bin/python scripts/goldens/audio_out.py [path/to/bca] [wheel dir]
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BCA = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target/debug/bca")
WHL = sys.argv[2] if len(sys.argv) > 2 else "/tmp/cosy_dl/whl"
OUT = os.path.join(ROOT, "tests/goldens/audio_out")
N_FRAMES = 4
torch.manual_seed(0)
torch.set_grad_enabled(False)

sys.path.insert(0, WHL)
from cosyvoice.flow.decoder import CausalConditionalDecoder  # noqa: E402
from cosyvoice.hifigan.f0_predictor import ConvRNNF0Predictor  # noqa: E402
from cosyvoice.hifigan.generator import HiFTGenerator, SourceModuleHnNSF  # noqa: E402
import cosyvoice.hifigan.generator as gen_mod  # noqa: E402

tmp = tempfile.mkdtemp()
ck = os.path.join(tmp, "tiny")
subprocess.run([BCA, "tiny", ck, "--seed", "0"], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
cfg = json.load(open(os.path.join(ck, "config.json")))
sd = {}
for f in sorted(os.listdir(ck)):
    if f.endswith(".safetensors"):
        sd.update({k: v.float() for k, v in load_file(os.path.join(ck, f)).items()})
a = cfg["audio_config"]
fm = cfg["flow_matching_config"]

# ---- §4 decode + §7 audio decoder -------------------------------------------------------
sizes = a["vq_config"]["codebook_sizes"]
rng = np.random.RandomState(0)
codes = np.stack([rng.randint(0, sizes[i], size=N_FRAMES) for i in range(8)], axis=1).astype(np.int32)
B = "audio_tokenizer.audio_bridge_model."
D = "audio_tokenizer.audio_decoder."
def norm(x, p, rms, eps):
    if rms:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * sd[p + ".weight"]
    return F.layer_norm(x, (x.shape[-1],), sd[p + ".weight"], sd[p + ".bias"], eps)


def whisper_layer(x, p, heads, rms):
    eps = 1e-6 if rms else 1e-5
    t, dm = x.shape
    hd = dm // heads
    y = norm(x, p + ".self_attn_layer_norm", rms, eps)
    q = F.linear(y, sd[p + ".self_attn.q_proj.weight"], sd[p + ".self_attn.q_proj.bias"])
    k = F.linear(y, sd[p + ".self_attn.k_proj.weight"])
    v = F.linear(y, sd[p + ".self_attn.v_proj.weight"], sd[p + ".self_attn.v_proj.bias"])
    sh = lambda u: u.view(t, heads, hd).transpose(0, 1)  # noqa: E731
    o = F.scaled_dot_product_attention(sh(q), sh(k), sh(v), is_causal=True)
    o = o.transpose(0, 1).reshape(t, dm)
    x = x + F.linear(o, sd[p + ".self_attn.out_proj.weight"], sd[p + ".self_attn.out_proj.bias"])
    y = norm(x, p + ".final_layer_norm", rms, eps)
    y = F.gelu(F.linear(y, sd[p + ".fc1.weight"], sd[p + ".fc1.bias"]))
    return x + F.linear(y, sd[p + ".fc2.weight"], sd[p + ".fc2.bias"])



def decode(codes):
    e = torch.zeros(len(codes), sd[B + "vq_list.0.codebook.embed"].shape[1])
    for i in reversed(range(8)):
        e = e + sd[B + f"vq_list.{i}.codebook.embed"][torch.from_numpy(codes[:, i]).long()]
    z = F.linear(e, sd[B + "proj_decoder.weight"], sd[B + "proj_decoder.bias"])  # (N, d)
    d = a["d_model"]
    h = F.conv_transpose1d(z.T[None], sd[D + "dconv1.conv.weight"], sd[D + "dconv1.conv.bias"], stride=4)
    h = F.group_norm(h, 1, sd[D + "dconv1.norm.weight"], sd[D + "dconv1.norm.bias"], eps=1e-5)
    h = h[0].T  # (T, d)
    T = h.shape[0]
    assert T == 4 * len(codes) - 1
    h = h + sd[D + "positional_embedding"][:T]


    for i in range(a["decoder_layers"]):
        h = whisper_layer(h, D + f"layers.{i}", a["decoder_attention_heads"], False)
    hidden = norm(h, D + "layer_norm", False, 1e-5)

    return hidden


hidden = decode(codes)
# ---- §8.1 Pre-Net --------------------------------------------------------------------------
FMP = "audio_tokenizer.audio_flow_matching_decoder."

def prenet(hidden):
    y = F.linear(hidden, sd[FMP + "prenet.in_mlp.0.weight"], sd[FMP + "prenet.in_mlp.0.bias"])
    y = F.linear(F.silu(y), sd[FMP + "prenet.in_mlp.2.weight"], sd[FMP + "prenet.in_mlp.2.bias"])
    for i in range(fm["prenet_nlayers"]):
        y = whisper_layer(y, FMP + f"prenet.transformer_layers.{i}", fm["prenet_attention_heads"], True)
    return F.linear(norm(y, FMP + "prenet.final_norm", True, 1e-6), sd[FMP + "prenet.out_proj.weight"])


mu = prenet(hidden)  # (T, 80)

# ---- §8.2–8.3 CFM with CosyVoice's causal U-Net ---------------------------------------------
mel_bins = fm["in_channels"]
est = CausalConditionalDecoder(
    in_channels=2 * mel_bins,
    out_channels=mel_bins,
    channels=fm["channels"],
    dropout=0.0,
    attention_head_dim=fm["attention_head_dim"],
    n_blocks=fm["n_blocks"],
    num_mid_blocks=fm["num_mid_blocks"],
    num_heads=fm["num_heads"],
    act_fn="gelu",
    static_chunk_size=100,
    num_decoding_left_chunks=-1,
).eval()
pre = FMP + "conditional_decoder."
est_sd = {k[len(pre):]: v for k, v in sd.items() if k.startswith(pre)}
missing, unexpected = est.load_state_dict(est_sd, strict=False)
assert not unexpected, unexpected
assert all("num_batches" in m for m in missing), missing

T = mu.shape[0]
cfm_noise = torch.randn(T, mel_bins)  # time-major, as the Rust side takes it
steps = fm.get("diffusion_steps", 10)
rate = fm["cfm_params"]["inference_cfg_rate"]
t_span = torch.linspace(0, 1, steps + 1)
t_span = 1 - torch.cos(t_span * 0.5 * torch.pi)

def cfm(mu, noise):
    x = noise.T[None].clone()
    mu_cf = mu.T[None]
    T = mu.shape[0]
    mask = torch.ones(1, 1, T)
    t, dt = t_span[0], t_span[1] - t_span[0]
    for step in range(1, steps + 1):
        x_in = torch.cat([x, x])
        mu_in = torch.cat([mu_cf, torch.zeros_like(mu_cf)])
        v = est(x_in, torch.cat([mask, mask]), mu_in, torch.stack([t, t]), streaming=True)
        vc, vu = v[:1], v[1:]
        x = x + dt * ((1.0 + rate) * vc - rate * vu)
        t = t + dt
        if step < steps:
            dt = t_span[step + 1] - t
    return x[0].T.contiguous()  # (T, 80)


mel = cfm(mu, cfm_noise)

# ---- §9 HiFT ---------------------------------------------------------------------------------
hsd = torch.load(os.path.join(ck, "hift.pt"), map_location="cpu")
base = hsd["conv_pre.weight_v"].shape[0]
f0ch = hsd["f0_predictor.condnet.0.weight_v"].shape[0]
hift = HiFTGenerator(
    in_channels=80, base_channels=base, nb_harmonics=8, sampling_rate=24000,
    nsf_alpha=0.1, nsf_sigma=0.003, nsf_voiced_threshold=10,
    upsample_rates=[8, 5, 3], upsample_kernel_sizes=[16, 11, 7],
    istft_params={"n_fft": 16, "hop_len": 4},
    resblock_kernel_sizes=[3, 7, 11], resblock_dilation_sizes=[[1, 3, 5]] * 3,
    source_resblock_kernel_sizes=[7, 7, 11], source_resblock_dilation_sizes=[[1, 3, 5]] * 3,
    lrelu_slope=0.1, audio_limit=0.99,
    f0_predictor=ConvRNNF0Predictor(num_class=1, in_channels=80, cond_channels=f0ch),
)
# Baichuan's vocoder: SineGen (cumsum then mod 1), not the 24 kHz default SineGen2
hift.m_source = SourceModuleHnNSF(sampling_rate=24000, upsample_scale=480, harmonic_num=8,
                                  sine_amp=0.1, add_noise_std=0.003, voiced_threshod=10)
own = hift.state_dict()
mapped = {}
for k, v in hsd.items():
    k2 = k
    if k.endswith(".weight_g") and k not in own:
        k2 = k[: -len(".weight_g")] + ".parametrizations.weight.original0"
    if k.endswith(".weight_v") and k not in own:
        k2 = k[: -len(".weight_v")] + ".parametrizations.weight.original1"
    mapped[k2] = v.float()
hift.load_state_dict(mapped, strict=True)
hift.eval()


class Injected:
    """Makes SineGen's Uniform phases and randn_like noise the given tensors."""

    def __init__(self, phases, noise):
        self.phases, self.noise = phases, noise

    def __enter__(self):
        self.u, self.r = gen_mod.Uniform.sample, torch.randn_like
        ph, nz, r = self.phases, self.noise, self.r
        gen_mod.Uniform.sample = lambda _s, sample_shape=(): ph.view(1, -1, 1).clone()
        torch.randn_like = lambda t, **kw: nz.clone() if t.shape == nz.shape else torch.zeros_like(t)

    def __exit__(self, *exc):
        gen_mod.Uniform.sample, torch.randn_like = self.u, self.r


L = T * 480
src_phases = (torch.rand(9) * 2 - 1) * np.pi
src_phases[0] = 0
src_noise = torch.randn(L, 9)  # sample-major (L, H+1)
with Injected(src_phases, src_noise.T[None].contiguous()):
    f0 = hift.f0_predictor(mel.T[None])[0]  # (T,)
    pcm, s = hift.inference(mel.T[None])
pcm = pcm[0]
s = s[0, 0]

# SineGen with voiced F0 (the tiny checkpoint's F0 is ~0 Hz, i.e. unvoiced everywhere)
sine_f0 = torch.tensor([0.0, 5.0, 120.0, 180.0, 250.0, 90.0, 310.0, 60.0])
sine_phases = (torch.rand(9) * 2 - 1) * np.pi
sine_phases[0] = 0
sine_noise = torch.randn(len(sine_f0) * 480, 9)
with Injected(sine_phases, sine_noise.T[None].contiguous()):
    up = hift.f0_upsamp(sine_f0[None, None]).transpose(1, 2)
    sine_s, _, _ = hift.m_source(up)
sine_s = sine_s[0, :, 0]

# a longer segment (30 frames → 119 mel frames > the U-Net's 100-frame attention chunk)
codes_long = np.stack([rng.randint(0, sizes[i], size=30) for i in range(8)], axis=1).astype(np.int32)
hidden_long = decode(codes_long)
mu_long = prenet(hidden_long)
cfm_noise_long = torch.randn(mu_long.shape[0], mel_bins)
mel_long = cfm(mu_long, cfm_noise_long)

out = {
    "codes_long": torch.from_numpy(codes_long), "hidden_long": hidden_long, "mu_long": mu_long,
    "cfm_noise_long": cfm_noise_long, "mel_long": mel_long,
    "codes": torch.from_numpy(codes),
    "hidden": hidden, "mu": mu, "cfm_noise": cfm_noise, "mel": mel,
    "f0": f0, "src_phases": src_phases, "src_noise": src_noise, "source": s, "pcm": pcm,
    "sine_f0": sine_f0, "sine_phases": sine_phases, "sine_noise": sine_noise, "sine_s": sine_s,
}
out = {k: v.contiguous().float() if not k.startswith("codes") else v.contiguous() for k, v in out.items()}
os.makedirs(OUT, exist_ok=True)
import diffusers  # noqa: E402
meta = {
    "script": "scripts/goldens/audio_out.py",
    "checkpoint": "bca tiny --seed 0",
    "torch": torch.__version__, "numpy": np.__version__, "diffusers": diffusers.__version__,
    "cosyvoice": "cosyvoice-minicpmo==0.1.0 (flow/decoder.py, hifigan/generator.py, hifigan/f0_predictor.py)",
}
save_file(out, os.path.join(OUT, "golden.safetensors"), metadata=meta)
for k, v in out.items():
    print(f"{k:12s} {tuple(v.shape)} absmax {v.float().abs().max():.4g}")
