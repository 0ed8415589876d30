"""Document-page reranker speed, same run: RagLLaVA pointwise pages/s with vs without prefix KV reuse (on a VLM
with page images, and on SmolLM2-135M with page text), and MM-R5 listwise one forward pass (``first_token``) vs
full generation of a forced-length answer.

    HF_HUB_OFFLINE=1 python benchmarks/docimage.py [--vlm tiny|<local VLM folder>] [--family qwen2_vl|llava]
                                                  [--pages 16] [--gen-tokens 64] [--repeats 3] [--no-text]

Questions: real MMDocIR questions (``<data_dir>/docimage/mmdocir``) when present, else a fixed 25-word question.
Pages: random 224x224 images (the tiny VLM shrinks them to 56x56 / 28x28) and 96-token page texts. The "full
generation" row forces ``--gen-tokens`` new tokens (``min_new_tokens``), a short stand-in for MM-R5's reasoning
(its outputs run to hundreds of tokens), so the ratio is a lower bound. Best of ``--repeats``, interleaved.
"""

from __future__ import annotations

import argparse

import numpy as np
from _timing import interleaved_best

QUESTION = ("According to the report, which subgroup among Hispanics gained the most confidence in their personal "
            "finances from 2008 to 2015, and by how many percentage points did it change?")


def _question() -> str:
    from polyrank.shared.reproduce import data_dir

    root = data_dir()
    path = root / "docimage" / "mmdocir" / "MMDocIR_annotations.jsonl" if root else None
    if path and path.is_file():
        from polyrank.domains.docimage.data import read_annotations

        return read_annotations(path)[0].questions[2].text
    return QUESTION


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vlm", default="tiny")
    parser.add_argument("--family", default="qwen2_vl")
    parser.add_argument("--pages", type=int, default=16)
    parser.add_argument("--gen-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-text", action="store_true", help="skip the SmolLM2 page-text rows")
    args = parser.parse_args()

    from PIL import Image

    from polyrank.domains.docimage.mmr5 import MMR5Reranker, prompt_input, prompt_words
    from polyrank.domains.docimage.pages import Page
    from polyrank.domains.docimage.ragllava import RagLLaVAReranker
    from polyrank.shared.llm.vision import generate, load_vlm
    from polyrank.shared.llm.tiny_vlm import tiny_vlm
    from polyrank.shared.protocol import Candidate

    vlm = tiny_vlm(args.family, words=prompt_words()) if args.vlm == "tiny" else load_vlm(args.vlm)
    question = _question()
    rng = np.random.default_rng(0)
    words = "revenue profit growth segment quarter report table figure market share customers".split()
    pages = [Candidate(f"d#{i}", Page("d", i, Image.fromarray(rng.integers(0, 255, (224, 224, 3), np.uint8)),
                                      " ".join(rng.choice(words, 96))))
             for i in range(args.pages)]
    rows = []

    def pointwise(lm, label: str, **options) -> None:
        reuse = RagLLaVAReranker(lm, "bench", reuse_prefix=True, **options)
        plain = RagLLaVAReranker(lm, "bench", reuse_prefix=False, **options)
        np.testing.assert_allclose(reuse.score(question, pages), plain.score(question, pages), atol=1e-4)
        best = interleaved_best({"plain": lambda: plain.score(question, pages),
                                 "reuse": lambda: reuse.score(question, pages)}, args.repeats)
        t_plain, t_reuse = best["plain"], best["reuse"]
        rows.append((f"{label}: pointwise, no prefix reuse", args.pages / t_plain, 1.0))
        rows.append((f"{label}: pointwise, prefix reuse", args.pages / t_reuse, t_plain / t_reuse))
        print(rows[-2:], flush=True)

    pointwise(vlm, f"{vlm.source} (page images)")
    if not args.no_text:
        from polyrank.shared.llm.loading import load_causal_lm, smollm2_gguf

        pointwise(load_causal_lm(smollm2_gguf(), device="cpu"), "SmolLM2-135M (page text)", input="text",
                  max_text_tokens=96)

    window = pages[: min(9, args.pages)]  # ids 1..9: single tokens also for digit-splitting tokenizers (Qwen)
    single = MMR5Reranker(vlm, "bench", mode="first_token", max_candidates=len(window))
    prompt = prompt_input(vlm, question, [c.content for c in window], True)
    best = interleaved_best({"single": lambda: single.score(question, window),
                             "gen": lambda: generate(vlm, [prompt], args.gen_tokens, min_new_tokens=args.gen_tokens)},
                            args.repeats)
    t_single, t_gen = best["single"], best["gen"]
    rows.append((f"{vlm.source}: listwise {len(window)} pages, full generation ({args.gen_tokens} tokens)",
                 len(window) / t_gen, 1.0))
    rows.append((f"{vlm.source}: listwise {len(window)} pages, single pass (first_token)", len(window) / t_single,
                 t_gen / t_single))
    print(f"question: {question[:80]}... ({len(prompt.ids)} listwise prompt tokens)")
    print(f"{'run':<78} {'pages/s':>9} {'ratio':>7}")
    for name, rate, ratio in rows:
        print(f"{name:<78} {rate:9.1f} {ratio:7.2f}x")


if __name__ == "__main__":
    main()
