#!/usr/bin/env python3
"""LLM golden (spec §5): transformers `Qwen2ForCausalLM` with a tiny config built from the tiny
checkpoint's config.json and the same weights (W_pack split into q/k/v), plus the audio splice of
§5.1 done here by hand (inputs_embeds: Σ of the 8 code embeddings at <audio_pad_baichuan>).

Stores, per case: the input, logits summaries at every position (first 16 values, top-8 ids and
values, sum and sum of squares over the vocabulary), full logits of the last position
(float16-free: float32 in a compact list is too big, so only the summaries), and a 32-token
greedy continuation with the smallest top-1/top-2 margin seen (how robust the ids are).
Also the audio head (spec §6) through an independent NumPy implementation written from the spec
(see audio_head_numpy) — cases in head.json.

The checkpoint is made with the repo's own `bca tiny --seed 0` (deterministic), so the Rust tests
regenerate the same weights. Usage:
  /work/.venv-golden/bin/python scripts/goldens/llm.py [path/to/bca]
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "goldens", "llm")
PAD = 151678


def load_weights(d):
    from safetensors.torch import load_file
    idx = json.load(open(os.path.join(d, "model.safetensors.index.json")))
    sd = {}
    for f in sorted(set(idx["weight_map"].values())):
        sd.update(load_file(os.path.join(d, f)))
    return {k: v.float() for k, v in sd.items()}


def build_qwen2(cfg, sd):
    from transformers import Qwen2Config, Qwen2ForCausalLM
    qc = Qwen2Config(
        vocab_size=cfg["vocab_size"], hidden_size=cfg["hidden_size"],
        intermediate_size=cfg["intermediate_size"], num_hidden_layers=cfg["num_hidden_layers"],
        num_attention_heads=cfg["num_attention_heads"],
        num_key_value_heads=cfg["num_key_value_heads"], head_dim=cfg["head_dim"],
        hidden_act="silu", max_position_embeddings=cfg["max_position_embeddings"],
        rms_norm_eps=cfg["rms_norm_eps"], rope_theta=cfg["rope_theta"],
        tie_word_embeddings=False, use_sliding_window=False, attention_dropout=0.0,
    )
    try:
        qc.rope_parameters = {"rope_type": "default", "rope_theta": cfg["rope_theta"]}
    except Exception:
        pass
    m = Qwen2ForCausalLM(qc).float().eval()
    h, nh, nkv, hd = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    new = {"model.embed_tokens.weight": sd["model.embed_tokens.weight"],
           "model.norm.weight": sd["model.norm.weight"], "lm_head.weight": sd["lm_head.weight"]}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}"
        w, b = sd[f"{p}.self_attn.W_pack.weight"], sd[f"{p}.self_attn.W_pack.bias"]
        q, k = nh * hd, nkv * hd
        new[f"{p}.self_attn.q_proj.weight"], new[f"{p}.self_attn.k_proj.weight"], new[f"{p}.self_attn.v_proj.weight"] = w[:q], w[q:q + k], w[q + k:]
        new[f"{p}.self_attn.q_proj.bias"], new[f"{p}.self_attn.k_proj.bias"], new[f"{p}.self_attn.v_proj.bias"] = b[:q], b[q:q + k], b[q + k:]
        for n in ["self_attn.o_proj.weight", "mlp.gate_proj.weight", "mlp.up_proj.weight",
                  "mlp.down_proj.weight", "input_layernorm.weight", "post_attention_layernorm.weight"]:
            new[f"{p}.{n}"] = sd[f"{p}.{n}"]
    missing, unexpected = m.load_state_dict(new, strict=False)
    missing = [x for x in missing if "rotary" not in x]
    assert not missing and not unexpected, (missing, unexpected)
    return m


def embeds(m, sd, ids, codes):
    """§5.1: text embedding, replaced (not summed) by Σ_i table_i[code_i] at pad positions."""
    e = m.model.embed_tokens(torch.tensor(ids)).clone()
    k = 0
    for t, tid in enumerate(ids):
        if tid == PAD:
            e[t] = sum(sd[f"model.audio_embed_layers.{i}.weight"][codes[k][i]] for i in range(8))
            k += 1
    assert k == len(codes)
    return e


def summaries(lg):
    top = torch.topk(lg, 8, dim=-1)
    return {
        "first16": lg[:, :16].tolist(),
        "top_ids": top.indices.tolist(),
        "top_vals": top.values.tolist(),
        "sum": lg.double().sum(-1).tolist(),
        "sumsq": (lg.double() ** 2).sum(-1).tolist(),
    }


def greedy(m, sd, ids, codes, n):
    out, margin = [], 1e9
    seq = list(ids)
    with torch.no_grad():
        for _ in range(n):
            e = embeds(m, sd, seq, codes)[None]
            lg = m(inputs_embeds=e).logits[0, -1]
            v, i = torch.topk(lg, 2)
            margin = min(margin, float(v[0] - v[1]))
            nxt = int(i[0])
            out.append(nxt)
            seq.append(nxt)
    return out, margin


def cases(cfg):
    rng = np.random.default_rng(7)
    cbs = cfg["audio_config"]["vq_config"]["codebook_sizes"]
    frames = lambda n: [[int(rng.integers(0, cbs[i])) for i in range(8)] for _ in range(n)]
    c = []
    c.append({"name": "text", "ids": [151665, 108386, 3837, 99489, 6313, 151667, 9707, 11, 1879, 0, 151668], "codes": []})
    long_ids = [int(x) for x in rng.integers(0, 151643, 70)]
    c.append({"name": "long", "ids": long_ids, "codes": []})
    f = frames(5)
    c.append({"name": "audio", "ids": [151667, 151676] + [PAD] * 5 + [151677, 151697, 151668], "codes": f})
    f2 = frames(3)
    c.append({"name": "audio_start", "ids": [PAD] * 3 + [151701, 872], "codes": f2})
    return c


# ---------------------------------------------------------------- audio head, NumPy, from spec §6
def rms(x, w, eps=1e-6):
    x = x.astype(np.float64)
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def gelu(x):
    from scipy.special import erf
    return 0.5 * x * (1 + erf(x / np.sqrt(2)))


def audio_head_numpy(sd, cfg, x, codes):
    """All 8 codebook logits for hidden x and (full) codes, per spec §6 (no torch modules)."""
    H = cfg["hidden_size"]
    nh = H // 128 if H >= 128 else cfg["num_attention_heads"]
    cbs = cfg["audio_config"]["vq_config"]["codebook_sizes"]
    L = cfg["audio_config"]["audio_head_transformer_layers"]
    g = lambda n: sd[n].double().numpy()
    tabs = [g(f"model.audio_embed_layers.{i}.weight") for i in range(8)]
    S = np.zeros((8, H))
    S[0] = x
    acc = np.zeros(H)
    for j in range(1, 8):
        acc = acc + tabs[j - 1][codes[j - 1]]
        S[j] = acc
    hd = H // nh
    for l in range(L):
        p = f"audio_head.transformer_layers.{l}"
        n = rms(S, g(f"{p}.layernorm1.weight"))
        W, b = g(f"{p}.self_attention.in_proj_weight"), g(f"{p}.self_attention.in_proj_bias")
        qkv = n @ W.T + b
        q, k, v = qkv[:, :H], qkv[:, H:2 * H], qkv[:, 2 * H:]
        att = np.zeros((8, H))
        for h in range(nh):
            sl = slice(h * hd, (h + 1) * hd)
            s = q[:, sl] @ k[:, sl].T / np.sqrt(hd)
            s = s + np.triu(np.full((8, 8), -np.inf), 1)
            s = np.exp(s - s.max(-1, keepdims=True))
            s = s / s.sum(-1, keepdims=True)
            att[:, sl] = s @ v[:, sl]
        a = att @ g(f"{p}.self_attention.out_proj.weight").T + g(f"{p}.self_attention.out_proj.bias")
        r = rms(a + S, g(f"{p}.layernorm2.weight"))
        W1, W2 = g(f"{p}.linear1.weight"), g(f"{p}.linear2.weight")
        out = np.zeros((8, H))
        for pos in range(8):
            y = gelu(W1[:, pos * H:(pos + 1) * H] @ r[pos])
            out[pos] = r[pos] + W2[:, pos * 2 * H:(pos + 1) * 2 * H] @ y
        S = out
    S = rms(S, g("audio_head.headnorm.weight"))
    return [S[i] @ g(f"audio_head.heads.{i}.weight").T + g(f"audio_head.heads.{i}.bias") for i in range(8)]


def main():
    bca = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target", "debug", "bca")
    torch.manual_seed(0)
    os.makedirs(OUT, exist_ok=True)
    with tempfile.TemporaryDirectory() as d:
        subprocess.run([bca, "tiny", d, "--seed", "0"], check=True, stdout=subprocess.DEVNULL)
        cfg = json.load(open(os.path.join(d, "config.json")))
        sd = load_weights(d)
    m = build_qwen2(cfg, sd)
    res = []
    with torch.no_grad():
        for c in cases(cfg):
            e = embeds(m, sd, c["ids"], c["codes"])[None]
            out = m(inputs_embeds=e)
            lg = out.logits[0].float()
            g, margin = greedy(m, sd, c["ids"], c["codes"], 32)
            res.append({**c, **summaries(lg), "greedy": g, "greedy_min_margin": margin})
            print(c["name"], len(c["ids"]), "margin", margin)
    json.dump({"source": "transformers Qwen2ForCausalLM (float32) on `bca tiny --seed 0`",
               "transformers": __import__("transformers").__version__, "cases": res},
              open(os.path.join(OUT, "logits.json"), "w"))

    # audio head: hidden state = the model's last-position output after the final norm
    rng = np.random.default_rng(11)
    cbs = cfg["audio_config"]["vq_config"]["codebook_sizes"]
    hcases = []
    with torch.no_grad():
        for c in cases(cfg)[:3]:
            e = embeds(m, sd, c["ids"], c["codes"])[None]
            hs = m.model(inputs_embeds=e).last_hidden_state[0, -1].double().numpy()
            codes = [int(rng.integers(0, cbs[i])) for i in range(8)]
            lg = audio_head_numpy(sd, cfg, hs, codes)
            hcases.append({"name": c["name"], "ids": c["ids"], "codes_in": c["codes"],
                           "hidden": hs.tolist(), "codes": codes,
                           "logits": [l.tolist() for l in lg]})
    json.dump({"source": "NumPy audio head written from spec §6 (float64); hidden from "
               "transformers Qwen2Model", "cases": hcases},
              open(os.path.join(OUT, "head.json"), "w"))
    for f in ["logits.json", "head.json"]:
        print(f, os.path.getsize(os.path.join(OUT, f)))


if __name__ == "__main__":
    main()
