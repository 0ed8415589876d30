"""Multi-process training: Lightning DDP over 2 local CPU processes (gloo) from the domains' tiny configs.

Each test runs ``polyrank fit`` in a subprocess (with a timeout): the run finishes, both ranks join, the step
count is that of 2 processes sharing the data, checkpoints are written once (rank 0, no ``-v1`` duplicates, no
leftover temporaries), and ``--ckpt_path last`` resumes under DDP. ~40-70 s per domain on 2 cores: ``slow``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = {"mtm": "configs/mtm/tiny.yaml", "ranknovo": "configs/ranknovo/tiny.yaml",
           "superglobal": "configs/superglobal/tiny.yaml", "text": "configs/text/cross_encoder_tiny.yaml"}
TIMEOUT_S = 420


def _fit(config: str, root: Path, epochs: int, launcher: str, *extra: str) -> str:
    args = ["fit", "--config", str(ROOT / config), "--trainer.accelerator", "cpu", "--trainer.devices", "2",
            "--trainer.default_root_dir", str(root), "--trainer.max_epochs", str(epochs), *extra]
    if launcher == "torchrun":  # the environment torchrun / a SLURM srun sets: RANK, WORLD_SIZE, MASTER_ADDR...
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                   "-m", "polyrank.shared.cli", *args]
    else:  # Lightning launches the second process itself
        command = [sys.executable, "-m", "polyrank.shared.cli", *args]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "POLYRANK_LOG_LEVEL": "INFO"}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    log = done.stdout + done.stderr
    assert done.returncode == 0, f"polyrank fit under DDP failed ({done.returncode}):\n{log[-4000:]}"
    return log


def _checkpoints(root: Path) -> dict[str, dict]:
    folder = root / "checkpoints"
    files = sorted(p.name for p in folder.iterdir())
    assert not [f for f in files if f.endswith(".tmp") or f.startswith(".")], f"temporaries left: {files}"
    assert "last.ckpt" in files and not [f for f in files if "-v" in f], f"checkpoints written twice: {files}"
    assert len([f for f in files if f.startswith("best-")]) <= 1, files
    return {f: torch.load(folder / f, map_location="cpu", weights_only=True) for f in files}


CASES = [(domain, "lightning") for domain in CONFIGS] + [("ranknovo", "torchrun")]


@pytest.mark.slow
@pytest.mark.parametrize("domain,launcher", CASES, ids=[f"{d}-{how}" for d, how in CASES])
def test_ddp_two_cpu_processes_fit_checkpoint_once_and_resume(domain, launcher, tmp_path):
    """Guards: DDP runs that hang or crash, checkpoints written by every rank (``last-v1.ckpt``), a resume that
    restarts from epoch 0 under DDP."""
    root = tmp_path / domain
    log = _fit(CONFIGS[domain], root, 1, launcher)
    assert "MEMBER: 1/2" in log and "MEMBER: 2/2" in log, "both DDP ranks must start"
    first = _checkpoints(root)["last.ckpt"]
    assert first["epoch"] == 0 and first["global_step"] > 0
    if domain == "ranknovo":  # 64 spectra, batch 16: 4 steps alone, 2 per process when 2 processes share them
        assert first["global_step"] == 2
    _fit(CONFIGS[domain], root, 2, launcher, "--ckpt_path", "last")
    resumed = _checkpoints(root)["last.ckpt"]
    assert resumed["epoch"] == 1 and resumed["global_step"] == 2 * first["global_step"]
