"""PMD and RMD, RankNovo's mass-aware labels (Qiu et al., ICML 2025, method section; reference ``MassAgent``).

Masses are residue masses divided by the unit ``u = 51.4238`` Da (the reference's ``gap_penalty``).

- **PMD(q, t)** (peptide mass deviation): an edit distance whose substitution cost is the unit-mass
  difference, ``D[i,j] = min(D[i-1,j] + 1, D[i,j-1] + 1, D[i-1,j-1] + |m(q_i) - m(t_j)|)``,
  ``D[i,0] = i``, ``D[0,j] = j``; PMD = ``D[|q|,|t|]`` (``MassAgent.TMmass``).
- **RMD(q, t)_i** (residual mass deviation): ``M_q(i) - M_t(j*)`` with ``M`` the cumulative prefix masses
  and ``j* = argmin_j |M_q(i) - M_t(j)|`` (first on ties), signed candidate minus truth
  (``MassAgent.Greedymass``).

:func:`pmd_batch` / :func:`rmd_batch` compute many pairs at once: the DP runs one row at a time for the
whole batch, and the in-row insertion chain ``D[i,j] = min_k (T_k + j - k)`` is a running minimum
(``np.minimum.accumulate``), so the Python loop is over the query length only. :func:`pmd_loop` and
:func:`rmd_loop` are the per-pair reference loops (oracles for tests and the benchmark baseline).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from polyrank.domains.ranknovo.peptides import mass_table, parse_peptide

UNIT_MASS = 51.4238  # Da; RankNovo's gap_penalty: an insertion/deletion costs one unit


def unit_masses(peptide: str | Sequence[str], table: str | Mapping[str, float] = "reference",
                unit: float = UNIT_MASS) -> np.ndarray:
    """Residue masses of a peptide (any notation) in units of ``unit`` Da."""
    masses = mass_table(table)
    return np.array([masses[t] for t in parse_peptide(peptide)], dtype=np.float64) / unit


def pmd_loop(query: np.ndarray, target: np.ndarray) -> float:
    """PMD of one pair of unit-mass arrays by the textbook DP (reference loop)."""
    lq, lt = len(query), len(target)
    dp = np.zeros((lq + 1, lt + 1))
    dp[:, 0] = np.arange(lq + 1)
    dp[0, :] = np.arange(lt + 1)
    for i in range(1, lq + 1):
        for j in range(1, lt + 1):
            substitute = dp[i - 1, j - 1] + abs(query[i - 1] - target[j - 1])
            dp[i, j] = min(dp[i - 1, j] + 1, dp[i, j - 1] + 1, substitute)
    return float(dp[lq, lt])


def rmd_loop(query: np.ndarray, target: np.ndarray) -> np.ndarray:
    """RMD of one pair of unit-mass arrays, one prefix at a time (reference loop)."""
    mq, mt = np.cumsum(query), np.cumsum(target)
    if len(mt) == 0:
        return mq.copy()
    return np.array([q - mt[np.argmin(np.abs(q - mt))] for q in mq])


def pad_masses(arrays: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad unit-mass arrays into ``(B, L)`` with zeros; also returns lengths ``(B,)``."""
    lengths = np.array([len(a) for a in arrays], dtype=np.int64)
    out = np.zeros((len(arrays), max(1, int(lengths.max(initial=0)))))
    for b, a in enumerate(arrays):
        out[b, :len(a)] = a
    return out, lengths


def pmd_batch(queries: Sequence[np.ndarray], targets: Sequence[np.ndarray]) -> np.ndarray:
    """PMD of many (query, target) unit-mass pairs, vectorised over the batch and the target axis."""
    if len(queries) != len(targets):
        raise ValueError(f"got {len(queries)} queries but {len(targets)} targets; they pair up one to one")
    if not len(queries):
        return np.zeros(0)
    q, lq = pad_masses(queries)  # (B, Lq)
    t, lt = pad_masses(targets)  # (B, Lt)
    batch = np.arange(len(q))
    j = np.arange(t.shape[1] + 1, dtype=np.float64)  # (Lt+1,)
    row = np.broadcast_to(j, (len(q), len(j))).copy()  # D[0, :]
    out = row[batch, lt].copy()  # PMD for empty queries
    for i in range(1, int(lq.max(initial=0)) + 1):
        best = np.empty_like(row)
        best[:, 0] = i
        best[:, 1:] = np.minimum(row[:, :-1] + np.abs(q[:, i - 1, None] - t), row[:, 1:] + 1.0)
        row = np.minimum.accumulate(best - j, axis=1) + j  # insertion chain as a running minimum
        done = lq == i
        out[done] = row[done, lt[done]]
    return out


def rmd_batch(queries: Sequence[np.ndarray], targets: Sequence[np.ndarray]) -> list[np.ndarray]:
    """RMD of many pairs: ``(B, Lq, Lt)`` prefix distances, first argmin, one gather."""
    if not len(queries):
        return []
    q, lq = pad_masses(queries)
    t, lt = pad_masses(targets)
    mq = np.cumsum(q, axis=1)
    mt = np.cumsum(t, axis=1)
    mt = np.where(np.arange(t.shape[1]) < lt[:, None], mt, np.inf)  # padded prefixes never nearest
    nearest = np.argmin(np.abs(mq[:, :, None] - mt[:, None, :]), axis=2)  # first minimum on ties
    ref = np.take_along_axis(mt, nearest, axis=1)
    ref = np.where(lt[:, None] > 0, ref, 0.0)  # empty truth: residual to the empty prefix
    res = mq - ref
    return [res[b, :lq[b]] for b in range(len(q))]


def pmd(candidate: str | Sequence[str], truth: str | Sequence[str],
        table: str | Mapping[str, float] = "reference") -> float:
    """PMD between two peptides in any notation (units of 51.4238 Da).

    >>> pmd("PEPTIDE", "PEPTLDE")
    0.0
    >>> round(pmd("PEPTIDEK", "PEPTIDE"), 6)   # one insertion costs one unit
    1.0
    """
    return float(pmd_batch([unit_masses(candidate, table)], [unit_masses(truth, table)])[0])


def rmd(candidate: str | Sequence[str], truth: str | Sequence[str],
        table: str | Mapping[str, float] = "reference") -> np.ndarray:
    """RMD of each prefix of ``candidate`` against ``truth`` (units of 51.4238 Da)."""
    return rmd_batch([unit_masses(candidate, table)], [unit_masses(truth, table)])[0]


def labels(candidates: Sequence[str | Sequence[str]], truth: str | Sequence[str],
           table: str | Mapping[str, float] = "reference") -> tuple[np.ndarray, list[np.ndarray]]:
    """PMD ``(N,)`` and per-residue RMD of each candidate of one spectrum against its true peptide."""
    t = unit_masses(truth, table)
    q = [unit_masses(c, table) for c in candidates]
    return pmd_batch(q, [t] * len(q)), rmd_batch(q, [t] * len(q))
