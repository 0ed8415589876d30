"""The fact-check pipeline around MTM: embeddings cache, zero-training cosine reranker, prior and hub statistics.

- :class:`CosineReranker`: reorders candidates by the cosine of MiniLM claim and article vectors (a bi-encoder,
  no training); vectors come from an :class:`EmbeddingCache` so a run encodes each text once.
- :class:`ArticlePriorNormalised`: wraps any reranker and discounts article priors: each article's score is
  z-normalised with that article's mean and standard deviation over a reference set of claims (the training
  claims), so an article that scores high for every claim ("hub") no longer wins by default.
- :func:`prior_stats`: per run, the share of claims whose top-1 is an article that was a training positive,
  and the largest share of claims sharing one top-1 article (hub concentration).
- :func:`choose_on_validation`: the pipeline choice, made on validation claims only (test claims never choose).
- :func:`random_order_mrr`: the exact expected MRR of a uniformly random order of the top ``depth``,
  averaged over *all* judged claims (claims with no relevant article in the top ``depth`` count 0).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from polyrank.shared.protocol import Candidate, Qrels, Reranker, Run, tie_break_order


class EmbeddingCache:
    """L2-normalised MiniLM vectors of texts, computed once per distinct text (``encoder``: a SentenceEncoder)."""

    def __init__(self, encoder: Any) -> None:
        self.encoder, self.vectors = encoder, {}

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        todo = sorted({t for t in texts if t not in self.vectors})
        if todo:
            self.vectors.update(zip(todo, self.encoder.encode(todo)))
        return np.stack([self.vectors[t] for t in texts]) if texts else np.zeros((0, self.encoder.dim), np.float32)


def article_text(content: Any) -> str:
    """An article (list of sentences or a string) as one string."""
    return content if isinstance(content, str) else " ".join(content)


class CosineReranker(Reranker):
    """Zero-training bi-encoder reordering: score = cosine(claim vector, article vector) (all-MiniLM-L6-v2)."""

    name = "cosine"

    def __init__(self, cache: EmbeddingCache) -> None:
        self.cache = cache

    def score(self, query: str, candidates: Sequence[Candidate]) -> np.ndarray:
        q = self.cache.encode([query])[0]
        docs = self.cache.encode([article_text(c.content) for c in candidates])
        return (docs @ q).astype(np.float64)


class ArticlePriorNormalised(Reranker):
    """Per-article score normalisation: ``(s(q, a) - mean_a) / std_a`` over reference claims.

    ``stats`` maps article id -> (mean, std) of the inner reranker's score for that article over reference
    claims (see :func:`article_score_stats`); unseen articles keep their raw score minus the global mean.
    """

    name = "prior-normalised"

    def __init__(self, inner: Reranker, stats: Mapping[str, tuple[float, float]]) -> None:
        self.inner, self.stats = inner, dict(stats)
        means = [m for m, _ in self.stats.values()]
        self.global_mean = float(np.mean(means)) if means else 0.0

    def score(self, query: Any, candidates: Sequence[Candidate]) -> np.ndarray:
        raw = np.asarray(self.inner.score(query, candidates), dtype=np.float64)
        out = np.empty_like(raw)
        for i, c in enumerate(candidates):
            mean, std = self.stats.get(c.id, (self.global_mean, 1.0))
            out[i] = (raw[i] - mean) / max(std, 1e-6)
        return out


def article_score_stats(run: Run, first_stage: Run | None = None, depth: int | None = None,
                        min_count: int = 3) -> dict[str, tuple[float, float]]:
    """(mean, std) of each article's scores over the claims of ``run`` (articles scored at least ``min_count``).

    With ``first_stage`` and ``depth``, only the reranked head (the first stage's top ``depth``) counts: the tail
    scores :func:`~polyrank.shared.protocol.rerank_run` writes below the head are placeholders, not scores.
    """
    per: dict[str, list[float]] = {}
    for qid, docs in run.items():
        keep = None
        if first_stage is not None and depth is not None:
            ids = list(first_stage.get(qid, {}))
            keep = {ids[i] for i in tie_break_order(ids, [first_stage[qid][i] for i in ids])[:depth]}
        for did, s in docs.items():
            if keep is None or did in keep:
                per.setdefault(did, []).append(s)
    return {d: (float(np.mean(v)), float(np.std(v)) or 1.0) for d, v in per.items() if len(v) >= min_count}


def top1(run: Run) -> dict[str, str]:
    """Each claim's top-ranked article (score desc, id asc)."""
    out = {}
    for qid, docs in run.items():
        if docs:
            ids = list(docs)
            out[qid] = ids[int(tie_break_order(ids, [docs[i] for i in ids])[0])]
    return out


def prior_stats(run: Run, train_positives: set[str], qrels: Qrels) -> dict[str, float]:
    """``seen_top1``: share of claims whose top-1 was a training positive; ``hub_top1``: largest share of claims
    with the same top-1 article; ``hub_relevant``: share of that hub's claims for which it is relevant."""
    tops = top1(run)
    if not tops:
        return {"seen_top1": 0.0, "hub_top1": 0.0, "hub_relevant": 0.0}
    counts = Counter(tops.values())
    hub, n = counts.most_common(1)[0]
    hub_q = [q for q, d in tops.items() if d == hub]
    return {"seen_top1": sum(d in train_positives for d in tops.values()) / len(tops),
            "hub_top1": n / len(tops),
            "hub_relevant": sum(qrels.get(q, {}).get(hub, 0) > 0 for q in hub_q) / len(hub_q)}


def expected_random_rr(n: int, r: int) -> float:
    """Expected reciprocal rank of the first of ``r`` relevant items in a uniformly random order of ``n``."""
    if r <= 0 or n <= 0:
        return 0.0
    total, p_none_before = 0.0, 1.0
    for k in range(1, n - r + 2):                          # first relevant at position k
        p_here = p_none_before * r / (n - k + 1)
        total += p_here / k
        p_none_before *= (n - k + 1 - r) / (n - k + 1)
    return total


def random_order_mrr(run: Run, qrels: Qrels, depth: int = 10) -> tuple[float, float]:
    """``(over all judged claims, over claims with a relevant article in the top depth)`` expected MRR of a random
    order of each claim's top ``depth``."""
    values, hits = [], []
    for qid, rel in qrels.items():
        if not any(v > 0 for v in rel.values()):
            continue
        docs = run.get(qid, {})
        ids = list(docs)
        head = [ids[i] for i in tie_break_order(ids, [docs[i] for i in ids])[:depth]] if ids else []
        r = sum(rel.get(d, 0) > 0 for d in head)
        values.append(expected_random_rr(len(head), r))
        if r:
            hits.append(values[-1])
    return float(np.mean(values)) if values else 0.0, float(np.mean(hits)) if hits else 0.0


def choose_on_validation(runs: Mapping[str, Run], val_qrels: Qrels, measure: str = "MRR"
                         ) -> tuple[str, dict[str, float]]:
    """``(chosen label, {label: validation score})``: the run with the best mean ``measure`` over the claims of
    ``val_qrels`` only (each run is cut to those claims first, so test claims in a run cannot sway the choice;
    a claim absent from a run counts 0). Ties go to the earliest label (list the simplest pipeline first)."""
    from polyrank.shared.evaluation import evaluate

    if not runs or not val_qrels:
        raise ValueError("choose_on_validation needs at least one run and one validation claim")
    scores = {}
    for label, run in runs.items():
        cut = {q: run[q] for q in val_qrels if run.get(q)}
        scores[label] = float(evaluate(cut, val_qrels, [measure]).mean[measure]) if cut else 0.0
    order = list(scores)
    return max(order, key=lambda lbl: (scores[lbl], -order.index(lbl))), scores
