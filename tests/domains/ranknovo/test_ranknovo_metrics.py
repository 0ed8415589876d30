"""Casanovo's AA precision / recall and peptide recall on hand-computed cases."""

import pytest

from polyrank.domains.ranknovo.metrics import aa_match, evaluate_columns, evaluate_predictions
from polyrank.domains.ranknovo.peptides import REFERENCE_MASSES, parse_peptide


def _match(pred, true):
    return aa_match(parse_peptide(pred) if pred else pred, parse_peptide(true), REFERENCE_MASSES)


def test_exact_and_isobaric_matches():
    flags, whole = _match("PEPTIDE", "PEPTLDE")
    assert whole and flags.all()
    flags, whole = _match("PEPKR", "PEPQR")  # K/Q differ by 0.036 Da < 0.1 Da: counted as a match
    assert whole


def test_transposition_matches_prefix_and_suffix_only():
    # AG vs GA in the middle: prefix P,E match; cumulative masses re-align after the swap, so S,K match
    flags, whole = _match("PEAGSK", "PEGASK")
    assert flags.tolist() == [True, True, False, False, True, True] and not whole


def test_gg_for_n_hand_computed():
    flags, whole = _match("PEGGK", "PENK")  # lengths 5 vs 4; P,E prefix; K suffix; GG/N do not match
    assert not whole and flags.sum() == 3


def test_metrics_and_none_or_empty_prediction():
    preds = ["PEPTIDE", "PEAGSK", None, ""]
    truths = ["PEPTLDE", "PEGASK", "PEPK", "AAK"]
    m = evaluate_predictions(preds, truths)
    # matched AAs: 7 + 4 + 0 + 0 = 11; predicted AAs 7 + 6 = 13; true AAs 7 + 6 + 4 + 3 = 20
    assert m.aa_precision == pytest.approx(11 / 13)
    assert m.aa_recall == pytest.approx(11 / 20)
    assert m.peptide_recall == pytest.approx(1 / 4)
    ref = evaluate_predictions(preds, truths, precision_denominator="true")  # RankNovo's swapped counts
    assert ref.aa_precision == pytest.approx(11 / 20)


def test_columns_picks_and_oracle():
    truths = ["PEPTIDE", "AAAK"]
    cols = {"m1": ["PEPTIDE", "AAAR"], "m2": ["PETPIDE", "AAAK"]}
    out = evaluate_columns(cols, truths, picks=["PEPTIDE", "AAAR"])
    assert out["m1"].peptide_recall == 0.5 and out["m2"].peptide_recall == 0.5
    assert out["RankNovo"].peptide_recall == 0.5 and out["oracle"].peptide_recall == 1.0


def test_misaligned_inputs_fail_clearly():
    with pytest.raises(ValueError, match="2 predictions but 1"):
        evaluate_predictions(["A", "B"], ["A"])
