"""Helpers the Ray tests ship to their actors (importable on the workers through PYTHONPATH): small runs of
each domain and rerankers that fail on purpose."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from polyrank.shared.protocol import Reranker


def domain_run(domain: str, folder: Path, n_queries: int = 5, n_docs: int = 6, seed: int = 0):
    """``(run, queries, corpus)`` for ``domain``'s tiny reranker: ``n_queries`` x ``n_docs`` first-stage pairs."""
    rng = np.random.default_rng(seed)
    if domain == "superglobal":
        from PIL import Image

        def image(name: str, h: int) -> str:
            path = folder / f"{name}.png"
            Image.fromarray(rng.integers(0, 255, (h, 72, 3), dtype=np.uint8)).save(path)
            return str(path)

        queries = {f"q{i}": image(f"q{i}", 64 + 4 * i) for i in range(n_queries)}
        corpus = {f"d{j}": image(f"d{j}", 60 + 8 * j) for j in range(n_docs)}
    elif domain == "mtm":
        sentences = ["The moon landing was staged.", "Experts disagree.", "Vaccines do not cause autism.",
                     "Many studies show it.", "Water boils at 100 degrees.", "The claim is false."]
        queries = {f"q{i}": f"claim {i}: the moon landing was faked by {i} people" for i in range(n_queries)}
        corpus = {f"d{j}": [sentences[(j + k) % len(sentences)] for k in range(1 + j % 3)] for j in range(n_docs)}
    elif domain == "ranknovo":
        from polyrank.domains.ranknovo.spectra import Spectrum

        queries = {}
        for i in range(n_queries):
            mz = np.sort(rng.uniform(100, 1200, 30 + i))
            queries[f"q{i}"] = Spectrum(mz=mz, intensity=rng.uniform(0.1, 1.0, len(mz)), precursor_mz=523.77,
                                        charge=2)
        peptides = ["PEPTIDEK", "PEPTLDEK", "PEPTIDKE", "AEPTIDEK", "PEPTIDER", "PGPTIDEK"]
        corpus = {f"d{j}": peptides[j % len(peptides)] for j in range(n_docs)}
    else:
        texts = ["Water boils at 100 degrees Celsius at sea level.", "The moon orbits the earth.",
                 "At altitude water boils at a lower temperature.", "Peptides are short chains of amino acids.",
                 "Landmarks in Oxford include the Radcliffe Camera.", "Fact-checkers verify claims."]
        queries = {f"q{i}": f"question {i} about boiling water and the moon" for i in range(n_queries)}
        corpus = {f"d{j}": texts[j % len(texts)] for j in range(n_docs)}
    run = {q: {d: float(rng.normal()) for d in corpus} for q in queries}
    return run, queries, corpus


class LengthReranker(Reranker):
    """Score = length of the candidate's text; with ``die_marker``, the first call in any process kills it."""

    def __init__(self, die_marker: str | None = None, fail: bool = False, always_die: bool = False) -> None:
        self.die_marker, self.fail, self.always_die = die_marker, fail, always_die

    def score(self, query, candidates):
        if self.fail:
            raise ValueError("LengthReranker was told to fail")
        if self.always_die:
            os._exit(1)
        if self.die_marker and not Path(self.die_marker).exists():
            Path(self.die_marker).write_text(str(os.getpid()))
            os._exit(1)  # the actor's process dies mid-batch, as a crash or an OOM kill would
        return np.array([len(str(c.content)) + 0.01 * len(str(query)) for c in candidates], dtype=np.float64)


def build_length_reranker(die_marker: str | None = None, fail: bool = False, always_die: bool = False
                          ) -> LengthReranker:
    return LengthReranker(die_marker, fail, always_die)
