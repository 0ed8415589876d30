"""First-stage search over the shared :class:`~polyrank.shared.store.CandidateStore`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from polyrank.shared.store import CandidateStore


def build_store(ids: Sequence[str], vectors: np.ndarray, chunks: Iterable[tuple[Sequence[str], np.ndarray]] = (),
                factory: str = "Flat") -> CandidateStore:
    """A store holding ``vectors`` plus any streamed ``(ids, vectors)`` chunks (e.g. the +1M distractors)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    store = CandidateStore(vectors.shape[1], factory=factory, metric="ip")
    store.add(list(ids), vectors)
    for chunk_ids, chunk_vectors in chunks:
        store.add(list(chunk_ids), np.asarray(chunk_vectors, dtype=np.float32))
    return store
