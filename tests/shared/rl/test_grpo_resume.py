"""A GRPO recipe fit killed (SIGKILL) mid-run resumes with ``--ckpt_path last`` to the same LoRA weights, bit
for bit, as an uninterrupted run: checkpoints hold the adapters, the optimiser and the RNG state, sampling seeds
come from the global step, and the data order from ``(seed, epoch)``.

Guards: sampling seeded from a counter that is not checkpointed (the resumed run would draw other completions),
a loader shuffle generator re-created at resume (epoch k would repeat epoch 0's order), optimiser state lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from polyrank.shared.cli import main

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
pytest.importorskip("peft")

CONFIG = str(Path(__file__).parents[3] / "configs" / "text" / "prorank_stage1_tiny.yaml")
EPOCHS = 3
SMALL = ["--model.init_args.group_size", "2", "--model.init_args.max_new_tokens", "2",
         "--data.init_args.max_queries", "1", "--data.init_args.positives_per_query", "1",
         "--data.init_args.batch_size", "1", "--trainer.max_epochs", str(EPOCHS)]
STEPS_PER_EPOCH = 2 * 2  # 2 items (1 positive + 1 negative), batch 1, num_iterations 2 optimiser steps each



def dense_rewards(self, batch, completions):
    """A tiny random model almost never answers "0"/"1", so every group would have equal rewards and no gradient;
    this deterministic function of the text varies within groups, so the adapters really train."""
    return torch.tensor([[float(sum(map(ord, text)) % 7) for text in group] for group in completions])


# the child: the same CLI fit with the same rewards, each training step slowed so that the kill lands mid-run
CHILD = """
import sys, time
import torch
torch.set_num_threads(int(sys.argv[2]))
sys.path.insert(0, sys.argv[3])
import polyrank.shared.rl.grpo as grpo
from polyrank.domains.text.training.grpo_recipes import ProRankStage1Module
from test_grpo_resume import dense_rewards
ProRankStage1Module.rewards = dense_rewards
step = grpo.GRPOModule.training_step
def slow(self, batch, batch_idx):
    time.sleep(float(sys.argv[1]))
    return step(self, batch, batch_idx)
grpo.GRPOModule.training_step = slow
from polyrank.shared.cli import main
sys.exit(main(sys.argv[4:]))
"""


def _args(root: Path) -> list[str]:
    return ["fit", "--config", CONFIG, "--trainer.default_root_dir", str(root), *SMALL]


def _lora(path: Path) -> dict[str, torch.Tensor]:
    state = torch.load(path, weights_only=True)
    assert state["state_dict"] and all("lora_" in k for k in state["state_dict"])
    return state["state_dict"]


@pytest.mark.slow  # three CLI fits, one in a child process: ~70 s on 2 busy cores
def test_killed_grpo_fit_resumes_to_the_uninterrupted_weights(tmp_path, monkeypatch):
    from polyrank.domains.text.training.grpo_recipes import ProRankStage1Module

    monkeypatch.setattr(ProRankStage1Module, "rewards", dense_rewards)
    assert main(_args(tmp_path / "straight")) == 0
    straight = torch.load(tmp_path / "straight" / "checkpoints" / "last.ckpt", weights_only=True)
    assert straight["global_step"] == EPOCHS * STEPS_PER_EPOCH

    root = tmp_path / "killed"
    last = root / "checkpoints" / "last.ckpt"
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, "0.5", str(torch.get_num_threads()),
                             str(Path(__file__).parent), *_args(root)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None and not last.is_file():
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"the child was not killed mid-run; stderr ends:\n{err[-2000:]}"
    held = torch.load(last, weights_only=True)
    assert held["epoch"] < EPOCHS - 1, "the kill came after the last epoch"
    assert main(_args(root) + ["--ckpt_path", "last"]) == 0
    resumed = torch.load(last, weights_only=True)
    assert resumed["global_step"] == straight["global_step"]
    ours, theirs = _lora(last), _lora(tmp_path / "straight" / "checkpoints" / "last.ckpt")
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert torch.equal(ours[key], theirs[key]), f"{key} differs from the uninterrupted run"
    assert any(not torch.equal(v, torch.zeros_like(v)) for k, v in ours.items() if "lora_B" in k)  # it trained
