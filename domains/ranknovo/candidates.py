"""Candidate peptides from several de novo models: reference pickle, Casanovo mzTab, CSV/TSV.

A :class:`CandidateSet` is a table with one row per spectrum and one column per base model (``None``
where a model gave no peptide), plus the true peptides when known.

- **Reference pickle** (RankNovo's ``bacillus_6m_V1.pkl``): a list aligned with the spectra, each item
  ``[true, Casanovo-V1, ContraNovo, ByNovo, R-Casanovo, R-ContraNovo, R-ByNovo]`` in mass-tag notation.
  It is read with a restricted unpickler that refuses every global (lists, strings and numbers only), so a
  malicious pickle cannot run code.
- **Casanovo mzTab** (v4 mass tags in ``sequence``; v5 ProForma in
  ``opt_global_cv_MS:1003169_proforma_peptidoform_sequence``): one file per base model, keyed by
  ``spectra_ref``; the best-scoring PSM per spectrum is kept.
- **CSV/TSV**: a header ``spectrum,<model 1>,<model 2>,...`` with an optional ``true`` column.
"""

from __future__ import annotations

import csv
import io
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from polyrank.domains.ranknovo.peptides import PeptideError, parse_peptide
from polyrank.shared.errors import FormatError, PolyrankError
from polyrank.shared.extras import require

#: Column order of the reference pickles (after the true peptide).
REFERENCE_MODELS = ("Casanovo-V1", "ContraNovo", "ByNovo", "R-Casanovo", "R-ContraNovo", "R-ByNovo")


@dataclass
class CandidateSet:
    """Candidates per spectrum: ``rows[i][k]`` is model ``models[k]``'s peptide for spectrum ``ids[i]``."""

    models: list[str]
    rows: list[list[str | None]]
    truths: list[str | None] | None = None
    ids: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.ids:
            self.ids = [str(i) for i in range(len(self.rows))]
        bad = [i for i, r in enumerate(self.rows) if len(r) != len(self.models)]
        if bad:
            raise PolyrankError(f"candidate rows {bad[:5]} do not have one entry per model {self.models}")

    def column(self, model: str) -> list[str | None]:
        """All peptides of one base model."""
        k = self.models.index(model)
        return [row[k] for row in self.rows]

    def select(self, models: Sequence[str]) -> CandidateSet:
        """A subset of the models (zero-shot use with another number/set of base models)."""
        missing = [m for m in models if m not in self.models]
        if missing:
            raise PolyrankError(f"models {missing} not in this candidate set; available: {self.models}")
        ks = [self.models.index(m) for m in models]
        return CandidateSet(list(models), [[r[k] for k in ks] for r in self.rows], self.truths, self.ids)


def _check_peptides(path: Path, number: int, peptides: Sequence[str | None]) -> None:
    for peptide in peptides:
        if peptide is None:
            continue
        try:
            parse_peptide(peptide)
        except PeptideError as exc:
            raise FormatError(path, number, str(exc)) from exc


class _NoGlobalsUnpickler(pickle.Unpickler):
    """Unpickles plain containers of str/int/float only; any class or function reference is refused."""

    def find_class(self, module: str, name: str) -> object:
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}: candidate pickles may only "
                                     "hold lists of peptide strings")


def read_candidate_pickle(path: str | Path, models: Sequence[str] = REFERENCE_MODELS,
                          has_truth: bool = True) -> CandidateSet:
    """Load a reference candidate pickle safely (see module doc); item ``i`` is reported as record ``i+1``."""
    path = Path(path)
    try:
        data = _NoGlobalsUnpickler(io.BytesIO(path.read_bytes())).load()
    except (pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise FormatError(path, None, f"not a plain candidate pickle: {exc}") from exc
    if not isinstance(data, list):
        raise FormatError(path, None, f"expected a list of candidate lists, got {type(data).__name__}")
    width = len(models) + int(has_truth)
    rows, truths = [], []
    for number, item in enumerate(data, start=1):
        if not isinstance(item, (list, tuple)) or len(item) != width or not all(
                isinstance(p, str) or p is None for p in item):
            columns = ("true, " if has_truth else "") + ", ".join(models)
            raise FormatError(path, number, f"item {number} should be a list of {width} peptide strings "
                                            f"({columns}), got {item!r:.120}")
        _check_peptides(path, number, item)
        truths.append(item[0] if has_truth else None)
        rows.append(list(item[int(has_truth):]))
    return CandidateSet(list(models), rows, truths if has_truth else None)


def read_casanovo_mztab(path: str | Path) -> dict[str, str]:
    """``spectra_ref -> peptide`` of a Casanovo mzTab (v4 mass tags or v5 ProForma), best PSM per spectrum."""
    mztab = require("pyteomics.mztab", extra="peptide")

    path = Path(path)
    try:
        table = mztab.MzTab(str(path), table_format="dict")
        rows = table.spectrum_match_table["rows"]
    except Exception as exc:  # pyteomics raises a mix of types on a broken file
        raise FormatError(path, None, f"not a readable mzTab file: {exc}") from exc
    best: dict[str, tuple[float, str]] = {}
    for number, row in enumerate(rows, start=1):
        peptide = row.get("opt_global_cv_MS:1003169_proforma_peptidoform_sequence") or row.get("sequence")
        ref = row.get("spectra_ref")
        if not peptide or not ref:
            raise FormatError(path, number, f"PSM {number} lacks a sequence or spectra_ref")
        _check_peptides(path, number, [peptide])
        score = float(row.get("search_engine_score[1]") or 0.0)
        if ref not in best or score > best[ref][0]:
            best[ref] = (score, peptide)
    return {ref: peptide for ref, (_, peptide) in best.items()}


def candidates_from_mztabs(paths: Mapping[str, str | Path], spectrum_refs: Sequence[str]) -> CandidateSet:
    """One column per model from Casanovo mzTab files, aligned to ``spectrum_refs`` (missing -> None)."""
    columns = {model: read_casanovo_mztab(p) for model, p in paths.items()}
    rows = [[columns[m].get(ref) for m in columns] for ref in spectrum_refs]
    return CandidateSet(list(columns), rows, None, list(spectrum_refs))


def read_candidate_table(path: str | Path) -> CandidateSet:
    """CSV (``,``) or TSV (``.tsv``/``.txt``): ``spectrum,<model>...[,true]``; empty cells are None."""
    path = Path(path)
    delimiter = "\t" if path.suffix.lower() in (".tsv", ".txt") else ","
    with path.open(newline="") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        header = next(reader, None)
        id_names = ("spectrum", "id", "title", "scan")
        if not header or len(header) < 2 or header[0].strip().lower() not in id_names:
            raise FormatError(path, 1, "header must be 'spectrum,<model 1>,...[,true]' (first: the id)")
        names = [h.strip() for h in header[1:]]
        truth_col = next((k for k, n in enumerate(names) if n.lower() in ("true", "truth", "label")), None)
        models = [n for k, n in enumerate(names) if k != truth_col]
        ids, rows, truths = [], [], []
        for number, record in enumerate(reader, start=2):
            if not record or not any(c.strip() for c in record):
                continue
            if len(record) != len(header):
                raise FormatError(path, number, f"expected {len(header)} fields ({', '.join(header)}), "
                                                f"got {len(record)}")
            cells = [c.strip() or None for c in record[1:]]
            _check_peptides(path, number, cells)
            ids.append(record[0].strip())
            truths.append(cells[truth_col] if truth_col is not None else None)
            rows.append([c for k, c in enumerate(cells) if k != truth_col])
    return CandidateSet(models, rows, truths if truth_col is not None else None, ids)
