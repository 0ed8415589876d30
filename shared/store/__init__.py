"""Candidate store: a FAISS index under external ids, with metadata and atomic, checksummed saves; or the same
API over a Milvus collection for collections larger than one machine.

``from polyrank.shared.store import CandidateStore`` is the public entry point (FAISS, the default); see
:mod:`polyrank.shared.store.candidate_store` for the rules (ids, scores, training, removal, GPU) and
:mod:`polyrank.shared.store.persistence` for the on-disk format. :func:`create_store` and :func:`open_store` pick
the backend by location (a ``*.db`` milvus-lite file or an ``http(s)://`` Milvus URI selects
:class:`~polyrank.shared.store.milvus.MilvusCandidateStore`; a directory, FAISS) or by ``backend=``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from polyrank.shared.store.candidate_store import DEFAULT_EF_SEARCH, DEFAULT_NPROBE, CandidateStore
from polyrank.shared.store.persistence import FORMAT_VERSION
from polyrank.shared.store.validation import StoreError

__all__ = ["CandidateStore", "StoreError", "FORMAT_VERSION", "DEFAULT_NPROBE", "DEFAULT_EF_SEARCH", "backend_of",
           "create_store", "open_store"]

BACKENDS = ("faiss", "milvus")


def backend_of(location: str | Path | None, backend: str | None = None) -> str:
    """``backend`` when given, else ``"milvus"`` for a ``*.db`` file or a Milvus URI and ``"faiss"`` otherwise."""
    from polyrank.shared.store.milvus import is_milvus_uri

    if backend is not None:
        if backend not in BACKENDS:
            raise StoreError(f"backend: expected one of {BACKENDS}, got {backend!r}")
        return backend
    return "milvus" if is_milvus_uri(location) else "faiss"


def create_store(dim: int, factory: str = "Flat", metric: str = "ip", *, location: str | Path | None = None,
                 backend: str | None = None, collection: str = "polyrank", overwrite: bool = False,
                 **options: Any) -> Any:
    """A new, empty store: FAISS :class:`CandidateStore` (saved later with ``save(location)``) or a Milvus
    collection at ``location`` (``overwrite=True`` drops an existing one). ``options`` go to the constructor."""
    if backend_of(location, backend) == "faiss":
        return CandidateStore(dim, factory, metric, **options)
    from polyrank.shared.store.milvus import MilvusCandidateStore

    if location is None:
        raise StoreError("backend='milvus' needs location=: a milvus-lite *.db file or a Milvus server URI")
    return MilvusCandidateStore(dim, factory, metric, uri=location, collection=collection, overwrite=overwrite,
                                **options)


def open_store(location: str | Path, *, backend: str | None = None, collection: str = "polyrank",
               **options: Any) -> Any:
    """A saved FAISS store directory (:meth:`CandidateStore.load`, ``options`` such as ``mmap=True``) or a Milvus
    collection (:meth:`MilvusCandidateStore.open`, ``options`` such as ``token=``)."""
    if backend_of(location, backend) == "faiss":
        return CandidateStore.load(location, **options)
    from polyrank.shared.store.milvus import MilvusCandidateStore

    return MilvusCandidateStore.open(location, collection=collection, **options)
