"""The ranknovo demo without shared data: the embedded real Casanovo spectra, RankNovo beats the base models."""

from __future__ import annotations

import pytest

from polyrank.domains.ranknovo.demo import run_demo
from polyrank.shared.demo import DemoContext


@pytest.mark.slow
def test_demo_on_embedded_real_spectra_beats_every_base_model(tmp_path):
    import random

    import numpy as np
    import torch

    before = (torch.get_rng_state().clone(), np.random.get_state()[1].copy(), random.getstate())
    section = run_demo(DemoContext(tmp_path, data_dir=None))
    # the demo trains through build_trainer (seed_everything) but must hand the caller's RNG state back
    assert torch.equal(before[0], torch.get_rng_state()) and np.array_equal(before[1], np.random.get_state()[1])
    assert before[2] == random.getstate()
    assert "real spectra" in section.summary and "embedded" in section.summary
    rows = {row[0]: row for row in section.tables[0].rows}
    best_base = max(row[-1] for name, row in rows.items() if name.startswith("sim-"))
    assert rows["RankNovo (6 models)"][-1] > best_base
    assert rows["oracle (6 models)"][-1] == pytest.approx(1.0)
    assert section.figures and section.figures[0].path.is_file()
