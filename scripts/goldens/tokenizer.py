#!/usr/bin/env python3
"""Tokenizer golden: ids of a zh/en/emoji/special-token corpus from Python `tokenizers` AND
`transformers` (Qwen2TokenizerFast, add_special_tokens=False), which must agree, plus the
transformers decode of those ids (skip_special_tokens=False).

Input: the tiny checkpoint's tokenizer (made here with the repo's `bca tiny`, which writes the real
Qwen2 BPE with Baichuan's added tokens). Output: tests/goldens/tokenizer/corpus.json.
Usage: /work/.venv-golden/bin/python scripts/goldens/tokenizer.py [path/to/bca]
"""
import json
import os
import random
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "goldens", "tokenizer", "corpus.json")

SPECIALS = [
    "<|endoftext|>", "<B_SYS>", "<C_Q>", "<C_A>", "<audio_start_baichuan>",
    "<audio_end_baichuan>", "<audio_pad_baichuan>", "<audiogen_start_baichuan>",
    "<audiogen_end_baichuan>", "<audiotext_start_baichuan>", "<audio_delim_baichuan>",
    "<|im_start|>", "<|im_end|>", "<B_USYS>",
]

FIXED = [
    "", " ", "  ", "\n", "\n\n", "\t", "hello", "Hello, world!", " leading space",
    "trailing space ", "multiple   spaces   inside", "tabs\tand\nnewlines\r\n",
    "It's a dog's life; we'll see, they've gone, I'm here, you'd know.",
    "CAPITALS AND lowercase MiXeD", "numbers 1234567890 and 3.14159 and -42",
    "email: someone@example.com, url: https://example.com/a?b=c&d=e#f",
    "code: fn main() { println!(\"{}\", x); }", "tokenization of antidisestablishmentarianism",
    "你好", "你好，世界！", "将语音转录为文本:", "请用【邻家女声】这个声音回答问题。",
    "甚至出现交易几乎停滞的情况", "一二线城市虽然也处于调整中", "今天天气怎么样？我们去公园吧。",
    "中文English混合mixed文本text", "数字１２３和全角ＡＢＣ", "繁體中文測試：臺灣、香港",
    "日本語のテキストです。", "한국어 문장입니다.", "Русский текст, ёжик.", "Ελληνικά κείμενο",
    "العربية نص", "עברית", "हिन्दी पाठ", "ภาษาไทย",
    "😀", "😀😃😄", "emoji 👍 in text 🎉!", "👨‍👩‍👧‍👦 family ZWJ", "🏳️‍🌈 flag", "❤️ heart with VS16",
    "🇨🇳🇺🇸 flags", "猫🐱和狗🐶", "e\u0301 combining accent (NFC)", "Å vs A\u030a", "ﬁ ligature",
    "\u00a0nbsp\u00a0", "zero\u200bwidth", "tab\u3000ideographic space", "…—–“”‘’",
    "<C_Q>你好<C_A>", "<B_SYS>请用【邻家女声】这个声音回答问题。<C_Q>",
    "<audio_start_baichuan><audio_pad_baichuan><audio_pad_baichuan><audio_end_baichuan>",
    "text<audiogen_start_baichuan><audio_pad_baichuan><audiogen_end_baichuan>more",
    "<audiotext_start_baichuan><C_A>", "<|endoftext|>", "a<|endoftext|>b",
    "< C_Q> not special", "<C_Q", "C_Q>", "<c_q> lowercase", "<<C_Q>>", "<C_Q><C_Q><C_Q>",
    "将语音转录为文本:<audio_start_baichuan><audio_pad_baichuan><audio_end_baichuan>",
    " <C_A> spaced special ", "\n<C_Q>\n", "<|im_start|>user\nhi<|im_end|>",
]

WORDS_EN = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "speech", "model",
            "audio", "token", "Baichuan", "GPU", "WebGPU", "isn't", "can't", "42", "2025", "!",
            "?", ",", ".", "...", "(", ")", "-", "\"", "'", "hello"]
WORDS_ZH = ["我", "你", "他", "是", "的", "了", "在", "说话", "声音", "模型", "语音", "识别", "合成",
            "今天", "明天", "北京", "上海", "，", "。", "！", "？", "、", "：", "“", "”", "《", "》"]
EMOJI = ["😀", "😂", "🥰", "👍", "🎉", "🔥", "🐼", "🍜", "🚀", "✨", "🤖", "👨‍💻", "☕", "🌏"]


def corpus():
    rng = random.Random(20261126)
    out = list(FIXED)
    while len(out) < 240:
        n = rng.randint(1, 14)
        parts = []
        for _ in range(n):
            r = rng.random()
            if r < 0.35:
                parts.append(rng.choice(WORDS_EN))
            elif r < 0.7:
                parts.append(rng.choice(WORDS_ZH))
            elif r < 0.85:
                parts.append(rng.choice(EMOJI))
            else:
                parts.append(rng.choice(SPECIALS))
        sep = rng.choice(["", " ", " ", "\n"])
        out.append(sep.join(parts))
    return out


def main():
    bca = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target", "debug", "bca")
    from tokenizers import Tokenizer
    try:
        from transformers import Qwen2TokenizerFast as QwenTok
    except ImportError:
        from transformers import Qwen2Tokenizer as QwenTok

    with tempfile.TemporaryDirectory() as d:
        subprocess.run([bca, "tiny", d, "--seed", "0", "--tokenizer",
                        os.path.join(ROOT, ".cache", "assets", "tokenizer-qwen3.json")],
                       check=True, stdout=subprocess.DEVNULL)
        raw = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
        hf = QwenTok.from_pretrained(d)
        for tok, i in [("<|endoftext|>", 151643), ("<B_SYS>", 151665), ("<audiogen_end_baichuan>", 151701)]:
            assert hf.convert_tokens_to_ids(tok) == i, tok
        cases = []
        for text in corpus():
            ids_raw = raw.encode(text, add_special_tokens=False).ids
            ids_hf = hf(text, add_special_tokens=False)["input_ids"]
            assert ids_raw == ids_hf, (text, ids_raw, ids_hf)
            dec = hf.decode(ids_hf, skip_special_tokens=False, clean_up_tokenization_spaces=False)
            cases.append({"text": text, "ids": ids_hf, "decoded": dec})
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump({"source": "tokenizers + transformers Qwen2TokenizerFast, "
                   "add_special_tokens=False; decode skip_special_tokens=False",
                   "cases": cases}, f, ensure_ascii=False, indent=0)
    print(f"{len(cases)} cases -> {OUT}")


if __name__ == "__main__":
    main()
