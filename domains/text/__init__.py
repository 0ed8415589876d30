"""Text rerankers on :mod:`polyrank.shared.llm`: pointwise label logits (Qwen3-Reranker, ProRank), FIRST
single-token listwise decoding, ICR attention-based in-context reranking, Rank-R1 setwise heap sort, REBEL
multi-criteria scoring, question decomposition, and the trainable monoBERT cross-encoder (``polyrank fit``).

>>> from polyrank.domains.text import load                                     # doctest: +SKIP
>>> reranker = load("text.pointwise", model="/models/Qwen3-Reranker-0.6B")     # doctest: +SKIP
>>> reranker.rank("what is a kv cache", [("d1", "..."), ("d2", "...")])         # doctest: +SKIP

Modules: :mod:`.pointwise`, :mod:`.first`, :mod:`.icr`, :mod:`.setwise`, :mod:`.rebel`, :mod:`.decompose`,
:mod:`.cross_encoder`, :mod:`.windows` (sliding windows, heap sort, order -> scores), :mod:`.reranker` (shared
base, save/load), :mod:`.demo`. Whole runs go through
:func:`polyrank.shared.protocol.rerank_run`.
"""

from __future__ import annotations

from typing import Any


def load(name_or_path: str = "text.pointwise", checkpoint: str | None = None, device: str | None = None,
         **overrides: Any):
    """A registered text reranker (``model=`` a local HF folder or ``.gguf``; default SmolLM2-135M-Instruct), or
    one saved by ``save(dir)``. The ``*.tiny`` variants are random and warn."""
    from polyrank.shared.registry import load as _load

    import polyrank.domains.text.registry  # noqa: F401  (registers the names)

    return _load(name_or_path, checkpoint=checkpoint, device=device, **overrides)


def rank(query: str, candidates: Any, model: Any = "text.pointwise", top_k: int | None = None, **overrides: Any):
    """Rank ``candidates`` (``(id, text)`` pairs, dicts or Candidates) for ``query`` with a reranker or a name."""
    reranker = load(model, **overrides) if isinstance(model, str) else model
    items = candidates.items() if isinstance(candidates, dict) else candidates
    return reranker.rank(query, list(items), top_k=top_k)


__all__ = ["load", "rank"]
