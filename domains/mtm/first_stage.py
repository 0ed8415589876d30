"""First stages for fact-checked claim retrieval: BM25, dense MiniLM (shared ``CandidateStore``) and hybrid fusion.

Each first stage is a :data:`~polyrank.shared.protocol.Run` over the whole article collection, selected by name
(see :func:`first_stage_run`):

- ``bm25``: BM25 (``bm25s``, Lucene, k1=1.5, b=0.75) over the claim text (:class:`.bm25.BM25Index`).
- ``dense``: all-MiniLM-L6-v2 mean-pooled, L2-normalised vectors of claims and articles (title + body), exact
  inner-product search in a :class:`~polyrank.shared.store.CandidateStore` (``Flat``).
- ``rrf`` / ``score``: fusion of the BM25 and dense runs with ``ranx.fuse``: reciprocal rank fusion
  (Cormack et al., SIGIR 2009, ``sum 1 / (k + rank)``, k=60) or min-max-normalised weighted score sum.

Which claim text feeds them is a separate choice (:func:`claim_text`: ``raw`` or ``processed`` tweet text, with
or without the OCR text of the tweet's images), because it moves every figure (``SOURCES.md``, Known pitfalls).
"""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np

from polyrank.shared.errors import PolyrankError
from polyrank.shared.protocol import Run

FirstStage = Literal["bm25", "dense", "rrf", "score"]
FIRST_STAGES = ("bm25", "dense", "rrf", "score")


def ocr_text(tweet: Mapping) -> str:
    """The OCR text of a Politifact tweet's images (``Images_in_tweet`` is a dict or its Python repr)."""
    images = tweet.get("Images_in_tweet") or {}
    if isinstance(images, str):
        try:
            images = ast.literal_eval(images)
        except (ValueError, SyntaxError):
            return ""
    if not isinstance(images, Mapping):
        return ""
    return " ".join(str(v.get("text_for_the_image", "")).strip() for v in images.values()
                    if isinstance(v, Mapping) and v.get("text_for_the_image"))


def claim_text(tweet: Mapping, text: Literal["raw", "processed"] = "raw", ocr: bool = False) -> str:
    """Claim text of one Politifact tweet: its raw or processed content, then (``ocr``) its images' OCR text."""
    field = {"raw": "OriginalTweetContent_Raw", "processed": "OriginalTweetContent_Processed"}.get(text)
    if field is None:
        raise PolyrankError(f"claim text {text!r}: expected 'raw' or 'processed'")
    parts = [str(tweet.get(field, ""))]
    if ocr:
        parts.append(ocr_text(tweet))
    return " ".join(p for p in parts if p.strip())


def bm25_first_stage(articles: Mapping[str, Sequence[str]], claims: Mapping[str, str], k: int = 50) -> Run:
    """BM25 top ``k`` per claim over whole articles (sentences joined)."""
    from polyrank.domains.mtm.bm25 import BM25Index

    return BM25Index(articles).search(claims, k)


def dense_first_stage(article_vecs: Mapping[str, np.ndarray], claim_vecs: Mapping[str, np.ndarray],
                      k: int = 50) -> Run:
    """Exact inner-product top ``k`` per claim of L2-normalised vectors in the shared ``CandidateStore``."""
    from polyrank.shared.store import CandidateStore

    ids = list(article_vecs)
    if not ids or not claim_vecs:
        raise PolyrankError("dense first stage needs at least one article vector and one claim vector")
    matrix = np.stack([article_vecs[i] for i in ids]).astype(np.float32)
    store = CandidateStore(matrix.shape[1], "Flat", "ip", device="cpu")
    store.add(ids, matrix)
    qids = list(claim_vecs)
    return store.search_run(qids, np.stack([claim_vecs[q] for q in qids]).astype(np.float32), min(k, len(ids)))


def fuse_runs(runs: Sequence[Run], method: Literal["rrf", "score"] = "rrf", k: int = 50, rrf_k: int = 60,
              weights: Sequence[float] | None = None) -> Run:
    """Fuse first-stage runs with ``ranx.fuse``: ``"rrf"`` (reciprocal rank fusion, ``rrf_k``) or ``"score"``
    (min-max normalised per query, then a weighted sum; equal weights by default). Keeps the top ``k``."""
    from polyrank.shared.extras import require
    from polyrank.shared.protocol import tie_break_order

    ranx = require("ranx", extra="text")
    if len(runs) < 2:
        raise PolyrankError(f"fusion needs at least two runs, got {len(runs)}")
    ranx_runs = [ranx.Run({q: {d: float(s) for d, s in docs.items()} for q, docs in run.items() if docs},
                          name=f"run{i}") for i, run in enumerate(runs)]
    if method == "rrf":
        fused = ranx.fuse(ranx_runs, method="rrf", params={"k": rrf_k})
    elif method == "score":
        w = list(weights) if weights is not None else [1.0 / len(runs)] * len(runs)
        if len(w) != len(runs):
            raise PolyrankError(f"score fusion: {len(w)} weights for {len(runs)} runs")
        fused = ranx.fuse(ranx_runs, norm="min-max", method="wsum", params={"weights": w})
    else:
        raise PolyrankError(f"fusion method {method!r}: expected 'rrf' or 'score'")
    out: Run = {}
    for qid, docs in fused.to_dict().items():
        ids = list(docs)
        order = tie_break_order(ids, [docs[i] for i in ids])[:k]
        out[str(qid)] = {ids[i]: float(docs[ids[i]]) for i in order}
    return out


def first_stage_run(name: FirstStage, articles: Mapping[str, Sequence[str]], claims: Mapping[str, str],
                    article_vecs: Mapping[str, np.ndarray] | None = None,
                    claim_vecs: Mapping[str, np.ndarray] | None = None, k: int = 50,
                    cache: dict | None = None) -> Run:
    """The first stage ``name`` (``bm25``, ``dense``, ``rrf``, ``score``) over ``claims``; dense and fused need
    the vectors. ``cache`` (a dict) reuses the BM25 and dense runs between calls on the same claims."""
    if name not in FIRST_STAGES:
        raise PolyrankError(f"first stage {name!r}: expected one of {FIRST_STAGES}")
    cache = {} if cache is None else cache
    depth = max(k, 100) if name in ("rrf", "score") else k
    if name in ("bm25", "rrf", "score") and ("bm25", depth) not in cache:
        cache[("bm25", depth)] = bm25_first_stage(articles, claims, depth)
    if name in ("dense", "rrf", "score") and ("dense", depth) not in cache:
        if article_vecs is None or claim_vecs is None:
            raise PolyrankError(f"first stage {name!r} needs article and claim vectors (MiniLM embeddings)")
        cache[("dense", depth)] = dense_first_stage(article_vecs, claim_vecs, depth)
    if name == "bm25":
        return cache[("bm25", depth)]
    if name == "dense":
        return cache[("dense", depth)]
    return fuse_runs([cache[("bm25", depth)], cache[("dense", depth)]], method=name, k=k)
