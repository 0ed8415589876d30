"""Saving and loading a candidate store directory.

Layout (format version 2)::

    <dir>/manifest.json   format, format_version, dim, metric, factory, count, id_kind, next_label,
                          search_params, faiss_version, {file: {sha256, bytes}} for every file below, and
                          manifest_sha256: the SHA-256 of the canonical JSON (sorted keys, no spaces) of all
                          the other manifest fields, so an edited manifest is detected like an edited file
    <dir>/index.faiss     faiss.write_index of the CPU index (labels = internal int64 ids)
    <dir>/labels.npy      int64 labels of the live vectors, ascending (allow_pickle=False)
    <dir>/keys.json       the external id of each label, same order
    <dir>/metadata.json   the metadata dict (or null) of each label, same order

Version 1 (no ``manifest_sha256``) is still read: its fields get the same validation, only the manifest
checksum is missing; saving it again writes version 2.

The files are written into a staging directory that is fsynced and replaces ``<dir>`` in one rename
(:func:`polyrank.shared.atomic.atomic_directory`), so a crash at any point leaves the previous copy whole;
``<dir>`` itself is only replaced when it holds a ``manifest.json`` (a previous store) or is empty, unless
``overwrite=True``. Loading validates every manifest field, its checksum and every file checksum, and
cross-checks the files against each other before trusting a byte; nothing is unpickled. Any mismatch is a
:class:`~polyrank.shared.errors.FormatError` naming the file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from polyrank.shared.atomic import atomic_directory, recover_directory
from polyrank.shared.errors import FormatError, MissingResourceError
from polyrank.shared.store.index import METRICS, built_by, describe_index, idmap_labels
from polyrank.shared.store.validation import StoreError

logger = logging.getLogger(__name__)

FORMAT = "polyrank.CandidateStore"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
MANIFEST = "manifest.json"
DATA_FILES = ("index.faiss", "labels.npy", "keys.json", "metadata.json")
FIELDS: dict[str, tuple[type, ...]] = {  # every manifest field and its JSON types (bool is never an int here)
    "format": (str,), "format_version": (int,), "dim": (int,), "metric": (str,), "factory": (str,),
    "count": (int,), "id_kind": (str, type(None)), "next_label": (int,), "search_params": (dict,),
    "faiss_version": (str,), "files": (dict,), "manifest_sha256": (str,)}
SEARCH_PARAMS = ("nprobe", "efSearch")
_SHA256 = re.compile(r"[0-9a-f]{64}")


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


def manifest_digest(manifest: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of every manifest field but ``manifest_sha256`` itself."""
    body = {key: value for key, value in manifest.items() if key != "manifest_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def write_store(path: str | Path, state: StoreState, overwrite: bool = False) -> Path:
    """Write ``state`` atomically to ``path`` (the previous copy survives any failure).

    ``path`` may be absent, empty or a previous store; anything else raises
    :class:`~polyrank.shared.errors.PolyrankError` unless ``overwrite=True``.
    """
    with atomic_directory(path, marker=MANIFEST, overwrite=overwrite) as staging:
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
    manifest["manifest_sha256"] = manifest_digest(manifest)
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_manifest(manifest: Any, where: Path) -> None:
    """Every field present, of its type and in range; FormatError naming ``where`` otherwise."""
    def bad(message: str) -> FormatError:
        return FormatError(where, None, f"{message}; the manifest was edited or corrupted: restore the store from "
                                        "a backup or re-save it")

    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise FormatError(where, None, f"not a {FORMAT} manifest")
    version = manifest.get("format_version")
    if version not in READABLE_VERSIONS or not _is_int(version):
        raise FormatError(where, None, f"format_version {version!r} is not supported (this polyrank reads "
                          f"{', '.join(map(str, READABLE_VERSIONS))}); upgrade polyrank or re-save the store")
    expected = set(FIELDS) - ({"manifest_sha256"} if version == 1 else set())
    missing, unknown = sorted(expected - set(manifest)), sorted(set(manifest) - expected)
    if missing or unknown:
        raise bad(f"fields missing {missing}, unknown {unknown}")
    for key in sorted(expected):
        value, types = manifest[key], FIELDS[key]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise bad(f"{key}: expected {' or '.join(t.__name__ for t in types)}, got {value!r}")
    dim, count, next_label, id_kind = (manifest[k] for k in ("dim", "count", "next_label", "id_kind"))
    if dim < 1 or count < 0 or next_label < count:
        raise bad(f"dim={dim}, count={count}, next_label={next_label}: expected dim >= 1 and 0 <= count <= "
                  "next_label")
    if manifest["metric"] not in METRICS:
        raise bad(f"metric: expected one of {sorted(METRICS)}, got {manifest['metric']!r}")
    if id_kind not in ("int", "str", None) or (id_kind is None and count):
        raise bad(f"id_kind: expected 'int' or 'str' (null only for a store never added to), got {id_kind!r}")
    params = manifest["search_params"]
    if set(params) - set(SEARCH_PARAMS) or not all(_is_int(v) and v >= 1 for v in params.values()):
        raise bad(f"search_params: expected positive ints under {list(SEARCH_PARAMS)}, got {params!r}")
    files = manifest["files"]
    if sorted(files) != sorted(DATA_FILES) or not all(
            isinstance(f, dict) and sorted(f) == ["bytes", "sha256"] and _is_int(f["bytes"]) and f["bytes"] >= 0
            and isinstance(f["sha256"], str) and _SHA256.fullmatch(f["sha256"]) for f in files.values()):
        raise bad(f"files: expected {{sha256, bytes}} for exactly {list(DATA_FILES)}")
    if version >= 2 and manifest["manifest_sha256"] != manifest_digest(manifest):
        raise bad("checksum mismatch (manifest_sha256 does not match the other fields)")


def read_manifest(path: Path) -> dict[str, Any]:
    recover_directory(path)  # put back a copy a killed save left at .<name>.old; drop dead writers' staging
    if not path.is_dir():
        raise MissingResourceError(f"{path}: no candidate store directory here (save one with store.save)")
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise MissingResourceError(f"{manifest_path}: missing; {path} is not a saved CandidateStore "
                                   "(or its save never completed)")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise FormatError(manifest_path, None, f"not valid JSON ({err}); the store is corrupted") from err
    check_manifest(manifest, manifest_path)
    if manifest["format_version"] < FORMAT_VERSION:
        logger.info("%s: format_version %d has no manifest checksum; save the store again to add one",
                    manifest_path, manifest["format_version"])
    return manifest


def verify_checksums(path: Path, manifest: dict[str, Any]) -> None:
    missing = [name for name in DATA_FILES if not (path / name).is_file()]
    if missing:
        raise MissingResourceError(f"{path / missing[0]}: missing from the saved store ({missing}); re-save it")
    for name in DATA_FILES:
        file = path / name
        expected = manifest["files"][name]
        size = file.stat().st_size
        if size != expected["bytes"] or sha256(file) != expected["sha256"]:
            raise FormatError(file, None, f"checksum mismatch ({size} bytes; manifest says "
                              f"{expected['bytes']}): the file is corrupted or was changed after saving; "
                              "restore it or re-save the store")


def cross_check(path: Path, manifest: dict[str, Any], state: StoreState) -> None:
    """The files agree with the manifest and with each other (FormatError naming the offending file)."""
    index, labels, keys, metadata = state.index, state.labels, state.keys, state.metadata
    count, where = manifest["count"], path / MANIFEST
    if labels.dtype != np.int64 or labels.ndim != 1:
        raise FormatError(path / "labels.npy", None, f"expected a 1-D int64 array, got {labels.dtype} "
                          f"{labels.shape}")
    if len(labels) and (labels[0] < 0 or labels[-1] >= manifest["next_label"] or (np.diff(labels) <= 0).any()):
        raise FormatError(path / "labels.npy", None, "labels must be unique, ascending and in [0, next_label="
                          f"{manifest['next_label']}) (manifest.json); the store is corrupted")
    for name, value in (("keys.json", keys), ("metadata.json", metadata)):
        if not isinstance(value, list):
            raise FormatError(path / name, None, f"expected a JSON list, got {type(value).__name__}")
    bad_meta = next((i for i, m in enumerate(metadata) if m is not None and not isinstance(m, dict)), None)
    if bad_meta is not None:
        raise FormatError(path / "metadata.json", bad_meta + 1, "expected a JSON object or null")
    problems = []
    if index.d != manifest["dim"]:
        problems.append(f"index dim {index.d} != manifest dim {manifest['dim']}")
    if index.metric_type != METRICS[manifest["metric"]]:
        problems.append(f"index metric {index.metric_type} != manifest metric {manifest['metric']!r}")
    if not (index.ntotal == len(labels) == len(keys) == len(metadata) == count):
        problems.append(f"counts differ: index {index.ntotal}, labels {len(labels)}, keys {len(keys)}, "
                        f"metadata {len(metadata)}, manifest {count}")
    if not problems:
        try:
            matches = built_by(index, manifest["dim"], manifest["factory"], manifest["metric"])
        except StoreError as err:
            raise FormatError(where, None, f"factory: {err}") from err
        if not matches:
            problems.append(f"index is {describe_index(index)}, not what manifest factory {manifest['factory']!r} "
                            "builds")
        held = idmap_labels(index)
        if held is not None and not np.array_equal(held, labels) and not np.array_equal(np.sort(held), labels):
            problems.append("the index holds other labels than labels.npy")
    if problems:
        raise FormatError(where, None, "does not match the store's files: " + "; ".join(problems) + "; the store "
                          "is corrupted or was edited: restore it from a backup or re-save it")


def read_store(path: str | Path, mmap: bool = False, verify: bool = True) -> StoreState:
    """Read and cross-check a store directory; ``mmap`` maps the vector codes instead of reading them.

    ``verify=False`` skips the (file-sized) data checksums; the manifest and the cross-checks still run.
    """
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
    info = {key: manifest[key] for key in ("dim", "metric", "factory", "id_kind", "next_label", "search_params")}
    state = StoreState(index=index, labels=labels, keys=keys, metadata=metadata, info=info)
    cross_check(path, manifest, state)
    return state
