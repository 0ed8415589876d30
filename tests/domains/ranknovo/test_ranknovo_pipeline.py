"""Mutation guards: with predictions known by construction, RankNovo must pick the LOWEST predicted PMD.

A model whose PMD "head" is set by hand (``KnownPMD``: a table from (precursor mass, candidate tokens) to a
PMD) makes every prediction known, so these tests fail if ``rerank`` picked the argmax, if ``rank`` sorted
PMD descending (score = +PMD), or if the demo/reproduce pipeline's "RankNovo" column were computed from
anything but the picks.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from polyrank.domains import ranknovo
from polyrank.domains.ranknovo.masses import pmd
from polyrank.domains.ranknovo.metrics import evaluate_predictions
from polyrank.domains.ranknovo.model import RankNovo
from polyrank.domains.ranknovo.msa import CLS, GAP, PAD, encode
from polyrank.domains.ranknovo.peptides import parse_peptide
from polyrank.domains.ranknovo.pipeline import rerank_candidates
from polyrank.domains.ranknovo.reranker import RankNovoReranker
from polyrank.domains.ranknovo.simulate import simulate_spectrum
from polyrank.shared.registry import UntrainedWeightsWarning

TRUTHS = ["PEPTIDEK", "AEFVEVTK", "LGEYGFQNALIVR", "VVAGVANALAHK", "SLHTLFGDELK"]
ARCH = {"dim_model": 16, "n_head": 2, "dim_feedforward": 16, "n_layers": 1, "dropout": 0.0}


def _key(mass: float, ids) -> tuple:
    return round(float(mass), 2), tuple(int(i) for i in ids if i not in (CLS, PAD, GAP))


class KnownPMD(RankNovo):
    """RankNovo whose predicted PMD is read from ``table`` (the network still runs, so masking is real)."""

    def __init__(self, table: dict[tuple, float]) -> None:
        super().__init__(**ARCH)
        self.table = table

    def forward(self, spectra, precursors, tokens):
        out = super().forward(spectra, precursors, tokens)
        known = out["pmd"].clone()
        for b in range(tokens.shape[0]):
            for n in range(tokens.shape[1]):
                if out["row_mask"][b, n]:
                    known[b, n] = self.table[_key(precursors[b, 0], tokens[b, n].tolist())]
        return {**out, "pmd": known}


def _setup(values=None, truths=TRUTHS):
    """Spectra, candidate rows and a KnownPMD reranker (``values``: PMD per row; default the true PMD)."""
    rng = np.random.default_rng(5)
    spectra = [simulate_spectrum(t, 2, rng) for t in truths]
    rows = [[t[::-1], t, t[:-2] + t[-1] + t[-2], "G" + t[1:], t[2:]] for t in truths]  # the truth is column 1
    table = {}
    for b, (s, row) in enumerate(zip(spectra, rows)):
        for k, c in enumerate(row):
            value = pmd(c, truths[b]) if values is None else values[b][k]
            table[_key(torch.tensor(s.precursor_mass, dtype=torch.float32), encode(parse_peptide(c)))] = value
    model = KnownPMD(table)
    return spectra, rows, RankNovoReranker(model, {**ARCH, "mass_table": "reference"})


def test_rerank_picks_the_argmin_of_the_predicted_pmd():
    values = np.random.default_rng(0).permutation(25).reshape(5, 5).astype(float)
    spectra, rows, reranker = _setup(values)
    results = reranker.rerank(spectra, rows)
    for b, result in enumerate(results):
        np.testing.assert_allclose(result.pmd, values[b])
        assert result.pick_index == int(np.argmin(values[b])) and result.pick == rows[b][result.pick_index]
    via_api = ranknovo.rerank(spectra, rows, reranker=reranker)
    assert [r.pick_index for r in via_api] == [r.pick_index for r in results]


def test_rank_puts_the_lowest_predicted_pmd_first():
    values = np.random.default_rng(1).permutation(25).reshape(5, 5).astype(float)
    spectra, rows, reranker = _setup(values)
    for b in range(len(spectra)):
        ranked = ranknovo.rank(spectra[b], [(f"c{k}", c) for k, c in enumerate(rows[b])], reranker=reranker)
        assert [r.candidate_id for r in ranked] == [f"c{k}" for k in np.argsort(values[b], kind="stable")]
        assert [r.score for r in ranked] == sorted((-values[b]).tolist(), reverse=True)
        top2 = ranknovo.rank(spectra[b], rows[b], top_k=2, reranker=reranker)
        assert [r.candidate_id for r in top2] == [str(k) for k in np.argsort(values[b], kind="stable")[:2]]


def test_pipeline_reranked_column_is_computed_from_the_picks_and_reaches_the_oracle():
    spectra, rows, reranker = _setup()  # predicted PMD = true PMD: a perfect reranker
    columns = {f"m{k}": [r[k] for r in rows] for k in range(5)}
    result = rerank_candidates(reranker, spectra, columns, TRUTHS)
    expected_picks = [row[int(np.argmin([pmd(c, t) for c in row]))] for row, t in zip(rows, TRUTHS)]
    assert result.picks == expected_picks == TRUTHS
    assert result.metrics["RankNovo"] == evaluate_predictions(result.picks, TRUTHS)
    assert result.metrics["RankNovo"].peptide_recall == result.metrics["oracle"].peptide_recall == 1.0
    worst = max(columns, key=lambda m: -result.metrics[m].peptide_recall)
    assert result.metrics[worst].peptide_recall < 1.0
    assert result.hit_at_1 == pytest.approx(1.0)
    for sid, scores in result.run.items():  # the run itself ranks the lowest-PMD candidate first
        assert max(scores, key=scores.get).split("|")[1] == "001"


def test_rerank_without_a_model_warns_that_weights_are_untrained():
    spectra, rows, _ = _setup()
    with pytest.warns(UntrainedWeightsWarning, match="checkpoint="):
        ranknovo.rerank(spectra[:1], rows[:1])


def test_pipeline_picks_stay_aligned_with_their_spectra_across_batches():
    """12 spectra in batches of 5: ``rerank_run`` visits ids in string order ("0", "1", "10", "11", "2", ...),
    so a pick read back by position instead of by id, or a batch paired with the wrong spectra, would differ
    from the direct ``rerank`` argmin (the demo's pre-pipeline path)."""
    truths = TRUTHS + ["AGSPVTLK", "NDQKEMHR", "FRYWGASK", "VTLNDQEK", "HFEMKTAR", "WYRFGLSK", "DENQKLMR"]
    values = np.stack([np.random.default_rng(10 + b).permutation(5) for b in range(len(truths))]).astype(float)
    spectra, rows, reranker = _setup(values, truths)
    reranker.batch_size = 5
    columns = {f"m{k}": [r[k] for r in rows] for k in range(5)}
    result = rerank_candidates(reranker, spectra, columns, truths)
    direct = [r.pick for r in reranker.rerank(spectra, rows)]
    assert result.picks == direct == [row[int(np.argmin(v))] for row, v in zip(rows, values)]
    assert len(set(result.picks)) == len(truths)  # every spectrum got its own row's candidate
