"""SIMULATED candidates and spectra: decoys are wrong but realistic, ladders are right."""

import numpy as np
import pytest

from polyrank.domains.ranknovo.masses import pmd
from polyrank.domains.ranknovo.peptides import parse_peptide, peptide_mass
from polyrank.domains.ranknovo.simulate import (NoisyBaseModel, decoy, fragment_ladders, simulate_spectrum,
                                                tryptic_peptides)


def test_isobaric_decoys_keep_the_mass_and_others_change_the_sequence():
    rng = np.random.default_rng(0)
    truth = parse_peptide("LGEYGFQNALIVR")
    for _ in range(50):
        iso = decoy(truth, rng, "isobaric")
        # I/L, N/GG, Q/AG, K/Q, F/M(ox) keep the mass within 0.05 Da
        assert iso != truth and abs(peptide_mass(iso) - peptide_mass(truth)) < 0.05
        tr = decoy(truth, rng, "transpose")
        assert tr != truth and sorted(tr) == sorted(truth) and pmd(tr, truth) > 0
        sub = decoy(truth, rng, "substitute")
        assert sub != truth and len(sub) == len(truth)
    with pytest.raises(ValueError, match="unknown decoy kind"):
        decoy(truth, rng, "shuffle")


def test_noisy_base_model_accuracy():
    rng = np.random.default_rng(1)
    model = NoisyBaseModel("m", 0.7)
    hits = np.mean([model.predict("PEPTIDEK", rng) == parse_peptide("PEPTIDEK") for _ in range(2000)])
    assert 0.67 < hits < 0.73


def test_fragment_ladders_hand_computed():
    ladders = fragment_ladders("GAK")  # b1 = G + p, b2 = GA + p; y1 = K + H2O + p, y2 = AK + H2O + p
    np.testing.assert_allclose(ladders["b"], [57.021464 + 1.007276, 128.058578 + 1.007276], atol=1e-5)
    np.testing.assert_allclose(ladders["y"], [128.094963 + 19.017841, 199.132077 + 19.017841], atol=1e-5)
    acetyl = fragment_ladders("+42.011GAK")
    np.testing.assert_allclose(acetyl["b"], ladders["b"] + 42.010565, atol=1e-6)
    np.testing.assert_allclose(fragment_ladders("GAK", 2)["y"], (ladders["y"] + 1.007276) / 2, atol=1e-5)


def test_simulated_spectrum_contains_its_ladder():
    rng = np.random.default_rng(2)
    s = simulate_spectrum("PEPTIDEK", 2, rng, missing=0.0, n_noise=5)
    assert s.precursor_mass == pytest.approx(peptide_mass(parse_peptide("PEPTIDEK")), abs=1e-3)
    for mz in np.concatenate(list(fragment_ladders("PEPTIDEK").values())):
        assert np.min(np.abs(s.mz - mz)) < 0.05


def test_tryptic_digest():
    peptides = tryptic_peptides(["MAAAAAAAKGGGGGGGRPCCCCCCCK"], min_length=7)
    assert "AAAAAAAK" not in peptides and "MAAAAAAAK" in peptides
    # R before P is not cleaved; C is written carbamidomethylated
    assert "GGGGGGGRP" + "C+57.021" * 7 + "K" in peptides
