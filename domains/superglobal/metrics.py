"""Revisited Oxford/Paris evaluation (Radenovic et al., CVPR 2018, "Revisiting Oxford and Paris").

The protocol of the official ``revisitop`` ``compute_map`` (also vendored by SuperGlobal in
``test/evaluate.py``): junk images are removed from each ranked list, AP is the trapezoidal
interpolation ``sum_j (P0 + P1) / 2 / n_pos`` with ``P0 = j / r`` (1 when r = 0) and
``P1 = (j + 1) / (r + 1)`` at the junk-corrected 0-based rank r of the j-th positive, and queries
without positives are skipped (NaN, excluded from the mean). mP@k is the precision at k of the
junk-free list as revisitop computes it (see :func:`precision_at`). Protocols relabel per query:
Easy (ok = easy; junk += hard), Medium (ok = easy + hard),
Hard (ok = hard; junk += easy). Figures are x100.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

KS = (1, 5, 10)
PROTOCOLS = ("easy", "medium", "hard")


def _junk_free_positions(ranked: np.ndarray, positives: np.ndarray, junk: np.ndarray) -> np.ndarray:
    """0-based ranks of the positives after removing the junk ranked before each of them."""
    pos = np.flatnonzero(np.isin(ranked, positives))
    return pos - np.searchsorted(np.flatnonzero(np.isin(ranked, junk)), pos)


def average_precision(ranked: np.ndarray, positives: Sequence[int], junk: Sequence[int] = ()) -> float:
    """revisitop AP of one ranked list of database indices; NaN when there is no positive."""
    positives = np.asarray(positives, dtype=np.int64)
    if positives.size == 0:
        return float("nan")
    pos = _junk_free_positions(np.asarray(ranked), positives, np.asarray(junk, dtype=np.int64))
    ap = 0.0
    for j, rank in enumerate(pos):
        p0 = 1.0 if rank == 0 else j / rank
        p1 = (j + 1) / (rank + 1)
        ap += (p0 + p1) / 2
    return ap / positives.size


def precision_at(ranked: np.ndarray, positives: Sequence[int], junk: Sequence[int], ks: Sequence[int] = KS
                 ) -> np.ndarray:
    """revisitop ``mP@k``: with 1-based junk-free positive ranks ``pos`` and ``kq = min(max(pos), k)``,
    the fraction ``|pos <= kq| / kq`` (so a list whose last positive comes before k is not penalised)."""
    pos = _junk_free_positions(np.asarray(ranked), np.asarray(positives, dtype=np.int64),
                               np.asarray(junk, dtype=np.int64)) + 1
    if pos.size == 0:
        return np.zeros(len(ks))
    out = []
    for k in ks:
        kq = min(int(pos.max()), k)
        out.append((pos <= kq).sum() / kq)
    return np.array(out, dtype=np.float64)


def relabel(gnd: Sequence[Mapping], protocol: str) -> list[dict[str, np.ndarray]]:
    """Per-query ``ok``/``junk`` index sets of one revisitop protocol (easy, medium or hard)."""
    out = []
    for g in gnd:
        easy, hard = np.asarray(g.get("easy", []), int), np.asarray(g.get("hard", []), int)
        junk = np.asarray(g.get("junk", []), int)
        if protocol == "easy":
            out.append({"ok": easy, "junk": np.concatenate([junk, hard])})
        elif protocol == "medium":
            out.append({"ok": np.concatenate([easy, hard]), "junk": junk})
        elif protocol == "hard":
            out.append({"ok": hard, "junk": np.concatenate([junk, easy])})
        else:
            raise ValueError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")
    return out


@dataclass
class ProtocolResult:
    """mAP and mP@k (x100) of one protocol, with the per-query APs (NaN for skipped queries)."""

    map: float
    mp_at: dict[int, float]
    aps: np.ndarray


def compute_map(ranks: np.ndarray, gnd_protocol: Sequence[Mapping], ks: Sequence[int] = KS) -> ProtocolResult:
    """mAP over queries with at least one positive; ``ranks`` is ``(n_queries, L)`` database indices."""
    ranks = np.asarray(ranks)
    if len(ranks) != len(gnd_protocol):
        raise ValueError(f"{len(ranks)} ranked lists but {len(gnd_protocol)} ground-truth entries")
    aps = np.array([average_precision(r, g["ok"], g["junk"]) for r, g in zip(ranks, gnd_protocol)])
    valid = ~np.isnan(aps)
    prs = [precision_at(r, g["ok"], g["junk"], ks) for r, g, v in zip(ranks, gnd_protocol, valid) if v]
    mean_pr = np.mean(prs, axis=0) if prs else np.full(len(ks), np.nan)
    return ProtocolResult(float(np.mean(aps[valid]) * 100) if valid.any() else float("nan"),
                          {k: float(v * 100) for k, v in zip(ks, mean_pr)}, aps)


def revisitop_map(ranks: np.ndarray, gnd: Sequence[Mapping], ks: Sequence[int] = KS,
                  protocols: Sequence[str] = PROTOCOLS) -> dict[str, ProtocolResult]:
    """Easy/Medium/Hard results of one ranking, keyed by protocol name."""
    return {p: compute_map(ranks, relabel(gnd, p), ks) for p in protocols}


def summary(results: Mapping[str, ProtocolResult]) -> dict[str, float]:
    """Flat figures ``mAP_easy``, ``mAP_medium``, ``mP@10_hard``, ... rounded to 2 decimals."""
    out = {}
    for protocol, res in results.items():
        out[f"mAP_{protocol}"] = round(res.map, 2)
        out.update({f"mP@{k}_{protocol}": round(v, 2) for k, v in res.mp_at.items()})
    return out
