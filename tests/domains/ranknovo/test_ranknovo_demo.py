"""The ranknovo demo without shared data: generated proteins, simulated spectra, RankNovo beats the base models."""

from __future__ import annotations

import pytest

from polyrank.domains.ranknovo.demo import run_demo
from polyrank.shared.demo import DemoContext


@pytest.mark.slow
def test_demo_on_generated_data_beats_every_base_model(tmp_path):
    section = run_demo(DemoContext(tmp_path, data_dir=None))
    assert "GENERATED" in section.summary
    rows = {row[0]: row for row in section.tables[0].rows}
    best_base = max(row[-1] for name, row in rows.items() if name.startswith("sim-"))
    assert rows["RankNovo (6 models)"][-1] > best_base
    assert rows["oracle (6 models)"][-1] == pytest.approx(1.0)
    assert section.figures and section.figures[0].path.is_file()
