"""MTM demo: fact-checked claim retrieval on Politifact (:mod:`.factcheck_demo`), or BM25 vs MTM on generated data.

Small on purpose (<= 3 min on 2 cores): a subsample of claims, short inputs, a few MTM epochs; the full
setting is ``configs/mtm/{twitter,weibo}.yaml``. The comparison goes through the shared flow: BM25's run,
``rerank_run`` with the trained matcher, ``evaluate``; both runs are written as TREC files beside the report.
"""

from __future__ import annotations

import logging
import time

import torch

from polyrank.shared.demo import DemoContext
from polyrank.shared.report import ReportSection, Table

logger = logging.getLogger(__name__)

SETTINGS = dict(backbone="minilm", n_patterns=20, train_claims=120, test_claims=40, negatives=1, depth=10, k=3,
                max_length=64, claim_max_length=32, mtm_epochs=5, synthetic_claims=150, synthetic_articles=60,
                threads=2)
MEASURES = ("MRR", "MAP@5", "HIT@5")


def run_demo(ctx: DemoContext) -> ReportSection:
    """Train ROT -> PMB -> MTM on a small split and report BM25 vs MTM (MRR, MAP@5, HIT@5) and one example.

    Uses at most ``SETTINGS["threads"]`` torch threads while it runs and restores the caller's count and the
    Python/NumPy/torch RNG states after.
    """
    from polyrank.domains.mtm.encoding import global_rng_untouched

    threads = torch.get_num_threads()
    torch.set_num_threads(min(SETTINGS["threads"], threads))
    try:
        with global_rng_untouched():      # first imports and nested trainers may draw from the global RNGs
            return _run(ctx)
    finally:
        torch.set_num_threads(threads)


def _run(ctx: DemoContext) -> ReportSection:
    folder = ctx.data_dir / "factcheck" / "politifact" if ctx.data_dir else None
    if folder is not None and folder.is_dir():
        from polyrank.domains.mtm.factcheck_demo import run_politifact

        return run_politifact(ctx, folder)
    return _run_generated(ctx)


def _run_generated(ctx: DemoContext) -> ReportSection:
    from polyrank.domains.mtm.datamodule import MTMDataModule
    from polyrank.domains.mtm.train import compare_bm25_mtm, fit_mtm
    from polyrank.shared.runs import write_run

    s = SETTINGS
    folder = ctx.data_dir / "factcheck" / "politifact" if ctx.data_dir else None
    real = folder is not None and folder.is_dir()
    start = time.perf_counter()
    dm = MTMDataModule(source="politifact" if real else "synthetic", path=str(folder) if real else None,
                       backbone=s["backbone"], n_candidates=50, max_train_claims=s["train_claims"],
                       max_eval_claims=s["test_claims"], negatives_per_claim=s["negatives"], batch_size=16,
                       seed=ctx.seed, synthetic_claims=s["synthetic_claims"],
                       synthetic_articles=s["synthetic_articles"])
    model_args = dict(backbone=s["backbone"], n_key_sentences=s["k"], n_patterns=s["n_patterns"], rot_epochs=1,
                      rot_lr=5e-5, rot_l2=0.05, rot_batch_size=64, rot_max_pairs=256, max_length=s["max_length"],
                      claim_max_length=s["claim_max_length"], memory_update_pass="train_step", seed=ctx.seed,
                      eval_batch_size=64, lr=3e-4, finetune_inter_layers=False)
    module = fit_mtm(dm, ctx.out_dir / "mtm", model_args,
                     dict(max_epochs=s["mtm_epochs"], loggers=False, enable_checkpointing=False,
                          limit_val_batches=0,
                          accelerator="cpu" if ctx.device == "cpu" else "auto", seed=ctx.seed))
    trained = time.perf_counter() - start
    runs: dict = {}
    results = compare_bm25_mtm(module, dm, "test", list(MEASURES), depth=s["depth"], runs=runs)
    for name, run in runs.items():
        write_run(run, ctx.out_dir / "mtm" / f"{name.lower()}.test.trec", tag=name)
    total = time.perf_counter() - start
    rows = [[name, *(float(results[name][m]) for m in MEASURES)] for name in ("BM25", "MTM")]
    data = dm.data
    where = (f"Politifact ({folder}), split by article" if real
             else "GENERATED data (no ../shared/data/factcheck/politifact folder found)")
    judged = sum(any(data.qrels.get(q, {}).get(d, 0) > 0 for d in data.candidates[q]) for q in data.subset("test"))
    tables = [Table(f"BM25 vs MTM on {judged} of {len(data.subset('test'))} held-out claims (those with a relevant "
                    "article among their 50 candidates)", ["ranker", *MEASURES], rows,
                    note=f"MTM reranks BM25's top {s['depth']} of 50; relevant = debunking articles among the 50 "
                         "candidates (the reference's rule; MAP@5 divides by their number)")]
    tables.append(_example(module, dm, s["depth"]))
    notes = [f"data: {where}; {'; '.join(data.notes)}",
             f"train {len(data.subset('train'))} claims x (positive + {s['negatives']} BM25 negatives), "
             f"1 ROT epoch on <= 256 deduplicated pairs, {s['mtm_epochs']} MTM epochs, k={s['k']} key sentences, "
             f"K={s['n_patterns']} patterns, "
             f"inputs cut to {s['max_length']} tokens (claim {s['claim_max_length']})",
             "backbone all-MiniLM-L6-v2 (6 layers): embeddings + layer 0 from ROT and frozen; the reference trains "
             "layers 1-11 of BERT-base (here 1-5), the demo trains only the last layer and the head "
             "(finetune_inter_layers=False) to fit the CPU budget",
             "PMB updated from the training-step probabilities (memory_update_pass=train_step, not the "
             "reference's extra eval pass) to fit the CPU budget",
             f"runs: {ctx.out_dir / 'mtm'}/{{bm25,mtm}}.test.trec",
             f"time: training {trained:.0f}s, total {total:.0f}s"]
    summary = ("MTM (Sheng et al., ACL 2021): BM25 top-50 reranked by a memory-enhanced matcher over key sentences. "
               "Tiny training budget: expect MTM below its paper figures; the point is the pipeline and evidence.")
    if not real:  # no redistributable fact-check set exists: say it first, not in a footnote
        summary = ("GENERATED DATA ONLY: no fact-check data set may be redistributed with the project, and "
                   "../shared/data/factcheck/politifact was not found, so these figures are on generated claims and "
                   "articles and say nothing about real fact-checking. " + summary)
    return ReportSection("MTM: fact-checked claim retrieval", summary, tables, notes=notes)


def _example(module, dm, depth: int) -> Table:
    """One test claim: MTM's top article and its key sentences (weights, pattern slots)."""
    qid = dm.data.subset("test")[0]
    cands = [(d, dm.data.articles[d]) for d in dm.data.candidates[qid][:depth]]
    top = module.to_reranker().rank(dm.data.claims[qid], cands, top_k=1, explain=True)[0]
    relevant = "relevant" if dm.data.qrels.get(qid, {}).get(top.candidate_id) else "not relevant"
    rows = [[f"{k['weight']:.3f}", k["pattern"], k["sentence"][:140]] for k in top.explanation["key_sentences"]]
    return Table(f"Claim {qid}: \"{dm.data.claims[qid][:120]}\" -> article {top.candidate_id} ({relevant})",
                 ["weight", "pattern", "key sentence"], rows)
