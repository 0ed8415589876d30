"""The reproduce path end to end on a tiny synthetic benchmark (real checkpoint and data are not offline)."""

import pickle
from pathlib import Path

import numpy as np
import pytest

from polyrank.domains.ranknovo.registry import ranknovo_tiny
from polyrank.domains.ranknovo.reproduce import RankNovoBenchmark
from polyrank.domains.ranknovo.simulate import simulate_spectrum
from polyrank.shared.errors import MissingResourceError
from polyrank.shared.reproduce import reproduce

CONFIG = Path(__file__).resolve().parents[3] / "configs" / "ranknovo" / "bacillus.yaml"


def _mgf(spectra, path):
    blocks = []
    for i, s in enumerate(spectra):
        peaks = "\n".join(f"{m:.5f} {x:.4f}" for m, x in zip(s.mz, s.intensity))
        head = f"BEGIN IONS\nTITLE={i}\nPEPMASS={s.precursor_mz:.6f}\nCHARGE={s.charge}+\nSEQ={s.peptide}\n"
        blocks.append(f"{head}{peaks}\nEND IONS\n")
    path.write_text("\n".join(blocks))


def test_benchmark_row_runs_and_reports_the_paper_keys(tmp_path):
    rng = np.random.default_rng(0)
    truths = ["PEPTIDEK", "AEFVEVTK", "LGEYGFQNALIVR"]
    _mgf([simulate_spectrum(t, 2, rng) for t in truths], tmp_path / "b.mgf")
    rows = [[t, t, t[::-1], t, t, t[1:], t] for t in truths]
    (tmp_path / "b.pkl").write_bytes(pickle.dumps(rows))
    ranknovo_tiny().save(tmp_path / "ckpt")
    row = RankNovoBenchmark(str(tmp_path / "b.mgf"), str(tmp_path / "b.pkl"), str(tmp_path / "ckpt"))
    assert row.missing() == []
    out = row.run()
    assert {"aa_precision", "peptide_recall", "Casanovo-V1/peptide_recall"} <= out.keys()
    assert "oracle/peptide_recall" in out
    assert out["Casanovo-V1/peptide_recall"] == 1.0 and out["ContraNovo/peptide_recall"] < 1.0
    assert 0.0 <= out["peptide_recall"] <= 1.0


def test_bacillus_config_parses_and_names_what_is_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("POLYRANK_DATA_DIR", str(tmp_path))
    with pytest.raises(MissingResourceError, match="bacillus_V1.mgf"):
        reproduce(CONFIG)
    with pytest.raises(MissingResourceError, match="model_0.660.ckpt"):
        reproduce(CONFIG)
    import yaml

    config = yaml.safe_load(CONFIG.read_text())
    assert config["expected"]["aa_precision"] == 0.874 and config["expected"]["peptide_recall"] == 0.738
    text = CONFIG.read_text()  # the citation: the README results image, with the printed full values
    assert "BEAM-Labs/denovo" in text and "RankNovo/image/README/1727800797052.png" in text
    assert "0.8736841131815039" in text and "0.7383814102263812" in text
