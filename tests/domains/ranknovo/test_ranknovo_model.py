"""The network and the reranker: no positional bias, padded rows never win, save/load round trip."""

import numpy as np
import pytest
import torch

from polyrank.domains.ranknovo.dataset import collate, simulated_examples
from polyrank.domains.ranknovo.model import RankNovo
from polyrank.domains.ranknovo.reranker import RankNovoReranker
from polyrank.domains.ranknovo.simulate import simulate_spectrum
from polyrank.shared.errors import PolyrankError
from polyrank.shared.registry import list_rerankers, load

PEPTIDES = ["PEPTIDEK", "LGEYGFQNALIVR", "AEFVEVTK", "SLHTLFGDELCK", "VVAGVANALAHK"]


@pytest.fixture(scope="module")
def batch():
    torch.manual_seed(0)
    return collate(simulated_examples(PEPTIDES, 4, seed=1))


def _tiny(**kw):
    torch.manual_seed(0)
    return RankNovo(dim_model=32, n_head=2, dim_feedforward=64, n_layers=2, dropout=0.0, **kw).eval()


def test_permuting_candidate_rows_permutes_predictions(batch):
    model = _tiny()
    with torch.no_grad():
        out = model(batch.spectra, batch.precursors, batch.msa.tokens)
        perm = torch.tensor([3, 0, 5, 1, 4, 2])
        out_p = model(batch.spectra, batch.precursors, batch.msa.tokens[:, perm])
    torch.testing.assert_close(out_p["pmd"], out["pmd"][:, perm], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out_p["rmd"], out["rmd"][:, perm], atol=1e-5, rtol=1e-5)


def test_padded_rows_never_win_and_do_not_change_real_rows(batch):
    model = _tiny()
    with torch.no_grad():
        model.global_head.bias.fill_(-1e6)  # every real row predicts a hugely negative PMD
        base = model(batch.spectra, batch.precursors, batch.msa.tokens)
        extra = torch.full_like(batch.msa.tokens[:, :2], 1)  # two all-<pad> rows
        padded = model(batch.spectra, batch.precursors, torch.cat([extra, batch.msa.tokens], dim=1))
    assert torch.isinf(padded["pmd"][:, :2]).all() and (padded["pmd"].argmin(dim=1) >= 2).all()
    torch.testing.assert_close(padded["pmd"][:, 2:], base["pmd"], atol=1e-3, rtol=1e-5)


def test_reranker_masks_missing_candidates_and_works_zero_shot():
    reranker = RankNovoReranker(_tiny(), {"dim_model": 32, "n_head": 2, "dim_feedforward": 64, "n_layers": 2,
                                          "dropout": 0.0})
    rng = np.random.default_rng(0)
    spectra = [simulate_spectrum(p, 2, rng) for p in PEPTIDES[:2]]
    results = reranker.rerank(spectra, [[None, "PEPTIDEK", None], ["AEFVEVTK", "AEFVEVKT"]])
    assert results[0].pick_index == 1 and results[0].pick == "PEPTIDEK"
    assert np.isinf(results[0].pmd[[0, 2]]).all()
    assert results[0].rmd[0] is None and len(results[0].rmd[1]) == 8
    three = reranker.rerank(spectra[:1], [["PEPTIDEK", "PEPTLDEK", "EPPTIDEK"]])  # another number of models
    assert three[0].pmd.shape == (3,) and np.isfinite(three[0].pmd).all()
    ranked = reranker.rank(spectra[1], ["AEFVEVTK", "AEFVEVKT"], explain=True)
    scores = -results[1].pmd
    assert ranked[0].score == pytest.approx(float(scores.max()))
    assert len(ranked[0].explanation["predicted_rmd"]) == 8


def test_registry_and_save_load_round_trip(tmp_path):
    assert {"ranknovo.base", "ranknovo.tiny"} <= set(list_rerankers("ranknovo.*"))
    reranker = load("ranknovo.tiny")
    spectrum = simulate_spectrum("PEPTIDEK", 2, np.random.default_rng(0))
    before = reranker.score_batch([spectrum], [[c for c in _cands()]])[0]
    reranker.save(tmp_path / "saved")
    again = load(tmp_path / "saved")
    np.testing.assert_array_equal(again.score_batch([spectrum], [[c for c in _cands()]])[0], before)


def _cands():
    from polyrank.shared.protocol import as_candidates

    return as_candidates(["PEPTIDEK", "PEPTLDEK", "EPPTIDEK"])


def test_base_size_matches_the_reference_config():
    from polyrank.domains.ranknovo.registry import BASE

    assert (BASE["dim_model"], BASE["n_head"], BASE["dim_feedforward"], BASE["n_layers"]) == (512, 8, 1024, 8)


def test_bf16_autocast_gives_close_scores():
    reranker = load("ranknovo.tiny")
    spectrum = simulate_spectrum("PEPTIDEK", 2, np.random.default_rng(0))
    full = reranker.score_batch([spectrum], [_cands()])[0]
    reranker.bf16 = True
    half = reranker.score_batch([spectrum], [_cands()])[0]
    np.testing.assert_allclose(half, full, atol=0.1)


@pytest.mark.gpu
def test_cuda_matches_cpu():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    spectrum = simulate_spectrum("PEPTIDEK", 2, np.random.default_rng(0))
    cpu = load("ranknovo.tiny").score_batch([spectrum], [_cands()])[0]
    gpu = load("ranknovo.tiny", device="cuda").score_batch([spectrum], [_cands()])[0]
    np.testing.assert_allclose(gpu, cpu, atol=1e-4)


def test_rank_puts_empty_candidates_last_and_explains_the_rest():
    reranker = load("ranknovo.tiny")
    spectrum = simulate_spectrum("PEPTIDEK", 2, np.random.default_rng(0))
    ranked = reranker.rank(spectrum, [("a", "PEPTIDEK"), ("b", ""), ("c", "PEPTLDEK")], explain=True)
    assert ranked[-1].candidate_id == "b" and ranked[-1].explanation is None
    assert all(r.explanation and len(r.explanation["predicted_rmd"]) == 8 for r in ranked[:-1])
    assert all(np.isfinite(r.score) for r in ranked)


def test_a_non_lightning_checkpoint_is_refused_clearly(tmp_path):
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.ckpt")
    with pytest.raises(PolyrankError, match="not a Lightning checkpoint of RankNovoModule"):
        load("ranknovo.tiny", checkpoint=str(tmp_path / "other.ckpt"))


def test_declared_overrides_are_exactly_what_the_builders_accept():
    # guards: ranknovo.base/tiny must declare options (unknown overrides were silently passed on before)
    import inspect

    from polyrank.domains.ranknovo.registry import OPTIONS
    from polyrank.domains.ranknovo.reranker import ARCH_KEYS, RERANKER_KEYS, build_reranker
    from polyrank.shared.registry import options

    wrapper = set(inspect.signature(RankNovoReranker).parameters) - {"model", "config", "registry_name", "device"}
    assert set(RERANKER_KEYS) == wrapper and "seed" in inspect.signature(build_reranker).parameters
    assert set(OPTIONS) == set(ARCH_KEYS) | set(RERANKER_KEYS) | {"seed"}
    for name in ("ranknovo.base", "ranknovo.tiny"):
        assert set(options(name)) == set(OPTIONS)
        with pytest.raises(PolyrankError, match="batch_size"):
            load(name, batch_sise=8)
    with pytest.warns(UserWarning):
        reranker = load("ranknovo.tiny", batch_size=2, n_peaks=50, bf16=False, seed=3, dim_model=16, n_head=2,
                        dim_feedforward=16, n_layers=1, dropout=0.0, max_length=30, max_charge=4, use_col=False,
                        mass_table="reference")
    assert (reranker.batch_size, reranker.n_peaks, reranker.model.max_length) == (2, 50, 30)
    assert reranker.model.layers[0].col is None and reranker.model.layers[0].col_norm is None
