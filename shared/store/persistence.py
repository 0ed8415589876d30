"""Saving and loading a candidate store directory.

Layout (format version 1)::

    <dir>/manifest.json   format, format_version, dim, metric, factory, count, id_kind, next_label,
                          search_params, faiss_version and {file: {sha256, bytes}} for every file below
    <dir>/index.faiss     faiss.write_index of the CPU index (labels = internal int64 ids)
    <dir>/labels.npy      int64 labels of the live vectors, ascending (allow_pickle=False)
    <dir>/keys.json       the external id of each label, same order
    <dir>/metadata.json   the metadata dict (or null) of each label, same order

The files are written into a staging directory that replaces ``<dir>`` in one rename
(:func:`polyrank.shared.atomic.atomic_directory`), so a crash at any point leaves the previous copy whole.
Loading checks the manifest and every checksum before trusting a byte; nothing is unpickled.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from polyrank.shared.atomic import atomic_directory, recover_directory
from polyrank.shared.errors import FormatError, MissingResourceError
from polyrank.shared.store.index import METRICS

logger = logging.getLogger(__name__)

FORMAT = "polyrank.CandidateStore"
FORMAT_VERSION = 1
DATA_FILES = ("index.faiss", "labels.npy", "keys.json", "metadata.json")


@dataclass
class StoreState:
    """Everything a store directory holds (the in-memory form of the files above)."""

    index: faiss.Index
    labels: np.ndarray
    keys: list
    metadata: list
    info: dict[str, Any]  # dim, metric, factory, id_kind, next_label, search_params


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def write_store(path: str | Path, state: StoreState) -> Path:
    """Write ``state`` atomically to ``path`` (the previous copy survives any failure)."""
    with atomic_directory(path) as staging:
        write_files(staging, state)
    logger.info("saved candidate store (%d vectors) to %s", len(state.labels), path)
    return Path(path)


def write_files(folder: Path, state: StoreState) -> None:
    """The data files, then the manifest that vouches for them (written last)."""
    faiss.write_index(state.index, str(folder / "index.faiss"))
    np.save(folder / "labels.npy", np.ascontiguousarray(state.labels, dtype=np.int64), allow_pickle=False)
    (folder / "keys.json").write_text(json.dumps(state.keys), encoding="utf-8")
    (folder / "metadata.json").write_text(json.dumps(state.metadata, allow_nan=False), encoding="utf-8")
    files = {name: {"sha256": sha256(folder / name), "bytes": (folder / name).stat().st_size}
             for name in DATA_FILES}
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, **state.info, "count": len(state.labels),
                "faiss_version": faiss.__version__, "files": files}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")


def read_manifest(path: Path) -> dict[str, Any]:
    recover_directory(path)  # a save that died between its two renames left the old copy at .<name>.old
    if not path.is_dir():
        raise MissingResourceError(f"{path}: no candidate store directory here (save one with store.save)")
    manifest_path = path / "manifest.json"
    if not manifest_path.is_file():
        raise MissingResourceError(f"{manifest_path}: missing; {path} is not a saved CandidateStore "
                                   "(or its save never completed)")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise FormatError(manifest_path, None, f"not valid JSON ({err}); the store is corrupted") from err
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise FormatError(manifest_path, None, f"not a {FORMAT} manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise FormatError(manifest_path, None, f"format_version {manifest.get('format_version')!r} is not "
                          f"supported (this polyrank reads {FORMAT_VERSION}); upgrade polyrank or re-save")
    missing = [key for key in ("dim", "metric", "factory", "count", "id_kind", "next_label", "files")
               if key not in manifest]
    if missing or manifest["metric"] not in METRICS:
        raise FormatError(manifest_path, None, f"manifest lacks {missing} or has an unknown metric")
    return manifest


def verify_checksums(path: Path, manifest: dict[str, Any]) -> None:
    missing = [name for name in DATA_FILES if not (path / name).is_file()]
    if missing:
        raise MissingResourceError(f"{path / missing[0]}: missing from the saved store ({missing}); re-save it")
    for name in DATA_FILES:
        file = path / name
        expected = manifest["files"].get(name, {})
        size = file.stat().st_size
        if size != expected.get("bytes") or sha256(file) != expected.get("sha256"):
            raise FormatError(file, None, f"checksum mismatch ({size} bytes; manifest says "
                              f"{expected.get('bytes')}): the file is corrupted or was changed after saving; "
                              "restore it or re-save the store")


def read_store(path: str | Path, mmap: bool = False, verify: bool = True) -> StoreState:
    """Read and cross-check a store directory; ``mmap`` maps the vector codes instead of reading them."""
    path = Path(path)
    manifest = read_manifest(path)
    if verify:
        verify_checksums(path, manifest)
    flags = (getattr(faiss, "IO_FLAG_MMAP_IFC", faiss.IO_FLAG_MMAP) | faiss.IO_FLAG_READ_ONLY) if mmap else 0
    try:
        index = faiss.read_index(str(path / "index.faiss"), flags)
        labels = np.load(path / "labels.npy", allow_pickle=False)
        keys = json.loads((path / "keys.json").read_text(encoding="utf-8"))
        metadata = json.loads((path / "metadata.json").read_text(encoding="utf-8"))
    except (RuntimeError, ValueError, OSError) as err:
        raise FormatError(path, None, f"cannot read the saved store ({err}); it is corrupted") from err
    count = manifest["count"]
    problems = []
    if index.d != manifest["dim"]:
        problems.append(f"index dim {index.d} != manifest dim {manifest['dim']}")
    if index.metric_type != METRICS[manifest["metric"]]:
        problems.append(f"index metric {index.metric_type} != manifest metric {manifest['metric']!r}")
    if not (index.ntotal == len(labels) == len(keys) == len(metadata) == count):
        problems.append(f"counts differ: index {index.ntotal}, labels {len(labels)}, keys {len(keys)}, "
                        f"metadata {len(metadata)}, manifest {count}")
    if problems:
        raise FormatError(path, None, "inconsistent store: " + "; ".join(problems))
    info = {key: manifest[key] for key in ("dim", "metric", "factory", "id_kind", "next_label")}
    info["search_params"] = manifest.get("search_params", {})
    return StoreState(index=index, labels=labels, keys=keys, metadata=metadata, info=info)
