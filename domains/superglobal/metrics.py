"""Revisited Oxford/Paris evaluation (Radenovic et al., CVPR 2018, "Revisiting Oxford and Paris").

The protocol of the official ``revisitop`` ``compute_map`` (also vendored by SuperGlobal in
``test/evaluate.py``): junk images are removed from each ranked list, AP is the trapezoidal
interpolation ``sum_j (P0 + P1) / 2 / n_pos`` with ``P0 = j / r`` (1 when r = 0) and
``P1 = (j + 1) / (r + 1)`` at the junk-corrected 0-based rank r of the j-th positive, and queries
without positives are skipped (NaN, excluded from the mean). mP@k is the precision at k of the
junk-free list as revisitop computes it (see :func:`precision_at`). Protocols relabel per query:
Easy (ok = easy; junk += hard), Medium (ok = easy + hard),
Hard (ok = hard; junk += easy). Figures are x100.

This protocol (junk removal, trapezoidal AP, revisitop mP@k) is the domain metric no library computes.
It consumes the shared flow's output: :func:`revisitop_run_map` takes a ``Run`` (``{qid: {doc_id: score}}``,
e.g. from ``CandidateStore.search_run`` or ``rerank_run``) and ranks it score desc, id asc like every
polyrank metric. :func:`standard_ap` gives the plain AP of the same junk-free run through
``polyrank.shared.evaluation.evaluate`` (ir-measures ``AP``, non-interpolated) for comparison.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
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
    standard_ap: float = float("nan")  # ir-measures AP x100 of the junk-free run (standard_ap), when computed


def compute_map(ranks: np.ndarray, gnd_protocol: Sequence[Mapping], ks: Sequence[int] = KS) -> ProtocolResult:
    """mAP over queries with at least one positive; ``ranks`` is ``(n_queries, L)`` database indices."""
    ranks = [np.asarray(r) for r in ranks]  # one ranked list per query (lists may differ in length)
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
        if not np.isnan(res.standard_ap):
            out[f"AP_{protocol}"] = round(res.standard_ap, 2)
    return out


# ------------------------------------------------------------------------ Runs of the shared flow
def ranks_from_run(run: Mapping[str, Mapping[str, float]], query_ids: Sequence[str],
                   db_index: Mapping[str, int] | Callable[[str], int]) -> list[np.ndarray]:
    """Per query (in ``query_ids`` order), the run's database indices ranked score desc, then id asc.

    ``db_index`` maps a document id to its row in the ground truth's ``imlist`` (a dict, or e.g. ``int`` when
    the ids are row numbers; rows beyond the database, such as +1M distractors, are never positives or junk).
    """
    from polyrank.shared.errors import PolyrankError
    from polyrank.shared.protocol import tie_break_order

    lookup = db_index if callable(db_index) else db_index.__getitem__
    out = []
    for qid in query_ids:
        if qid not in run:
            raise PolyrankError(f"query {qid!r} of the ground truth is not in the run ({len(run)} queries); the run "
                                "and the ground truth must come from the same data set")
        docs = list(run[qid])
        order = tie_break_order(docs, [run[qid][d] for d in docs])
        try:
            out.append(np.array([lookup(docs[i]) for i in order], dtype=np.int64))
        except (KeyError, ValueError) as exc:
            raise PolyrankError(f"run document {exc} of query {qid!r} is not a database image") from None
    return out


def revisitop_run_map(run: Mapping[str, Mapping[str, float]], gnd: Sequence[Mapping], query_ids: Sequence[str],
                      db_ids: Sequence[str] | Callable[[str], int], ks: Sequence[int] = KS,
                      protocols: Sequence[str] = PROTOCOLS, with_standard_ap: bool = True
                      ) -> dict[str, ProtocolResult]:
    """Easy/Medium/Hard results of a ``Run``; ``gnd[i]`` belongs to ``query_ids[i]``; ``db_ids`` name ``imlist``.

    With ``with_standard_ap`` each protocol also carries :func:`standard_ap` of the same run.
    """
    index = db_ids if callable(db_ids) else {d: i for i, d in enumerate(db_ids)}
    ranks = ranks_from_run(run, query_ids, index)
    results = {}
    for protocol in protocols:
        labels = relabel(gnd, protocol)
        result = compute_map(ranks, labels, ks)
        if with_standard_ap:
            names = (lambda i: str(i)) if callable(db_ids) else db_ids.__getitem__
            result.standard_ap = standard_ap(run, labels, query_ids, names)
        results[protocol] = result
    return results


def standard_ap(run: Mapping[str, Mapping[str, float]], gnd_protocol: Sequence[Mapping], query_ids: Sequence[str],
                name: Callable[[int], str]) -> float:
    """ir-measures ``AP`` (x100) through ``polyrank.shared.evaluation.evaluate`` after removing each query's junk.

    ``name(i)`` is the run's document id of database row ``i``. Queries without positives are skipped (as in
    revisitop); NaN when no query has one.
    """
    from polyrank.shared.evaluation import evaluate

    qrels, clean = {}, {}
    for qid, g in zip(query_ids, gnd_protocol):
        if len(g["ok"]) == 0:
            continue
        junk = {name(int(j)) for j in g["junk"]}
        qrels[qid] = {name(int(i)): 1 for i in g["ok"]}
        clean[qid] = {d: s for d, s in run[qid].items() if d not in junk}
    if not qrels:
        return float("nan")
    return evaluate(clean, qrels, ["AP"]).mean["AP"] * 100
