"""datasets/nine_species/prepare.py: sha256 recorded on first copy and verified later; offline instructions."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

PREPARE = Path(__file__).resolve().parents[3] / "datasets" / "nine_species" / "prepare.py"


@pytest.fixture(scope="module")
def prepare():
    spec = importlib.util.spec_from_file_location("nine_species_prepare", PREPARE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_unknown_sha_is_recorded_then_verified(prepare, tmp_path):
    path = tmp_path / "bacillus_V1.mgf"
    path.write_text("BEGIN IONS\nEND IONS\n")
    first = prepare.verify(path)
    assert prepare.sidecar(path).read_text().split()[0] == first == prepare.sha256_of(path)
    assert prepare.verify(path) == first  # verified against the sidecar
    path.write_text("BEGIN IONS\nEND IONS\ntruncated?")
    with pytest.raises(prepare.ChecksumError, match="does not match"):
        prepare.verify(path)
    with pytest.raises(prepare.ChecksumError, match="recorded in prepare.py"):
        prepare.verify(path, expected="0" * 64)


def test_manual_download_is_linked_and_checked_and_offline_prints_what_goes_where(prepare, tmp_path, capsys):
    download = tmp_path / "download" / "nested"
    download.mkdir(parents=True)
    (download / "bacillus_V1.mgf").write_text("BEGIN IONS\nEND IONS\n")
    out = tmp_path / "nine_species"
    files = {name: prepare.FILES[name] for name in ("bacillus_V1.mgf", "model_0.660.ckpt")}
    assert prepare.prepare(out, download.parent, offline=True, files=files) == 1
    assert (out / "bacillus_V1.mgf").is_symlink() and prepare.sidecar(out / "bacillus_V1.mgf").is_file()
    err = capsys.readouterr().err
    assert f"{prepare.FILES['model_0.660.ckpt'].page}  ->  {out / 'model_0.660.ckpt'}" in err
    assert "bacillus_V1.mgf" not in err.split("place it exactly here:")[1]


def test_only_https_is_used(prepare, tmp_path):
    assert all(r.url.startswith("https://") and r.page.startswith("https://") for r in prepare.FILES.values())
    with pytest.raises(ValueError, match="only https"):
        prepare.download("http://example.org/bacillus_V1.mgf", tmp_path / "x")
