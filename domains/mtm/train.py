"""The MTM pipeline in one call: data -> (ROT, PMB init, MTM) through the shared trainer -> BM25 vs MTM."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from polyrank.domains.mtm.datamodule import MTMDataModule
from polyrank.domains.mtm.module import MEASURES, MTMModule
from polyrank.shared.evaluation import evaluate
from polyrank.shared.protocol import Run

logger = logging.getLogger(__name__)


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


def compare_bm25_mtm(module: MTMModule, data: MTMDataModule, split: str = "test",
                     measures: list[str] | None = None, depth: int | None = None) -> dict[str, dict[str, float]]:
    """Mean measures of BM25 alone and after MTM reranking of the top ``depth`` (None = all) on ``split``."""
    measures = measures or MEASURES
    qrels = {q: data.data.qrels.get(q, {}) for q in data.data.subset(split)}
    return {"BM25": evaluate(bm25_run(data, split), qrels, measures).mean,
            "MTM": evaluate(module.rerank(split, depth), qrels, measures).mean}
