"""A core-only Reproduction used to test `polyrank reproduce` (measures MRR of a run file)."""

from __future__ import annotations

from pathlib import Path

from polyrank.shared.evaluation import evaluate
from polyrank.shared.reproduce import Reproduction
from polyrank.shared.runs import read_qrels, read_run


class RunFileRow(Reproduction):
    """Evaluates the TREC run ``run_path`` against ``qrels_path``; needs both files."""

    def __init__(self, run_path: str, qrels_path: str) -> None:
        self.run_path, self.qrels_path = Path(run_path), Path(qrels_path)

    def missing(self) -> list[str]:
        return [f"{p} (place the file there)" for p in (self.run_path, self.qrels_path) if not p.is_file()]

    def run(self) -> dict[str, float]:
        result = evaluate(read_run(self.run_path), read_qrels(self.qrels_path), ["MRR", "HIT@1"])
        return dict(result.mean)
