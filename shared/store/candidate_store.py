"""``CandidateStore``: a FAISS index with external ids, per-id metadata and atomic persistence.

Ids: external ids (all ``str`` or all non-negative ``int`` in one store) map to int64 labels assigned
0, 1, 2, ... and never reused; search results are translated with one vectorised gather over a
label -> id table, never a Python loop per result. Removed labels leave an 8-byte hole in that table.

Scores: higher is better for every metric: inner product for ``"ip"``, cosine for ``"cosine"`` (vectors
are L2-normalised on add and search), and the *negated squared* L2 distance for ``"l2"``. A slot that
FAISS could not fill (an IVF probe that found fewer than ``k`` vectors) has id ``-1`` (int ids) or
``None`` (str ids) and score ``-inf``.

Search settings: ``nprobe`` (IVF) defaults to :data:`DEFAULT_NPROBE` = 32 and ``efSearch`` (HNSW) to
:data:`DEFAULT_EF_SEARCH` = 128; change them with :meth:`CandidateStore.set_search_params`. At these
defaults recall@10 against the exact ``Flat`` oracle is >= 0.95 on clustered unit vectors: 20k x 32 with
``IVF256,Flat`` / ``HNSW32`` (``tests/shared/test_store.py``) and 200k x 64 with ``IVF1024,Flat``
(1.000; 0.945 at nprobe=8, 1.000 at 16) / ``HNSW32`` (0.968; 0.943 at efSearch=64), measured by
``benchmarks/store.py``. Harder data needs larger values: measure recall on a sample of your own queries.
PQ codes are lossy: ``IVF*,PQ*`` recall against Flat stays below these figures whatever the setting.

Training: IVF/PQ factories need :meth:`CandidateStore.train` on a representative sample (FAISS advises
>= 39 vectors per IVF list) before the first :meth:`~CandidateStore.add`; adding to an untrained store
raises unless the store was created with ``auto_train=True``, which trains on the first added batch.
PQ factories are built with polysemous training off (it only serves Hamming filtering, never enabled
here, and multiplies training time).

Persistence: :meth:`~CandidateStore.save` writes a checksummed directory atomically (see
:mod:`polyrank.shared.store.persistence`); ``load(path, mmap=True)`` maps the vector codes from disk and
gives a read-only store. ``save(path)`` replaces only a previous store (a directory holding
``manifest.json``) or an empty directory; any other file or folder at ``path`` raises unless
``overwrite=True``.

Removal: Flat, IVF and PQ indexes remove in place (``remove_ids``). HNSW graphs cannot drop nodes, so
``remove``/``upsert`` on ``HNSW*`` (Flat storage) rebuild the graph from the stored vectors: exact, but
one full build per call; batch your removals. ``upsert`` = remove the ids present + add all.

GPU: with ``device="auto"`` (default) or ``"cuda[:i]"`` and a GPU build of faiss, searches run on a GPU
copy of the index, refreshed after each change; the CPU index stays the source of truth (saved, edited).
Without GPU support the store logs a note and searches on CPU. Index types the GPU cannot hold (HNSW)
and ``k > 2048`` search on CPU.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from polyrank.shared.errors import FormatError
from polyrank.shared.store import index as fx
from polyrank.shared.store.persistence import StoreState, read_store, write_store
from polyrank.shared.store.validation import (StoreError, as_keys, as_metadata, as_vectors, check_k,
                                              normalise_rows)

logger = logging.getLogger(__name__)

DEFAULT_NPROBE = 32
DEFAULT_EF_SEARCH = 128


class ReadWriteLock:
    """Many readers or one writer, phase-fair so that neither side starves.

    A waiting writer holds back readers that arrive after it; when a writer releases, every reader that was
    waiting for it enters before the next writer does. Under a steady stream of edits, searches and saves thus
    alternate with edits instead of waiting for a gap that never comes (and the other way round).

    Reentrant: the writing thread may write or read again, a reading thread may read again (without waiting,
    so a queued writer cannot deadlock it). A reader asking to write raises instead of deadlocking.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0  # read holds of all threads (nested reads count once)
        self._writer: int | None = None  # ident of the writing thread
        self._waiting_writers = 0
        self._writes_done = 0  # completed write holds: a waiting reader enters once one more has completed
        self._waiting_readers: collections.Counter[int] = collections.Counter()  # arrival phase -> readers
        self._local = threading.local()

    @contextlib.contextmanager
    def read(self) -> Iterator[None]:
        if self._writer == threading.get_ident() or getattr(self._local, "reads", 0):
            self._local.reads = getattr(self._local, "reads", 0) + 1
            try:
                yield
            finally:
                self._local.reads -= 1
            return
        with self._cond:
            if self._writer is not None or self._waiting_writers:
                phase = self._writes_done
                self._waiting_readers[phase] += 1
                try:
                    while self._writer is not None or (self._waiting_writers and self._writes_done == phase):
                        self._cond.wait()
                finally:
                    self._waiting_readers[phase] -= 1
                    if not self._waiting_readers[phase]:
                        del self._waiting_readers[phase]
            self._readers += 1
        self._local.reads = 1
        try:
            yield
        finally:
            self._local.reads = 0
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextlib.contextmanager
    def write(self) -> Iterator[None]:
        me = threading.get_ident()
        if self._writer == me:
            yield
            return
        if getattr(self._local, "reads", 0):
            raise RuntimeError("a thread holding the store's read lock cannot take its write lock (deadlock)")
        with self._cond:
            self._waiting_writers += 1
            try:
                while self._writer is not None or self._readers or self._readers_due():
                    self._cond.wait()
            finally:
                self._waiting_writers -= 1
            self._writer = me
        try:
            yield
        finally:
            with self._cond:
                self._writer = None
                self._writes_done += 1
                self._cond.notify_all()

    def _readers_due(self) -> bool:
        """Some waiting reader has seen a write complete since it arrived: it enters before the next writer."""
        return any(phase < self._writes_done for phase in self._waiting_readers)


class CandidateStore:
    """Vectors under external ids, searchable by FAISS; see the module docstring for the rules.

    Args:
        dim: vector dimension.
        factory: a ``faiss.index_factory`` string: ``"Flat"`` (exact), ``"HNSW32"``, ``"IVF1024,Flat"``,
            ``"IVF1024,PQ16"``...
        metric: ``"ip"`` (inner product), ``"cosine"`` or ``"l2"``.
        nprobe: IVF lists probed per query (default :data:`DEFAULT_NPROBE`).
        ef_search: HNSW search beam width (default :data:`DEFAULT_EF_SEARCH`).
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:<i>"`` (see the GPU note above).
        auto_train: train an untrained (IVF/PQ) index on the first batch passed to :meth:`add`.

    Concurrency and durability: one store may be shared by threads. Every public method holds the store's
    :class:`ReadWriteLock`: edits (``add``, ``upsert``, ``remove``, ``train``, ``set_search_params``,
    ``to``) run alone; ``search``, ``save`` and the read accessors share the lock, so CPU searches run in
    parallel (FAISS reads are thread-safe; GPU searches are serialised, FAISS GPU indexes are not), and
    every search or save sees the store between two edits, never during one (a long ``save`` delays edits
    until it is written). The raw :attr:`index` is outside this guarantee. ``save`` is atomic and durable:
    files are staged in a sibling ``.<name>.<host>-<pid>.<hex>.staging`` folder, fsynced, then renamed over
    ``path``, so a crash, a ``kill -9`` or a power loss at any instant leaves the previous or the new copy
    loadable (between the two renames the previous copy waits at ``.<name>.old`` and is restored by the next
    load or save). Staging folders left by killed writers are removed by the next save or load of that path
    once their process is gone. Processes are not serialised against each other: while one process saves a
    path, another's save or load of it can make that save fail (an ``OSError``; retry it), but the path
    still holds a complete copy.

    Example:
        >>> store = CandidateStore(4, "Flat")
        >>> store.add(["a", "b"], np.eye(2, 4, dtype=np.float32), metadata=[{"title": "A"}, None])
        >>> scores, ids = store.search(np.array([1, 0, 0, 0], dtype=np.float32), k=1)
        >>> ids.tolist(), scores.tolist()
        ([['a']], [[1.0]])
    """

    def __init__(self, dim: int, factory: str = "Flat", metric: str = "ip", *, nprobe: int | None = None,
                 ef_search: int | None = None, device: str = "auto", auto_train: bool = False) -> None:
        index = fx.build_index(dim, factory, metric)
        self._setup(index, dim, factory, metric, device)
        self.auto_train = auto_train
        default_nprobe = DEFAULT_NPROBE if fx.is_ivf(index) else None
        default_ef = DEFAULT_EF_SEARCH if fx.is_hnsw(index) else None
        self.set_search_params(nprobe=default_nprobe if nprobe is None else nprobe,
                               ef_search=default_ef if ef_search is None else ef_search)

    def _setup(self, index: faiss.Index, dim: int, factory: str, metric: str, device: str) -> None:
        self._lock = ReadWriteLock()
        self._gpu_lock = threading.Lock()  # a FAISS GPU index (and its lazy refresh) serves one search at a time
        self.dim, self.factory, self.metric = dim, factory, metric
        self._index = index
        self._needs_training = not index.is_trained
        self._id_kind: str | None = None
        self._key_by_label = np.zeros(0, dtype=np.int64)
        self._label_by_key: dict[Any, int] = {}
        self._metadata: dict[Any, dict] = {}
        self._next_label = 0
        self._params: dict[str, int] = {}
        self.read_only = False
        self.auto_train = False
        self.to(device)

    # ------------------------------------------------------------------ state
    @property
    def count(self) -> int:
        with self._lock.read():
            return int(self._index.ntotal)

    def __len__(self) -> int:
        return self.count

    def __contains__(self, key: Any) -> bool:
        with self._lock.read():
            return key in self._label_by_key

    def __repr__(self) -> str:
        with self._lock.read():
            return (f"CandidateStore(dim={self.dim}, factory={self.factory!r}, metric={self.metric!r}, "
                    f"count={self.count}, device={self.device!r}, search_params={self._params})")

    @property
    def ids(self) -> list:
        """External ids of the stored vectors, in insertion order."""
        with self._lock.read():
            return list(self._label_by_key)

    @property
    def index(self) -> faiss.Index:
        """The underlying CPU FAISS index (labels are the store's internal int64 ids); not covered by the
        store's lock: do not use it while other threads edit the store."""
        return self._index

    @property
    def is_trained(self) -> bool:
        with self._lock.read():
            return bool(self._index.is_trained)

    @property
    def search_params(self) -> dict[str, int]:
        with self._lock.read():
            return dict(self._params)

    def get_metadata(self, ids: Any) -> list[dict | None]:
        """The metadata dict (or None) of each id; unknown ids raise."""
        with self._lock.read():
            keys, _ = as_keys(ids, self._id_kind)
            self._labels_of(keys)
            return [self._metadata.get(key) for key in keys.tolist()]

    # ------------------------------------------------------------------ configuration
    def set_search_params(self, nprobe: int | None = None, ef_search: int | None = None) -> None:
        """Set IVF ``nprobe`` and/or HNSW ``efSearch`` (None leaves a setting unchanged)."""
        with self._lock.write():
            fx.check_search_params(self._index, self.factory, nprobe, ef_search)
            for name, value in (("nprobe", nprobe), ("efSearch", ef_search)):
                if value is not None:
                    self._params[name] = int(value)
            fx.set_search_params(self._index, self._params)
            self._gpu_stale = True

    def to(self, device: str) -> CandidateStore:
        """Search on ``device`` (``"cpu"``, ``"cuda[:i]"``, ``"auto"``); falls back to CPU with a note."""
        with self._lock.write(), self._gpu_lock:
            self.device = fx.resolve_device(device)
            self._gpu = fx.GpuReplica(int(self.device.split(":")[1])) if self.device != "cpu" else None
            self._gpu_stale = True
        return self

    def train(self, sample: Any) -> None:
        """Train an IVF/PQ index on ``sample`` (n, dim); a no-op for factories that need no training."""
        with self._lock.write():
            self._check_writable()
            x = self._prepare(sample, "train sample")
            if not self._needs_training:
                logger.info("factory %r needs no training; train() ignored", self.factory)
                return
            if self._index.ntotal:
                raise StoreError(f"train: the store already holds {self._index.ntotal} vectors; training must "
                                 "happen before the first add (build a new store to retrain)")
            fresh = fx.build_index(self.dim, self.factory, self.metric)
            try:
                fresh.train(x)
            except RuntimeError as err:
                reason = str(err).strip().splitlines()[-1]
                raise StoreError(f"training {self.factory!r} on {len(x)} vectors failed ({reason}); pass a larger "
                                 "sample (FAISS advises >= 39 vectors per IVF list, >= 256 for PQ)") from err
            self._index = fresh
            fx.set_search_params(self._index, self._params)
            self._gpu_stale = True

    # ------------------------------------------------------------------ edits
    def add(self, ids: Any, vectors: Any, metadata: list[dict | None] | None = None) -> None:
        """Add new ids with their vectors (and optional metadata dicts); existing ids raise (use upsert)."""
        with self._lock.write():
            keys, kind, x, meta = self._check_batch(ids, vectors, metadata)
            present = [key for key in keys.tolist() if key in self._label_by_key]
            if present:
                raise StoreError(f"add: {len(present)} ids are already in the store (e.g. {present[:5]}); use "
                                 "upsert to replace them")
            self._ensure_trained(x)
            labels = self._new_labels(len(keys))
            self._index.add_with_ids(x, labels)
            self._commit(keys, kind, labels, meta)

    def upsert(self, ids: Any, vectors: Any, metadata: list[dict | None] | None = None) -> None:
        """Replace the vectors (and metadata) of ids already present and add the others."""
        with self._lock.write():
            keys, kind, x, meta = self._check_batch(ids, vectors, metadata)
            old = np.array([self._label_by_key[k] for k in keys.tolist() if k in self._label_by_key], np.int64)
            self._ensure_trained(x)
            labels = self._new_labels(len(keys))
            if len(old):
                self._index = fx.remove_labels(self._index, old, self.dim, self.factory, self.metric, x, labels)
                self._drop(old)
            else:
                self._index.add_with_ids(x, labels)
            self._commit(keys, kind, labels, meta)

    def remove(self, ids: Any) -> None:
        """Remove ids (all must be present); see the module docstring for HNSW."""
        with self._lock.write():
            self._check_writable()
            keys, _ = as_keys(ids, self._id_kind)
            labels = self._labels_of(keys)
            self._index = fx.remove_labels(self._index, labels, self.dim, self.factory, self.metric)
            self._drop(labels)
            self._gpu_stale = True

    # ------------------------------------------------------------------ search
    def search(self, queries: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` of each query: ``(scores float32 (n, k), ids (n, k))``, best first.

        ``ids`` is int64 for int ids and object (str) otherwise; ``k`` above the store's count raises.
        """
        xq = self._prepare(queries, "queries")
        with self._lock.read():
            k = check_k(k, int(self._index.ntotal))
            if self._gpu is None or k > fx.GPU_MAX_K:
                scores, labels = self._index.search(xq, k)
            else:
                with self._gpu_lock:
                    scores, labels = self._search_index().search(xq, k)
            found, kind = self._key_by_label[labels], self._id_kind  # label -1 (no result) is fixed below
        if self.metric == "l2":
            np.negative(scores, out=scores)
        missing = labels < 0
        if missing.any():
            scores[missing] = -np.inf
            found[missing] = -1 if kind == "int" else None
        return scores, found

    def search_run(self, query_ids: list[str], queries: Any, k: int) -> dict[str, dict[str, float]]:
        """Search and return a run ``{query_id: {doc_id: score}}`` (doc ids as str; empty slots dropped)."""
        scores, ids = self.search(queries, k)
        if len(query_ids) != len(scores):
            raise StoreError(f"search_run: got {len(query_ids)} query ids for {len(scores)} query vectors")
        return {str(qid): {str(doc): float(s) for doc, s in zip(row_ids.tolist(), row_scores.tolist())
                           if doc is not None and doc != -1}
                for qid, row_ids, row_scores in zip(query_ids, ids, scores)}

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write the store atomically and durably to directory ``path`` (see
        :mod:`polyrank.shared.store.persistence`).

        ``path`` may be absent, an empty directory or a previously saved store (it holds ``manifest.json``);
        anything else (a file, a folder of other files) raises :class:`~polyrank.shared.errors.PolyrankError`
        and is left untouched, unless ``overwrite=True``. Edits wait while the store is written.
        """
        with self._lock.read():
            labels = np.fromiter(self._label_by_key.values(), dtype=np.int64, count=len(self._label_by_key))
            keys = list(self._label_by_key)
            state = StoreState(index=self._index, labels=labels, keys=keys,
                               metadata=[self._metadata.get(key) for key in keys],
                               info={"dim": self.dim, "metric": self.metric, "factory": self.factory,
                                     "id_kind": self._id_kind, "next_label": self._next_label,
                                     "search_params": dict(self._params)})
            return write_store(path, state, overwrite=overwrite)

    @classmethod
    def load(cls, path: str | Path, mmap: bool = False, device: str = "auto", verify: bool = True,
             dim: int | None = None, metric: str | None = None) -> CandidateStore:
        """Load a saved store; checksums are verified unless ``verify=False``.

        ``mmap=True`` maps the vector codes from disk instead of reading them (for indexes larger than
        memory); such a store is read-only. ``dim``/``metric``, when given, must match the saved store.
        Loading also restores a copy an interrupted save left aside and removes dead writers' staging folders.
        """
        state = read_store(path, mmap=mmap, verify=verify)
        info = state.info
        for name, expected in (("dim", dim), ("metric", metric)):
            if expected is not None and info[name] != expected:
                raise StoreError(f"{path}: store has {name}={info[name]!r}, expected {expected!r}; load the "
                                 "store built for this encoder or rebuild it")
        store = cls.__new__(cls)
        store._setup(state.index, info["dim"], info["factory"], info["metric"], device)
        store._id_kind, store._next_label = info["id_kind"], int(info["next_label"])
        store._key_by_label = store._empty_table(store._next_label)
        if len(state.keys):
            keys, _ = as_keys(state.keys, store._id_kind, what=f"{Path(path) / 'keys.json'}")
            store._key_by_label[state.labels] = keys
            store._label_by_key = dict(zip(keys.tolist(), state.labels.tolist()))
            store._metadata = {key: m for key, m in zip(keys.tolist(), state.metadata) if m is not None}
        try:
            store.set_search_params(nprobe=info["search_params"].get("nprobe"),
                                    ef_search=info["search_params"].get("efSearch"))
        except StoreError as err:
            raise FormatError(Path(path) / "manifest.json", None, f"search_params: {err}") from err
        store.read_only = mmap
        return store

    # ------------------------------------------------------------------ internals
    def _prepare(self, x: Any, what: str) -> np.ndarray:
        x = as_vectors(x, self.dim, what)
        return normalise_rows(x, what) if self.metric == "cosine" else x

    def _check_writable(self) -> None:
        if self.read_only:
            raise StoreError("this store was loaded with mmap=True and is read-only; load it with "
                             "mmap=False to add, upsert or remove")

    def _check_batch(self, ids: Any, vectors: Any, metadata: Any) -> tuple:
        self._check_writable()
        keys, kind = as_keys(ids, self._id_kind)
        x = self._prepare(vectors, "vectors")
        if len(x) != len(keys):
            raise StoreError(f"got {len(keys)} ids but {len(x)} vectors; pass one vector per id")
        return keys, kind, x, as_metadata(metadata, len(keys))

    def _ensure_trained(self, x: np.ndarray) -> None:
        if self._index.is_trained:
            return
        if not self.auto_train:
            raise StoreError(f"factory {self.factory!r} must be trained before add: call store.train(sample) "
                             "with a representative sample, or create the store with auto_train=True")
        logger.info("auto-training %r on the first batch of %d vectors", self.factory, len(x))
        self.train(x)

    def _empty_table(self, n: int) -> np.ndarray:
        if self._id_kind == "int":
            return np.full(n, -1, dtype=np.int64)
        return np.full(n, None, dtype=object)

    def _new_labels(self, n: int) -> np.ndarray:
        return np.arange(self._next_label, self._next_label + n, dtype=np.int64)

    def _commit(self, keys: np.ndarray, kind: str, labels: np.ndarray, meta: list | None) -> None:
        if self._id_kind is None:
            self._id_kind = kind
            self._key_by_label = self._empty_table(self._next_label)
        grown = self._empty_table(len(labels))
        grown[:] = keys
        self._key_by_label = np.concatenate([self._key_by_label, grown])
        self._next_label += len(labels)
        self._label_by_key.update(zip(keys.tolist(), labels.tolist()))
        for key, item in zip(keys.tolist(), meta or ()):
            if item is not None:
                self._metadata[key] = item
        self._gpu_stale = True

    def _labels_of(self, keys: np.ndarray) -> np.ndarray:
        unknown = [key for key in keys.tolist() if key not in self._label_by_key]
        if unknown:
            raise StoreError(f"{len(unknown)} of {len(keys)} ids are not in the store (e.g. {unknown[:5]})")
        return np.array([self._label_by_key[key] for key in keys.tolist()], dtype=np.int64)

    def _drop(self, labels: np.ndarray) -> None:
        for key in self._key_by_label[labels].tolist():
            del self._label_by_key[key]
            self._metadata.pop(key, None)
        self._key_by_label[labels] = -1 if self._id_kind == "int" else None

    def _search_index(self) -> faiss.Index:
        """The GPU replica, refreshed after edits (caller holds the read lock and ``_gpu_lock``)."""
        if self._gpu_stale:
            self._gpu.refresh(self._index, self._params)
            self._gpu_stale = False
        return self._gpu.index if self._gpu.index is not None else self._index
