"""``polyrank reproduce configs/ranknovo/*.yaml``: rerank a benchmark's candidates and score the picks.

:class:`RankNovoBenchmark` needs the test MGF (e.g. RankNovo's ``bacillus_V1.mgf``), the aligned candidate
pickle (``bacillus_6m_V1.pkl``: ``[true, 6 base models]`` per spectrum) and a checkpoint, then reports
Casanovo's AA precision and peptide recall of the reranked picks (and of each base model, as extra keys).

The checkpoint is the authors' released ``model_0.660.ckpt`` (``RankNovo/run.sh``; reference layout,
converted exactly by ``checkpoints.py``), or a polyrank RankNovo (a directory from ``RankNovoReranker.save``
or a ``.ckpt`` of ``RankNovoModule``); ``load("ranknovo.base", checkpoint=...)`` tells them apart. The
candidates go through the shared flow (``pipeline.rerank_candidates``: a Run per spectrum, ``rerank_run``,
``evaluate``); the reported figures are Casanovo's metrics of the picks (``metrics.py``).
"""

from __future__ import annotations

from pathlib import Path

from polyrank.shared.reproduce import Reproduction, data_dir


def _resolve(path: str) -> Path:
    p = Path(path)
    root = data_dir()
    return p if p.is_absolute() or root is None else root / p


class RankNovoBenchmark(Reproduction):
    """One benchmark row: candidates of ``models`` for the spectra of ``mgf``, reranked by ``checkpoint``."""

    def __init__(self, mgf: str, candidates: str, checkpoint: str, models: list[str] | None = None,
                 device: str = "cpu", batch_size: int = 64, precision_denominator: str = "predicted") -> None:
        self.mgf, self.candidates, self.checkpoint = _resolve(mgf), _resolve(candidates), _resolve(checkpoint)
        self.models = models
        self.device, self.batch_size = device, batch_size
        self.precision_denominator = precision_denominator

    def missing(self) -> list[str]:
        labels = {"mgf": self.mgf, "candidates": self.candidates, "checkpoint": self.checkpoint}
        return [f"{name} {path} (see datasets/nine_species/README.md)" for name, path in labels.items()
                if not path.exists()]

    def run(self) -> dict[str, float]:
        from polyrank.domains.ranknovo.candidates import read_candidate_pickle
        from polyrank.domains.ranknovo.pipeline import rerank_candidates
        from polyrank.domains.ranknovo.spectra import read_mgf
        from polyrank.shared.errors import PolyrankError
        from polyrank.shared.registry import load

        spectra = read_mgf(self.mgf).spectra
        cands = read_candidate_pickle(self.candidates)
        if self.models:
            cands = cands.select(self.models)
        if len(spectra) != len(cands.rows):
            raise PolyrankError(f"{self.mgf} has {len(spectra)} readable spectra but {self.candidates} has "
                                f"{len(cands.rows)} candidate lists; they must align one to one")
        reranker = load("ranknovo.base", checkpoint=str(self.checkpoint), device=self.device,
                        batch_size=self.batch_size)
        columns = {m: cands.column(m) for m in cands.models}
        result = rerank_candidates(reranker, spectra, columns, cands.truths,
                                   precision_denominator=self.precision_denominator)
        best = result.metrics["RankNovo"]
        out = {"aa_precision": best.aa_precision, "peptide_recall": best.peptide_recall}
        if result.hit_at_1 is not None:
            out["P@1"] = result.hit_at_1
        for name, m in result.metrics.items():
            if name != "RankNovo":
                out[f"{name}/aa_precision"], out[f"{name}/peptide_recall"] = m.aa_precision, m.peptide_recall
        return out
