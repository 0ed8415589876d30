"""Registered MTM rerankers: ``mtm.minilm`` (all-MiniLM-L6-v2 backbone) and ``mtm.tiny`` (random, tests).

Without ``checkpoint`` a builder returns an *untrained* matcher (no ROT, empty memory), useful only for
shapes and smoke tests; train with ``polyrank fit --config configs/mtm/tiny.yaml`` or
:func:`polyrank.domains.mtm.train.fit_mtm` and pass the saved directory.
"""

from __future__ import annotations

from typing import Any

from polyrank.shared.registry import register_reranker


@register_reranker("mtm.minilm", "MTM (ACL 2021) over all-MiniLM-L6-v2; pass checkpoint= a trained directory")
def mtm_minilm(checkpoint: str | None = None, device: str | None = None, **overrides: Any):
    from polyrank.domains.mtm.reranker import MTMReranker

    if checkpoint:
        return MTMReranker.load(checkpoint, device=device, **overrides)
    return MTMReranker.untrained("minilm", device=device, **overrides)


@register_reranker("mtm.tiny", "MTM with a tiny random 2-layer BERT (tests, CPU seconds)")
def mtm_tiny(checkpoint: str | None = None, device: str | None = None, **overrides: Any):
    from polyrank.domains.mtm.reranker import MTMReranker

    if checkpoint:
        return MTMReranker.load(checkpoint, device=device, **overrides)
    overrides.setdefault("n_patterns", 4)
    overrides.setdefault("n_key_sentences", 3)
    return MTMReranker.untrained("tiny", device=device, **overrides)
