"""Crosslingual reranker speed: pairs/s against sentence-transformers ``CrossEncoder`` on the same backbone, and
trainable parameters and training-step time of ranking adapters / SFTMs against full fine-tuning.

    HF_HUB_OFFLINE=1 python benchmarks/crosslingual.py [--base e5|tiny|<BERT folder>] [--pairs 256]
                                                     [--max-length 256] [--batch-size 32] [--repeats 3]
                                                     [--steps 4] [--only all|speed|train]

Speed: the shared cross-encoder on ``--base`` (default the rebuilt multilingual-e5-small) with a fresh ``[CLS]``
head (seed 0), scored by :class:`~polyrank.domains.crosslingual.model.CrosslingualReranker` (length-sorted batches)
and by sentence-transformers' ``CrossEncoder`` loading the same folder (``BertForSequenceClassification``, pooler
replaced by the ``[CLS]`` state, our head copied in): the same function, checked equal before timing. Also the
``Stack(LA, RA)`` adapter reranker (rf 2 + rf 16), which runs extra bottleneck layers. Pairs: msmarco queries x
passages from ``<data_dir>/text/beir/msmarco`` when present, else generated passages of 10-120 words; same pairs,
same order, interleaved repeats, best kept. Training: mean seconds per optimiser step (batch 8) of each ranking
module kind on the same pairs, after one warm-up step.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _cross_encoder import checked_gap, msmarco_pairs, sentence_transformers_twin
from _timing import interleaved_best

WORDS = ("water boils at a lower temperature at altitude because the air pressure is lower and the molecules "
         "escape the liquid sooner than at sea level where the pressure is higher so cooking takes longer").split()


def _pairs(n: int) -> tuple[list[str], list[str], str]:
    return msmarco_pairs(n, WORDS, np.random.default_rng(0))


def speed(base: str, n: int, max_length: int, batch_size: int, repeats: int) -> None:
    from polyrank.domains.crosslingual import model as M
    from polyrank.domains.crosslingual.module import LanguageModule, RankingModule

    folder, tiny = M.resolve_base(base)
    if tiny:
        raise SystemExit("the speed comparison needs a real folder (--base e5 or a BERT folder)")
    b = M.build_base(base)
    ours = M.CrosslingualReranker(b.model, b.tokenizer, "bench", max_length=max_length, batch_size=batch_size,
                                  device="cpu")
    st = sentence_transformers_twin(folder, b.model, max_length)
    queries, docs, source = _pairs(n)
    st_pairs = list(zip(queries, docs))
    gap = checked_gap(ours.score_pairs(queries, docs),
                      st.predict(st_pairs, batch_size=batch_size, show_progress_bar=False), 1e-3)
    la = LanguageModule(language="en", base=base, seed=0).export()
    ra = RankingModule(kind="adapter", base=base, seed=0).export()
    stacked = M.build_reranker("bench", base, ra, {"en": la}, M.Setup("en", "en"), max_length=max_length,
                               batch_size=batch_size, device="cpu")
    best = interleaved_best({"ours": lambda: ours.score_pairs(queries, docs),
                             "st": lambda: st.predict(st_pairs, batch_size=batch_size, show_progress_bar=False),
                             "stack": lambda: stacked.score_pairs(queries, docs)}, repeats)
    rate = {k: len(docs) / seconds for k, seconds in best.items()}
    print(f"base {base}: {len(docs)} pairs ({source}), max_length {max_length}, batch {batch_size}, CPU "
          f"{torch.get_num_threads()} threads; scores agree with sentence-transformers within {gap:.1e}")
    print(f"pairs/s  polyrank {rate['ours']:7.1f}   sentence-transformers {rate['st']:7.1f}   ratio "
          f"{rate['ours'] / rate['st']:5.2f}x (target >= 1.0x)   Stack(LA rf2, RA rf16) {rate['stack']:7.1f} "
          f"({rate['stack'] / rate['st']:4.2f}x)")


def training(base: str, steps: int, max_length: int) -> None:
    from polyrank.domains.crosslingual.module import RankingModule

    queries, docs, _ = _pairs(64)
    batch = [(q, d, i % 2) for i, (q, d) in enumerate(zip(queries[:8], docs[:8]))]
    rows = []
    total = None
    for kind, extra in (("full", {}), ("adapter", {"reduction_factor": 16}), ("sft", {"k": 894_528 // 8})):
        module = RankingModule(kind=kind, base=base, max_length=max_length, seed=0, **extra)
        total = total or sum(p.numel() for p in module.model.parameters())
        opt = torch.optim.AdamW([p for p in module.model.parameters() if p.requires_grad], lr=1e-5)
        times = []
        for step in range(steps + 1):
            start = time.perf_counter()
            opt.zero_grad()
            module.training_step(batch, step).backward()
            opt.step()
            if step:
                times.append(time.perf_counter() - start)
        trainable = module.trainable_parameters() if kind != "sft" else sum(
            p.numel() for p in module.model.parameters() if p.requires_grad)
        rows.append((kind, trainable, float(np.mean(times))))
    full_time = rows[0][2]
    print(f"training steps on {base} (batch 8, max_length {max_length}, {steps} steps after a warm-up; "
          f"{total:,} parameters in the model)")
    for kind, trainable, secs in rows:
        label = {"full": "full fine-tuning", "adapter": "ranking adapter rf 16",
                 "sft": "LT-SFT full phase (all maskable entries train; the sparse phase trains K)"}[kind]
        print(f"  {label:72s} trainable {trainable:>12,}  {secs:6.3f} s/step  ({secs / full_time:4.2f}x full FT)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="e5")
    parser.add_argument("--pairs", type=int, default=256)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--only", choices=("all", "speed", "train"), default="all")
    args = parser.parse_args()
    if args.only in ("all", "speed"):
        speed(args.base, args.pairs, args.max_length, args.batch_size, args.repeats)
    if args.only in ("all", "train"):
        training(args.base, args.steps, min(args.max_length, 128))


if __name__ == "__main__":
    main()
