"""The one reranking protocol every domain implements.

A domain reranker subclasses :class:`Reranker` and implements :meth:`Reranker.score` (and, for speed,
:meth:`Reranker.score_batch`). :meth:`Reranker.rank` and :func:`rerank_run` are shared, so every domain
sorts the same way: **score descending, then candidate id ascending** (the one documented tie-break,
also applied by :func:`polyrank.shared.evaluation.evaluate`).

Runs and qrels use the pytrec_eval shape: ``{query_id: {doc_id: score}}``.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from polyrank.shared.errors import PolyrankError

Run = dict[str, dict[str, float]]
Qrels = dict[str, dict[str, int]]


@dataclass(frozen=True)
class Candidate:
    """One item to rerank: its id, its content (text, image path, article, peptide...), first-stage score."""

    id: str
    content: Any = None
    score: float | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RankedCandidate:
    """One reranked item. ``rank`` is 1-based; ``explanation`` carries domain evidence (key sentences...)."""

    candidate_id: str
    score: float
    rank: int
    content: Any = None
    explanation: Mapping[str, Any] | None = None


def tie_break_order(ids: Sequence[str], scores: Sequence[float] | np.ndarray) -> np.ndarray:
    """Indices that sort by score descending, then id ascending (deterministic, independent of input order)."""
    scores = np.asarray(scores, dtype=np.float64)
    if len(ids) != len(scores):
        raise ValueError(f"got {len(ids)} ids but {len(scores)} scores; they must pair up one to one")
    id_rank = np.argsort(np.asarray(ids, dtype=object).astype(str), kind="stable")
    id_position = np.empty(len(ids), dtype=np.int64)
    id_position[id_rank] = np.arange(len(ids))
    return np.lexsort((id_position, -scores))


def as_candidates(items: Iterable[Any]) -> list[Candidate]:
    """Normalise user input: Candidate, ``(id, content)`` pairs, dicts with ``id``, or bare contents."""
    candidates = []
    for position, item in enumerate(items):
        if isinstance(item, Candidate):
            candidates.append(item)
        elif isinstance(item, tuple) and len(item) == 2:
            candidates.append(Candidate(id=str(item[0]), content=item[1]))
        elif isinstance(item, Mapping) and "id" in item:
            rest = {k: v for k, v in item.items() if k not in ("id", "content", "score")}
            candidates.append(Candidate(str(item["id"]), item.get("content"), item.get("score"), rest))
        else:
            candidates.append(Candidate(id=str(position), content=item))
    seen: set[str] = set()
    for candidate in candidates:
        if candidate.id in seen:
            raise PolyrankError(f"duplicate candidate id {candidate.id!r}: ids must be unique within a list")
        seen.add(candidate.id)
    return candidates


def _checked_scores(scores: Any, n: int, name: str) -> np.ndarray:
    array = np.asarray(scores, dtype=np.float64).reshape(-1) if n else np.zeros(0)
    if array.shape != (n,):
        raise PolyrankError(f"{name}.score returned {array.shape[0]} scores for {n} candidates")
    if not np.all(np.isfinite(array)):
        raise PolyrankError(f"{name}.score returned NaN or inf for {int((~np.isfinite(array)).sum())} candidates")
    return array


class Reranker(ABC):
    """Base class of every domain reranker (the Python-API face; training lives in LightningModules)."""

    name: str = "reranker"

    @abstractmethod
    def score(self, query: Any, candidates: Sequence[Candidate]) -> np.ndarray:
        """Relevance of each candidate to ``query``, shape ``(len(candidates),)``, higher is better."""

    def score_batch(self, queries: Sequence[Any], candidate_lists: Sequence[Sequence[Candidate]]) -> list[np.ndarray]:
        """Scores for several queries; domains override this with a vectorised version."""
        return [self.score(q, c) for q, c in zip(queries, candidate_lists)]

    def explain(self, query: Any, candidates: Sequence[Candidate]) -> list[Mapping[str, Any] | None]:
        """Optional per-candidate evidence shown next to a ranking (e.g. MTM's key sentences)."""
        return [None] * len(candidates)

    def score_and_explain(self, query: Any, candidates: Sequence[Candidate]
                          ) -> tuple[np.ndarray, list[Mapping[str, Any] | None]]:
        """Scores and evidence together; domains whose evidence comes from the same forward pass override it."""
        return self.score(query, candidates), self.explain(query, candidates)

    def rank(self, query: Any, candidates: Iterable[Any], top_k: int | None = None,
             explain: bool = False) -> list[RankedCandidate]:
        """Candidates sorted by score (descending, ties by id), with 1-based ranks.

        >>> class Overlap(Reranker):
        ...     def score(self, query, candidates):
        ...         return np.array([len(set(query.split()) & set(c.content.split())) for c in candidates])
        >>> [r.candidate_id for r in Overlap().rank("red fox", [("a", "blue sky"), ("b", "red fox")])]
        ['b', 'a']
        """
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be a positive integer or None, got {top_k}")
        cands = as_candidates(candidates)
        if not cands:
            return []
        if explain:
            scores, evidence = self.score_and_explain(query, cands)
        else:
            scores, evidence = self.score(query, cands), [None] * len(cands)
        return _ranked(cands, _checked_scores(scores, len(cands), type(self).__name__), evidence, top_k)


def _ranked(cands: Sequence[Candidate], scores: np.ndarray, evidence: Sequence[Any],
            top_k: int | None) -> list[RankedCandidate]:
    order = tie_break_order([c.id for c in cands], scores)[:top_k]
    return [RankedCandidate(cands[i].id, float(scores[i]), r + 1, cands[i].content, evidence[i])
            for r, i in enumerate(order)]


def order_to_scores(order: Sequence[int], n: int) -> np.ndarray:
    """Scores whose descending sort is ``order`` (candidate positions, best first; a permutation of ``range(n)``).

    The one place where a listwise or setwise reranker's *order* becomes the scores that :meth:`Reranker.rank`,
    :func:`rerank_run`, run files and evaluation consume: the item at rank ``r`` (0-based) gets ``n - r``.
    """
    if sorted(order) != list(range(n)):
        raise ValueError(f"order must be a permutation of range({n}), got {list(order)}")
    scores = np.empty(n, dtype=np.float64)
    scores[list(order)] = n - np.arange(n, dtype=np.float64)
    return scores


def tail_scores(head_scores: Sequence[float] | np.ndarray, n_tail: int) -> np.ndarray:
    """Scores for the first-stage items beyond a reranked head: strictly below the head, in first-stage order."""
    floor = float(np.min(head_scores)) if len(head_scores) else 0.0
    return floor - 1.0 - np.arange(n_tail)


def _top_candidates(first_stage: Mapping[str, float], depth: int, corpus: Mapping[str, Any] | Callable,
                    qid: str) -> tuple[list[Candidate], list[str]]:
    ids = list(first_stage)
    order = tie_break_order(ids, [first_stage[i] for i in ids])
    ordered = [ids[i] for i in order]
    head, tail = ordered[:depth], ordered[depth:]
    lookup = corpus if callable(corpus) else corpus.__getitem__
    candidates = []
    for doc_id in head:
        try:
            content = lookup(doc_id)
        except KeyError:
            raise PolyrankError(f"run lists document {doc_id!r} for query {qid!r}, but the corpus has no such "
                                "id; check that the run and the corpus come from the same collection") from None
        candidates.append(Candidate(doc_id, content, float(first_stage[doc_id])))
    return candidates, tail


def rerank_run(run: Run, reranker: Reranker | str | Any, queries: Mapping[str, Any],
               corpus: Mapping[str, Any] | Callable, depth: int = 100, batch_size: int = 16, *,
               ray: str | None = None, actors: int = 2, num_gpus: float = 0.0,
               progress: bool | None = None) -> Run:
    """Rerank the top ``depth`` documents of each query of a first-stage run; the tail keeps its order.

    The reranked head keeps the reranker's scores; the tail is placed below the head's minimum so that
    any evaluator sees head-then-tail. Queries are scored ``batch_size`` at a time (sorted query ids) through
    ``reranker.score_batch``.

    Args:
        reranker: a built :class:`Reranker`; or (and, for ``ray``, only) a registry name, a directory written by a
            reranker's ``save`` or a :class:`polyrank.shared.scale.RerankerSpec`, which is built here or in
            each Ray actor.
        ray: None scores in this process; ``"local"`` starts a local Ray cluster, any other value is a cluster
            address (``"auto"``, ``"ray://head:10001"``); an already initialised Ray session is used as is. The
            query batches go through ``Dataset.map_batches`` over an actor pool
            (:mod:`polyrank.shared.scale.ray_rerank`): same batches, so the same run as in-process.
        actors: Ray actors (one model each).
        num_gpus: GPUs per Ray actor (0: CPU actors).
        progress: a progress bar on stderr (Rich in-process, Ray Data's with ``ray``); None shows it only when
            stderr is a terminal and the run has more than one batch.
    """
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    missing = [q for q in run if q not in queries]
    if missing:
        raise PolyrankError(f"{len(missing)} run queries have no query text, e.g. {missing[:3]}; "
                            "pass the queries file the run was made from")
    qids = sorted(run)
    chunks = [qids[start:start + batch_size] for start in range(0, len(qids), batch_size)]
    if progress is None:
        import sys

        progress = len(chunks) > 1 and sys.stderr.isatty()

    def prepared(chunk: list[str]) -> tuple[tuple[list[Candidate], ...], tuple[list[str], ...]]:
        return tuple(zip(*(_top_candidates(run[q], depth, corpus, q) for q in chunk)))  # type: ignore[return-value]

    out: Run = {}
    name = reranker.name_or_path if hasattr(reranker, "name_or_path") else type(reranker).__name__

    def assemble(chunk: list[str], heads: Sequence[list[Candidate]], tails: Sequence[list[str]],
                 scored: Sequence[Any]) -> None:
        if len(scored) != len(chunk):
            raise PolyrankError(f"{name}.score_batch returned {len(scored)} score arrays for {len(chunk)} queries")
        for qid, head, tail, scores in zip(chunk, heads, tails, scored):
            scores = _checked_scores(scores, len(head), name)
            out[qid] = {c.id: float(s) for c, s in zip(head, scores)}
            out[qid].update(zip(tail, tail_scores(scores, len(tail)).tolist()))

    if ray is not None:
        from polyrank.shared.scale.ray_rerank import RerankerSpec, score_batches

        spec = RerankerSpec.of(reranker)
        name = str(spec.name_or_path or getattr(spec.builder, "__name__", "reranker"))
        parts = [prepared(chunk) for chunk in chunks]
        scored_all = score_batches(spec, [([queries[q] for q in chunk], list(heads))
                                          for chunk, (heads, _) in zip(chunks, parts)],
                                   address=ray, actors=actors, num_gpus=num_gpus, progress=bool(progress))
        for chunk, (heads, tails), scored in zip(chunks, parts, scored_all):
            assemble(chunk, heads, tails, scored)
        return out

    if not isinstance(reranker, Reranker):
        from polyrank.shared.scale.session import RerankerSpec

        reranker = RerankerSpec.of(reranker).build()
        name = type(reranker).__name__
    with _progress(progress, len(qids)) as advance:
        for chunk in chunks:
            heads, tails = prepared(chunk)
            assemble(chunk, heads, tails, reranker.score_batch([queries[q] for q in chunk], heads))
            advance(len(chunk))
    return out


@contextlib.contextmanager
def _progress(show: bool, n_queries: int) -> Iterator[Callable[[int], None]]:
    """A Rich progress bar over queries on stderr when ``show``; otherwise a no-op."""
    if not show:
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
        TimeRemainingColumn

    columns = (TextColumn("reranking"), BarColumn(), MofNCompleteColumn(), TextColumn("queries"),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=False) as bar:
        task = bar.add_task("rerank", total=n_queries)
        yield lambda n: bar.advance(task, n)
