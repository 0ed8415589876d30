"""End-to-end revisited Oxford/Paris evaluation: extract, first-stage search, SuperGlobal rerank, mAP.

Layout under ``root`` (as the official code's ``TEST.DATA_DIR``)::

    roxford5k/gnd_roxford5k.pkl   roxford5k/jpg/<name>.jpg
    rparis6k/gnd_rparis6k.pkl     rparis6k/jpg/<name>.jpg
    revisitop1m/revisitop1m.txt   revisitop1m/jpg/<name>   (or a precomputed revisitop1m/features_<tag>.npy)

The first stage ranks the whole database by dot product (the official full argsort). With +1M the
descriptors of the distractors are streamed into the candidate store in chunks and each query keeps its
top ``depth`` results (default 10,000; a positive below that depth counts as not retrieved, so the AP
is then a lower bound). The top ``M`` are reranked; the rest keep their order. Rankings travel as shared
``Run`` objects (``CandidateStore.search_run`` -> ``rerank_run``) into the revisitop metric.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from polyrank.domains.superglobal.data import RevisitopGnd, read_gnd
from polyrank.domains.superglobal.extract import Extractor
from polyrank.domains.superglobal.metrics import ProtocolResult, revisitop_run_map
from polyrank.domains.superglobal.rerank import BETA_DEFAULT, K_DEFAULT, M_DEFAULT
from polyrank.domains.superglobal.store import build_store
from polyrank.shared.atomic import atomic_file
from polyrank.shared.errors import MissingResourceError
from polyrank.shared.protocol import Run, rerank_run

logger = logging.getLogger(__name__)

DATASETS = ("roxford5k", "rparis6k")


@dataclass
class Descriptors:
    """Query and database descriptors of one revisitop dataset, with its ground truth."""

    queries: np.ndarray
    database: np.ndarray
    gnd: RevisitopGnd


def extract_dataset(extractor: Extractor, root: str | Path, dataset: str, cache: str | Path | None = None
                    ) -> Descriptors:
    """Descriptors of ``dataset`` (queries cropped to ``bbx``), optionally cached as ``.npy`` under ``cache``."""
    root = Path(root) / dataset
    gnd_path = root / f"gnd_{dataset}.pkl"
    if not gnd_path.is_file():
        raise MissingResourceError(f"{gnd_path} not found; run `python -m polyrank.domains.superglobal.datasets "
                                   f"prepare {dataset} --root {root.parent}`")
    gnd = read_gnd(gnd_path)
    cache_files = [Path(cache) / f"{dataset}_{part}.npy" for part in ("queries", "database")] if cache else []
    if cache_files and all(f.is_file() for f in cache_files):
        return Descriptors(np.load(cache_files[0]), np.load(cache_files[1]), gnd)
    image = lambda name: root / "jpg" / f"{name}.jpg"  # noqa: E731
    queries = extractor.extract([image(n) for n in gnd.qimlist], [g["bbx"] for g in gnd.gnd], batch_size=1)
    database = extractor.extract([image(n) for n in gnd.imlist], batch_size=1)
    for path, array in zip(cache_files, (queries, database)):
        with atomic_file(path, "wb") as handle:  # an interrupted run never leaves a truncated cache
            np.save(handle, array)
    return Descriptors(queries, database, gnd)


def distractor_features(root: str | Path, tag: str, extractor: Extractor | None = None, chunk: int = 10_000
                        ) -> np.ndarray:
    """The R1M distractor descriptors as a memory-mapped ``(1M, D)`` array ``revisitop1m/features_<tag>.npy``.

    When the file is absent and an ``extractor`` is given, the images listed in ``revisitop1m.txt`` are
    extracted chunk by chunk straight into that file (the official ``extract_rop1m.py`` step).
    """
    folder = Path(root) / "revisitop1m"
    features = folder / f"features_{tag}.npy"
    if not features.is_file():
        listing = folder / "revisitop1m.txt"
        if extractor is None or not listing.is_file():
            raise MissingResourceError(f"neither {features} nor {listing} (+ jpg/) found for the +1M distractors")
        names = listing.read_text().split()
        partial = features.with_suffix(".partial.npy")
        out = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float32, shape=(len(names), extractor.dim))
        for start in range(0, len(names), chunk):
            out[start:start + chunk] = extractor.extract([folder / "jpg" / n for n in names[start:start + chunk]],
                                                         batch_size=1)
        out.flush()
        del out
        partial.replace(features)
    return np.load(features, mmap_mode="r")


def first_stage(queries: np.ndarray, database: np.ndarray, distractors: np.ndarray | None = None,
                depth: int = 10_000, chunk: int = 50_000) -> np.ndarray:
    """Ranked row indices ``(nq, L)`` over ``database`` followed by ``distractors`` (indices ``N..``).

    Without distractors: the exact full ranking (stable argsort of ``Q X^T``). With them: the distractors
    are streamed into the candidate store ``chunk`` rows at a time and each query keeps its top ``depth``.
    """
    if distractors is None:
        return np.argsort(-(queries @ database.T), axis=1, kind="stable")
    n_db = len(database)
    chunks = ((list(map(str, range(n_db + s, n_db + s + len(distractors[s:s + chunk])))),
               np.asarray(distractors[s:s + chunk], dtype=np.float32)) for s in range(0, len(distractors), chunk))
    store = build_store([str(i) for i in range(n_db)], database, chunks)
    return store.search(np.asarray(queries, dtype=np.float32), depth)[1].astype(np.int64)


def rows(database: np.ndarray, distractors: np.ndarray | None, index: np.ndarray) -> np.ndarray:
    """Descriptors of combined row indices (database first, then distractors)."""
    index = np.asarray(index)
    out = np.empty((len(index), database.shape[1]), dtype=np.float32)
    inside = index < len(database)
    out[inside] = database[index[inside]]
    if (~inside).any():
        out[~inside] = distractors[index[~inside] - len(database)]
    return out


def first_stage_run(queries: np.ndarray, query_ids: list[str], database: np.ndarray,
                    distractors: np.ndarray | None = None, depth: int = 10_000, chunk: int = 50_000) -> Run:
    """The first stage as a shared ``Run`` from ``CandidateStore.search_run``: document ids are row numbers
    (``"0".."N-1"`` the database, ``"N"..`` the streamed distractors). Without distractors every database image
    is ranked (the official full ranking); with them each query keeps its top ``depth``."""
    n_db = len(database)
    chunks = ((list(map(str, range(n_db + s, n_db + s + len(distractors[s:s + chunk])))),
               np.asarray(distractors[s:s + chunk], dtype=np.float32))
              for s in range(0, len(distractors), chunk)) if distractors is not None else ()
    store = build_store([str(i) for i in range(n_db)], database, chunks)
    k = n_db if distractors is None else min(depth, n_db + len(distractors))
    return store.search_run(query_ids, np.asarray(queries, dtype=np.float32), k)


def evaluate(desc: Descriptors, rerank: bool = True, m: int = M_DEFAULT, k: int = K_DEFAULT,
             beta: float = BETA_DEFAULT, distractors: np.ndarray | None = None, depth: int = 10_000,
             device: str | None = None) -> dict[str, ProtocolResult]:
    """Easy/Medium/Hard results of the first stage, optionally followed by SuperGlobal reranking.

    The shared flow: first-stage ``Run`` (:func:`first_stage_run`), ``rerank_run`` of its top ``m`` with a
    descriptor-only :class:`SuperGlobalReranker` (the rest keeps its order), then the revisitop protocol on the
    resulting ``Run`` (with the standard ir-measures AP of the junk-free run beside it).
    """
    from polyrank.domains.superglobal.reranker import SuperGlobalReranker

    qids = list(desc.gnd.qimlist)
    run = first_stage_run(desc.queries, qids, desc.database, distractors, depth)
    if rerank:
        reranker = SuperGlobalReranker(None, m, k, beta, dim=desc.database.shape[1], device=device or "cpu")
        queries = dict(zip(qids, desc.queries))
        run = rerank_run(run, reranker, queries, lambda doc: rows(desc.database, distractors, [int(doc)])[0],
                         depth=m)
    return revisitop_run_map(run, desc.gnd.gnd, qids, int)
