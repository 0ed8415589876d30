"""IR evaluation over ir-measures (pytrec_eval underneath), with one deterministic tie-break.

Before any metric, each query's documents are ordered by **score descending, then document id
ascending** (:func:`polyrank.shared.protocol.tie_break_order`) and given strictly decreasing scores,
so trec_eval's own tie rule (score, then id *descending*) never applies and file order never matters.

Measure names are ir-measures names (``nDCG@10``, ``AP``, ``AP@5``, ``RR``, ``RR@10``, ``R@100``,
``P@10``, ``Success@5``) or these aliases: ``MRR`` = ``RR``, ``MRR@k`` = ``RR@k``, ``MAP`` = ``AP``,
``MAP@k`` = ``AP@k`` (trec_eval's ``map_cut``: divided by *all* relevant documents of the query),
``HIT@k`` = ``Success@k``, ``Recall@k`` = ``R@k``. Every requested name gets its value, also when an
alias and its canonical name (``["MRR", "RR"]``) or the same name twice are requested.

Queries: the mean is over the queries of ``qrels`` with at least one relevant document. A judged query
absent from the run counts as 0 (``missing_as_zero=True``, trec_eval ``-c``) or is skipped; either way it
is listed in :attr:`EvalResult.missing` and a :class:`MissingQueriesWarning` gives the counts. A run that
shares no judged query with the qrels raises :class:`PolyrankError` (usually mismatched id spaces).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

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


class MissingQueriesWarning(UserWarning):
    """Some judged queries are absent from the evaluated run (they count as 0 or are skipped)."""


@dataclass
class EvalResult:
    """Mean and per-query values; ``per_query[measure][qid]``. ``queries`` are those averaged over.

    ``missing`` are the judged queries absent from the run; ``missing_as_zero`` says whether they were
    averaged in as 0 (then they are in ``queries``) or skipped.
    """

    mean: dict[str, float]
    per_query: dict[str, dict[str, float]]
    queries: list[str]
    missing: list[str] = field(default_factory=list)
    missing_as_zero: bool = True


def _examples(ids: Iterable[str], n: int = 5) -> str:
    ids = sorted(ids)
    if not ids:
        return "none"
    return ", ".join(repr(i) for i in ids[:n]) + (", ..." if len(ids) > n else "")


def _check_overlap(run: Run, qrels: Qrels, judged: list[str], missing: list[str], missing_as_zero: bool) -> None:
    """Raise when the run shares no judged query; warn with the counts when some judged queries are missing."""
    if len(missing) == len(judged):
        raise PolyrankError(
            f"the run shares no query with the qrels: the run has {len(run)} queries ({_examples(run)}), the qrels "
            f"{len(qrels)} ({len(judged)} with a relevant document: {_examples(judged)}); the usual cause is "
            "mismatched id spaces (a run and qrels of different data sets or splits, or ids renumbered)")
    if missing:
        rule = "each counts as 0 (missing_as_zero=True)" if missing_as_zero else \
            "they are skipped (missing_as_zero=False)"
        warnings.warn(f"the run lacks {len(missing)} of the {len(judged)} judged queries ({_examples(missing)}); "
                      f"{rule}", MissingQueriesWarning, stacklevel=3)


def _judged_queries(qrels: Qrels) -> list[str]:
    return sorted(q for q, docs in qrels.items() if any(rel > 0 for rel in docs.values()))


def evaluate(run: Run, qrels: Qrels, measures: Sequence[str] = ("nDCG@10", "AP", "RR@10", "R@100"),
             missing_as_zero: bool = True) -> EvalResult:
    """Evaluate ``run`` against ``qrels``.

    Averages over the queries that have at least one relevant document in ``qrels``. A judged query
    absent from the run counts as 0 when ``missing_as_zero`` (trec_eval ``-c``), else it is skipped; either
    way it is listed in ``EvalResult.missing`` and a :class:`MissingQueriesWarning` is issued. Queries with no
    relevant document are skipped (their metrics are undefined). Raises :class:`PolyrankError` when the run
    shares no judged query with ``qrels``.
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
    missing = [q for q in judged if q not in ranked]
    _check_overlap(run, qrels, judged, missing, missing_as_zero)
    unique = {repr(m): m for m in parsed.values()}  # each measure computed once, whatever names asked for it
    values: dict[str, dict[str, float]] = {key: {} for key in unique}
    for metric in ir_measures.iter_calc(list(unique.values()), {q: qrels[q] for q in judged}, ranked):
        values[repr(metric.measure)][metric.query_id] = float(metric.value)
    queries = judged if missing_as_zero else sorted(ranked)
    for per_measure in values.values():
        for qid in queries:
            per_measure.setdefault(qid, 0.0)
    per_query = {name: dict(values[repr(measure)]) for name, measure in parsed.items()}  # requested order
    mean = {name: float(np.mean([per_query[name][q] for q in queries])) for name in per_query}
    return EvalResult(mean, per_query, queries, missing, missing_as_zero)


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
