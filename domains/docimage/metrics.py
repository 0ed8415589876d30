"""MMDocIR page-level recall (github MMDocRAG/MMDocIR ``metric_eval.py``; MM-R5 arXiv 2506.12364 main table).

Per question, recall@k = |top-k pages of its own document ∩ labelled pages| / |labelled pages| (ir-measures
``R@k`` through :func:`polyrank.shared.evaluation.evaluate`); **micro** = the mean over questions, **macro** =
the mean of the per-domain means (10 domains in MMDocIR). Only this macro aggregation is domain code.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

from polyrank.domains.docimage.pages import split_page_id
from polyrank.shared.errors import PolyrankError
from polyrank.shared.evaluation import evaluate
from polyrank.shared.protocol import Qrels, Run


def own_document_only(run: Run) -> Run:
    """Drop retrieved pages of other documents (question ids are ``<doc>/q<k>``, page ids ``<doc>#<i>``)."""
    out: Run = {}
    for qid, pages in run.items():
        doc = qid.rsplit("/q", 1)[0]
        out[qid] = {p: s for p, s in pages.items() if split_page_id(p)[0] == doc}
    return out


def mmdocir_recall(run: Run, qrels: Qrels, domains: Mapping[str, str], ks: Sequence[int] = (1, 3, 5)
                   ) -> dict[str, float]:
    """``{"micro_R@k": .., "macro_R@k": ..}`` for each ``k``; every judged question needs a domain."""
    missing = sorted(set(qrels) - set(domains))
    if missing:
        raise PolyrankError(f"no domain for question(s) {missing[:3]}; macro recall averages per domain")
    measures = [f"R@{k}" for k in ks]
    result = evaluate(run, qrels, measures)
    out: dict[str, float] = {}
    for measure in measures:
        per_query = result.per_query[measure]
        by_domain: dict[str, list[float]] = defaultdict(list)
        for qid, value in per_query.items():
            by_domain[domains[qid]].append(value)
        out[f"micro_{measure}"] = sum(per_query.values()) / len(per_query)
        out[f"macro_{measure}"] = sum(sum(v) / len(v) for v in by_domain.values()) / len(by_domain)
    return out
