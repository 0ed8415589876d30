"""``polyrank reproduce <config>``: run one row of a paper's table and print expected vs measured.

A reproduction config is a strict YAML file::

    # <paper citation>, Table N, row "...": <what is measured>
    paper: "Shao et al., ICCV 2023 (SuperGlobal)"
    table: "Table 2"
    row: "R50 + SuperGlobal, ROxford5k Medium"
    expected: {mAP_medium: 78.1}   # each figure cited in the header; {} when unknown (the header says so)
    tolerance: 0.5            # absolute, in the metric's unit
    reproduction:             # a Reproduction subclass, built by jsonargparse (unknown keys are errors)
      class_path: polyrank.domains.superglobal.reproduce.SuperGlobalRow
      init_args: {...}

A domain's :class:`Reproduction` says what it needs (``missing()``) and runs (``run()``).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polyrank.shared.errors import MissingResourceError, PolyrankError


def data_dir(default: str | Path | None = None) -> Path | None:
    """The shared data folder: ``$POLYRANK_DATA_DIR``, else ``../shared/data`` beside the repo, else None."""
    env = os.environ.get("POLYRANK_DATA_DIR")
    if env:
        return Path(env)
    if default is not None:
        return Path(default)
    candidate = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    return candidate if candidate.is_dir() else None


class Reproduction(ABC):
    """One paper row: what it needs and how to measure it."""

    @abstractmethod
    def missing(self) -> list[str]:
        """Human-readable descriptions of absent data/weights (empty when the row can run)."""

    @abstractmethod
    def run(self) -> dict[str, float]:
        """Measure the row's figures, keyed as in the config's ``expected``."""


@dataclass
class ReproductionResult:
    config: Path
    paper: str
    row: str
    expected: dict[str, float]
    measured: dict[str, float]
    tolerance: float

    def rows(self) -> list[list[Any]]:
        out = []
        for key, exp in self.expected.items():
            got = self.measured.get(key)
            ok = got is not None and abs(got - exp) <= self.tolerance
            out.append([key, exp, "-" if got is None else got, "-" if got is None else got - exp,
                        "yes" if ok else "no"])
        for key, got in self.measured.items():  # figures the paper row does not state (expected 'unknown')
            if key not in self.expected:
                out.append([key, "unknown", got, "-", "-"])
        return out


def _parse(config: Path) -> Any:
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--paper", type=str, required=True)
    parser.add_argument("--table", type=str, default="")
    parser.add_argument("--row", type=str, required=True)
    parser.add_argument("--expected", type=dict[str, float], required=True)
    parser.add_argument("--tolerance", type=float, default=0.5)
    parser.add_argument("--reproduction", type=Reproduction, required=True)
    try:
        return parser.instantiate_classes(parser.parse_path(str(config)))
    except Exception as exc:
        raise PolyrankError(f"{config}: not a valid reproduction config: {exc}") from exc


def reproduce(config: str | Path) -> ReproductionResult:
    """Run the reproduction described by ``config``; raise :class:`MissingResourceError` listing what is absent."""
    config = Path(config)
    if not config.is_file():
        raise PolyrankError(f"reproduction config {config} does not exist; see configs/<domain>/ for the rows")
    cfg = _parse(config)
    missing = cfg.reproduction.missing()
    if missing:
        raise MissingResourceError(f"{config}: cannot run, missing: " + "; ".join(missing))
    measured = cfg.reproduction.run()
    return ReproductionResult(config, cfg.paper, cfg.row, dict(cfg.expected), measured, cfg.tolerance)
