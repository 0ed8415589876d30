"""CandidateStore on a GPU: same results as the CPU store. Needs a GPU build of faiss; run by
``benchmarks/gpu_check.py`` (``pytest -m gpu``), skipped everywhere else."""

from __future__ import annotations

import numpy as np
import pytest

from polyrank.shared.store import CandidateStore
from polyrank.shared.store.index import gpu_count

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(gpu_count() == 0, reason="faiss sees no GPU (faiss-cpu build or no CUDA device)"),
]


def clustered(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n // 100, dim)).astype(np.float32)
    x = centres[rng.integers(0, len(centres), n)] + rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def pair(factory: str, xb: np.ndarray, metric: str = "ip") -> tuple[CandidateStore, CandidateStore]:
    stores = []
    for device in ("cpu", "cuda"):
        store = CandidateStore(xb.shape[1], factory, metric, device=device)
        store.train(xb[:20_000])
        store.add([f"d{i}" for i in range(len(xb))], xb)
        stores.append(store)
    return stores[0], stores[1]


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean([len(set(x) & set(y)) / len(x) for x, y in zip(a.tolist(), b.tolist())]))


@pytest.mark.parametrize("factory,metric", [("Flat", "ip"), ("Flat", "l2"), ("IVF256,Flat", "ip")])
def test_gpu_search_matches_cpu(factory, metric):
    x = clustered(50_000, 64, seed=0)
    cpu, gpu = pair(factory, x[:49_000], metric)
    assert cpu.device == "cpu" and gpu.device == "cuda:0"
    s_cpu, i_cpu = cpu.search(x[49_000:], 10)
    s_gpu, i_gpu = gpu.search(x[49_000:], 10)
    assert gpu._gpu.index is not None, "the GPU store fell back to CPU search"
    assert agreement(i_cpu, i_gpu) >= 0.99
    np.testing.assert_allclose(np.sort(s_cpu, 1), np.sort(s_gpu, 1), rtol=1e-3, atol=1e-3)


def test_gpu_copy_follows_edits_and_round_trips(tmp_path):
    x = clustered(5_000, 32, seed=1)
    cpu, gpu = pair("Flat", x[:4_000])
    for store in (cpu, gpu):
        store.search(x[:5], 3)  # builds the GPU copy
        store.remove([f"d{i}" for i in range(100)])
        store.upsert(["d100", "fresh"], x[4_000:4_002])
    i_cpu, i_gpu = cpu.search(x[4_000:4_100], 10)[1], gpu.search(x[4_000:4_100], 10)[1]
    assert agreement(i_cpu, i_gpu) >= 0.99 and i_gpu[1, 0] == "fresh"
    assert not ({f"d{i}" for i in range(100)} & set(i_gpu.ravel().tolist()))
    gpu.save(tmp_path / "g")
    loaded = CandidateStore.load(tmp_path / "g", device="cuda")
    assert agreement(loaded.search(x[4_000:4_100], 10)[1], i_gpu) >= 0.99


def test_gpu_large_k_and_hnsw_fall_back_to_cpu():
    x = clustered(5_000, 32, seed=2)
    cpu, gpu = pair("Flat", x)
    assert agreement(cpu.search(x[:3], 3000)[1], gpu.search(x[:3], 3000)[1]) >= 0.99  # k > 2048
    hnsw = CandidateStore(32, "HNSW32", device="cuda")
    hnsw.add(list(range(5_000)), x)
    assert hnsw.search(x[:10], 5)[1][:, 0].tolist() == list(range(10))
