"""FAISS plumbing for the candidate store: build from a factory string, search parameters, removal,
GPU placement.

Indexes come from ``faiss.index_factory(dim, factory, metric)``. IVF indexes store our int64 labels
natively (``add_with_ids``); every other index (``Flat``, ``HNSW32``, ``PQ16``...) is built with the
``IDMap2,`` prefix so it can too (``IDMap2`` also keeps the reverse map that :func:`rebuild_without` needs).
"""

from __future__ import annotations

import logging
from typing import Any

import faiss
import numpy as np

from polyrank.shared.store.validation import StoreError

logger = logging.getLogger(__name__)

METRICS = {"ip": faiss.METRIC_INNER_PRODUCT, "cosine": faiss.METRIC_INNER_PRODUCT, "l2": faiss.METRIC_L2}
FACTORY_EXAMPLES = "'Flat', 'HNSW32', 'IVF1024,Flat', 'IVF1024,PQ16'"
GPU_MAX_K = 2048  # faiss GPU k-selection limit; larger k searches on the CPU copy


def build_index(dim: int, factory: str, metric: str) -> faiss.Index:
    """An empty index for ``factory``; ``StoreError`` for an unknown metric or an unparsable factory."""
    if metric not in METRICS:
        raise StoreError(f"metric: expected one of {sorted(METRICS)}, got {metric!r}")
    if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
        raise StoreError(f"dim: expected a positive int, got {dim!r}")
    try:
        index = faiss.index_factory(dim, factory, METRICS[metric])
        if not (is_ivf(index) or isinstance(faiss.downcast_index(index), faiss.IndexIDMap)):
            index = faiss.index_factory(dim, f"IDMap2,{factory}", METRICS[metric])
    except RuntimeError as err:
        reason = str(err).strip().splitlines()[-1]
        raise StoreError(f"factory {factory!r} cannot build a FAISS index for dim={dim} ({reason}); "
                         f"examples: {FACTORY_EXAMPLES}") from err
    codec = faiss.downcast_index(faiss.extract_index_ivf(index)) if is_ivf(index) else inner_index(index)
    if hasattr(codec, "do_polysemous_training"):  # only serves Hamming filtering, which we never enable;
        codec.do_polysemous_training = False      # it multiplies PQ training time by ~5-10
    return index


def is_ivf(index: faiss.Index) -> bool:
    try:
        faiss.extract_index_ivf(index)
    except RuntimeError:
        return False
    return True


def inner_index(index: faiss.Index) -> faiss.Index:
    """The index under an ``IDMap``/``IDMap2`` wrapper (or the index itself)."""
    index = faiss.downcast_index(index)
    return faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap) else index


def is_hnsw(index: faiss.Index) -> bool:
    return isinstance(inner_index(index), faiss.IndexHNSW)


def describe_index(index: faiss.Index) -> str:
    """The index's wrapper and inner types, and its IVF nlist: what a factory string determines."""
    outer, inner = type(faiss.downcast_index(index)).__name__, type(inner_index(index)).__name__
    if is_ivf(index):
        return f"{outer} (nlist={faiss.extract_index_ivf(index).nlist})"
    return outer if outer == inner else f"{outer}({inner})"


def built_by(index: faiss.Index, dim: int, factory: str, metric: str) -> bool:
    """Whether ``index`` has the types (and IVF nlist) that ``factory`` builds; the read-back index may be of a
    subclass (``faiss.read_index`` gives ``IndexFlatIP`` where the factory made an ``IndexFlat``)."""
    empty = build_index(dim, factory, metric)  # cheap: nothing is trained or added
    def nlist(x: faiss.Index) -> int | None:
        return faiss.extract_index_ivf(x).nlist if is_ivf(x) else None

    same_ivf = nlist(index) == nlist(empty)
    return (same_ivf and isinstance(faiss.downcast_index(index), type(faiss.downcast_index(empty)))
            and isinstance(inner_index(index), type(inner_index(empty))))


def idmap_labels(index: faiss.Index) -> np.ndarray | None:
    """The labels an ``IDMap``/``IDMap2`` index holds, in storage order; None for IVF (labels live in lists)."""
    index = faiss.downcast_index(index)
    return faiss.vector_to_array(index.id_map) if isinstance(index, faiss.IndexIDMap) else None


def set_search_params(index: faiss.Index, params: dict[str, int], gpu: bool = False) -> None:
    """Apply ``nprobe`` (IVF) / ``efSearch`` (HNSW) through faiss's (Gpu)ParameterSpace."""
    space = faiss.GpuParameterSpace() if gpu else faiss.ParameterSpace()
    for name, value in params.items():
        if value is not None:
            space.set_index_parameter(index, name, int(value))


def check_search_params(index: faiss.Index, factory: str, nprobe: int | None, ef_search: int | None) -> None:
    if nprobe is not None and (not is_ivf(index) or int(nprobe) < 1):
        raise StoreError(f"nprobe={nprobe!r}: nprobe is a positive int and applies to IVF factories only; "
                         f"{factory!r} is not one")
    if ef_search is not None and (not is_hnsw(index) or int(ef_search) < 1):
        raise StoreError(f"ef_search={ef_search!r}: efSearch is a positive int and applies to HNSW factories "
                         f"only; {factory!r} is not one")
    if nprobe is not None and int(nprobe) > faiss.extract_index_ivf(index).nlist:
        logger.debug("nprobe=%s exceeds nlist; faiss probes every list (exhaustive search)", nprobe)


def remove_labels(index: faiss.Index, labels: np.ndarray, dim: int, factory: str, metric: str,
                  add_vectors: np.ndarray | None = None, add_labels: np.ndarray | None = None) -> faiss.Index:
    """Remove ``labels`` (then add ``add_vectors``); returns the index to use from now on.

    Indexes with ``remove_ids`` (Flat, IVF, PQ) are edited in place. HNSW graphs cannot remove nodes, so an
    ``HNSW*,Flat`` index is rebuilt from its stored (exact) vectors without the removed ones, costing one
    full graph build; HNSW over lossy codes (``HNSW32_PQ8``...) cannot be rebuilt exactly and raises.
    """
    labels = np.ascontiguousarray(labels, dtype=np.int64)
    try:
        removed = index.remove_ids(labels)
    except RuntimeError as err:
        if "not implemented" not in str(err):
            raise
        return rebuild_without(index, labels, dim, factory, metric, add_vectors, add_labels)
    if removed != len(labels):
        raise RuntimeError(f"faiss removed {removed} of {len(labels)} labels; the store is inconsistent")
    if add_vectors is not None:
        index.add_with_ids(add_vectors, add_labels)
    return index


def rebuild_without(index: faiss.Index, labels: np.ndarray, dim: int, factory: str, metric: str,
                    add_vectors: np.ndarray | None = None, add_labels: np.ndarray | None = None) -> faiss.Index:
    inner = inner_index(index)
    storage = faiss.downcast_index(getattr(inner, "storage", None)) if hasattr(inner, "storage") else None
    if not isinstance(faiss.downcast_index(index), faiss.IndexIDMap2) or not isinstance(storage, faiss.IndexFlat):
        raise StoreError(f"factory {factory!r} does not support removal and its vectors cannot be recovered "
                         "exactly; rebuild the store from your original vectors (or use a Flat/IVF factory)")
    logger.info("%s cannot remove vectors in place; rebuilding the graph over %d vectors", factory,
                index.ntotal - len(labels))
    all_labels = faiss.vector_to_array(faiss.downcast_index(index).id_map)
    vectors = storage.reconstruct_n(0, storage.ntotal)
    keep = ~np.isin(all_labels, labels)
    if add_vectors is not None:
        vectors = np.concatenate([vectors[keep], add_vectors])
        all_labels, keep = np.concatenate([all_labels[keep], add_labels]), slice(None)
    fresh = build_index(dim, factory, metric)
    copy_hnsw_settings(inner, inner_index(fresh))
    fresh.add_with_ids(np.ascontiguousarray(vectors[keep]), np.ascontiguousarray(all_labels[keep]))
    return fresh


def copy_hnsw_settings(source: Any, target: Any) -> None:
    target.hnsw.efConstruction = source.hnsw.efConstruction
    target.hnsw.efSearch = source.hnsw.efSearch


def gpu_count() -> int:
    """GPUs faiss can use: 0 for a faiss-cpu build or a machine without CUDA."""
    if not hasattr(faiss, "StandardGpuResources"):
        return 0
    try:
        return int(faiss.get_num_gpus())
    except RuntimeError:
        return 0


def resolve_device(device: str) -> str:
    """``"auto"`` -> ``"cuda:0"`` when faiss sees a GPU, else ``"cpu"``; an unavailable ``"cuda[:i]"``
    falls back to ``"cpu"`` with a logged note."""
    if device == "cpu":
        return device
    if device != "auto" and not (device == "cuda" or device.startswith("cuda:")):
        raise StoreError(f"device: expected 'auto', 'cpu', 'cuda' or 'cuda:<i>', got {device!r}")
    n_gpus = gpu_count()
    gpu_id = int(device.split(":")[1]) if device.startswith("cuda:") else 0
    if n_gpus > gpu_id:
        return f"cuda:{gpu_id}"
    if device != "auto":
        logger.warning("device=%r asked for, but faiss sees %d GPU(s) (faiss-cpu build or no CUDA); the store "
                       "searches on CPU (pip install faiss-gpu-cu12 for GPU search)", device, n_gpus)
    return "cpu"


class GpuReplica:
    """A GPU copy of the CPU index used for search; the CPU index stays the source of truth."""

    def __init__(self, gpu_id: int) -> None:
        self.gpu_id = gpu_id
        self.resources = faiss.StandardGpuResources()
        self.index: faiss.Index | None = None

    def refresh(self, cpu_index: faiss.Index, params: dict[str, int]) -> faiss.Index | None:
        """Copy ``cpu_index`` to the GPU; None (search stays on CPU) for types the GPU cannot hold."""
        if is_hnsw(cpu_index):  # faiss clones HNSW graphs as CPU indexes: a copy would only cost memory
            logger.info("HNSW indexes have no GPU implementation in faiss; searching on CPU")
            self.index = None
            return None
        options = faiss.GpuClonerOptions()
        try:
            self.index = faiss.index_cpu_to_gpu(self.resources, self.gpu_id, cpu_index, options)
            set_search_params(self.index, params, gpu=True)
        except (RuntimeError, AttributeError) as err:
            logger.warning("index type %s cannot be placed on GPU (%s); searching on CPU",
                           type(inner_index(cpu_index)).__name__, str(err).strip().splitlines()[-1])
            self.index = None
        return self.index
