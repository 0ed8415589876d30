"""First-stage search: the shared :class:`CandidateStore` when present, else a minimal private FAISS store.

The private fallback has the same small API (``add(ids, vectors)``, ``search(queries, k) -> (scores,
ids)``, ``ntotal``) so the domain runs while ``polyrank.shared.store`` is missing; remove it once the
core store is everywhere.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

import numpy as np

from polyrank.shared.errors import PolyrankError

logger = logging.getLogger(__name__)


class _FlatIPStore:
    """Exact inner-product search over FAISS ``IndexFlatIP`` with string ids (fallback only)."""

    def __init__(self, dim: int, factory: str = "Flat", metric: str = "ip") -> None:
        import faiss

        if factory != "Flat" or metric != "ip":
            raise PolyrankError("the fallback store only supports factory='Flat', metric='ip'")
        self.dim = dim
        self.index = faiss.IndexFlatIP(dim)
        self.ids: list[str] = []

    @property
    def ntotal(self) -> int:
        return self.index.ntotal

    def add(self, ids: Sequence[str], vectors: np.ndarray, metadata=None) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim or len(ids) != len(vectors):
            raise PolyrankError(f"expected {len(ids)} vectors of dimension {self.dim}, got {vectors.shape}")
        self.index.add(vectors)
        self.ids.extend(str(i) for i in ids)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise PolyrankError(f"query dimension {queries.shape[-1]} does not match the store's {self.dim}")
        scores, rows = self.index.search(queries, min(k, self.ntotal))
        ids = np.array([[self.ids[r] for r in row] for row in rows], dtype=object)
        return scores, ids


def make_store(dim: int, factory: str = "Flat", metric: str = "ip"):
    """A candidate store of ``dim``-dimensional descriptors (shared core store when installed)."""
    try:
        from polyrank.shared.store import CandidateStore
    except ImportError:
        logger.info("polyrank.shared.store not available; using the private FAISS fallback")
        return _FlatIPStore(dim, factory, metric)
    return CandidateStore(dim, factory=factory, metric=metric)


def build_store(ids: Sequence[str], vectors: np.ndarray, chunks: Iterable[tuple[Sequence[str], np.ndarray]] = (),
                factory: str = "Flat"):
    """A store holding ``vectors`` plus any streamed ``(ids, vectors)`` chunks (e.g. the +1M distractors)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    store = make_store(vectors.shape[1], factory=factory)
    store.add(list(ids), vectors)
    for chunk_ids, chunk_vectors in chunks:
        store.add(list(chunk_ids), np.asarray(chunk_vectors, dtype=np.float32))
    return store
