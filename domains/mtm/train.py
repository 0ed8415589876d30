"""The MTM pipeline in one call: data -> (ROT, PMB init, MTM) through the shared trainer -> BM25 vs MTM.

Evaluation follows the reference (``model/evaluation.py``): a claim's relevant articles are the debunking
articles *among its BM25 candidates* (the positive labels of ``top50.test``), so MAP@k divides by their
number (``relevant="in_candidates"``). ``relevant="all"`` counts every debunking article of the claim,
including those the first stage missed (lower MAP@k wherever BM25 misses some, e.g. on Weibo).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from polyrank.domains.mtm.datamodule import MTMDataModule
from polyrank.domains.mtm.module import MEASURES, MTMModule
from polyrank.shared.errors import PolyrankError
from polyrank.shared.evaluation import evaluate
from polyrank.shared.protocol import Qrels, Run, rerank_run

logger = logging.getLogger(__name__)

Relevant = Literal["in_candidates", "all"]


def fit_mtm(data: MTMDataModule, root: str | Path, model_args: dict[str, Any] | None = None,
            trainer_args: dict[str, Any] | None = None) -> MTMModule:
    """Train MTM (its ``setup`` runs ROT and the PMB initialisation first) with :func:`build_trainer`."""
    from polyrank.shared.trainer import build_trainer

    module = MTMModule(**(model_args or {}))
    args = {"max_epochs": 10, "progress_bar": "none", "monitor": "val/loss"}
    args.update(trainer_args or {})
    trainer = build_trainer(default_root_dir=root, **args)
    trainer.fit(module, datamodule=data)
    module.eval()
    return module


def bm25_run(data: MTMDataModule, split: str) -> Run:
    """The first stage's own ranking of a split's candidates (scores decreasing in BM25 order)."""
    return {q: {d: float(len(dids) - i) for i, d in enumerate(dids)} for q, dids in data.queries(split)}


def evaluation_qrels(qrels: Qrels, candidates: Mapping[str, Sequence[str]], qids: Sequence[str],
                     relevant: Relevant = "in_candidates") -> Qrels:
    """Qrels of ``qids`` under MTM's protocol: only the relevant articles among each claim's candidates
    (``"in_candidates"``, the reference), or every debunking article (``"all"``)."""
    if relevant not in ("in_candidates", "all"):
        raise PolyrankError(f"relevant={relevant!r}; expected 'in_candidates' (the reference) or 'all'")
    if relevant == "all":
        return {q: dict(qrels.get(q, {})) for q in qids}
    out: Qrels = {}
    for q in qids:
        pool = set(candidates.get(q, ()))
        out[q] = {d: r for d, r in qrels.get(q, {}).items() if d in pool}
    return out


def compare_bm25_mtm(module: MTMModule, data: MTMDataModule, split: str = "test",
                     measures: list[str] | None = None, depth: int | None = None,
                     relevant: Relevant = "in_candidates", runs: dict[str, Run] | None = None
                     ) -> dict[str, dict[str, float]]:
    """Mean measures of BM25 alone and after MTM reranking of the top ``depth`` (None = all) on ``split``.

    The shared flow: BM25's run, :func:`~polyrank.shared.protocol.rerank_run` with the trained matcher as a
    reranker, :func:`~polyrank.shared.evaluation.evaluate` on both. ``runs``, when given, receives the two
    runs (``"BM25"``, ``"MTM"``).
    """
    measures = measures or MEASURES
    d = data.data
    first = bm25_run(data, split)
    reranker = module.to_reranker()
    depth = depth or max((len(docs) for docs in first.values()), default=1)
    mtm = rerank_run(first, reranker, {q: d.claims[q] for q in first}, d.articles, depth=depth)
    qrels = evaluation_qrels(d.qrels, d.candidates, d.subset(split), relevant)
    if runs is not None:
        runs.update(BM25=first, MTM=mtm)
    return {"BM25": evaluate(first, qrels, measures).mean, "MTM": evaluate(mtm, qrels, measures).mean}
