"""revisitop AP/mAP/mP@k against hand-computed cases."""

import math

import numpy as np
import pytest

from polyrank.domains.superglobal.metrics import average_precision, compute_map, precision_at, relabel, revisitop_map


def test_ap_trapezoid_by_hand():
    # positives at 0-based ranks 0 and 2 of 2 positives: ((1+1)/2 + (1/2+2/3)/2) / 2
    assert average_precision([10, 11, 12], positives=[10, 12]) == pytest.approx((1 + (0.5 + 2 / 3) / 2) / 2)


def test_junk_before_a_positive_is_removed():
    assert average_precision([7, 3], positives=[3], junk=[7]) == pytest.approx(1.0)
    # junk after the positive changes nothing; a negative before it does
    assert average_precision([3, 7], positives=[3], junk=[7]) == pytest.approx(1.0)
    assert average_precision([5, 3], positives=[3]) == pytest.approx((0 + 0.5) / 2)  # P0 = 0/1, P1 = 1/2


def test_unretrieved_positive_counts_in_the_denominator():
    assert average_precision([1, 2], positives=[1, 9]) == pytest.approx(0.5)


def test_empty_positive_set_is_skipped_in_the_mean():
    ranks = np.array([[0, 1, 2], [0, 1, 2]])
    gnd = [{"ok": np.array([0]), "junk": np.array([], int)}, {"ok": np.array([], int), "junk": np.array([], int)}]
    res = compute_map(ranks, gnd)
    assert math.isnan(res.aps[1]) and res.map == pytest.approx(100.0)


def test_easy_medium_hard_relabelling():
    gnd = [{"easy": [0], "hard": [1], "junk": [2]}]
    e, m, h = (relabel(gnd, p)[0] for p in ("easy", "medium", "hard"))
    assert set(e["ok"]) == {0} and set(e["junk"]) == {1, 2}
    assert set(m["ok"]) == {0, 1} and set(m["junk"]) == {2}
    assert set(h["ok"]) == {1} and set(h["junk"]) == {0, 2}
    # ranking hard first: easy AP = 1 (hard is junk), hard AP = 1, medium AP = 1
    out = revisitop_map(np.array([[1, 0, 3, 2]]), gnd)
    assert out["easy"].map == pytest.approx(100) and out["hard"].map == pytest.approx(100)
    out = revisitop_map(np.array([[3, 0, 1, 2]]), gnd)  # a negative first
    assert out["hard"].map == pytest.approx(100 * (0 + 0.5) / 2)  # easy 0 is junk for Hard: hard at rank 1
    assert out["medium"].map == pytest.approx(100 * ((0 + 0.5) / 2 + (0.5 + 2 / 3) / 2) / 2)


def test_empty_hard_set_gives_nan_hard_map():
    out = revisitop_map(np.array([[0, 1]]), [{"easy": [0], "hard": [], "junk": []}])
    assert math.isnan(out["hard"].map) and out["easy"].map == pytest.approx(100)


def test_precision_at_k_follows_revisitop():
    # positives at 1-based ranks 1 and 3; k=5 -> kq = min(3, 5) = 3 -> 2/3 ; k=1 -> 1/1
    assert precision_at([4, 8, 5, 9, 7], positives=[4, 5], junk=[], ks=(1, 5)) == pytest.approx([1.0, 2 / 3])
    assert precision_at([4, 8, 5], positives=[5], junk=[8], ks=(1,)) == pytest.approx([0.0])
