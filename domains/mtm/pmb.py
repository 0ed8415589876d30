"""Pattern Memory Bank (PMB) of MTM (Sheng et al., ACL 2021, Sec. 3.2 and 3.4).

- ``E(text)``: mean of ROT's fine-tuned word-embedding rows over the text's tokens
  (``preprocess/ROT/get_embeddings.py``, "static" embeddings).
- Residual of a claim q and sentence s: ``r = E(s) - E(q)``.
- Initialisation (``preprocess/PMB``): residuals of training claims against the sentences of their
  *relevant* articles, kept when ``||r||`` lies strictly between the 25th and 50th percentiles, clustered
  by k-means (K = 20, ``random_state=0``); the centres are the memory ``M (K, d)``.
- Update after each epoch (``MTM.update_memory_after_epoch``, Eq. 7-8): pairs whose probability of the
  true label ``p > 0.5`` (or ``p = 0.5`` with ``y = 0``) are correct, else wrong; weight ``|p - 0.5|``.
  For slot k, ``g = alpha (mean_correct - m_k) + beta (m_k - mean_wrong)``, ``alpha = W+/(W+ + W-)``,
  ``beta = W-/(W+ + W-)``, ``m_k += step * ||m_k|| * g / ||g||`` (step 0.3). Untouched slots stay.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch

from polyrank.shared.errors import PolyrankError

logger = logging.getLogger(__name__)

ZERO = 1e-8


def static_embeddings(word_embeddings: torch.Tensor, token_lists: Sequence[Sequence[int]]) -> torch.Tensor:
    """``E(text)`` for each token list: mean of the word-embedding rows, ``(N, d)``; zeros for no tokens."""
    dim = word_embeddings.shape[1]
    out = torch.zeros((len(token_lists), dim), dtype=word_embeddings.dtype, device=word_embeddings.device)
    lengths = torch.tensor([len(t) for t in token_lists], dtype=torch.long)
    if int(lengths.sum()):
        flat = torch.tensor([i for t in token_lists for i in t], dtype=torch.long)
        owner = torch.repeat_interleave(torch.arange(len(token_lists)), lengths)
        out.index_add_(0, owner.to(out.device), word_embeddings[flat.to(out.device)])
        out /= lengths.to(device=out.device, dtype=out.dtype).clamp(min=1)[:, None]
    return out


def percentile_filter(distances: np.ndarray, low: float = 25.0, high: float = 50.0) -> np.ndarray:
    """Boolean mask of distances strictly between the ``low`` and ``high`` percentiles."""
    distances = np.asarray(distances, dtype=np.float64)
    lo, hi = np.percentile(distances, [low, high])
    return (distances > lo) & (distances < hi)


def init_memory(residuals: np.ndarray, n_patterns: int = 20, low: float = 25.0, high: float = 50.0,
                seed: int = 0, n_init: int = 10) -> np.ndarray:
    """Pattern vectors ``(K, d)``: k-means centres of the mid-distance residuals."""
    from polyrank.shared.extras import require

    KMeans = require("sklearn.cluster", extra="text").KMeans
    residuals = np.asarray(residuals, dtype=np.float64)
    kept = residuals[percentile_filter(np.linalg.norm(residuals, axis=1), low, high)]
    if len(kept) < n_patterns:
        raise PolyrankError(f"only {len(kept)} residuals fall between the {low}th and {high}th distance "
                            f"percentiles, fewer than the {n_patterns} patterns asked for; use more training "
                            "claims or a smaller n_patterns")
    logger.info("PMB init: k-means K=%d over %d of %d residuals", n_patterns, len(kept), len(residuals))
    kmeans = KMeans(n_clusters=n_patterns, random_state=seed, n_init=n_init).fit(kept)
    return kmeans.cluster_centers_.astype(np.float32)


def update_memory(memory: torch.Tensor, residuals: torch.Tensor, slots: torch.Tensor, p_true: torch.Tensor,
                  labels: torch.Tensor, step: float = 0.3) -> torch.Tensor:
    """One PMB update; returns the new memory ``(K, d)``.

    Args:
        memory: ``(K, d)`` pattern vectors.
        residuals: ``(M, d)`` residuals of the selected key sentences of all training pairs.
        slots: ``(M,)`` memory slot each residual was assigned to.
        p_true: ``(M,)`` probability of the pair's true label (repeated per key sentence).
        labels: ``(M,)`` the pair's label.
    """
    memory = memory.clone()
    correct = (p_true > 0.5) | ((p_true == 0.5) & (labels == 0))
    weight = (p_true - 0.5).abs().to(memory.dtype)
    for k in range(memory.shape[0]):
        pos, w_pos = _weighted_centre(residuals, weight, (slots == k) & correct)
        neg, w_neg = _weighted_centre(residuals, weight, (slots == k) & ~correct)
        if pos is None and neg is None:
            continue
        toward = pos - memory[k] if pos is not None else torch.zeros_like(memory[k])
        away = memory[k] - neg if neg is not None else torch.zeros_like(memory[k])
        g = (w_pos * toward + w_neg * away) / (w_pos + w_neg)
        norm = torch.linalg.vector_norm(g)
        if norm > 0:
            memory[k] = memory[k] + step * torch.linalg.vector_norm(memory[k]) * g / norm
    return memory


def _weighted_centre(residuals: torch.Tensor, weight: torch.Tensor,
                     members: torch.Tensor) -> tuple[torch.Tensor | None, float]:
    """Weighted mean of the member residuals and the members' total weight (+1e-8, as the reference)."""
    if not bool(members.any()):
        return None, 0.0
    w = weight[members]
    total = float(w.sum()) + ZERO
    return (w[:, None] / total * residuals[members]).sum(0), total
