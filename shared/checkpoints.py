"""Reading the Lightning checkpoints that ``polyrank fit`` writes, safely, for the registry's builders.

Every domain's builder accepts the ``last.ckpt`` / ``best-*.ckpt`` of its LightningModule
(``load("<domain>.<variant>", checkpoint=".../checkpoints/last.ckpt")``). This module is the one place that
opens them: ``torch.load(weights_only=True)`` (no arbitrary unpickling), clear errors for a missing,
truncated or foreign file, and the module's ``state_dict`` split from its prefix (``model.`` by convention).
"""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polyrank.shared.errors import PolyrankError

CHECKPOINT_SUFFIXES = (".ckpt",)


@dataclass
class LightningCheckpoint:
    """The parts of a Lightning checkpoint a builder needs."""

    path: Path
    state_dict: dict[str, Any]   # the sub-module's weights, prefix removed
    hparams: dict[str, Any]      # the LightningModule's save_hyperparameters()
    epoch: int | None
    global_step: int | None


def is_lightning_checkpoint(path: str | Path | None) -> bool:
    """True for a ``.ckpt`` file (what ``polyrank fit`` writes); False for directories and other files."""
    return path is not None and Path(path).is_file() and Path(path).suffix in CHECKPOINT_SUFFIXES


def read_lightning_checkpoint(path: str | Path, prefix: str = "model.", module: str = "the LightningModule"
                              ) -> LightningCheckpoint:
    """Open ``path`` with ``weights_only=True`` and return the weights under ``prefix`` (prefix removed).

    ``module`` names the expected LightningModule in error messages (e.g. ``"SuperGlobalModule"``).
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise PolyrankError(f"checkpoint {path} does not exist; `polyrank fit` writes them under "
                            "<trainer.default_root_dir>/checkpoints/ (last.ckpt, best-*.ckpt)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, OSError) as exc:
        raise PolyrankError(f"checkpoint {path} cannot be read ({type(exc).__name__}: {str(exc)[:200]}); it is "
                            "truncated, corrupt or not a torch checkpoint. Use another checkpoint of the same run "
                            "(best-*.ckpt beside it) or train again") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise PolyrankError(f"{path} is not a Lightning checkpoint (no 'state_dict'); expected a .ckpt written by "
                            f"`polyrank fit` for {module}")
    state = {k[len(prefix):]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    if not state:
        found = sorted({k.split(".")[0] for k in ckpt["state_dict"]})
        raise PolyrankError(f"{path} holds no weights under {prefix!r} (it has {found}); expected a checkpoint "
                            f"of {module} written by `polyrank fit` for this domain")
    return LightningCheckpoint(path, state, dict(ckpt.get("hyper_parameters") or {}), ckpt.get("epoch"),
                               ckpt.get("global_step"))
