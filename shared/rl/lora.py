"""LoRA adapters on a causal LM through ``peft`` (Hu et al., 2022, "LoRA: Low-Rank Adaptation of Large Language
Models", eq. 3: h = W0 x + B A x, with B zero at the start so the adapted model starts equal to the base).

Only the adapter weights train; the frozen reference of GRPO's KL term is the *same* model with its adapters
disabled (:func:`adapters_disabled`), never a second copy in memory. A LightningModule that owns a LoRA model
mixes in :class:`LoraCheckpointMixin` so that its checkpoints hold only the adapter weights: the base weights
come from the base model's own folder at build time, and resuming checks that the file's adapter keys are
exactly the model's (a checkpoint of another base or another rank is a clear error, not a silent partial load).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from polyrank.shared.errors import PolyrankError
from polyrank.shared.extras import require

#: Marks the parameter names that belong to LoRA adapters (peft names them ``...lora_A.<adapter>.weight``).
LORA_KEY = "lora_"


def add_lora(model: Any, r: int = 8, alpha: int = 16, dropout: float = 0.0,
             target_modules: str | Sequence[str] = "all-linear", seed: int = 0) -> Any:
    """Wrap ``model`` (a transformers causal LM) with fresh LoRA adapters; every other weight is frozen.

    Args:
        model: a ``transformers`` ``PreTrainedModel``.
        r: adapter rank.
        alpha: LoRA scaling numerator (the update is scaled by ``alpha / r``).
        dropout: dropout on the adapter input.
        target_modules: peft's selector: ``"all-linear"`` (every linear layer but the output head) or names.
        seed: seeds the adapters' random A matrices inside a forked RNG (the caller's RNG is untouched).

    Returns:
        the ``peft.PeftModel``; its forward and ``generate`` are the model's.
    """
    peft = require("peft", extra="rl")
    config = peft.LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, task_type="CAUSAL_LM",
                             target_modules=target_modules if isinstance(target_modules, str) else list(target_modules))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return peft.get_peft_model(model, config)


@contextlib.contextmanager
def adapters_disabled(model: Any) -> Iterator[None]:
    """Run ``model`` as its base (adapters off), e.g. for the frozen reference policy; no copy is made."""
    with model.disable_adapter():
        yield


def is_lora_key(name: str) -> bool:
    return LORA_KEY in name


def lora_state_dict(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The adapter weights of ``module`` (any module containing a LoRA model), by their full parameter names."""
    return {k: v for k, v in module.state_dict().items() if is_lora_key(k)}


def trainable_parameters(module: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    params = list(module.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


class LoraCheckpointMixin:
    """For a LightningModule holding a LoRA model: checkpoints keep only adapter weights; loading checks them.

    Put it before ``L.LightningModule`` in the bases. Lightning still adds the optimiser, scheduler, loop and RNG
    state (the shared trainer's callbacks), so ``--ckpt_path last`` resumes exactly.
    """

    strict_loading = False  # the base weights are not in the file; load_state_dict below checks the adapters

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if is_lora_key(k)}
        checkpoint["polyrank_lora_only"] = True

    def load_state_dict(self, state_dict: dict[str, Any], strict: bool = True, assign: bool = False):
        expected = set(lora_state_dict(self))  # type: ignore[arg-type]
        given = {k for k in state_dict if is_lora_key(k)}
        missing, unexpected = sorted(expected - given), sorted(given - expected)
        if missing or unexpected or not expected:
            raise PolyrankError(
                "the checkpoint's LoRA adapter weights do not match this model "
                f"(missing {missing[:3]}{'...' if len(missing) > 3 else ''}, "
                f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''}): it was trained on another base "
                "model or with another LoRA rank/targets; build the module with the settings it was trained with")
        for key in given:
            own = self.state_dict()[key]  # type: ignore[attr-defined]
            if own.shape != state_dict[key].shape:
                raise PolyrankError(f"LoRA weight {key} has shape {tuple(state_dict[key].shape)} in the checkpoint "
                                    f"but {tuple(own.shape)} in this model: another LoRA rank was used")
        base = {k: v for k, v in state_dict.items() if not is_lora_key(k)}
        result = super().load_state_dict({k: state_dict[k] for k in given} | base,  # type: ignore[misc]
                                         strict=False, assign=assign)
        return result
