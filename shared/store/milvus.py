"""``MilvusCandidateStore``: the :class:`~polyrank.shared.store.CandidateStore` API over a Milvus collection.

For candidate collections larger than one machine's RAM: the vectors, ids and metadata live in a Milvus server
(a cluster URI such as ``http://milvus:19530``) or, on a laptop and in tests, in an embedded milvus-lite file
(a local ``*.db`` path). Select it with :func:`polyrank.shared.store.create_store` /
:func:`~polyrank.shared.store.open_store` by URI or ``backend="milvus"``.

Same semantics as the FAISS store (and the same :class:`StoreError` messages, from the same checks): external ids
all ``str`` or all non-negative ``int`` (the collection's primary key is VARCHAR or INT64, fixed by the first
``add``); ``add`` refuses ids already present, ``upsert`` replaces vectors and metadata (``None`` clears it),
``remove`` needs every id present; ``search(queries, k)`` returns ``(scores float32 (n, k), ids (n, k))`` best
first, higher is better for every metric (inner product, cosine on L2-normalised rows, negated squared L2);
``k`` above the count raises; empty slots are ``-inf`` with id ``-1`` / ``None``. Metadata is one JSON dict (or
None) per id.

Factories: ``"Flat"`` (exact; Milvus ``FLAT``), ``"HNSW<M>"`` (``HNSW``, ``efSearch`` default 128),
``"IVF<nlist>,Flat"`` (``IVF_FLAT``, ``nprobe`` default 32) and ``"IVF<nlist>,PQ<m>"`` (``IVF_PQ``); Milvus trains
IVF quantisers itself. Persistence is Milvus's: there is no ``save``; reopen with :meth:`MilvusCandidateStore.open`.

Differences from FAISS, by design of Milvus: ``ids`` is in primary-key order, not insertion order; ``k`` is at
most 16384 per query; edits from one process are serialised by a lock, but two *processes* adding the same new
id at the same time can both succeed (Milvus does not enforce key uniqueness on insert): give each writer its
own ids or use ``upsert``.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from pathlib import Path
from typing import Any

import numpy as np

from polyrank.shared.extras import require
from polyrank.shared.store.candidate_store import DEFAULT_EF_SEARCH, DEFAULT_NPROBE
from polyrank.shared.store.validation import (StoreError, as_keys, as_metadata, as_vectors, check_k,
                                              normalise_rows)

logger = logging.getLogger(__name__)

MAX_K = 16384  # Milvus's limit on results per query (topk)
BATCH_ROWS = 5000  # rows per insert/upsert request (well below the default 64 MiB gRPC message limit)
MAX_STR_ID = 4096  # VARCHAR primary key length
_MARKER = "polyrank-store"
_METRICS = {"ip": "IP", "cosine": "IP", "l2": "L2"}  # cosine: rows are L2-normalised here, as in the FAISS store


def is_milvus_uri(location: str | Path | None) -> bool:
    """A milvus-lite file (``*.db``) or a Milvus server URI (``http(s)://``, ``tcp://``, ``unix:``)."""
    text = str(location or "")
    return text.endswith(".db") or text.startswith(("http://", "https://", "tcp://", "unix:", "milvus://"))


def index_params(factory: str) -> tuple[str, dict[str, int]]:
    """The Milvus index type and build parameters of a FAISS-style ``factory`` string."""
    if factory == "Flat":
        return "FLAT", {}
    if m := re.fullmatch(r"HNSW(\d+)", factory):
        return "HNSW", {"M": int(m.group(1)), "efConstruction": 40}
    if m := re.fullmatch(r"IVF(\d+),Flat", factory):
        return "IVF_FLAT", {"nlist": int(m.group(1))}
    if m := re.fullmatch(r"IVF(\d+),PQ(\d+)", factory):
        return "IVF_PQ", {"nlist": int(m.group(1)), "m": int(m.group(2)), "nbits": 8}
    raise StoreError(f"factory {factory!r} has no Milvus counterpart; use 'Flat', 'HNSW<M>', 'IVF<nlist>,Flat' or "
                     "'IVF<nlist>,PQ<m>' (or the FAISS backend for other factories)")


class MilvusCandidateStore:
    """Vectors under external ids in a Milvus collection; see the module docstring for the rules.

    Args:
        dim: vector dimension.
        factory: ``"Flat"``, ``"HNSW<M>"``, ``"IVF<nlist>,Flat"`` or ``"IVF<nlist>,PQ<m>"``.
        metric: ``"ip"``, ``"cosine"`` or ``"l2"``.
        uri: a milvus-lite file (``"candidates.db"``) or a server URI (``"http://host:19530"``).
        collection: collection name (letters, digits, ``_``).
        token: a Milvus server's ``"user:password"`` or API key (None for milvus-lite).
        nprobe: IVF lists probed per query (default 32); ef_search: HNSW beam width (default 128).
        overwrite: drop an existing collection of that name first; otherwise an existing polyrank collection
            with the same ``dim``/``metric``/``factory`` is opened and anything else raises.
    """

    def __init__(self, dim: int, factory: str = "Flat", metric: str = "ip", *, uri: str | Path = "polyrank.db",
                 collection: str = "polyrank", token: str | None = None, nprobe: int | None = None,
                 ef_search: int | None = None, overwrite: bool = False) -> None:
        if metric not in _METRICS:
            raise StoreError(f"metric: expected 'ip', 'cosine' or 'l2', got {metric!r}")
        if not isinstance(dim, int) or dim < 1:
            raise StoreError(f"dim: expected a positive int, got {dim!r}")
        self.index_type, self.build_params = index_params(factory)
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", collection):
            raise StoreError(f"collection {collection!r}: Milvus names hold letters, digits and '_' only")
        self.dim, self.factory, self.metric = dim, factory, metric
        self.uri, self.collection = str(uri), collection
        self.read_only, self.device = False, "server"
        self._lock = threading.Lock()
        self._client = self._connect(token)
        self._id_kind: str | None = None
        if self._has_collection():
            if overwrite:
                self._call("drop_collection", collection_name=collection)
            else:
                self._adopt(self._settings(), expected={"dim": dim, "metric": metric, "factory": factory})
        self._params: dict[str, int] = {}
        self.set_search_params(nprobe=DEFAULT_NPROBE if nprobe is None and "IVF" in self.index_type else nprobe,
                               ef_search=DEFAULT_EF_SEARCH if ef_search is None and self.index_type == "HNSW"
                               else ef_search)

    @classmethod
    def open(cls, uri: str | Path, collection: str = "polyrank", token: str | None = None,
             dim: int | None = None, metric: str | None = None) -> MilvusCandidateStore:
        """Reopen a collection written by this class; ``dim``/``metric``, when given, must match it."""
        probe = cls.__new__(cls)
        probe.uri, probe.collection = str(uri), collection
        probe._client = probe._connect(token)
        if not probe._has_collection():
            raise StoreError(f"{uri}: no collection {collection!r}; build it with `polyrank index --output {uri}` "
                             "or MilvusCandidateStore(dim, uri=...).add(...)")
        info = probe._settings()
        probe._client.close()
        for name, expected in (("dim", dim), ("metric", metric)):
            if expected is not None and info[name] != expected:
                raise StoreError(f"{uri}:{collection}: store has {name}={info[name]!r}, expected {expected!r}; "
                                 "open the store built for this encoder or rebuild it")
        store = cls(info["dim"], info["factory"], info["metric"], uri=uri, collection=collection, token=token)
        params = info.get("search_params") or {}
        store.set_search_params(nprobe=params.get("nprobe"), ef_search=params.get("efSearch"))
        return store

    # ------------------------------------------------------------------ state
    @property
    def count(self) -> int:
        if self._id_kind is None:
            return 0
        rows = self._call("query", collection_name=self.collection, filter="", output_fields=["count(*)"])
        return int(rows[0]["count(*)"])

    def __len__(self) -> int:
        return self.count

    def __contains__(self, key: Any) -> bool:
        try:
            keys, _ = as_keys([key], self._id_kind)
        except StoreError:
            return False
        return bool(self._present(keys))

    def __repr__(self) -> str:
        return (f"MilvusCandidateStore(dim={self.dim}, factory={self.factory!r}, metric={self.metric!r}, "
                f"uri={self.uri!r}, collection={self.collection!r}, count={self.count})")

    @property
    def ids(self) -> list:
        """External ids of the stored vectors, in primary-key order."""
        if self._id_kind is None:
            return []
        found: list = []
        iterator = self._call("query_iterator", collection_name=self.collection, batch_size=1000, filter="",
                              output_fields=["id"])
        while rows := iterator.next():
            found += [row["id"] for row in rows]
        iterator.close()
        return sorted(found)

    @property
    def is_trained(self) -> bool:
        return True  # Milvus trains its IVF quantisers when it builds the index

    @property
    def search_params(self) -> dict[str, int]:
        return dict(self._params)

    def get_metadata(self, ids: Any) -> list[dict | None]:
        """The metadata dict (or None) of each id; unknown ids raise."""
        keys, _ = as_keys(ids, self._id_kind)
        rows = self._rows(keys, ["meta"])
        self._check_known(keys, rows)
        return [rows[key]["meta"]["m"] for key in keys.tolist()]

    # ------------------------------------------------------------------ configuration
    def set_search_params(self, nprobe: int | None = None, ef_search: int | None = None) -> None:
        """Set IVF ``nprobe`` and/or HNSW ``efSearch`` (None leaves a setting unchanged)."""
        if nprobe is not None and ("IVF" not in self.index_type or int(nprobe) < 1):
            raise StoreError(f"nprobe={nprobe!r}: nprobe is a positive int and applies to IVF factories only; "
                             f"{self.factory!r} is not one")
        if ef_search is not None and (self.index_type != "HNSW" or int(ef_search) < 1):
            raise StoreError(f"ef_search={ef_search!r}: efSearch is a positive int and applies to HNSW factories "
                             f"only; {self.factory!r} is not one")
        for name, value in (("nprobe", nprobe), ("efSearch", ef_search)):
            if value is not None:
                self._params[name] = int(value)

    def train(self, sample: Any) -> None:
        """Accepted for API parity: Milvus trains IVF/PQ quantisers on the stored vectors when indexing."""
        as_vectors(sample, self.dim, "train sample")

    # ------------------------------------------------------------------ edits
    def add(self, ids: Any, vectors: Any, metadata: list[dict | None] | None = None) -> None:
        """Add new ids with their vectors (and optional metadata dicts); existing ids raise (use upsert)."""
        with self._lock:
            keys, kind, x, meta = self._check_batch(ids, vectors, metadata)
            present = self._present(keys) if self._id_kind is not None else []
            if present:
                raise StoreError(f"add: {len(present)} ids are already in the store (e.g. {present[:5]}); use "
                                 "upsert to replace them")
            self._ensure_collection(kind, keys)
            self._write("insert", keys, x, meta)

    def upsert(self, ids: Any, vectors: Any, metadata: list[dict | None] | None = None) -> None:
        """Replace the vectors (and metadata) of ids already present and add the others."""
        with self._lock:
            keys, kind, x, meta = self._check_batch(ids, vectors, metadata)
            self._ensure_collection(kind, keys)
            self._write("upsert", keys, x, meta)

    def remove(self, ids: Any) -> None:
        """Remove ids (all must be present)."""
        with self._lock:
            keys, _ = as_keys(ids, self._id_kind)
            self._check_known(keys, self._rows(keys, ["id"]))
            for start in range(0, len(keys), BATCH_ROWS):
                self._call("delete", collection_name=self.collection, ids=keys[start:start + BATCH_ROWS].tolist())

    # ------------------------------------------------------------------ search
    def search(self, queries: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` of each query: ``(scores float32 (n, k), ids (n, k))``, best first (see the module rules)."""
        xq = self._prepare(queries, "queries")
        k = check_k(k, k if self._id_kind is not None else 0)  # k > count is checked below, when hits run short
        if k > MAX_K:
            raise StoreError(f"k={k}: Milvus returns at most {MAX_K} results per query; ask for k <= {MAX_K}")
        scores = np.full((len(xq), k), -np.inf, dtype=np.float32)
        found = np.full((len(xq), k), -1, dtype=np.int64) if self._id_kind == "int" else np.full(
            (len(xq), k), None, dtype=object)
        params = {"metric_type": _METRICS[self.metric], "params": self._params_for_milvus(k)}
        rows_per_call = max(1, min(len(xq), 16384 // k, 1024))
        for start in range(0, len(xq), rows_per_call):
            hits = self._call("search", collection_name=self.collection, data=xq[start:start + rows_per_call].tolist(),
                              limit=k, search_params=params, output_fields=[])
            for row, row_hits in enumerate(hits, start=start):
                n = len(row_hits)
                if n:  # pymilvus's Hits carry ids/distances as columns: 1000x faster than reading each hit dict
                    scores[row, :n] = row_hits.distances if hasattr(row_hits, "distances") else [
                        hit["distance"] for hit in row_hits]
                    found[row, :n] = row_hits.ids if hasattr(row_hits, "ids") else [hit["id"] for hit in row_hits]
        if not np.isfinite(scores[:, -1]).all():  # a row came back short: k above the count is an error, as in FAISS
            check_k(k, self.count)  # (a count(*) query costs ~0.3 s on milvus-lite, so it is not run every search)
        if self.metric == "l2":
            np.negative(scores, out=scores)
        return scores, found

    def search_run(self, query_ids: list[str], queries: Any, k: int) -> dict[str, dict[str, float]]:
        """Search and return a run ``{query_id: {doc_id: score}}`` (doc ids as str; empty slots dropped)."""
        scores, ids = self.search(queries, k)
        if len(query_ids) != len(scores):
            raise StoreError(f"search_run: got {len(query_ids)} query ids for {len(scores)} query vectors")
        return {str(qid): {str(doc): float(s) for doc, s in zip(row_ids.tolist(), row_scores.tolist())
                           if doc is not None and doc != -1}
                for qid, row_ids, row_scores in zip(query_ids, ids, scores)}

    def save(self, path: Any = None, overwrite: bool = False) -> str:
        """Milvus persists every edit itself; flushes the collection and returns its ``uri`` (no files written)."""
        if self._id_kind is not None:
            self._call("flush", collection_name=self.collection)
        return self.uri

    def close(self) -> None:
        """Close the connection (the data stays in the server or the ``.db`` file)."""
        self._client.close()

    def drop(self) -> None:
        """Delete the collection and everything in it."""
        with self._lock:
            if self._has_collection():
                self._call("drop_collection", collection_name=self.collection)
            self._id_kind = None

    # ------------------------------------------------------------------ internals
    def _connect(self, token: str | None) -> Any:
        pymilvus = require("pymilvus", extra="scale")
        if self.uri.endswith(".db"):
            require("milvus_lite", extra="scale")
            Path(self.uri).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
        try:
            return pymilvus.MilvusClient(uri=self.uri, **({"token": token} if token else {}))
        except Exception as exc:  # MilvusException, gRPC and OS errors: one clear line
            raise StoreError(f"cannot open Milvus at {self.uri!r} ({type(exc).__name__}: {exc}); give a writable "
                             "*.db path (milvus-lite) or a reachable server URI such as http://host:19530") from exc

    def _call(self, method: str, **kwargs: Any) -> Any:
        from pymilvus import MilvusException

        try:
            return getattr(self._client, method)(**kwargs)
        except MilvusException as exc:
            raise StoreError(f"Milvus {method} on {self.uri}:{self.collection} failed: {exc}") from exc

    def _has_collection(self) -> bool:
        return bool(self._call("has_collection", collection_name=self.collection))

    def _settings(self) -> dict[str, Any]:
        description = self._call("describe_collection", collection_name=self.collection)
        try:
            info = json.loads((description.get("properties") or {}).get(_MARKER) or "{}")
        except json.JSONDecodeError:
            info = {}
        if info.get("kind") != _MARKER:
            raise StoreError(f"{self.uri}: collection {self.collection!r} was not written by polyrank; choose "
                             "another collection name or pass overwrite=True to replace it")
        from pymilvus import DataType

        pk = next(f for f in description["fields"] if f.get("is_primary"))
        info["id_kind"] = "str" if pk["type"] == DataType.VARCHAR else "int"
        return info

    def _adopt(self, info: dict[str, Any], expected: dict[str, Any]) -> None:
        for name, value in expected.items():
            if info.get(name) != value:
                raise StoreError(f"{self.uri}: collection {self.collection!r} has {name}={info.get(name)!r}, not "
                                 f"{value!r}; open it with MilvusCandidateStore.open, or pass overwrite=True")
        self._id_kind = info["id_kind"]
        state = self._call("get_load_state", collection_name=self.collection).get("state")
        if "Loaded" not in str(state):  # a collection reopened after its server restarted may be released
            self._call("load_collection", collection_name=self.collection)

    def _ensure_collection(self, kind: str, keys: np.ndarray) -> None:
        if self._id_kind is not None:
            return
        from pymilvus import DataType, MilvusClient

        if kind == "str":
            longest = max(len(key.encode()) for key in keys.tolist())
            if longest > MAX_STR_ID:
                raise StoreError(f"ids: the longest id has {longest} bytes; Milvus keys hold at most {MAX_STR_ID}")
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        if kind == "str":
            schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=MAX_STR_ID)
        else:
            schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dim)
        schema.add_field("meta", DataType.JSON)
        params = self._client.prepare_index_params()
        params.add_index(field_name="vector", index_type=self.index_type, metric_type=_METRICS[self.metric],
                         params=self.build_params)
        settings = {"kind": _MARKER, "dim": self.dim, "metric": self.metric, "factory": self.factory}
        self._call("create_collection", collection_name=self.collection, schema=schema, index_params=params,
                   consistency_level="Strong", properties={_MARKER: json.dumps(settings)})
        self._id_kind = kind

    def _write(self, method: str, keys: np.ndarray, x: np.ndarray, meta: list | None) -> None:
        meta = meta or [None] * len(keys)
        for start in range(0, len(keys), BATCH_ROWS):
            stop = start + BATCH_ROWS
            rows = [{"id": key, "vector": vector, "meta": {"m": item}}
                    for key, vector, item in zip(keys[start:stop].tolist(), x[start:stop].tolist(), meta[start:stop])]
            self._call(method, collection_name=self.collection, data=rows)

    def _rows(self, keys: np.ndarray, fields: list[str]) -> dict[Any, dict]:
        if self._id_kind is None:
            return {}
        rows: dict[Any, dict] = {}
        for start in range(0, len(keys), BATCH_ROWS):
            got = self._call("get", collection_name=self.collection, ids=keys[start:start + BATCH_ROWS].tolist(),
                             output_fields=fields)
            rows.update((row["id"], row) for row in got)
        return rows

    def _present(self, keys: np.ndarray) -> list:
        rows = self._rows(keys, ["id"])
        return [key for key in keys.tolist() if key in rows]

    def _check_known(self, keys: np.ndarray, rows: dict[Any, dict]) -> None:
        unknown = [key for key in keys.tolist() if key not in rows]
        if unknown:
            raise StoreError(f"{len(unknown)} of {len(keys)} ids are not in the store (e.g. {unknown[:5]})")

    def _prepare(self, x: Any, what: str) -> np.ndarray:
        x = as_vectors(x, self.dim, what)
        return normalise_rows(x, what) if self.metric == "cosine" else x

    def _check_batch(self, ids: Any, vectors: Any, metadata: Any) -> tuple:
        keys, kind = as_keys(ids, self._id_kind)
        x = self._prepare(vectors, "vectors")
        if len(x) != len(keys):
            raise StoreError(f"got {len(keys)} ids but {len(x)} vectors; pass one vector per id")
        return keys, kind, x, as_metadata(metadata, len(keys))

    def _params_for_milvus(self, k: int) -> dict[str, int]:
        """``nprobe`` for IVF; HNSW's ``ef`` (Milvus requires ef >= k, FAISS silently widens the same way)."""
        if "nprobe" in self._params:
            return {"nprobe": self._params["nprobe"]}
        return {"ef": max(self._params["efSearch"], k)} if "efSearch" in self._params else {}


def check_replaceable(uri: str | Path, collection: str, overwrite: bool) -> None:
    """Raise unless ``collection`` at ``uri`` is absent, was written by polyrank, or ``overwrite`` is set (the rule
    :func:`polyrank.shared.atomic.check_replaceable` applies to FAISS store directories)."""
    probe = MilvusCandidateStore.__new__(MilvusCandidateStore)
    probe.uri, probe.collection = str(uri), collection
    probe._client = probe._connect(None)
    try:
        if probe._has_collection() and not overwrite:
            probe._settings()  # raises for a collection polyrank did not write
    finally:
        probe._client.close()
