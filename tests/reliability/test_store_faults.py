"""Real ``kill -9`` of a process saving a CandidateStore in a loop (issue 9 item 3).

After every kill the store at the path loads and is one complete saved state (every vector is the one the
saved version names, checked against a brute-force NumPy search), at most one staging folder (the killed
writer's) is left, and the next load or save of that path removes it. Each trial copies the folder before
loading it, so that loadability is checked on what the kill left, before any cleaning.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from polyrank.shared.store import CandidateStore

N, DIM, STEP = 60_000, 64, np.float32(0.01)  # ~15 MB of vectors: a save takes long enough to be hit mid-way

CHILD = """
import sys
import numpy as np
from polyrank.shared.store import CandidateStore
path, n, dim, step = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), np.float32(sys.argv[4])
base = np.random.default_rng(0).standard_normal((n, dim)).astype(np.float32)
ids = np.arange(n)
store = CandidateStore(dim, "Flat", device="cpu")
store.add(ids, base, metadata=[{"v": 0}] + [None] * (n - 1))
version = 0
while True:
    store.save(path)
    print(version, flush=True)
    version += 1
    store.upsert(ids, base + step * version, metadata=[{"v": version}] + [None] * (n - 1))
"""


def leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != "s")


def check_loads_whole(path) -> int:
    """Load the store at ``path``; it must be exactly one saved version. Returns that version."""
    store = CandidateStore.load(path, device="cpu")
    assert len(store) == N and store.ids[:3] == [0, 1, 2] and store.ids[-1] == N - 1
    version = store.get_metadata([0])[0]["v"]
    expected = np.random.default_rng(0).standard_normal((N, DIM)).astype(np.float32) + STEP * version
    queries = np.random.default_rng(version).standard_normal((4, DIM)).astype(np.float32)
    scores, ids = store.search(queries, 5)
    exact = queries @ expected.T
    assert ids.tolist() == np.argsort(-exact, axis=1, kind="stable")[:, :5].tolist()
    np.testing.assert_allclose(scores, np.sort(exact, axis=1)[:, ::-1][:, :5], rtol=1e-4, atol=1e-3)
    return version


def run_kills(tmp_path, trials: int, seed: int = 0) -> dict[str, int]:
    rng, folder = np.random.default_rng(seed), tmp_path / "work"
    folder.mkdir()
    path = folder / "s"
    stats = {"kills": 0, "mid_save": 0, "between_renames": 0, "loaded_whole": 0, "cleaned_by_load": 0,
             "cleaned_by_save": 0}
    pending: list[str] = []  # staging left by the previous kill, for the next child's save to remove
    for trial in range(trials):
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(path), str(N), str(DIM), str(STEP)],
                                 stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout.readline().strip() == "0", "the child did not complete its first save"
            if pending:  # the child's first save has run: dead writers' staging must be gone
                assert not set(pending) & set(leftovers(folder)), (pending, leftovers(folder))
                stats["cleaned_by_save"] += 1
            time.sleep(rng.uniform(0.0, 0.6))
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
        stats["kills"] += 1
        left = leftovers(folder)
        staging = [name for name in left if name.endswith(".staging")]
        assert len(staging) <= 1 and set(left) - set(staging) <= {".s.old"}, left
        stats["mid_save"] += bool(staging)
        stats["between_renames"] += not path.exists()
        snapshot = tmp_path / f"snap{trial}"
        shutil.copytree(folder, snapshot, symlinks=True)
        check_loads_whole(snapshot / "s")  # what the kill left loads, before anything was cleaned
        stats["loaded_whole"] += 1
        shutil.rmtree(snapshot)
        if trial % 2 == 0 or trial == trials - 1:
            check_loads_whole(path)
            assert leftovers(folder) == [], leftovers(folder)
            stats["cleaned_by_load"] += bool(left)
            pending = []
        else:
            pending = staging
    return stats


def test_kill_9_during_saves_never_loses_the_store_and_leaves_nothing_behind(tmp_path):
    stats = run_kills(tmp_path, trials=6)
    print(stats)
    assert stats["loaded_whole"] == stats["kills"] == 6


@pytest.mark.slow
def test_kill_9_many_times(tmp_path):
    stats = run_kills(tmp_path, trials=int(os.environ.get("POLYRANK_KILL_TRIALS", 30)), seed=1)
    print(stats)
    assert stats["loaded_whole"] == stats["kills"]
