"""Training under faults: a fit killed mid-run (SIGKILL) or mid-checkpoint-write (SIGXFSZ) resumes with
``ckpt_path="last"`` to the same weights, bit for bit, as an uninterrupted run with the same seed."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch

from tiny_lightning import fit_tiny

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="needs POSIX signals and rlimits")

HELPERS = Path(__file__).parents[1] / "helpers"
EPOCHS, STEPS_PER_EPOCH = 6, 6  # TinyData: 48 training rows in shuffled batches of 8

# The child: the same seeded fit as ``fit_tiny``, slowed per step; with kill_at >= 0 it lowers its file-size
# limit just before the epoch-``kill_at`` checkpoint is written, so the kernel kills it (SIGXFSZ) mid-write.
CHILD = """
import resource, signal, sys
from pathlib import Path
import lightning as L, torch
sys.path.insert(0, sys.argv[1])
from tiny_lightning import fit_tiny
root, epochs, delay, threads, kill_at = sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]), \
    int(sys.argv[6])
torch.set_num_threads(threads)

class KillDuringSave(L.Callback):  # runs before the checkpoint callbacks, which Lightning always calls last
    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch == kill_at:
            limit = (Path(root) / "checkpoints" / "last.ckpt").stat().st_size // 2
            signal.signal(signal.SIGXFSZ, signal.SIG_DFL)  # Python ignores it; the default action kills
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
            print("LIMIT", limit, flush=True)

fit_tiny(root, epochs, step_delay=delay, callbacks=[KillDuringSave()])
"""


def _child(root: Path, epochs: int, delay: float, kill_at: int = -1) -> subprocess.Popen:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    args = [sys.executable, "-c", CHILD, str(HELPERS), str(root), str(epochs), str(delay),
            str(torch.get_num_threads()), str(kill_at)]
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _saved(last: Path) -> dict | None:
    try:
        return torch.load(last, weights_only=True)
    except FileNotFoundError:
        return None


def _wait_for_epoch(proc: subprocess.Popen, last: Path, epoch: int, timeout: float = 90.0) -> dict | None:
    """Poll ``last`` until it holds ``epoch`` or later (or the child ends); returns what it holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        state = _saved(last)  # atomic replace: whenever the file is there it is complete
        if state is not None and state["epoch"] >= epoch:
            return state
        time.sleep(0.01)
    return _saved(last)


class StepCounter(L.Callback):
    def __init__(self) -> None:
        self.steps = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.steps += 1


def _assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), f"parameter {name} differs from the uninterrupted run"


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> dict[int, torch.nn.Module]:
    """Uninterrupted runs of 3 and of EPOCHS epochs."""
    root = tmp_path_factory.mktemp("straight")
    return {n: fit_tiny(root / str(n), n)[1] for n in (3, EPOCHS)}


def _kill_and_resume(root: Path, straight: dict[int, torch.nn.Module], extra_delay: float = 0.0) -> tuple[int, int]:
    """SIGKILL a child fit once it has saved epoch >= 1 (plus ``extra_delay``), resume in-process, compare.

    Returns (epoch held by last.ckpt at the kill, the child's return code)."""
    last = root / "checkpoints" / "last.ckpt"
    proc = _child(root, EPOCHS, delay=0.05)
    try:
        state = _wait_for_epoch(proc, last, 1)
        time.sleep(extra_delay)
        proc.send_signal(signal.SIGKILL)
    finally:
        _, err = proc.communicate(timeout=60)
    assert state is not None, f"the child wrote no checkpoint; its stderr ends:\n{err[-2000:]}"
    state = _saved(last)
    counter = StepCounter()
    _, resumed = fit_tiny(root, EPOCHS, ckpt_path="last", callbacks=[counter])
    assert counter.steps == (EPOCHS - 1 - state["epoch"]) * STEPS_PER_EPOCH, "resume did not continue from last.ckpt"
    _assert_same_weights(straight[EPOCHS], resumed)
    return state["epoch"], proc.returncode


def test_sigkilled_fit_resumes_from_last_to_the_uninterrupted_weights(tmp_path, straight):
    epoch, code = _kill_and_resume(tmp_path, straight)
    assert code == -signal.SIGKILL, "the child finished before the kill: the test did not interrupt it"
    assert 1 <= epoch < EPOCHS - 1
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == \
        EPOCHS * STEPS_PER_EPOCH


def test_kill_mid_checkpoint_write_keeps_the_previous_last_ckpt(tmp_path, straight):
    folder = tmp_path / "checkpoints"
    proc = _child(tmp_path, 3, delay=0.0, kill_at=1)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGXFSZ, f"the child was not killed mid-write; stderr ends:\n{err[-2000:]}"
    limit = int(out.split("LIMIT")[1].split()[0])
    partial = list(folder.glob(".last.ckpt.*.tmp"))
    assert [p.stat().st_size for p in partial] == [limit], "the kill did not land inside the checkpoint write"
    state = torch.load(folder / "last.ckpt", weights_only=True)  # intact, and still the epoch-0 one
    assert (state["epoch"], state["global_step"]) == (0, STEPS_PER_EPOCH)
    _, resumed = fit_tiny(tmp_path, 3, ckpt_path="last")
    _assert_same_weights(straight[3], resumed)


@pytest.mark.slow
@pytest.mark.parametrize("trial", range(10))
def test_repeated_random_kills_resume_exactly(tmp_path, straight, trial):
    """Kills at random points after the first saved epoch (some land during a checkpoint write)."""
    _kill_and_resume(tmp_path, straight, extra_delay=random.Random(trial).uniform(0.0, 1.2))
