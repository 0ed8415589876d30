"""The Milvus backend (embedded milvus-lite) against the FAISS store: same top-k, same semantics, same errors."""

from __future__ import annotations

import numpy as np
import pytest

from polyrank.shared.store import CandidateStore, StoreError, backend_of, create_store, open_store

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")
from polyrank.shared.store.milvus import MilvusCandidateStore  # noqa: E402


@pytest.fixture
def milvus(tmp_path):
    opened = []

    def make(dim, metric="ip", factory="Flat", name="c", **kw):
        store = MilvusCandidateStore(dim, factory, metric, uri=str(tmp_path / "m.db"), collection=name, **kw)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


def _data(n=400, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, dim)).astype(np.float32), rng.standard_normal((25, dim)).astype(np.float32)


@pytest.mark.parametrize("metric", ["ip", "cosine", "l2"])
def test_oracle_same_top_k_as_faiss_flat(milvus, metric):
    """Guards: wrong metric mapping (L2 sign, cosine normalisation), dropped or reordered hits, id mix-ups."""
    x, q = _data()
    ids = [f"doc-{i}" for i in range(len(x))]
    faiss_store, milvus_store = CandidateStore(16, "Flat", metric, device="cpu"), milvus(16, metric, name=metric)
    for store in (faiss_store, milvus_store):
        store.add(ids, x)
    f_scores, f_ids = faiss_store.search(q, 10)
    m_scores, m_ids = milvus_store.search(q, 10)
    assert m_ids.tolist() == f_ids.tolist()
    np.testing.assert_allclose(m_scores, f_scores, rtol=1e-4, atol=1e-4)
    assert m_scores.dtype == np.float32 and m_ids.dtype == object
    m_run, f_run = milvus_store.search_run(["a"], q[:1], 3), faiss_store.search_run(["a"], q[:1], 3)
    assert list(m_run["a"]) == list(f_run["a"]) and np.allclose(list(m_run["a"].values()), list(f_run["a"].values()),
                                                                 rtol=1e-4, atol=1e-4)


def test_ids_and_metadata_round_trip_and_reopen(milvus, tmp_path):
    """Guards: int ids coming back as str/float, None vs {} metadata confused, state lost on reopen."""
    x, q = _data(50, 8)
    ids = np.arange(100, 150, dtype=np.int64)
    meta = [None if i % 3 == 0 else ({} if i % 3 == 1 else {"title": f"t{i}", "tags": [i, "x"], "n": {"a": 1.5}})
            for i in range(50)]
    store = milvus(8, "l2")
    store.add(ids, x, metadata=meta)
    named = milvus(8, "ip", name="named")
    named.add(["s1", "s2"], x[:2])
    named.close()
    reopened = open_store(str(tmp_path / "m.db"), collection="named")
    assert reopened.search(x[1], 1)[1].tolist() == [["s2"]]  # str ids stay str after reopening
    reopened.close()
    assert store.get_metadata([100, 101, 102]) == meta[:3]
    assert store.ids == ids.tolist() and len(store) == 50 and 120 in store and 7 not in store
    scores, found = store.search(q, 5)
    assert found.dtype == np.int64
    store.close()
    again = open_store(str(tmp_path / "m.db"), collection="c")
    try:
        assert (again.dim, again.metric, again.factory) == (8, "l2", "Flat")
        assert again.get_metadata(ids.tolist()) == meta
        s2, f2 = again.search(q, 5)
        assert f2.tolist() == found.tolist() and np.allclose(s2, scores)
        with pytest.raises(StoreError, match="expected 4"):
            open_store(str(tmp_path / "m.db"), collection="c", dim=4)
    finally:
        again.close()


def test_reopen_in_a_new_process_loads_the_collection(tmp_path):
    """Guards: a collection written by another process coming back 'released', so every search fails."""
    import subprocess
    import sys

    db = str(tmp_path / "other.db")
    code = ("import numpy as np; from polyrank.shared.store import create_store; "
            f"s = create_store(4, location={db!r}); s.add(['a', 'b'], np.eye(2, 4, dtype=np.float32)); s.close()")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, capture_output=True)
    store = open_store(db)
    try:
        assert store.search(np.eye(1, 4, dtype=np.float32), 2)[1].tolist() == [["a", "b"]]
    finally:
        store.close()


def _outcome(action):
    try:
        return ("ok", action())
    except StoreError as err:
        return ("error", str(err))


def test_edits_and_errors_match_faiss(milvus):
    """Guards: add overwriting silently, upsert keeping stale metadata/vectors, remove ignoring unknown ids, and
    error messages that differ between backends."""
    x, _ = _data(6, 4)
    faiss_store, milvus_store = CandidateStore(4, "Flat", "ip", device="cpu"), milvus(4)
    steps = [
        lambda s: s.search(x[:1], 1),  # empty store
        lambda s: s.add(["a", "b", "c"], x[:3], metadata=[{"v": 1}, None, {"v": 3}]),
        lambda s: s.add(["c", "d"], x[3:5]),  # c exists
        lambda s: s.add([1, 2], x[3:5]),  # wrong id kind
        lambda s: s.add(["d", "d"], x[3:5]),  # duplicate in one call
        lambda s: s.add(["d"], x[3:5]),  # count mismatch
        lambda s: s.add(["d"], np.ones((1, 5), np.float32)),  # wrong dim
        lambda s: s.upsert(["a", "e"], np.stack([x[5], x[4]]), metadata=[None, {"v": 5}]),
        lambda s: s.get_metadata(["a", "c", "e"]),
        lambda s: s.remove(["b", "zz"]),  # unknown id: nothing removed
        lambda s: s.remove(["b"]),
        lambda s: s.get_metadata(["b"]),
        lambda s: s.search(x[5], 10),  # k > count
        lambda s: s.search(x[5], 0),
        lambda s: (s.count, sorted(s.ids)),
        lambda s: [row.tolist() for row in s.search(x[5], 3)],
    ]
    for number, step in enumerate(steps):
        f, m = _outcome(lambda: step(faiss_store)), _outcome(lambda: step(milvus_store))
        assert f[0] == m[0], f"step {number}: FAISS {f} vs Milvus {m}"
        if number == len(steps) - 1:
            np.testing.assert_allclose(m[1][0], f[1][0], rtol=1e-5)
            assert m[1][1] == f[1][1] and f[1][1][0][0] == "a"  # upserted a now holds x[5]
        else:
            assert f == m, f"step {number}: FAISS {f} vs Milvus {m}"


def test_backend_selection(tmp_path):
    """Guards: a Milvus URI silently built as an in-memory FAISS store (data never reaches Milvus), or FAISS
    no longer the default."""
    assert backend_of(tmp_path / "store") == "faiss" and backend_of("x.db") == "milvus"
    assert backend_of("http://milvus:19530") == "milvus" and backend_of("x.db", backend="faiss") == "faiss"
    assert type(create_store(4)) is CandidateStore
    store = create_store(4, location=str(tmp_path / "s.db"), collection="sel")
    try:
        assert isinstance(store, MilvusCandidateStore)
        store.add(["a"], np.ones((1, 4), np.float32))
        with pytest.raises(StoreError, match="dim=4, not 8"):
            create_store(8, location=str(tmp_path / "s.db"), collection="sel")
    finally:
        store.close()
    with pytest.raises(StoreError, match="needs location"):
        create_store(4, backend="milvus")
    with pytest.raises(StoreError, match="backend"):
        create_store(4, backend="lance")
    with pytest.raises(StoreError, match="no Milvus counterpart"):
        create_store(4, "IVF16,SQ8", location=str(tmp_path / "s.db"))
