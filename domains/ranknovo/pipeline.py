"""Reranking base-model candidates through the shared flow (used by the demo and ``reproduce``).

Each spectrum is a query and each base model's peptide a candidate document: the first-stage run lists a
spectrum's candidates in base-model order (``{spectrum id: {candidate id: score}}``),
:func:`polyrank.shared.protocol.rerank_run` reorders them by RankNovo's score (``-predicted PMD``), and
:func:`polyrank.shared.evaluation.evaluate` scores the reranked run against qrels that mark the candidates
fully matching the true peptide (``P@1`` = share of answerable spectra whose pick is correct).

The paper's figures are Casanovo's AA precision / peptide recall over *all* spectra (``metrics.py``): an
IR library computes neither (they align residues by mass), so they stay the domain metric, computed on the
picks read from the reranked run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from polyrank.domains.ranknovo.metrics import DeNovoMetrics, evaluate_columns, peptide_matches
from polyrank.shared.protocol import Reranker, rerank_run, tie_break_order

Run = dict[str, dict[str, float]]


@dataclass
class RerankedCandidates:
    """The reranked run, the pick of each spectrum and the metrics of the base models, RankNovo and the oracle."""

    run: Run
    picks: list[str | None]
    metrics: dict[str, DeNovoMetrics]
    hit_at_1: float | None  # P@1 over spectra with a correct candidate (None: no spectrum has one)


def candidate_id(spectrum_id: str, column: int, model: str) -> str:
    """Candidate ids sort in base-model order, so ties keep the reference's first-argmin choice."""
    return f"{spectrum_id}|{column:03d}|{model}"


def candidate_run(columns: Mapping[str, Sequence[str | None]], ids: Sequence[str]
                  ) -> tuple[Run, dict[str, str | None]]:
    """First-stage run (base-model order, scores ``-column``) and corpus ``{candidate id: peptide}``."""
    run: Run = {}
    corpus: dict[str, str | None] = {}
    for k, (model, peptides) in enumerate(columns.items()):
        if len(peptides) != len(ids):
            raise ValueError(f"base model {model!r} has {len(peptides)} peptides for {len(ids)} spectra")
        for sid, peptide in zip(ids, peptides):
            doc = candidate_id(sid, k, model)
            run.setdefault(sid, {})[doc] = float(-k)
            corpus[doc] = peptide
    return run, corpus


def candidate_qrels(columns: Mapping[str, Sequence[str | None]], truths: Sequence[str | None],
                    ids: Sequence[str]) -> dict[str, dict[str, int]]:
    """Relevance 1 for each candidate that fully matches its spectrum's true peptide (Casanovo's criterion)."""
    qrels: dict[str, dict[str, int]] = {sid: {} for sid in ids}
    for k, (model, peptides) in enumerate(columns.items()):
        for sid, hit in zip(ids, peptide_matches(peptides, truths)):
            qrels[sid][candidate_id(sid, k, model)] = int(hit)
    return qrels


def top_pick(scores: Mapping[str, float], corpus: Mapping[str, str | None]) -> str | None:
    """The peptide of the best-scored candidate (score desc, then id asc, as every shared metric sees it)."""
    ids = list(scores)
    return corpus[ids[tie_break_order(ids, [scores[i] for i in ids])[0]]] if ids else None


def rerank_candidates(reranker: Reranker, spectra: Sequence[Any], columns: Mapping[str, Sequence[str | None]],
                      truths: Sequence[str | None], ids: Sequence[str] | None = None,
                      precision_denominator: str = "predicted") -> RerankedCandidates:
    """Rerank every spectrum's base-model candidates with ``reranker`` and score the picks."""
    from polyrank.shared.errors import PolyrankError
    from polyrank.shared.evaluation import evaluate

    ids = [str(i) for i in (ids if ids is not None else range(len(spectra)))]
    if len(ids) != len(spectra) or len(truths) != len(spectra):
        raise PolyrankError(f"{len(spectra)} spectra, {len(ids)} ids and {len(truths)} true peptides; "
                            "they must align")
    first, corpus = candidate_run(columns, ids)
    run = rerank_run(first, reranker, dict(zip(ids, spectra)), corpus, depth=len(columns),
                     batch_size=getattr(reranker, "batch_size", 16))
    picks = [top_pick(run[sid], corpus) for sid in ids]
    metrics = evaluate_columns(columns, truths, picks, precision_denominator=precision_denominator)
    qrels = candidate_qrels(columns, truths, ids)
    try:
        hit = evaluate(run, qrels, ["P@1"]).mean["P@1"]
    except PolyrankError:  # no spectrum has a correct candidate: P@1 is undefined
        hit = None
    return RerankedCandidates(run, picks, metrics, hit)
