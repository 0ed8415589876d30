"""``polyrank demo``: every installed domain's demo, plus the core's text pipeline, in one report.

A domain exposes ``run_demo(ctx: DemoContext) -> ReportSection`` through the ``polyrank.demos`` entry
point group. Demos must need no download beyond package installs; they use real data from
``ctx.data_dir`` (``$POLYRANK_DATA_DIR`` or ``../shared/data``) when present and say so when they fall
back to generated data.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from polyrank.shared.evaluation import MissingQueriesWarning
from polyrank.shared.report import ReportSection

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoContext:
    """What a demo gets: where to write, where shared data lives (None when absent), and a seed."""

    out_dir: Path
    data_dir: Path | None
    seed: int = 0
    device: str = "cpu"


def run_demos(out_dir: Path, only: list[str] | None = None, skip_core: bool = False, device: str = "cpu") -> list[str]:
    """Run the demos, print their tables, write ``out_dir/report.html``; return the names that failed."""
    from polyrank.shared.registry import demo_entry_points
    from polyrank.shared.report import print_tables, write_html_report
    from polyrank.shared.reproduce import data_dir

    data = data_dir()
    logger.info("demo data folder: %s", data or "none found (set POLYRANK_DATA_DIR); using embedded data")
    jobs = {} if skip_core else {"core": run_text_pipeline}
    jobs.update(demo_entry_points())
    unknown = sorted(set(only or []) - set(jobs))
    if unknown:
        from polyrank.shared.errors import PolyrankError

        raise PolyrankError(f"unknown demo(s) {unknown}; available: {sorted(jobs)}")
    sections, failed = [], []
    for name, job in jobs.items():
        if only and name not in only:
            continue
        start = time.perf_counter()
        logger.info("demo %s: running", name)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", MissingQueriesWarning)
            try:
                section = job(DemoContext(out_dir / name, data, device=device))
            except Exception as exc:  # one broken demo must not hide the others' results
                logger.exception("demo %s failed", name)
                failed.append(name)
                section = ReportSection(f"{name}: FAILED", notes=[f"{type(exc).__name__}: {exc}"])
        section.notes += _diluted_figures(caught)
        section.notes.append(f"{name} demo ran in {time.perf_counter() - start:.1f} s")
        sections.append(section)
    print_tables(sections)
    report = write_html_report(sections, out_dir / "report.html", title="polyrank demo")
    logger.info("report written to %s", report)
    return failed


def _diluted_figures(caught: list[warnings.WarningMessage]) -> list[str]:
    """Report notes for the evaluations of a section that averaged absent judged queries in as 0 (a run of a query
    subset scored against the whole qrels: its figures are diluted, so the report says so), other warnings re-issued."""
    notes = []
    for w in caught:
        if issubclass(w.category, MissingQueriesWarning):
            logger.warning("%s:%d: %s", w.filename, w.lineno, w.message)
            notes.append(f"WARNING, diluted figure: {w.message} ({Path(w.filename).name}:{w.lineno})")
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return list(dict.fromkeys(notes))


def run_text_pipeline(ctx: DemoContext) -> ReportSection:
    """Core pipeline: all-MiniLM-L6-v2 embeds a corpus into the candidate store; BM25 vs dense; Flat vs HNSW."""
    from polyrank.shared.demo_text import text_pipeline

    return text_pipeline(ctx)
