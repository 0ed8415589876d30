"""Input checks for the candidate store: vectors, external ids, metadata and ``k``.

Every check raises :class:`StoreError` naming what was wrong, what was expected and how to fix it; nothing
is silently truncated, padded or reinterpreted.

Conversion rule for vectors: any real floating dtype (float16, float64, a bfloat16 torch tensor) is cast
to C-contiguous float32; integer, bool, complex and object arrays are rejected (cast them yourself, so an
id column passed by mistake is not searched as a vector). A 1-D array of length ``dim`` is one row.
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from polyrank.shared.errors import PolyrankError

IdKind = str  # "int" or "str"


class StoreError(PolyrankError, ValueError):
    """Bad input to, or bad use of, a :class:`~polyrank.shared.store.CandidateStore`."""


def _preview(items: Sequence[Any], limit: int = 5) -> str:
    shown = ", ".join(repr(item) for item in list(items)[:limit])
    return f"[{shown}{', ...' if len(items) > limit else ''}]"


def as_vectors(x: Any, dim: int, what: str = "vectors") -> np.ndarray:
    """``x`` as a C-contiguous finite float32 ``(n, dim)`` array, or a :class:`StoreError`."""
    if hasattr(x, "detach"):  # a torch tensor, on any device and in any float precision
        x = x.detach().to("cpu")
        x = (x.float() if x.is_floating_point() else x).numpy()
    arr = np.asarray(x)
    if arr.ndim == 1 and arr.shape[0] == dim:
        arr = arr[None, :]
    shape = "(" + ", ".join(str(s) for s in arr.shape) + ")"
    if arr.dtype.kind != "f":
        raise StoreError(f"{what}: expected (n, {dim}) float32, got {shape} {arr.dtype}; "
                         "pass floating-point embeddings (e.g. .astype(np.float32))")
    if arr.ndim != 2 or arr.shape[1] != dim:
        got = f"(n, {arr.shape[1]})" if arr.ndim == 2 else shape
        raise StoreError(f"{what}: expected (n, {dim}) float32, got {got}; the store was built for "
                         f"dim={dim} (use vectors from the same encoder, or a new store)")
    if arr.shape[0] == 0:
        raise StoreError(f"{what}: expected (n, {dim}) float32 with n >= 1, got an empty array")
    with np.errstate(over="ignore"):  # overflow becomes inf, reported just below
        arr = np.ascontiguousarray(arr, dtype=np.float32)
    finite = np.isfinite(arr).all(axis=1)
    if not finite.all():
        rows = np.flatnonzero(~finite)
        raise StoreError(f"{what}: {len(rows)} of {len(arr)} rows contain NaN or inf (rows "
                         f"{_preview(rows.tolist())}); float64 values beyond float32 range also become inf. "
                         "Drop or fix those rows before adding/searching")
    return arr


def normalise_rows(x: np.ndarray, what: str) -> np.ndarray:
    """Unit-L2 rows (for the cosine metric); zero rows cannot be normalised and are rejected."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if (norms == 0).any():
        rows = np.flatnonzero(norms[:, 0] == 0)
        raise StoreError(f"{what}: rows {_preview(rows.tolist())} are all zeros; cosine similarity is "
                         "undefined for them (use metric='ip' or drop them)")
    return np.ascontiguousarray(x / norms, dtype=np.float32)


def as_keys(ids: Any, kind: IdKind | None, what: str = "ids") -> tuple[np.ndarray, IdKind]:
    """External ids as an int64 array (kind ``"int"``) or an object array of str (kind ``"str"``).

    Ints must be non-negative (``-1`` marks "no result" in search output); one store holds one kind.
    Duplicates within one call are rejected.
    """
    if isinstance(ids, (str, bytes)) or not hasattr(ids, "__len__"):
        raise StoreError(f"{what}: expected a sequence of ids (list or array), got {type(ids).__name__}; "
                         "wrap a single id in a list")
    arr = ids if isinstance(ids, np.ndarray) else None  # lists are checked item by item: np.asarray
    if arr is not None and arr.ndim != 1:                # would turn ["a", 1] into ["a", "1"]
        raise StoreError(f"{what}: expected a 1-D sequence of ids, got shape {arr.shape}")
    if len(ids) == 0:
        raise StoreError(f"{what}: expected at least one id, got an empty sequence")
    if arr is not None and arr.dtype.kind in "iu":
        keys, got = arr.astype(np.int64), "int"
    elif arr is not None and arr.dtype.kind == "U":
        keys, got = np.array(arr.tolist(), dtype=object), "str"
    else:
        values = list(ids)
        if all(isinstance(v, str) for v in values):
            keys, got = np.array(values, dtype=object), "str"
        elif all(isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_)) for v in values):
            keys, got = np.array(values, dtype=np.int64), "int"
        else:
            bad = [v for v in values if not isinstance(v, (str, numbers.Integral)) or isinstance(v, bool)]
            raise StoreError(f"{what}: ids must be all str or all non-negative int, got a mix or other types "
                             f"({_preview(bad or values)})")
    if kind is not None and got != kind:
        raise StoreError(f"{what}: this store holds {kind} ids, got {got} ids; use one id type per store")
    if got == "int" and (keys < 0).any():
        raise StoreError(f"{what}: int ids must be >= 0 (-1 marks 'no result'), "
                         f"got {_preview(keys[keys < 0].tolist())}")
    unique, counts = np.unique(keys, return_counts=True)
    if len(unique) != len(keys):
        raise StoreError(f"{what}: duplicate ids in one call: {_preview(unique[counts > 1].tolist())}")
    return keys, got


def as_metadata(metadata: Sequence[Any] | None, n: int) -> list[dict | None] | None:
    """One JSON-serialisable dict (or None) per id; checked now so that ``save`` cannot fail later."""
    if metadata is None:
        return None
    if isinstance(metadata, dict) or len(metadata) != n:
        got = "a dict" if isinstance(metadata, dict) else f"{len(metadata)} entries"
        raise StoreError(f"metadata: expected a list of {n} dicts (one per id, None allowed), got {got}")
    for i, item in enumerate(metadata):
        if item is None:
            continue
        if not isinstance(item, dict):
            raise StoreError(f"metadata[{i}]: expected a dict or None, got {type(item).__name__}")
        try:
            json.dumps(item, allow_nan=False)
        except (TypeError, ValueError) as err:
            raise StoreError(f"metadata[{i}]: not JSON-serialisable ({err}); store plain str/int/float/"
                             "list/dict values") from err
    return list(metadata)


def check_k(k: Any, count: int) -> int:
    """``k`` as an int in ``[1, count]``: a larger ``k`` is an error, not a silent clamp."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise StoreError(f"k: expected a positive int, got {k!r}")
    if count == 0:
        raise StoreError("search on an empty store; add vectors first")
    if k > count:
        raise StoreError(f"k={k} exceeds the {count} vectors in the store; ask for k <= {count}")
    return int(k)
