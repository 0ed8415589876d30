"""Every YAML under configs/ parses strictly and instantiates (training configs via LightningCLI with
run=False, paper rows via the reproduce schema), so configs cannot drift from the code."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

CONFIGS = sorted((Path(__file__).parents[1] / "configs").rglob("*.yaml"))


def _is_reproduction(path: Path) -> bool:
    return "reproduction" in (yaml.safe_load(path.read_text()) or {})


@pytest.mark.parametrize("path", CONFIGS, ids=[str(p.relative_to(p.parents[1])) for p in CONFIGS])
def test_config_parses_and_instantiates(path, tmp_path):
    if _is_reproduction(path):
        from polyrank.shared.reproduce import Reproduction, _parse

        cfg = _parse(path)
        assert isinstance(cfg.reproduction, Reproduction)
        text = path.read_text()
        header = "\n".join(line for line in text.splitlines() if line.startswith("#"))
        assert text.startswith("#"), f"{path} needs a comment header (paper, table, row)"
        if cfg.expected:  # every figure cites where it comes from, never from memory
            assert any(src in header for src in ("Table", "README", "Papers-with-Code")), \
                f"{path}: the header must cite the source of its expected figures (table and row, README, listing)"
            assert "unverified" not in header.lower(), f"{path}: an unverified figure must be 'unknown', not expected"
        else:
            assert "unknown" in header.lower(), f"{path} states no expected figure and does not say 'unknown'"
        return
    from lightning.pytorch import LightningModule

    from polyrank.shared.cli import lightning_cli

    cli = lightning_cli(["--config", str(path), "--trainer.default_root_dir", str(tmp_path)], run=False)
    assert isinstance(cli.model, LightningModule)
