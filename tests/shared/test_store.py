"""CandidateStore: exact search against a NumPy oracle, ANN recall against the Flat oracle, edits, bad input."""

from __future__ import annotations

import logging
import re

import numpy as np
import pytest
import torch

from polyrank.shared.store import DEFAULT_EF_SEARCH, DEFAULT_NPROBE, CandidateStore, StoreError
from polyrank.shared.store.index import gpu_count

DIM = 32


def clustered(n: int, dim: int, n_clusters: int, seed: int, spread: float = 1.0) -> np.ndarray:
    """Unit vectors around random centres: overlapping clusters, like real embeddings (not trivially easy)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, dim)).astype(np.float32)
    x = centres[rng.integers(0, n_clusters, n)] + spread * rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def corpus() -> tuple[np.ndarray, np.ndarray]:
    x = clustered(20_200, DIM, 100, seed=0)
    return x[:20_000], x[20_000:]


@pytest.fixture(scope="module")
def exact_top10(corpus) -> np.ndarray:
    xb, xq = corpus
    return np.argsort(-(xq @ xb.T), axis=1, kind="stable")[:, :10]


def recall_at_10(ids: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids.tolist(), truth.tolist())]))


def small_store(metric: str = "ip", n: int = 50, seed: int = 1) -> tuple[CandidateStore, np.ndarray]:
    x = np.random.default_rng(seed).standard_normal((n, 8)).astype(np.float32)
    store = CandidateStore(8, "Flat", metric)
    store.add([f"d{i}" for i in range(n)], x, metadata=[{"i": i} for i in range(n)])
    return store, x


# ---------------------------------------------------------------- exact search (NumPy oracle)
@pytest.mark.parametrize("metric", ["ip", "l2", "cosine"])
def test_flat_search_matches_numpy_oracle(metric):
    store, x = small_store(metric)
    q = np.random.default_rng(2).standard_normal((7, 8)).astype(np.float32)
    if metric == "ip":
        oracle = q @ x.T
    elif metric == "cosine":
        oracle = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ (x / np.linalg.norm(x, axis=1, keepdims=True)).T
    else:
        oracle = -((q[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    order = np.argsort(-oracle, axis=1)[:, :5]
    scores, ids = store.search(q, 5)
    assert scores.dtype == np.float32 and scores.shape == (7, 5) and ids.shape == (7, 5)
    assert ids.tolist() == [[f"d{j}" for j in row] for row in order]
    np.testing.assert_allclose(scores, np.take_along_axis(oracle, order, 1), rtol=1e-4, atol=1e-4)
    assert (np.diff(scores, axis=1) <= 1e-6).all(), "scores must be best first (higher is better)"


def test_int_ids_come_back_as_int64_and_one_d_query_is_one_row():
    x = np.eye(4, dtype=np.float32)
    store = CandidateStore(4)
    store.add(np.array([10, 20, 30, 40]), x)
    scores, ids = store.search(x[2], k=2)
    assert ids.dtype == np.int64 and ids[0, 0] == 30 and scores.shape == (1, 2)


def test_float64_and_bf16_tensor_inputs_are_cast_to_float32():
    store, x = small_store()
    s32, i32 = store.search(x[:3], 4)
    s64, i64 = store.search(x[:3].astype(np.float64), 4)
    assert (i32 == i64).all() and np.array_equal(s32, s64)
    q_bf16 = torch.from_numpy(x[:3]).to(torch.bfloat16)
    s_bf, i_bf = store.search(q_bf16, 4)
    s_ref, i_ref = store.search(q_bf16.float().numpy(), 4)
    assert (i_bf == i_ref).all() and np.array_equal(s_bf, s_ref)


def test_search_run_and_metadata():
    store, x = small_store()
    run = store.search_run(["q0", "q1"], x[:2], k=3)
    scores, ids = store.search(x[:2], 3)
    assert run == {q: dict(zip(ids[i].tolist(), scores[i].tolist())) for i, q in enumerate(["q0", "q1"])}
    assert store.get_metadata(["d3", "d0"]) == [{"i": 3}, {"i": 0}]
    assert "d3" in store and len(store) == 50 and store.ids[:2] == ["d0", "d1"]


# ---------------------------------------------------------------- ANN recall vs the Flat oracle
def test_flat_store_is_the_exact_oracle(corpus, exact_top10):
    xb, xq = corpus
    store = CandidateStore(DIM, "Flat")
    store.add(np.arange(len(xb)), xb)
    _, ids = store.search(xq, 10)
    assert recall_at_10(ids, exact_top10) > 0.999


@pytest.mark.parametrize("factory,floor", [("IVF256,Flat", 0.95), ("HNSW32", 0.95), ("IVF64,PQ8", 0.4)])
def test_ann_recall_at_documented_defaults(corpus, exact_top10, factory, floor):
    xb, xq = corpus
    store = CandidateStore(DIM, factory)
    assert store.search_params == ({"efSearch": DEFAULT_EF_SEARCH} if "HNSW" in factory else {"nprobe": DEFAULT_NPROBE})
    if not store.is_trained:
        store.train(xb[:3000] if "PQ" in factory else xb[:10_000])
    store.add(np.arange(len(xb)), xb)
    _, ids = store.search(xq, 10)
    assert recall_at_10(ids, exact_top10) >= floor
    if "IVF256,Flat" in factory:  # the setting matters: one probe out of 256 loses neighbours
        store.set_search_params(nprobe=1)
        assert recall_at_10(store.search(xq, 10)[1], exact_top10) < 0.95


def test_auto_train_on_first_batch(corpus):
    xb, _ = corpus
    store = CandidateStore(DIM, "IVF64,Flat", auto_train=True)
    store.add(np.arange(5000), xb[:5000])
    assert store.is_trained and len(store) == 5000


def test_ivf_slots_it_cannot_fill_are_minus_one_or_none_with_minus_inf_scores(corpus):
    xb, xq = corpus
    for ids in (np.arange(2000), [f"s{i}" for i in range(2000)]):
        store = CandidateStore(DIM, "IVF64,Flat", nprobe=1)
        store.train(xb[:5000])
        store.add(ids, xb[:2000])
        scores, found = store.search(xq[:5], 1000)
        empty = -1 if isinstance(ids, np.ndarray) else None
        holes = found == empty if empty == -1 else np.vectorize(lambda v: v is None)(found)
        assert holes.any() and np.isneginf(scores[holes]).all() and np.isfinite(scores[~holes]).all()


# ---------------------------------------------------------------- edits
@pytest.mark.parametrize("factory", ["Flat", "IVF16,Flat", "HNSW32"])
def test_remove_and_upsert_agree_with_a_fresh_flat_store(factory):
    x = clustered(1200, 16, 20, seed=3)
    store = CandidateStore(16, factory, nprobe=16 if "IVF" in factory else None)
    store.train(x)
    store.add([f"d{i}" for i in range(1000)], x[:1000], metadata=[{"v": 1}] * 1000)
    store.remove([f"d{i}" for i in range(0, 1000, 2)])
    store.upsert(["d1", "d3", "new"], x[1000:1003], metadata=[{"v": 2}, None, {"v": 3}])
    live = {f"d{i}": x[i] for i in range(1, 1000, 2)} | {"d1": x[1000], "d3": x[1001], "new": x[1002]}
    oracle = CandidateStore(16, "Flat")
    oracle.add(list(live), np.stack(list(live.values())))
    q = x[1000:1100]
    _, got = store.search(q, 10)
    _, want = oracle.search(q, 10)
    assert len(store) == len(live) == 501
    assert recall_at_10(got, want) >= (0.999 if factory == "Flat" else 0.95)
    assert got[0, 0] == "d1" and got[2, 0] == "new"
    assert store.get_metadata(["d1", "d3", "new", "d5"]) == [{"v": 2}, None, {"v": 3}, {"v": 1}]
    with pytest.raises(StoreError, match="not in the store"):
        store.get_metadata(["d0"])


def test_lossy_hnsw_cannot_remove():
    store = CandidateStore(16, "HNSW16_SQ8")
    x = clustered(600, 16, 10, seed=4)
    store.train(x)
    store.add(list(range(600)), x)
    with pytest.raises(StoreError, match="does not support removal"):
        store.remove([3])
    assert len(store) == 600 and 3 in store


# ---------------------------------------------------------------- bad input: clear errors
@pytest.mark.parametrize("bad,message", [
    (np.zeros((3, 16), np.float32), re.escape("expected (n, 8) float32, got (n, 16)")),
    (np.zeros((3, 8), np.int64), "got \\(3, 8\\) int64"),
    (np.zeros((2, 3, 8), np.float32), "got \\(2, 3, 8\\)"),
    (np.zeros((0, 8), np.float32), "n >= 1"),
    (np.full((2, 8), np.nan, np.float32), "2 of 2 rows contain NaN or inf"),
    (np.array([[1e300] * 8], np.float64), "beyond float32 range"),
    ("not a vector", "got \\(\\) <U"),
])
def test_bad_vectors_are_rejected(bad, message):
    store, _ = small_store()
    with pytest.raises(StoreError, match=message):
        store.search(bad, 1)
    with pytest.raises(StoreError, match=message):
        store.add([f"x{i}" for i in range(max(1, len(np.atleast_1d(bad))))], bad)
    assert len(store) == 50


def test_inf_in_one_row_names_the_row():
    store, x = small_store()
    x = x[:4].copy()
    x[2, 5] = np.inf
    with pytest.raises(StoreError, match=r"1 of 4 rows contain NaN or inf \(rows \[2\]\)"):
        store.upsert(["a", "b", "c", "d"], x)


@pytest.mark.parametrize("ids,message", [
    (["d0"], "already in the store"),
    (["n1", "n1"], "duplicate ids"),
    ([1], "holds str ids, got int ids"),
    (["n1", 2], "all str or all non-negative int"),
    ([True], "all str or all non-negative int"),
    ("n1", "expected a sequence of ids"),
    ([], "at least one id"),
])
def test_bad_ids_on_add(ids, message):
    store, x = small_store()
    with pytest.raises(StoreError, match=message):
        store.add(ids, x[: max(1, len(ids))] if not isinstance(ids, str) else x[:1])
    assert len(store) == 50


def test_negative_int_ids_and_length_mismatch_and_unknown_removal():
    store = CandidateStore(4)
    with pytest.raises(StoreError, match="must be >= 0"):
        store.add([-1], np.ones((1, 4), np.float32))
    with pytest.raises(StoreError, match="got 2 ids but 1 vectors"):
        store.add([1, 2], np.ones((1, 4), np.float32))
    store.add([1, 2], np.eye(2, 4, dtype=np.float32))
    with pytest.raises(StoreError, match="1 of 2 ids are not in the store"):
        store.remove([2, 7])
    assert len(store) == 2


@pytest.mark.parametrize("k,message", [(51, "k=51 exceeds the 50 vectors"), (0, "positive int"),
                                       (2.5, "positive int"), (True, "positive int")])
def test_bad_k(k, message):
    store, x = small_store()
    with pytest.raises(StoreError, match=message):
        store.search(x[:1], k)


def test_empty_store_and_bad_metadata_and_bad_configuration():
    with pytest.raises(StoreError, match="empty store"):
        CandidateStore(4).search(np.ones(4, np.float32), 1)
    store = CandidateStore(4)
    with pytest.raises(StoreError, match="not JSON-serialisable"):
        store.add(["a"], np.ones((1, 4), np.float32), metadata=[{"x": object()}])
    with pytest.raises(StoreError, match="expected a list of 2 dicts"):
        store.add(["a", "b"], np.ones((2, 4), np.float32), metadata=[{}])
    with pytest.raises(StoreError, match="zero"):
        CandidateStore(4, metric="cosine").add(["z"], np.zeros((1, 4), np.float32))
    with pytest.raises(StoreError, match="cannot build a FAISS index.*examples"):
        CandidateStore(4, "IVFbogus")
    with pytest.raises(StoreError, match="metric: expected one of"):
        CandidateStore(4, metric="dot")
    with pytest.raises(StoreError, match="applies to IVF factories only"):
        CandidateStore(4, "Flat", nprobe=8)
    with pytest.raises(StoreError, match="applies to HNSW factories only"):
        CandidateStore(4, "IVF4,Flat", ef_search=8)
    assert len(store) == 0


def test_training_rules(corpus):
    xb, _ = corpus
    store = CandidateStore(DIM, "IVF256,Flat")
    with pytest.raises(StoreError, match="must be trained before add.*store.train"):
        store.add([1], xb[:1])
    with pytest.raises(StoreError, match="training 'IVF256,Flat' on 100 vectors failed.*larger sample"):
        store.train(xb[:100])
    store.train(xb[:8000])
    store.add([1], xb[:1])
    with pytest.raises(StoreError, match="training must happen before the first add"):
        store.train(xb[:8000])


@pytest.mark.skipif(gpu_count() > 0, reason="checks the CPU fallback; this machine has a faiss GPU")
def test_cuda_request_without_faiss_gpu_falls_back_to_cpu_with_a_note(caplog):
    with caplog.at_level(logging.WARNING, logger="polyrank.shared.store"):
        store = CandidateStore(4, device="cuda")
    assert store.device == "cpu" and "searches on CPU" in caplog.text
    assert CandidateStore(4).device == "cpu"
    with pytest.raises(StoreError, match="device: expected"):
        CandidateStore(4, device="tpu")
