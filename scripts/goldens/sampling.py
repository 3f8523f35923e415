#!/usr/bin/env python3
"""Sampling golden (spec §10.3): transformers' logits processors (RepetitionPenalty → Temperature →
TopK → TopP, the order HF 4.45's `_get_logits_processor` builds) on seeded random logits.
Writes tests/goldens/sampling/processors.json: per case the input logits, history, parameters and
the processed scores (−inf as null).
Usage: /work/.venv-golden/bin/python scripts/goldens/sampling.py
"""
import json
import os

import numpy as np
import torch
from transformers.generation.logits_process import (
    RepetitionPenaltyLogitsProcessor, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "goldens", "sampling", "processors.json")


def main():
    rng = np.random.default_rng(3)
    params = [(0.8, 20, 0.85, 1.1), (0.3, 20, 0.85, 1.05), (0.5, 5, 0.85, 1.3), (1.0, 0, 0.9, 1.0),
              (0.7, 50, 1.0, 1.2), (1.3, 3, 0.5, 1.5)]
    cases = []
    for n, (t, k, p, rep) in enumerate(params * 4):
        v = int(rng.choice([17, 100, 300, 1025]))
        scale = float(rng.choice([0.2, 1.0, 4.0]))
        logits = (rng.standard_normal(v) * scale).astype(np.float32)
        hist = [int(x) for x in rng.integers(0, v, int(rng.integers(0, 40)))]
        x = torch.tensor(logits)[None]
        ids = torch.tensor([hist if hist else [0]])
        if rep != 1.0 and hist:
            x = RepetitionPenaltyLogitsProcessor(rep)(ids, x)
        x = TemperatureLogitsWarper(t)(ids, x)
        if k > 0:
            x = TopKLogitsWarper(k)(ids, x)
        if p < 1.0:
            x = TopPLogitsWarper(p)(ids, x)
        out = [None if not np.isfinite(s) else float(s) for s in x[0].numpy()]
        cases.append({"logits": logits.tolist(), "history": hist, "temperature": t, "top_k": k,
                      "top_p": p, "repetition_penalty": rep, "processed": out})
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    json.dump({"source": "transformers logits processors " + __import__("transformers").__version__,
               "cases": cases}, open(OUT, "w"))
    print(len(cases), "cases", os.path.getsize(OUT), "bytes")


if __name__ == "__main__":
    main()
