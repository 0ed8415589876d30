"""PMD / RMD against hand-computed values and the per-pair reference loops."""

import numpy as np
import pytest

from polyrank.domains.ranknovo.masses import (UNIT_MASS, labels, pmd, pmd_batch, pmd_loop, rmd, rmd_batch,
                                              rmd_loop, unit_masses)
from polyrank.domains.ranknovo.peptides import REFERENCE_MASSES, mass_table

G, N, A, Q, K = (REFERENCE_MASSES[x] for x in "GNAQK")


def test_isoleucine_leucine_is_free():
    assert pmd("PEPTIDE", "PEPTLDE") == 0.0
    assert np.all(rmd("PEPTIDE", "PEPTLDE") == 0.0)


def test_gg_versus_n_hand_computed():
    # q = GG, t = N: substitute G->N (|57.021464 - 114.042927| / u) then delete the second G (1 unit).
    assert pmd("GG", "N") == pytest.approx(1 + (N - G) / UNIT_MASS, abs=1e-12)
    # RMD: prefix G is nearest to prefix N (-57.02 Da); GG coincides with N up to the 1e-6 Da table rounding.
    np.testing.assert_allclose(rmd("GG", "N"), [(G - N) / UNIT_MASS, (2 * G - N) / UNIT_MASS], atol=1e-12)


def test_length_changes_cost_one_unit_each():
    assert pmd("PEPTIDEK", "PEPTIDE") == pytest.approx(1.0)
    assert pmd("PEPTIDE", "PEPTIDEKK") == pytest.approx(2.0)
    assert pmd("", "PEP") == 3.0 and pmd("PEP", "") == 3.0


def test_near_isobaric_substitution_is_cheap_and_signed_rmd():
    assert pmd("PEPK", "PEPQ") == pytest.approx((K - Q) / UNIT_MASS)
    r = rmd("PEPK", "PEPQ")
    assert r[:3].tolist() == [0.0, 0.0, 0.0]
    assert r[3] == pytest.approx((K - Q) / UNIT_MASS)  # signed: candidate minus truth


def test_rmd_ties_keep_the_first_prefix():
    # truth prefixes (units): 1, 3 ; candidate prefix 2 is equidistant -> first prefix (1) -> RMD = +1
    out = rmd_batch([np.array([2.0])], [np.array([1.0, 2.0])])[0]
    assert out.tolist() == [1.0]
    assert rmd_loop(np.array([2.0]), np.array([1.0, 2.0])).tolist() == [1.0]


def test_reference_table_keeps_its_combined_nterm_value():
    assert REFERENCE_MASSES["+43.006-17.027"] == 25.980265
    py = mass_table("pyteomics")
    assert py["+43.006-17.027"] == pytest.approx(py["+43.006"] + py["-17.027"])
    assert abs(py["+43.006-17.027"] - 25.980265) > 5e-4
    assert pmd("+43.006-17.027PEP", "+42.011PEP", table="pyteomics") != pmd("+43.006-17.027PEP", "+42.011PEP")


def test_batched_labels_equal_the_per_pair_loops():
    rng = np.random.default_rng(3)
    queries = [rng.random(rng.integers(0, 25)) * 4 for _ in range(300)]
    targets = [rng.random(rng.integers(0, 25)) * 4 for _ in range(300)]
    loop = [pmd_loop(q, t) for q, t in zip(queries, targets)]
    np.testing.assert_allclose(pmd_batch(queries, targets), loop, rtol=0, atol=1e-12)
    for got, want in zip(rmd_batch(queries, targets), [rmd_loop(q, t) for q, t in zip(queries, targets)]):
        np.testing.assert_array_equal(got, want)


def test_labels_of_a_candidate_list():
    values, residuals = labels(["PEPTIDE", "PEPTLDE", "PEPTIDEK", "EPPTIDE"], "PEPTIDE")
    assert values[0] == 0 and values[1] == 0 and values[2] == pytest.approx(1.0) and values[3] > 0
    assert len(residuals[2]) == 8 and residuals[3][0] != 0
    assert unit_masses("G")[0] == pytest.approx(G / UNIT_MASS)
