"""CandidateStore shared by threads (issue 9 item 2): searches during edits return correct, existing ids, and
saves during edits write loadable, self-consistent copies.

Oracle: id ``x`` (< DIM) is stored as ``e_x * (1 + version / 1000)`` plus a version-dependent noise vector of
norm below 0.05 on the other coordinates, so in *every* consistent state that holds ``x`` the brute-force top-1
of the query ``e_x`` is ``x``: a search that sees a half-applied edit (vector removed but not re-added, labels
added before the id table grew, a stale id table) returns another id, ``None``/``-1`` or raises. Stable ids
(always present, re-upserted with new versions) are queried; churn ids come and go. A saved copy is
consistent when every vector in it equals the one its metadata version names, which a brute-force NumPy
search over those vectors checks.
"""

from __future__ import annotations

import itertools
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from polyrank.shared.store import CandidateStore
from polyrank.shared.store.index import gpu_count

DIM, N_STABLE, N_CHURN, K = 64, 40, 24, 5
CHURN = list(range(N_STABLE, N_STABLE + N_CHURN))


def vector(key: int, version: int) -> np.ndarray:
    noise = np.random.default_rng(key * 1_000_003 + version).uniform(-1, 1, DIM).astype(np.float32)
    noise *= 0.049 / np.linalg.norm(noise)
    noise[key] = 1 + version / 1000
    return noise


def vectors(keys, versions) -> np.ndarray:
    return np.stack([vector(k, v) for k, v in zip(keys, versions)])


def check_copy(path, queries: np.ndarray) -> None:
    """The saved copy loads and its index holds exactly the vectors its keys+metadata describe."""
    copy = CandidateStore.load(path, device="cpu")
    keys = copy.ids
    assert set(range(N_STABLE)) <= set(keys) <= set(range(N_STABLE + N_CHURN))
    expected = vectors(keys, [m["v"] for m in copy.get_metadata(keys)])
    scores, ids = copy.search(queries, K)
    oracle = np.argsort(-(queries @ expected.T), axis=1, kind="stable")[:, :K]
    assert ids.tolist() == np.asarray(keys)[oracle].tolist()
    np.testing.assert_allclose(scores, np.take_along_axis(queries @ expected.T, oracle, 1), rtol=1e-5, atol=1e-5)


def enough(counts: dict[str, int]) -> bool:
    return counts["saves"] >= 3 and counts["searches"] >= 20 and counts["upserts"] >= 20 and counts["churn"] >= 20


def hammer(tmp_path, factory: str, seconds: float, device: str = "cpu", patience: float = 60.0) -> dict[str, int]:
    store = CandidateStore(DIM, factory, device=device)
    version = itertools.count(1)
    store.add(list(range(N_STABLE)), vectors(range(N_STABLE), [0] * N_STABLE), metadata=[{"v": 0}] * N_STABLE)
    stop, counts, saved = threading.Event(), {"searches": 0, "upserts": 0, "churn": 0, "saves": 0}, []

    def upserter(seed: int) -> None:
        rng = np.random.default_rng(seed)
        while not stop.is_set():
            keys = rng.choice(N_STABLE, size=int(rng.integers(1, 5)), replace=False).tolist()
            vs = [next(version) for _ in keys]
            store.upsert(keys, vectors(keys, vs), metadata=[{"v": v} for v in vs])
            counts["upserts"] += 1

    def churner(seed: int) -> None:
        rng, present = np.random.default_rng(seed), set()
        while not stop.is_set():
            key = int(rng.choice(CHURN))
            if key in present and rng.random() < 0.5:
                store.remove([key])
                present.discard(key)
            else:
                v = next(version)
                store.upsert([key], vector(key, v)[None], metadata=[{"v": v}])
                present.add(key)
            counts["churn"] += 1

    def searcher(seed: int) -> None:
        rng = np.random.default_rng(seed)
        while not stop.is_set():
            want = rng.choice(N_STABLE, size=8, replace=False)
            scores, ids = store.search(np.eye(DIM, dtype=np.float32)[want], K)
            assert ids.dtype == np.int64 and (ids >= 0).all() and (ids < N_STABLE + N_CHURN).all(), ids
            assert ids[:, 0].tolist() == want.tolist(), f"top-1 {ids[:, 0].tolist()} for queries {want.tolist()}"
            assert (scores[:, 0] >= 1).all() and (np.diff(scores, axis=1) <= 0).all(), scores
            assert all(len(set(row)) == K for row in ids.tolist()), ids
            counts["searches"] += 1

    def saver(_: int) -> None:
        for i in itertools.count():
            if stop.is_set():
                return
            path = tmp_path / f"copy{i}"
            store.save(path)
            saved.append(path)
            counts["saves"] += 1

    workers = [upserter, churner, searcher, searcher, saver]
    with ThreadPoolExecutor(len(workers)) as pool:
        futures = [pool.submit(work, seed) for seed, work in enumerate(workers)]
        # Run at least `seconds`, then until every kind of work has progressed (bounded by `patience`): a lock that
        # starves readers or writers leaves its count short and fails below instead of depending on machine load.
        start = time.monotonic()
        while time.monotonic() - start < patience and (
            time.monotonic() - start < seconds or not enough(counts)
        ) and not any(f.done() for f in futures):
            time.sleep(0.05)
        stop.set()
        for future in futures:
            future.result()  # re-raises the first failed assertion or crash of each worker
    queries = np.random.default_rng(7).standard_normal((16, DIM)).astype(np.float32)
    for path in saved:
        check_copy(path, queries)
    store.save(tmp_path / "final")
    check_copy(tmp_path / "final", queries)
    assert enough(counts), f"some work starved in {patience:.0f} s: {counts}"
    return counts


@pytest.mark.parametrize("factory", ["Flat", "HNSW16"])
def test_searches_and_saves_stay_consistent_while_other_threads_edit(tmp_path, factory):
    counts = hammer(tmp_path, factory, seconds=2.0)
    print(f"{factory}: {counts} (every search correct, every saved copy consistent)")


@pytest.mark.slow
@pytest.mark.parametrize("factory", ["Flat", "HNSW16"])
def test_long_concurrent_hammering(tmp_path, factory):
    print(factory, hammer(tmp_path, factory, seconds=20.0))


@pytest.mark.gpu
@pytest.mark.skipif(gpu_count() == 0, reason="faiss sees no GPU (faiss-cpu build or no CUDA device)")
def test_gpu_searches_stay_consistent_while_other_threads_edit(tmp_path):
    """GPU searches are serialised and refresh the GPU copy lazily: they must still see whole edits only."""
    print(hammer(tmp_path, "Flat", seconds=3.0, device="cuda"))


def test_the_lock_lets_readers_in_between_writers_that_never_pause():
    """Two writers that retake the lock at once must not starve a reader (a writer-preferring lock does: the
    reader waits for a moment with no writer waiting, which never comes), nor the reader a writer."""
    from polyrank.shared.store.candidate_store import ReadWriteLock

    lock, stop, counts = ReadWriteLock(), threading.Event(), {"reads": 0, "writes": 0}

    def writer() -> None:
        while not stop.is_set():
            with lock.write():
                time.sleep(0.001)
                counts["writes"] += 1

    def reader() -> None:
        while not stop.is_set():
            with lock.read():
                time.sleep(0.001)
                counts["reads"] += 1

    threads = [threading.Thread(target=work) for work in (writer, writer, reader, reader)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    stop.set()
    for thread in threads:
        thread.join(10)
    # Phase-fair: each write is followed by a read phase, so reads come near one per write and vice versa.
    assert counts["reads"] >= counts["writes"] // 4 and counts["writes"] >= 50, counts
