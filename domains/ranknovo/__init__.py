"""RankNovo (Qiu et al., ICML 2025, arXiv 2505.17552): list-wise reranking of de novo peptide candidates.

Given an MS/MS spectrum and the peptides proposed by several de novo models, RankNovo embeds the spectrum,
aligns the candidates as an MSA, and predicts each candidate's PMD (peptide mass deviation from the truth)
and per-residue RMD; the lowest predicted PMD wins.

>>> from polyrank.domains import ranknovo                                   # doctest: +SKIP
>>> reranker = ranknovo.load("ranknovo.tiny")                               # doctest: +SKIP
>>> results = reranker.rerank(spectra, [["PEPTIDEK", "PEPTLDEK"], ...])     # doctest: +SKIP
>>> results[0].pick, results[0].pmd, results[0].rmd                         # doctest: +SKIP

Everything here is light to import; modules with torch load on first use.
"""

from __future__ import annotations

from typing import Any

from polyrank.domains.ranknovo.masses import UNIT_MASS, pmd, rmd
from polyrank.domains.ranknovo.peptides import PeptideError, parse_peptide, to_mass_tags, to_proforma

__all__ = ["UNIT_MASS", "PeptideError", "evaluate_columns", "load", "parse_peptide", "pmd", "read_spectra",
           "rerank", "rmd", "to_mass_tags", "to_proforma"]


def load(name_or_path: str = "ranknovo.tiny", **overrides: Any) -> Any:
    """A registered RankNovo (``ranknovo.base``/``ranknovo.tiny``) or a saved directory."""
    import polyrank.domains.ranknovo.registry  # noqa: F401  (registers the builders)
    from polyrank.shared.registry import load as registry_load

    return registry_load(name_or_path, **overrides)


def rerank(spectra: Any, candidates: Any, reranker: Any = None) -> list:
    """``rerank(spectra, candidates) -> [RerankResult(pick_index, pick, pmd, rmd)]`` (default: tiny model)."""
    return (reranker or load("ranknovo.tiny")).rerank(spectra, candidates)


def read_spectra(path: Any, strict: bool = False) -> Any:
    """MGF / mzML / mzXML spectra (see :mod:`polyrank.domains.ranknovo.spectra`)."""
    from polyrank.domains.ranknovo.spectra import read_spectra as _read

    return _read(path, strict)


def evaluate_columns(*args: Any, **kwargs: Any) -> Any:
    """Casanovo metrics per base model, for the reranked picks and the oracle (see ``metrics``)."""
    from polyrank.domains.ranknovo.metrics import evaluate_columns as _evaluate

    return _evaluate(*args, **kwargs)
