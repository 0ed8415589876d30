"""SuperGlobal stage-2 reranking with global features only (training-free).

Shao et al., ICCV 2023 (arXiv 2308.06954), Sec. 3.2, as in the official ``modules/reranking``
(``MDescAug`` + ``RerankwMDA``). For a query q (L2-normalised) and its first-stage top-M descriptors
x_1..x_M:

1. Database-side refinement: for each x_i take its K nearest neighbours n_0 = i, n_1..n_{K-1} inside the
   top-M (by dot product); ``d~_i = (x_i + sum_j beta * <x_i, x_{n_j}> * x_{n_j}) / (1 + sum_j beta * <x_i, x_{n_j}>)``.
   The refined descriptors are not re-normalised.
2. Query expansion: ``q~`` = element-wise max of the K refined descriptors ranked highest by ``q . d~``.
3. Final score ``(q . d~_i + q~ . d~_i) / 2``; the top-M are re-sorted by it, ranks beyond M unchanged.

Defaults M=400, K=10 (9 neighbours + self), beta=0.15. K counts as in the reference: its ``MDescAug(K=9)`` /
``RerankwMDA(K=9)`` set ``self.K = K + 1`` (including oneself) for both the neighbour lists and the query
expansion, so polyrank's ``k=10`` is the reference's ``K=9`` (checked on real descriptors by
``tests/domains/superglobal/test_superglobal_real.py``). The one difference: the reference finds "self" by
sorting similarities (an exact duplicate may tie with it); here the item itself is always first.
The reference's ``ranks_value_trans *= beta`` is dead code and is not reproduced. Final orderings use
stable sorts (ties keep first-stage order); exact ties among neighbour similarities are left to ``torch.topk``.

:func:`rerank_topm` is batched over queries and chunked so memory stays bounded
(about ``chunk * (2 M^2 + K^2 D + 2 M D)`` floats); :func:`rerank_loop` is a plain per-query, per-item NumPy oracle.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from polyrank.shared.errors import PolyrankError

logger = logging.getLogger(__name__)

M_DEFAULT, K_DEFAULT, BETA_DEFAULT = 400, 10, 0.15


def _check(q: torch.Tensor, x_top: torch.Tensor, k: int) -> None:
    if q.dim() != 2 or x_top.dim() != 3 or x_top.shape[0] != q.shape[0]:
        raise PolyrankError(f"expected queries (B, D) and shortlists (B, M, D), got {tuple(q.shape)} and "
                            f"{tuple(x_top.shape)}")
    if x_top.shape[-1] != q.shape[-1]:
        raise PolyrankError(f"descriptor dimension mismatch: queries have D={q.shape[-1]}, database "
                            f"descriptors D={x_top.shape[-1]}; extract both with the same model")
    if k < 1:
        raise PolyrankError(f"K must be >= 1 (it counts the item itself), got {k}")


def _neighbours(x_top: torch.Tensor, k: int, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Each item's K neighbours inside the shortlist (self first) and their weights ``(1, beta*sim...)``."""
    gram = torch.bmm(x_top, x_top.transpose(1, 2))  # (B, M, M): the one O(M^2 D) product
    ranking = gram.clone()
    ranking.diagonal(dim1=1, dim2=2).fill_(float("inf"))  # self first, then neighbours by similarity
    nn_idx = torch.topk(ranking, k, dim=-1).indices  # (B, M, K)
    weights = beta * torch.gather(gram, 2, nn_idx)
    weights[..., 0] = 1.0
    return nn_idx, weights


def _refine(x_top: torch.Tensor, nn_idx: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Refined descriptors of the items whose neighbour lists are given: ``(B, n, K)`` -> ``(B, n, D)``."""
    batch = torch.arange(x_top.shape[0], device=x_top.device)[:, None, None]
    refined = (weights.unsqueeze(-1) * x_top[batch, nn_idx]).sum(2)
    return refined / weights.sum(-1, keepdim=True)


def refine_database(x_top: torch.Tensor, k: int = K_DEFAULT, beta: float = BETA_DEFAULT) -> torch.Tensor:
    """Top-M descriptor refinement (``MDescAug``): ``(B, M, D) -> (B, M, D)`` weighted neighbour means."""
    nn_idx, weights = _neighbours(x_top, min(k, x_top.shape[1]), beta)
    return _refine(x_top, nn_idx, weights)


def _refined_dot(v: torch.Tensor, x_top: torch.Tensor, nn_idx: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``v . d~_i`` for every shortlisted i without forming ``d~``: ``sum_j w_ij (v . x_j) / sum_j w_ij``."""
    projections = (x_top * v.unsqueeze(1)).sum(-1)  # (B, M); element-wise, so batching cannot change rounding
    gathered = torch.gather(projections.unsqueeze(1).expand(-1, nn_idx.shape[1], -1), 2, nn_idx)
    return (weights * gathered).sum(-1) / weights.sum(-1)


def rerank_scores(q: torch.Tensor, x_top: torch.Tensor, k: int = K_DEFAULT, beta: float = BETA_DEFAULT
                  ) -> torch.Tensor:
    """SuperGlobal scores ``(B, M)`` of each query's shortlist; ``q`` ``(B, D)``, ``x_top`` ``(B, M, D)``.

    Computed in score space: since ``d~_i`` is linear in the ``x_j``, ``q . d~_i`` is the same weighted
    mean of the ``q . x_j``; only the K refined descriptors that form ``q~`` are materialised. The cost is
    the Gram matrix (M^2 D) plus O(M D + K^2 D), instead of a second M^2 D product for all ``d~``.
    """
    _check(q, x_top, k)
    k = min(k, x_top.shape[1])
    nn_idx, weights = _neighbours(x_top, k, beta)
    s1 = _refined_dot(q, x_top, nn_idx, weights)
    top = torch.sort(s1, dim=-1, descending=True, stable=True).indices[:, :k]  # (B, K)
    top_nn = torch.gather(nn_idx, 1, top.unsqueeze(-1).expand(-1, -1, k))
    top_weights = torch.gather(weights, 1, top.unsqueeze(-1).expand(-1, -1, k))
    q_tilde = _refine(x_top, top_nn, top_weights).max(1).values  # element-wise max of K refined descriptors
    s2 = _refined_dot(q_tilde, x_top, nn_idx, weights)
    return (s1 + s2) / 2


def _chunk_size(m: int, d: int, k: int, budget_bytes: int, itemsize: int) -> int:
    per_query = itemsize * (2 * m * m + k * k * d + 2 * m * d)  # gram, ranking; K refined; shortlist
    return max(1, budget_bytes // max(per_query, 1))


def rerank_topm(queries: np.ndarray | torch.Tensor, database: np.ndarray | torch.Tensor, ranks: np.ndarray,
                m: int = M_DEFAULT, k: int = K_DEFAULT, beta: float = BETA_DEFAULT, device: str | None = None,
                memory_budget_mb: int = 64, dtype: torch.dtype = torch.float32) -> tuple[np.ndarray, np.ndarray]:
    """Rerank each query's first-stage list; returns ``(new_ranks (nq, L), scores (nq, M'))``.

    Args:
        queries: ``(nq, D)`` L2-normalised query descriptors.
        database: ``(N, D)`` L2-normalised database descriptors (indexable by ``ranks``).
        ranks: ``(nq, L)`` first-stage database indices, best first (L >= 1; L < N is allowed).
        m, k, beta: shortlist size, neighbours incl. self, neighbour weight scale.
        device: where to compute (``"cuda"``, ``"cpu"``; default: CUDA when available).
        memory_budget_mb: upper bound of the working memory of one chunk of queries (64 MB, about 12
            queries at M=400, D=2048, was fastest on CPU, where larger chunks fall out of cache; raise it on GPU).
    Returns:
        ``new_ranks``: the top ``M' = min(m, L)`` re-sorted by the SuperGlobal score, the rest unchanged;
        ``scores``: the SuperGlobal scores in the new order.
    """
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    ranks = np.asarray(ranks)
    if ranks.ndim != 2 or len(ranks) != len(queries):
        raise PolyrankError(f"ranks must be (n_queries, L) = ({len(queries)}, L), got shape {ranks.shape}")
    if m < 1:
        raise PolyrankError(f"M must be >= 1, got {m}")
    m_eff = min(m, ranks.shape[1])
    q_all = torch.as_tensor(np.asarray(queries), dtype=dtype)
    x_all = torch.as_tensor(np.asarray(database), dtype=dtype)
    if q_all.shape[-1] != x_all.shape[-1]:
        raise PolyrankError(f"descriptor dimension mismatch: queries D={q_all.shape[-1]}, database "
                            f"D={x_all.shape[-1]}; extract both with the same model")
    chunk = _chunk_size(m_eff, q_all.shape[-1], min(k, m_eff), memory_budget_mb << 20, torch.finfo(dtype).bits // 8)
    new_ranks, all_scores = ranks.copy(), np.empty((len(ranks), m_eff), dtype=np.float32)
    for start in range(0, len(ranks), chunk):
        head = torch.as_tensor(ranks[start:start + chunk, :m_eff], dtype=torch.long)
        q = q_all[start:start + chunk].to(device)
        x_top = x_all[head].to(device)
        scores = rerank_scores(q, x_top, k, beta).float()
        order = torch.sort(scores, dim=-1, descending=True, stable=True).indices.cpu()
        new_ranks[start:start + chunk, :m_eff] = torch.gather(head, 1, order).numpy()
        all_scores[start:start + chunk] = torch.gather(scores.cpu(), 1, order).numpy()
    return new_ranks, all_scores


def rerank_loop(queries: np.ndarray, database: np.ndarray, ranks: np.ndarray, m: int = M_DEFAULT,
                k: int = K_DEFAULT, beta: float = BETA_DEFAULT) -> tuple[np.ndarray, np.ndarray]:
    """The slow oracle: one query and one shortlisted item at a time, plain NumPy (float64)."""
    ranks = np.asarray(ranks)
    m_eff = min(m, ranks.shape[1])
    new_ranks = ranks.copy()
    all_scores = np.empty((len(ranks), m_eff))
    for qi, q in enumerate(np.asarray(queries, dtype=np.float64)):
        head = ranks[qi, :m_eff]
        x = np.asarray(database)[head].astype(np.float64)
        k_eff = min(k, m_eff)
        refined = np.empty_like(x)
        for i in range(m_eff):
            sims = x @ x[i]
            others = [j for j in sorted(range(m_eff), key=lambda j: -sims[j]) if j != i][:k_eff - 1]
            weights = [1.0] + [beta * sims[j] for j in others]
            refined[i] = sum(w * x[j] for w, j in zip(weights, [i] + others)) / sum(weights)
        s1 = refined @ q
        expansion = refined[sorted(range(m_eff), key=lambda i: -s1[i])[:k_eff]].max(axis=0)
        scores = (s1 + refined @ expansion) / 2
        order = sorted(range(m_eff), key=lambda i: -scores[i])
        new_ranks[qi, :m_eff] = head[order]
        all_scores[qi] = scores[order]
    return new_ranks, all_scores
