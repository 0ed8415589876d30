"""Document-page retrieval and reranking with multimodal LLMs on MMDocIR: pages (PDF/images + text) in a page
store, first stages (open_clip CLIP, a sentence encoder and BM25 on page text), RagLLaVA pointwise P(yes) and
MM-R5 listwise reasoning rerankers, MM-R5's GRPO rewards, SFT/GRPO training through ``polyrank.shared.rl``, and
MMDocIR page-level recall (micro/macro).

>>> from polyrank.domains.docimage import load, rank                              # doctest: +SKIP
>>> reranker = load("docimage.mmr5", model="/models/Qwen2.5-VL-3B-Instruct")      # doctest: +SKIP
>>> reranker.rank("revenue in 2020?", [("doc#0", "page0.png"), ("doc#1", {"image": "page1.png"})])  # doctest: +SKIP

Modules: :mod:`.pages` (Page, PageStore, PDF rendering, OCR), :mod:`.data` (MMDocIR readers), :mod:`.first_stage`,
:mod:`.ragllava`, :mod:`.mmr5`, :mod:`.rewards`, :mod:`.metrics`, :mod:`.training`, :mod:`.reproduce`,
:mod:`.demo`. Whole runs go through :func:`polyrank.shared.protocol.rerank_run`.
"""

from __future__ import annotations

from typing import Any


def load(name_or_path: str = "docimage.ragllava.text", checkpoint: str | None = None, device: str | None = None,
         **overrides: Any):
    """A registered docimage reranker (``model=`` a local VLM folder, or for ``docimage.ragllava.text`` a causal LM;
    default SmolLM2-135M-Instruct on page text), or one saved by ``save(dir)``. ``*.tiny`` variants are random and
    warn."""
    from polyrank.shared.registry import load as _load

    import polyrank.domains.docimage.registry  # noqa: F401  (registers the names)

    return _load(name_or_path, checkpoint=checkpoint, device=device, **overrides)


def rank(query: str, candidates: Any, model: Any = "docimage.ragllava.text", top_k: int | None = None,
         **overrides: Any):
    """Rank candidate pages (``(id, page)`` pairs, dicts or Candidates) for ``query`` with a reranker or a name."""
    reranker = load(model, **overrides) if isinstance(model, str) else model
    items = candidates.items() if isinstance(candidates, dict) else candidates
    return reranker.rank(query, list(items), top_k=top_k)


__all__ = ["load", "rank"]
