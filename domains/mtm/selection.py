"""Key-sentence selection of MTM (Sheng et al., ACL 2021, Sec. 3.3, Eq. 3-5; ``model/MTM.py``).

For a claim q and an article's sentences s_1..s_n, with residuals ``r_i = E(s_i) - E(q)``:

- claim closeness from ``dQ_i = ||r_i||``; pattern closeness from ``dP_i = min_k ||r_i - m_k||`` (the argmin
  is the sentence's pattern);
- each distance list is min-max scaled *within the article*: ``c = 1 - (d - min) / (max - min + 1e-8)``;
- ``score_i = lambda_Q cQ_i + lambda_P cP_i`` (0.6 / 0.4); the top-k sentences are kept (k = 5 Twitter,
  3 Weibo) with weights ``w_i = score_i / sum_topk score``; shorter articles are padded with weight 0.

Everything is batched over articles: sentences are padded to ``(B, N, d)`` with a mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

ZERO = 1e-8


@dataclass
class KeySentences:
    """Top-k selection per article, all ``(B, k)``: sentence index (-1 = padding), weight, pattern slot, score."""

    indices: torch.Tensor
    weights: torch.Tensor
    patterns: torch.Tensor
    scores: torch.Tensor


def min_max_closeness(distances: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``1 - (d - min) / (max - min + 1e-8)`` within each row over its valid entries; 0 at padding."""
    big = torch.finfo(distances.dtype).max
    low = distances.masked_fill(~mask, big).amin(dim=1, keepdim=True)
    high = distances.masked_fill(~mask, -big).amax(dim=1, keepdim=True)
    return (1 - (distances - low) / (high - low + ZERO)).masked_fill(~mask, 0.0)


def select_key_sentences(claims: torch.Tensor, sentences: torch.Tensor, mask: torch.Tensor, memory: torch.Tensor,
                         k: int, lambda_q: float = 0.6, lambda_p: float = 0.4) -> KeySentences:
    """Select the k key sentences of each article.

    Args:
        claims: ``(B, d)`` claim embeddings E(q).
        sentences: ``(B, N, d)`` sentence embeddings E(s), padded.
        mask: ``(B, N)`` True where a sentence exists.
        memory: ``(K, d)`` pattern vectors.
    """
    residuals = sentences - claims[:, None, :]                                   # (B, N, d)
    d_claim = torch.linalg.vector_norm(residuals, dim=-1)                         # (B, N)
    b, n, dim = residuals.shape
    d_pattern_all = torch.cdist(residuals.reshape(b * n, dim).float(), memory.float()).reshape(b, n, -1)
    d_pattern, pattern = d_pattern_all.min(dim=-1)                                # (B, N)
    score = lambda_q * min_max_closeness(d_claim.float(), mask) + lambda_p * min_max_closeness(d_pattern, mask)
    ranked = score.masked_fill(~mask, -1.0)
    take = min(k, n)
    top_scores, top = ranked.topk(take, dim=1)                                    # sorted descending
    valid = top_scores >= 0
    top_scores = top_scores.clamp(min=0) * valid
    weights = top_scores / (top_scores.sum(dim=1, keepdim=True) + ZERO)
    indices = top.masked_fill(~valid, -1)
    patterns = pattern.gather(1, top).masked_fill(~valid, 0)
    if take < k:
        pad = (0, k - take)
        indices = torch.nn.functional.pad(indices, pad, value=-1)
        weights, top_scores = torch.nn.functional.pad(weights, pad), torch.nn.functional.pad(top_scores, pad)
        patterns = torch.nn.functional.pad(patterns, pad)
    return KeySentences(indices, weights, patterns, top_scores)
