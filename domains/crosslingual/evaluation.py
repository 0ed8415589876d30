"""Per-language-pair evaluation (Litschko et al. 2022, Sec. 4): MAP on CLEF-2003, nDCG@20 and MAP on HC4, through
:func:`polyrank.shared.evaluation.evaluate`, each system tested against full fine-tuning with a paired two-sided
t-test over the queries (scipy, :func:`polyrank.shared.evaluation.compare`; the paper marks p <= 0.05 with *).
"""

from __future__ import annotations

from dataclasses import dataclass

from polyrank.shared.errors import PolyrankError
from polyrank.shared.runs import Qrels, Run

MEASURES = {"clef": ("MAP",), "hc4": ("nDCG@20", "MAP")}


@dataclass
class PairResult:
    """One system on one language pair: mean measures and p-values against the reference system."""

    pair: str
    system: str
    means: dict[str, float]
    p_values: dict[str, float | None]
    n_queries: int

    def marked(self, measure: str, alpha: float = 0.05) -> str:
        p = self.p_values.get(measure)
        return f"{self.means[measure]:.3f}" + ("*" if p is not None and p <= alpha else "")


def evaluate_pairs(runs: dict[str, dict[str, Run]], qrels: dict[str, Qrels], collection: str = "clef",
                   reference: str = "full", measures: tuple[str, ...] | None = None) -> list[PairResult]:
    """``runs[pair][system]`` -> results per pair and system; p-values against ``runs[pair][reference]`` (None
    for the reference itself or when it is absent)."""
    from polyrank.shared.evaluation import compare, evaluate

    if collection not in MEASURES and measures is None:
        raise PolyrankError(f"collection is one of {sorted(MEASURES)} (or pass measures=), got {collection!r}")
    measures = measures or MEASURES[collection]
    out = []
    for pair, systems in runs.items():
        if pair not in qrels:
            raise PolyrankError(f"no qrels for language pair {pair!r}; have {sorted(qrels)}")
        for system, run in systems.items():
            result = evaluate(run, qrels[pair], list(measures))
            p_values: dict[str, float | None] = {}
            for m in measures:
                if system == reference or reference not in systems:
                    p_values[m] = None
                else:
                    p_values[m] = compare(systems[reference], run, qrels[pair], m).p_value
            out.append(PairResult(pair, system, dict(result.mean), p_values, len(result.queries)))
    return out
