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

from os import PathLike
from typing import Any

from polyrank.domains.ranknovo.masses import UNIT_MASS, pmd, rmd
from polyrank.domains.ranknovo.peptides import PeptideError, parse_peptide, to_mass_tags, to_proforma

__all__ = ["UNIT_MASS", "PeptideError", "evaluate_columns", "load", "parse_peptide", "pmd", "read_spectra",
           "rank", "rerank", "rmd", "to_mass_tags", "to_proforma"]


def load(name_or_path: str = "ranknovo.tiny", checkpoint: Any = None, device: str | None = None,
         **overrides: Any) -> Any:
    """A registered RankNovo (``ranknovo.base``/``ranknovo.tiny``) or a saved directory.

    ``checkpoint``: a saved directory, the ``last.ckpt`` of ``polyrank fit``, or the authors' checkpoint.
    """
    import polyrank.domains.ranknovo.registry  # noqa: F401  (registers the builders)
    from polyrank.shared.registry import load as registry_load

    return registry_load(name_or_path, checkpoint=checkpoint, device=device, **overrides)


def rank(query: Any, candidates: Any, top_k: int | None = None, reranker: Any = None) -> list:
    """The shared ``Reranker.rank`` of ``reranker`` (a reranker, a name or a saved directory; None: tiny, warns)."""
    return _reranker(reranker).rank(query, candidates, top_k=top_k)


def rerank(spectra: Any, candidates: Any, reranker: Any = None) -> list:
    """``rerank(spectra, candidates) -> [RerankResult(pick_index, pick, pmd, rmd)]``.

    ``reranker``: a loaded reranker, a registered name or a saved directory. Without one the untrained
    ``ranknovo.tiny`` is used and an ``UntrainedWeightsWarning`` says its picks are not meaningful.
    """
    return _reranker(reranker).rerank(spectra, candidates)


def _reranker(reranker: Any) -> Any:
    if reranker is None:
        return load("ranknovo.tiny")  # the builder issues UntrainedWeightsWarning (random weights)
    if isinstance(reranker, (str, PathLike)):
        return load(str(reranker))
    return reranker


def read_spectra(path: Any, strict: bool = False) -> Any:
    """MGF / mzML / mzXML spectra (see :mod:`polyrank.domains.ranknovo.spectra`)."""
    from polyrank.domains.ranknovo.spectra import read_spectra as _read

    return _read(path, strict)


def evaluate_columns(*args: Any, **kwargs: Any) -> Any:
    """Casanovo metrics per base model, for the reranked picks and the oracle (see ``metrics``)."""
    from polyrank.domains.ranknovo.metrics import evaluate_columns as _evaluate

    return _evaluate(*args, **kwargs)
