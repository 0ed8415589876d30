"""Vision-language models in the shared LLM engine: the same batching, OOM back-off and prefix reuse as text.

Loading: a local Hugging Face folder of a VLM is read with ``AutoProcessor`` (each model's own image
processor and chat template) and ``AutoModelForImageTextToText`` (Qwen2-VL, Qwen2.5-VL, LLaVA, LLaVA-NeXT,
Idefics3, SmolVLM...); hub ids are refused as in :mod:`.loading`.

Inputs: a prompt is rendered with the processor's chat template (content lists with ``{"type": "image"}``
items) and split at a sentinel into a text-only *prefix* (shared by all candidates of a query: system prompt,
question) and a *suffix* holding the images; the processor expands each image placeholder into the model's
image tokens and returns its pixel tensors (:class:`VisionInput`). Pixel tensors of a batch are concatenated
(patch-flattened Qwen tensors) or padded along their image/patch axis (LLaVA-NeXT, Idefics3).

Prefix reuse is exact: the prefix has no image, so its KV cache is that of plain text; the suffix rows are
left padded between prefix and suffix, and position ids are those of the full sequence (1-D positions
``offset + cumsum(mask) - 1``; for Qwen2-VL's 3-D M-RoPE the model's own ``get_rope_index`` on the full
sequence, sliced). Batches follow :func:`polyrank.shared.llm.scoring.token_budget_batches` with
:func:`polyrank.shared.llm.scoring.with_oom_backoff`.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polyrank.shared.errors import PolyrankError
from polyrank.shared.llm.loading import TokenizedModel, default_device, default_dtype
from polyrank.shared.llm.scoring import DEFAULT_MAX_BATCH, DEFAULT_TOKEN_BUDGET, PrefixKV, _left_padded, _scheduled

SENTINEL = "\u2063SPLIT\u2063"
#: model types whose positions are 3-D M-RoPE computed by the model's ``get_rope_index``
MROPE = ("qwen2_vl", "qwen2_5_vl")
KNOWN = ("qwen2_vl", "qwen2_5_vl", "llava", "llava_next", "idefics3", "smolvlm")


@dataclass
class VisionInput:
    """One prompt part: token ids (image placeholders expanded) and the pixel tensors of its images."""

    ids: list[int]
    visual: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class VisionLM(TokenizedModel):
    """A vision-language model with its processor (tokenizer inside, left padding, a pad token); ``device``,
    ``dtype``, ``encode`` (plain text, no image) and ``single_token`` as :class:`CausalLM`'s."""

    model: Any
    processor: Any
    source: str

    @property
    def tokenizer(self) -> Any:
        return self.processor.tokenizer

    @property
    def model_type(self) -> str:
        return str(self.model.config.model_type)

    def render(self, messages: list[dict[str, Any]], add_generation_prompt: bool = True) -> str:
        """The processor's chat template rendered as text (image items become the model's placeholders)."""
        if not getattr(self.processor, "chat_template", None):
            raise PolyrankError(f"the processor of {self.source} has no chat template; use an instruct model "
                                "folder with chat_template.json (or set processor.chat_template)")
        return self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)

    def split(self, messages: list[dict[str, Any]], add_generation_prompt: bool = True) -> tuple[str, str]:
        """Rendered text before and after the :data:`SENTINEL` text item (the shared prefix and the rest)."""
        text = self.render(messages, add_generation_prompt)
        if text.count(SENTINEL) != 1:
            raise PolyrankError("the prompt must hold the split sentinel exactly once")
        before, after = text.split(SENTINEL)
        return before, after

    def inputs(self, text: str, images: Sequence[Any] = ()) -> VisionInput:
        """``text`` with its image placeholders expanded by the processor, plus the images' pixel tensors."""
        images = list(images)
        kwargs: dict[str, Any] = {"text": [text], "return_tensors": "pt", "add_special_tokens": False}
        if images:
            kwargs["images"] = [images] if self.model_type in ("idefics3", "smolvlm") else images
        out = self.processor(**kwargs)
        text_keys = ("input_ids", "attention_mask", "token_type_ids")
        visual = {k: v for k, v in out.items() if k not in text_keys and torch.is_tensor(v)}
        return VisionInput(out["input_ids"][0].tolist(), visual)

    def save(self, directory: str | Path) -> None:
        """Write the model (safetensors) and processor as a plain Hugging Face folder."""
        self.model.save_pretrained(directory, safe_serialization=True)
        self.processor.save_pretrained(directory)


def load_vlm(source: str | Path, device: str | None = None, dtype: torch.dtype | None = None) -> VisionLM:
    """A :class:`VisionLM` from a local Hugging Face folder (config.json + processor files), in eval mode."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    path = Path(source).expanduser()
    if not (path / "config.json").is_file():
        if "/" in str(source) and not str(source).startswith((".", "/", "~")) and not path.exists():
            raise PolyrankError(f"{source!r} looks like a Hugging Face hub id, but polyrank never downloads models. "
                                f"Run `huggingface-cli download {source} --local-dir <folder>` where you have network "
                                "and pass model=<folder>")
        raise PolyrankError(f"vision-language model folder {path} has no config.json; pass a local Hugging Face "
                            "folder of a VLM (Qwen2-VL, Qwen2.5-VL, LLaVA, LLaVA-NeXT, Idefics3/SmolVLM)")
    model_type = json.loads((path / "config.json").read_text()).get("model_type")
    target = default_device(device)
    try:
        processor = AutoProcessor.from_pretrained(path)
        model = AutoModelForImageTextToText.from_pretrained(path, dtype=dtype or default_dtype(target))
    except (ValueError, KeyError) as exc:
        raise PolyrankError(f"{path}: model_type {model_type!r} is not an image-text-to-text model transformers "
                            f"can load ({exc}); supported families include {KNOWN}") from exc
    tokenizer = processor.tokenizer
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return VisionLM(model.to(target).eval(), processor, str(source))


def collate_visual(parts: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Concatenate each pixel tensor along dim 0, zero-padding the other dims (image splits, patches) to the max."""
    keys = sorted({k for p in parts for k in p})
    out = {}
    for key in keys:
        tensors = [p[key] for p in parts if key in p]
        width = [max(t.shape[d] for t in tensors) for d in range(1, tensors[0].dim())]
        padded = []
        for t in tensors:
            pad = [x for d in reversed(range(1, t.dim())) for x in (0, width[d - 1] - t.shape[d])]
            padded.append(torch.nn.functional.pad(t, pad) if any(pad) else t)
        out[key] = torch.cat(padded, dim=0)
    return out


def image_token_ids(vlm: VisionLM) -> list[int]:
    """Ids of the image/video placeholder tokens (generation must never emit them: each one needs features)."""
    config = vlm.model.config
    names = ("image_token_id", "image_token_index", "video_token_id", "vision_start_token_id", "vision_end_token_id")
    return sorted({int(getattr(config, n)) for n in names if isinstance(getattr(config, n, None), int)})


def _rope_owner(model: Any) -> Any:
    for module in model.modules():
        if hasattr(module, "get_rope_index") and callable(module.get_rope_index):
            return module
    raise PolyrankError(f"{type(model).__name__} has no get_rope_index; 3-D positions need a Qwen2-VL family model")


def position_ids(vlm: VisionLM, ids: torch.Tensor, mask: torch.Tensor, visual: dict[str, torch.Tensor],
                 prefix_ids: Sequence[int] = ()) -> torch.Tensor:
    """Positions of the ``ids`` rows as they sit after ``prefix_ids`` (attended, left padded in between)."""
    offset = len(prefix_ids)
    if vlm.model_type not in MROPE:
        return (offset + mask.cumsum(-1) - 1).clamp(min=offset)
    full_ids, full_mask = ids, mask
    if offset:
        head = torch.as_tensor(list(prefix_ids), dtype=ids.dtype, device=ids.device).expand(len(ids), -1)
        full_ids, full_mask = torch.cat([head, ids], 1), torch.cat([torch.ones_like(head), mask], 1)
    owner = _rope_owner(vlm.model)
    params = inspect.signature(owner.get_rope_index).parameters
    kwargs = {"input_ids": full_ids, "image_grid_thw": visual.get("image_grid_thw"), "attention_mask": full_mask}
    kwargs = {k: v for k, v in kwargs.items() if k in params}
    positions, _ = owner.get_rope_index(**kwargs)
    return positions[:, :, offset:]


def _on(visual: dict[str, torch.Tensor], vlm: VisionLM) -> dict[str, torch.Tensor]:
    return {k: v.to(vlm.device, vlm.dtype if v.is_floating_point() else v.dtype) for k, v in visual.items()}


def forward(vlm: VisionLM, inputs: Sequence[VisionInput], prefix: PrefixKV | None = None,
            prefix_ids: Sequence[int] = (), logits_to_keep: int | None = None, **kwargs: Any):
    """One batched forward of ``inputs`` (left padded) after an optional cached ``prefix`` of ``prefix_ids``."""
    ids, mask = _left_padded([x.ids for x in inputs], vlm.tokenizer.pad_token_id, vlm.device)
    visual = _on(collate_visual([x.visual for x in inputs]), vlm)
    positions = position_ids(vlm, ids, mask, visual, prefix_ids if prefix is not None else ())
    if logits_to_keep is not None and "logits_to_keep" in inspect.signature(vlm.model.forward).parameters:
        kwargs["logits_to_keep"] = logits_to_keep
    if prefix is not None:
        full = torch.cat([mask.new_ones((len(inputs), prefix.length)), mask], dim=1)
        return vlm.model(input_ids=ids, attention_mask=full, position_ids=positions,
                         past_key_values=prefix.expanded(len(inputs)), use_cache=True, **visual, **kwargs), mask
    return vlm.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False, **visual,
                     **kwargs), mask


def next_token_logits(vlm: VisionLM, inputs: Sequence[VisionInput], token_ids: Sequence[int],
                      prefix: Sequence[int] = (), reuse_prefix: bool = True, token_budget: int = DEFAULT_TOKEN_BUDGET,
                      max_batch_size: int = DEFAULT_MAX_BATCH) -> np.ndarray:
    """Logits of ``token_ids`` at the next position after ``prefix + input``: shape ``(n, len(token_ids))``.

    With ``reuse_prefix`` the text-only ``prefix`` is encoded once and every batch attends to its KV cache;
    otherwise it is prepended to each row (the reference path the tests compare against).
    """
    if not inputs:
        return np.zeros((0, len(token_ids)), dtype=np.float32)
    prefix = list(prefix)
    cached = PrefixKV(vlm, prefix) if prefix and reuse_prefix else None  # type: ignore[arg-type]
    rows = list(inputs) if cached or not prefix else [VisionInput(prefix + x.ids, x.visual) for x in inputs]
    if any(not r.ids for r in rows):
        raise PolyrankError("next_token_logits got an empty input; every prompt needs at least one token")
    labels = torch.as_tensor(list(token_ids), dtype=torch.long, device=vlm.device)

    def run(batch: list[int]) -> list[np.ndarray]:
        with torch.inference_mode():
            out, _ = forward(vlm, [rows[i] for i in batch], cached, prefix, logits_to_keep=1)
        return list(out.logits[:, -1, :].index_select(-1, labels).float().cpu().numpy())

    extra = len(prefix) if cached else 0
    return np.stack(_scheduled([len(r.ids) + extra for r in rows], token_budget, max_batch_size, run))


def generate(vlm: VisionLM, inputs: Sequence[VisionInput], max_new_tokens: int, do_sample: bool = False,
             temperature: float = 1.0, top_p: float = 1.0, seed: int = 0, min_new_tokens: int = 0,
             token_budget: int = DEFAULT_TOKEN_BUDGET, max_batch_size: int = DEFAULT_MAX_BATCH
             ) -> list[list[int]]:
    """Continuations (token ids, end-of-sequence and padding removed) of whole prompts; sampling is seeded
    inside a forked RNG, so the caller's global RNG is untouched."""
    from transformers import GenerationConfig

    if not inputs:
        return []
    tok = vlm.tokenizer
    config = GenerationConfig(max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens or None,
                              do_sample=do_sample, temperature=temperature if do_sample else None,
                              top_p=top_p if do_sample else None, top_k=0 if do_sample else None,
                              pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                              suppress_tokens=image_token_ids(vlm) or None)

    def run(batch: list[int]) -> list[list[int]]:
        ids, mask = _left_padded([inputs[i].ids for i in batch], tok.pad_token_id, vlm.device)
        visual = _on(collate_visual([inputs[i].visual for i in batch]), vlm)
        with torch.inference_mode(), torch.random.fork_rng(devices=[vlm.device] if vlm.device.type == "cuda" else []):
            torch.manual_seed(seed + batch[0])
            out = vlm.model.generate(input_ids=ids, attention_mask=mask, generation_config=config, **visual)
        new = out[:, ids.shape[1]:].tolist()
        stop = {tok.eos_token_id, tok.pad_token_id}
        return [row[: next((j for j, t in enumerate(row) if t in stop), len(row))] for row in new]

    return _scheduled([len(x.ids) + max_new_tokens for x in inputs], token_budget, max_batch_size, run)


def completion_logprobs(vlm: VisionLM, prompts: Sequence[VisionInput], completions: Sequence[Sequence[int]],
                        grad: bool = True, return_logits: bool = False):
    """Log-probabilities of each completion token given its (image-bearing) prompt, in one batch.

    Prompts are left padded, completions right padded; returns ``(logprobs [N, T], completion_mask [N, T])``, plus
    the raw logits of the completion tokens ``[N, T]`` when ``return_logits``. Gradients flow when ``grad``.
    """
    width = max(1, max(len(c) for c in completions))
    prompt_width = max(len(p.ids) for p in prompts)
    pad = vlm.tokenizer.pad_token_id
    ids = torch.full((len(prompts), prompt_width + width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, (p, c) in enumerate(zip(prompts, completions)):
        ids[i, prompt_width - len(p.ids): prompt_width] = torch.as_tensor(list(p.ids), dtype=torch.long)
        ids[i, prompt_width: prompt_width + len(c)] = torch.as_tensor(list(c), dtype=torch.long)
        mask[i, prompt_width - len(p.ids): prompt_width + len(c)] = 1
    ids, mask = ids.to(vlm.device), mask.to(vlm.device)
    completion_mask = mask[:, prompt_width:]
    visual = _on(collate_visual([p.visual for p in prompts]), vlm)
    positions = position_ids(vlm, ids, mask, visual)
    with torch.set_grad_enabled(grad):
        logits = vlm.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False,
                           **visual).logits
        logits = logits[:, prompt_width - 1: prompt_width - 1 + width].float()  # position j predicts token j + 1
        targets = ids[:, prompt_width:].unsqueeze(-1)
        picked = logits.gather(-1, targets).squeeze(-1)
        logprobs = (picked - torch.logsumexp(logits, -1)) * completion_mask
    if return_logits:
        return logprobs, completion_mask, picked * completion_mask
    return logprobs, completion_mask
