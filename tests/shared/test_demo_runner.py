"""The demo runner: a section that scores a query subset against the whole qrels says so in its report."""

from __future__ import annotations

from polyrank.shared import demo
from polyrank.shared.evaluation import evaluate
from polyrank.shared.report import ReportSection

QRELS = {"q1": {"d1": 1}, "q2": {"d2": 1}, "q3": {"d3": 1}, "q4": {"d4": 1}}


def _section(run, qrels):
    def job(ctx):
        value = evaluate(run, qrels, ["nDCG@10"]).mean["nDCG@10"]
        return ReportSection("fake", f"nDCG@10 {value:.2f}")
    return job


def _run(monkeypatch, tmp_path, job):
    monkeypatch.setattr("polyrank.shared.registry.demo_entry_points", lambda: {"fake": job})
    captured = []
    monkeypatch.setattr("polyrank.shared.report.write_html_report",
                        lambda sections, path, title: captured.extend(sections) or path)
    monkeypatch.setattr("polyrank.shared.report.print_tables", lambda sections: None)
    assert demo.run_demos(tmp_path, skip_core=True) == []
    return captured[0]


def test_a_subset_run_against_the_whole_qrels_is_flagged_in_the_report(monkeypatch, tmp_path):
    section = _run(monkeypatch, tmp_path, _section({"q1": {"d1": 1.0}}, QRELS))
    assert section.summary == "nDCG@10 0.25"  # 1 of 4 judged queries: the mean is diluted by the 3 absent ones
    flagged = [n for n in section.notes if n.startswith("WARNING, diluted figure")]
    assert len(flagged) == 1 and "lacks 3 of the 4 judged queries" in flagged[0]


def test_matching_qrels_leave_the_report_clean(monkeypatch, tmp_path):
    section = _run(monkeypatch, tmp_path, _section({"q1": {"d1": 1.0}}, {"q1": QRELS["q1"]}))
    assert section.summary == "nDCG@10 1.00"
    assert not [n for n in section.notes if "WARNING" in n]
