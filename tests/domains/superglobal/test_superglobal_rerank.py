"""Stage-2 reranking: batched == per-query loop oracle, chunking, degenerate cases, bad inputs."""

import numpy as np
import pytest
import torch

from polyrank.domains.superglobal.rerank import refine_database, rerank_loop, rerank_scores, rerank_topm
from polyrank.shared.errors import PolyrankError


def _data(nq=6, n=60, d=16, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(5, d))
    db = centres[rng.integers(0, 5, n)] + 0.6 * rng.normal(size=(n, d))
    q = centres[rng.integers(0, 5, nq)] + 0.6 * rng.normal(size=(nq, d))
    db /= np.linalg.norm(db, axis=1, keepdims=True)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    ranks = np.argsort(-(q @ db.T), axis=1, kind="stable")
    return q.astype(np.float32), db.astype(np.float32), ranks


@pytest.mark.parametrize("m,k", [(25, 10), (60, 4), (7, 7), (40, 1)])
def test_batched_equals_per_query_loop(m, k):
    q, db, ranks = _data()
    fast, fast_scores = rerank_topm(q, db, ranks, m=m, k=k, beta=0.15, device="cpu")
    slow, slow_scores = rerank_loop(q, db, ranks, m=m, k=k, beta=0.15)
    assert np.array_equal(fast, slow)
    assert np.allclose(fast_scores, slow_scores, atol=1e-5)
    assert np.array_equal(fast[:, m:], ranks[:, m:])  # ranks beyond M unchanged


def test_chunking_gives_identical_results():
    q, db, ranks = _data(nq=9)
    whole, s1 = rerank_topm(q, db, ranks, m=30, k=5, device="cpu", memory_budget_mb=512)
    tiny_chunks, s2 = rerank_topm(q, db, ranks, m=30, k=5, device="cpu", memory_budget_mb=0)  # 1 query/chunk
    assert np.array_equal(whole, tiny_chunks) and np.array_equal(s1, s2)


def test_m_equals_k_equals_one_leaves_the_order_unchanged():
    q, db, ranks = _data()
    new, _ = rerank_topm(q, db, ranks, m=1, k=1)
    assert np.array_equal(new, ranks)


def test_final_score_is_the_mean_of_both_terms_by_hand():
    # M=2, K=2: x1, x2 unit vectors at 60 degrees; d~_i = (x_i + b*s*x_j) / (1 + b*s)
    x = torch.tensor([[[1.0, 0.0], [0.5, float(np.sqrt(3)) / 2]]])
    q = torch.tensor([[1.0, 0.0]])
    beta, s = 0.15, 0.5
    d = torch.stack([(x[0, 0] + beta * s * x[0, 1]), (x[0, 1] + beta * s * x[0, 0])]) / (1 + beta * s)
    assert torch.allclose(refine_database(x, k=2, beta=beta)[0], d, atol=1e-6)
    q_tilde = d.max(0).values
    expected = ((d @ q[0]) + (d @ q_tilde)) / 2
    assert torch.allclose(rerank_scores(q, x, k=2, beta=beta)[0], expected, atol=1e-6)


def test_refinement_pulls_an_outlier_towards_its_neighbours():
    q, db, ranks = _data(nq=1, n=40)
    top = torch.from_numpy(db[ranks[0, :20]])[None]
    refined = refine_database(top, k=10, beta=0.15)[0]
    assert refined.shape == (20, 16) and not torch.allclose(refined, top[0])


def test_descriptor_dimension_mismatch_is_a_clear_error():
    q, db, ranks = _data()
    with pytest.raises(PolyrankError, match="dimension mismatch"):
        rerank_topm(q[:, :8], db, ranks)
    with pytest.raises(PolyrankError, match="ranks must be"):
        rerank_topm(q, db, ranks[:2])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.gpu
def test_gpu_matches_cpu():
    q, db, ranks = _data(nq=20, n=500, d=64)
    cpu, _ = rerank_topm(q, db, ranks, m=100, device="cpu")
    gpu, _ = rerank_topm(q, db, ranks, m=100, device="cuda")
    assert (cpu == gpu).mean() > 0.99
