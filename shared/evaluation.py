"""IR evaluation over ir-measures (pytrec_eval underneath), with one deterministic tie-break.

Before any metric, each query's documents are ordered by **score descending, then document id
ascending** (:func:`polyrank.shared.protocol.tie_break_order`) and given strictly decreasing scores,
so trec_eval's own tie rule (score, then id *descending*) never applies and file order never matters.

Measure names are ir-measures names (``nDCG@10``, ``AP``, ``AP@5``, ``RR``, ``RR@10``, ``R@100``,
``P@10``, ``Success@5``) or these aliases: ``MRR`` = ``RR``, ``MRR@k`` = ``RR@k``, ``MAP`` = ``AP``,
``MAP@k`` = ``AP@k`` (trec_eval's ``map_cut``: divided by *all* relevant documents of the query),
``HIT@k`` = ``Success@k``, ``Recall@k`` = ``R@k``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from polyrank.shared.errors import PolyrankError
from polyrank.shared.protocol import Qrels, Run, tie_break_order

_ALIASES = [(r"^MRR(@\d+)?$", r"RR\1"), (r"^MAP(@\d+)?$", r"AP\1"), (r"^HIT(@\d+)$", r"Success\1"),
            (r"^Recall(@\d+)$", r"R\1")]


def canonical_measure(name: str) -> str:
    """The ir-measures spelling of a measure name or alias."""
    for pattern, repl in _ALIASES:
        if re.match(pattern, name):
            return re.sub(pattern, repl, name)
    return name


def _parse(names: Iterable[str]) -> dict[str, object]:
    import ir_measures

    parsed = {}
    for name in names:
        try:
            parsed[name] = ir_measures.parse_measure(canonical_measure(name))
        except Exception as exc:
            raise PolyrankError(f"unknown measure {name!r}; expected an ir-measures name such as nDCG@10, AP@5, "
                                "RR, R@100, P@10, Success@5, or an alias MRR, MAP@k, HIT@k") from exc
    return parsed


def tie_broken(run: Run) -> Run:
    """The same ranking with strictly decreasing scores (score desc, then id asc)."""
    out: Run = {}
    for qid, docs in run.items():
        ids = list(docs)
        order = tie_break_order(ids, [docs[d] for d in ids])
        out[qid] = {ids[i]: float(len(ids) - r) for r, i in enumerate(order)}
    return out


@dataclass
class EvalResult:
    """Mean and per-query values; ``per_query[measure][qid]``. ``queries`` are those averaged over."""

    mean: dict[str, float]
    per_query: dict[str, dict[str, float]]
    queries: list[str]


def _judged_queries(qrels: Qrels) -> list[str]:
    return sorted(q for q, docs in qrels.items() if any(rel > 0 for rel in docs.values()))


def evaluate(run: Run, qrels: Qrels, measures: Sequence[str] = ("nDCG@10", "AP", "RR@10", "R@100"),
             missing_as_zero: bool = True) -> EvalResult:
    """Evaluate ``run`` against ``qrels``.

    Averages over the queries that have at least one relevant document in ``qrels``. A judged query
    absent from the run counts as 0 when ``missing_as_zero`` (trec_eval ``-c``), else it is skipped.
    Queries with no relevant document are skipped (their metrics are undefined).
    """
    import ir_measures

    if not measures:
        raise PolyrankError("no measures given; pass e.g. ['nDCG@10', 'RR']")
    parsed = _parse(measures)
    judged = _judged_queries(qrels)
    if not judged:
        raise PolyrankError("the qrels hold no relevant document for any query; nothing can be evaluated")
    judged_set = set(judged)
    ranked = tie_broken({q: d for q, d in run.items() if q in judged_set})
    per_query: dict[str, dict[str, float]] = {name: {} for name in measures}
    by_measure = {repr(m): name for name, m in parsed.items()}
    if ranked:
        for metric in ir_measures.iter_calc(list(parsed.values()), {q: qrels[q] for q in judged}, ranked):
            per_query[by_measure[repr(metric.measure)]][metric.query_id] = float(metric.value)
    queries = judged if missing_as_zero else sorted(q for q in judged if q in ranked)
    for name in measures:
        for qid in queries:
            per_query[name].setdefault(qid, 0.0)
    mean = {name: float(np.mean([per_query[name][q] for q in queries])) if queries else 0.0 for name in measures}
    return EvalResult(mean, per_query, queries)


@dataclass
class Comparison:
    """Paired comparison of two runs on one measure over the same queries."""

    measure: str
    mean_a: float
    mean_b: float
    p_value: float
    test: str
    n_queries: int

    @property
    def delta(self) -> float:
        return self.mean_b - self.mean_a


def paired_test(a: np.ndarray, b: np.ndarray, test: str = "ttest", n_resamples: int = 10_000,
                seed: int = 0) -> float:
    """Two-sided p-value that the per-query values ``a`` and ``b`` have the same mean."""
    from scipy import stats

    if len(a) != len(b) or len(a) < 2:
        raise PolyrankError(f"a paired test needs two equal-length samples of >= 2 queries, got {len(a)}, {len(b)}")
    diff = np.asarray(b, float) - np.asarray(a, float)
    if np.allclose(diff, 0):
        return 1.0
    if test == "ttest":
        return float(stats.ttest_rel(b, a).pvalue)
    if test == "wilcoxon":
        return float(stats.wilcoxon(b, a).pvalue)
    if test == "permutation":
        res = stats.permutation_test((diff,), np.mean, permutation_type="samples", n_resamples=n_resamples,
                                     alternative="two-sided", random_state=seed)
        return float(res.pvalue)
    raise PolyrankError(f"unknown test {test!r}; expected 'ttest', 'wilcoxon' or 'permutation'")


def compare(run_a: Run, run_b: Run, qrels: Qrels, measure: str = "nDCG@10", test: str = "ttest") -> Comparison:
    """Paired significance test of ``run_b`` against ``run_a`` (judged queries, missing ones as 0)."""
    res_a = evaluate(run_a, qrels, [measure])
    res_b = evaluate(run_b, qrels, [measure])
    queries = res_a.queries
    a = np.array([res_a.per_query[measure][q] for q in queries])
    b = np.array([res_b.per_query[measure][q] for q in queries])
    return Comparison(measure, float(a.mean()), float(b.mean()), paired_test(a, b, test), test, len(queries))
