"""Reproduction results: expected figures compared within tolerance; unstated ones shown as 'unknown'."""

from __future__ import annotations

from pathlib import Path

from polyrank.shared.reproduce import ReproductionResult


def test_rows_compare_expected_and_list_measured_figures_the_paper_does_not_state():
    result = ReproductionResult(Path("x.yaml"), "paper", "row", expected={"mAP": 80.0},
                                measured={"mAP": 80.3, "AP": 71.0}, tolerance=0.5)
    rows = result.rows()
    assert rows[0][0] == "mAP" and rows[0][-1] == "yes" and abs(rows[0][3] - 0.3) < 1e-9
    assert rows[1] == ["AP", "unknown", 71.0, "-", "-"]
    assert ReproductionResult(Path("x"), "p", "r", {"mAP": 80.0}, {"mAP": 81.0}, 0.5).rows()[0][-1] == "no"
