"""Casanovo's de novo metrics: amino-acid precision/recall and peptide recall.

Re-implemented from Casanovo's ``denovo/evaluate.py`` (also RankNovo's ``denovo/evaluate.py``): residues of
a prediction and the truth are paired by a **prefix** mass alignment, then a **suffix** alignment from the
C-terminus back to the first unmatched position. Two residues match when the cumulative masses agree
within ``cum_mass_threshold`` (0.5 Da) and the residues within ``ind_mass_threshold`` (0.1 Da); a peptide
matches when every paired position matches.

- AA precision = matched residues / predicted residues; AA recall = matched / true residues;
  peptide recall = fully matched spectra / all spectra.
- A ``None`` or empty prediction counts as zero predicted residues and no match (Casanovo's convention for
  spectra without a prediction).

Reference difference (named option): RankNovo's validation calls ``aa_match_batch(pred, true)`` and then
``aa_match_metrics`` whose arguments are ``(n_aa_true, n_aa_pred)``, so its "AA precision" divides by the
number of **true** residues; ``precision_denominator="true"`` reproduces that, the default is Casanovo's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from polyrank.domains.ranknovo.peptides import mass_table, parse_peptide

Peptide = str | Sequence[str] | None


def _walk(p1: Sequence[str], p2: Sequence[str], aa: Mapping[str, float], matches: np.ndarray, step: int,
          stop: int, cum_tol: float, ind_tol: float) -> None:
    """Mass-align from the N-terminus (``step=1``) or C-terminus (``step=-1``), marking matches."""
    i1, i2 = (0, 0) if step == 1 else (len(p1) - 1, len(p2) - 1)
    cum1 = cum2 = 0.0

    def inside(i: int, n: int) -> bool:
        return i < n if step == 1 else i >= stop

    while inside(i1, len(p1)) and inside(i2, len(p2)):
        m1, m2 = aa.get(p1[i1], 0.0), aa.get(p2[i2], 0.0)
        if abs((cum1 + m1) - (cum2 + m2)) < cum_tol:
            matches[max(i1, i2)] = abs(m1 - m2) < ind_tol
            i1, i2, cum1, cum2 = i1 + step, i2 + step, cum1 + m1, cum2 + m2
        elif cum2 + m2 > cum1 + m1:
            i1, cum1 = i1 + step, cum1 + m1
        else:
            i2, cum2 = i2 + step, cum2 + m2


def aa_match(pred: Sequence[str] | None, true: Sequence[str], aa: Mapping[str, float],
             cum_mass_threshold: float = 0.5, ind_mass_threshold: float = 0.1) -> tuple[np.ndarray, bool]:
    """Per-position match flags (length ``max(len(pred), len(true))``) and whether the peptide matches."""
    if not pred:
        return np.zeros(len(true), dtype=bool), False
    matches = np.zeros(max(len(pred), len(true)), dtype=bool)
    _walk(pred, true, aa, matches, 1, 0, cum_mass_threshold, ind_mass_threshold)
    if matches.all():
        return matches, True
    stop = int(np.argwhere(~matches)[0][0])
    _walk(pred, true, aa, matches, -1, stop, cum_mass_threshold, ind_mass_threshold)
    return matches, bool(matches.all())


@dataclass(frozen=True)
class DeNovoMetrics:
    """Casanovo's three figures for one list of predictions."""

    aa_precision: float
    aa_recall: float
    peptide_recall: float
    n_spectra: int


def _tokens(peptide: Peptide) -> list[str] | None:
    if peptide is None or (isinstance(peptide, str) and not peptide.strip()):
        return None
    return parse_peptide(peptide)


def evaluate_predictions(predictions: Sequence[Peptide], truths: Sequence[Peptide],
                         table: str | Mapping[str, float] = "reference", cum_mass_threshold: float = 0.5,
                         ind_mass_threshold: float = 0.1,
                         precision_denominator: str = "predicted") -> DeNovoMetrics:
    """AA precision/recall and peptide recall of ``predictions`` against ``truths`` (aligned lists)."""
    if len(predictions) != len(truths):
        raise ValueError(f"{len(predictions)} predictions but {len(truths)} true peptides; they must align")
    if precision_denominator not in ("predicted", "true"):
        raise ValueError(f"precision_denominator must be 'predicted' or 'true', "
                         f"not {precision_denominator!r}")
    aa = mass_table(table)
    n_pred = n_true = n_correct = n_pep = 0
    for pred, true in zip(predictions, truths):
        p, t = _tokens(pred), _tokens(true) or []
        flags, whole = aa_match(p, t, aa, cum_mass_threshold, ind_mass_threshold)
        n_pred += len(p or [])
        n_true += len(t)
        n_correct += int(flags.sum())
        n_pep += int(whole)
    denominator = n_pred if precision_denominator == "predicted" else n_true
    n = len(truths)
    precision = n_correct / denominator if denominator else 0.0
    recall = n_correct / n_true if n_true else 0.0
    return DeNovoMetrics(precision, recall, n_pep / n if n else 0.0, n)


def peptide_matches(predictions: Sequence[Peptide], truths: Sequence[Peptide],
                    table: str | Mapping[str, float] = "reference") -> np.ndarray:
    """Boolean ``(n,)``: does each prediction fully match its truth (Casanovo's peptide criterion)."""
    aa = mass_table(table)
    flags = [aa_match(_tokens(p), _tokens(t) or [], aa)[1] for p, t in zip(predictions, truths)]
    return np.array(flags, dtype=bool)


def evaluate_columns(columns: Mapping[str, Sequence[Peptide]], truths: Sequence[Peptide],
                     picks: Sequence[Peptide] | None = None, table: str | Mapping[str, float] = "reference",
                     precision_denominator: str = "predicted") -> dict[str, DeNovoMetrics]:
    """Metrics of each base-model column, of the reranked ``picks`` (``"RankNovo"``) and of the oracle.

    The oracle picks, per spectrum, a fully matching candidate when one exists (else the first column's),
    the upper bound of any reranker over these candidates.
    """
    out = {name: evaluate_predictions(col, truths, table, precision_denominator=precision_denominator)
           for name, col in columns.items()}
    if picks is not None:
        out["RankNovo"] = evaluate_predictions(picks, truths, table,
                                               precision_denominator=precision_denominator)
    names = list(columns)
    hits = np.stack([peptide_matches(columns[n], truths, table) for n in names], axis=1)  # (n, models)
    oracle = [columns[names[int(np.argmax(h))]][i] for i, h in enumerate(hits)]
    out["oracle"] = evaluate_predictions(oracle, truths, table, precision_denominator=precision_denominator)
    return out
