"""Batched read-outs of a causal LM: label logits, short generation, attention mass; with prefix KV reuse.

Batching (FlagEmbedding/mxbai practice, reference Part D.2): inputs are sorted by length and packed so that
``batch size x longest sequence <= token_budget``; a CUDA out-of-memory error halves the batch and retries
(:func:`with_oom_backoff`); inputs are never scored one at a time unless one alone is what fits.

Prefix reuse: when many inputs share a prompt prefix (a query's instruction for all its candidates, ICR's
documents for the real and the "N/A" query), the prefix's KV cache is computed once and each batch attends to
it (``past_key_values``); rows are left padded between prefix and suffix with explicit position ids, so the
scores equal those of the full sequences (checked by the tests).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from polyrank.shared.errors import PolyrankError
from polyrank.shared.llm.loading import CausalLM

logger = logging.getLogger(__name__)

DEFAULT_TOKEN_BUDGET = 16384
DEFAULT_MAX_BATCH = 32


def token_budget_batches(lengths: Sequence[int], token_budget: int = DEFAULT_TOKEN_BUDGET,
                         max_batch_size: int = DEFAULT_MAX_BATCH) -> list[list[int]]:
    """Indices grouped longest first so that ``len(batch) * max(length in batch) <= token_budget``."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    for i in order:
        if batches and len(batches[-1]) < max_batch_size and \
                (len(batches[-1]) + 1) * lengths[batches[-1][0]] <= token_budget:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


def is_oom(exc: BaseException) -> bool:
    """True for CUDA (or other accelerator) out-of-memory errors."""
    return isinstance(exc, torch.OutOfMemoryError) or (isinstance(exc, RuntimeError) and "out of memory" in str(exc))


def with_oom_backoff(run: Callable[[list[int]], list[Any]], indices: list[int]) -> list[Any]:
    """``run(indices)``; on out-of-memory, free the cache, split the batch in halves and retry each half."""
    try:
        return run(indices)
    except Exception as exc:
        if not is_oom(exc):
            raise
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        if len(indices) == 1:
            raise PolyrankError("a single input does not fit in accelerator memory; lower max_length (shorter "
                                "documents), use a smaller model, or run on CPU") from exc
        half = len(indices) // 2
        logger.warning("out of memory on a batch of %d; retrying as %d + %d", len(indices), half, len(indices) - half)
        return with_oom_backoff(run, indices[:half]) + with_oom_backoff(run, indices[half:])


def _scheduled(lengths: Sequence[int], token_budget: int, max_batch_size: int,
               run: Callable[[list[int]], list[Any]]) -> list[Any]:
    results: list[Any] = [None] * len(lengths)
    for batch in token_budget_batches(lengths, token_budget, max_batch_size):
        for i, value in zip(batch, with_oom_backoff(run, batch)):
            results[i] = value
    return results


def _left_padded(sequences: Sequence[Sequence[int]], pad_id: int, device: torch.device
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if len(seq):
            ids[row, width - len(seq):] = torch.as_tensor(list(seq), dtype=torch.long)
            mask[row, width - len(seq):] = 1
    return ids.to(device), mask.to(device)


class PrefixKV:
    """The KV cache of one prompt prefix, computed once and shared (as views) by every batch that follows it."""

    def __init__(self, lm: CausalLM, prefix: Sequence[int]) -> None:
        if not prefix:
            raise ValueError("an empty prefix has nothing to cache")
        self.length = len(prefix)
        ids = torch.as_tensor([list(prefix)], dtype=torch.long, device=lm.device)
        with torch.inference_mode():
            out = lm.model(input_ids=ids, use_cache=True)
        cache = out.past_key_values
        self.layers = cache.to_legacy_cache() if hasattr(cache, "to_legacy_cache") else tuple(cache)

    def expanded(self, batch_size: int):
        """A fresh cache for ``batch_size`` rows; the shared tensors are expanded views, never modified."""
        from transformers import DynamicCache

        return DynamicCache.from_legacy_cache(tuple((k.expand(batch_size, -1, -1, -1), v.expand(batch_size, -1, -1, -1))
                                                    for k, v in self.layers))


def _forward(lm: CausalLM, suffixes: Sequence[Sequence[int]], prefix: PrefixKV | None, **kwargs: Any):
    """One batched forward of ``suffixes`` (left padded) after an optional cached ``prefix``."""
    ids, mask = _left_padded(suffixes, lm.tokenizer.pad_token_id, lm.device)
    offset = prefix.length if prefix is not None else 0
    positions = (offset + mask.cumsum(-1) - 1).clamp(min=offset)
    if prefix is not None:
        full_mask = torch.cat([mask.new_ones((len(suffixes), prefix.length)), mask], dim=1)
        return lm.model(input_ids=ids, attention_mask=full_mask, position_ids=positions,
                        past_key_values=prefix.expanded(len(suffixes)), use_cache=True, **kwargs), mask
    return lm.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False, **kwargs), mask


def next_token_logits(lm: CausalLM, sequences: Sequence[Sequence[int]], token_ids: Sequence[int],
                      prefix: Sequence[int] | None = None, reuse_prefix: bool = True,
                      token_budget: int = DEFAULT_TOKEN_BUDGET, max_batch_size: int = DEFAULT_MAX_BATCH) -> np.ndarray:
    """Logits of ``token_ids`` at the next position after ``prefix + sequence``, shape ``(n, len(token_ids))``.

    ``prefix`` (shared by all sequences) is computed once when ``reuse_prefix``; otherwise it is prepended to
    every sequence (the reference path the tests compare against).
    """
    if not sequences:
        return np.zeros((0, len(token_ids)), dtype=np.float32)
    prefix = list(prefix or [])
    cached = PrefixKV(lm, prefix) if prefix and reuse_prefix else None
    rows = [list(s) for s in sequences] if cached or not prefix else [prefix + list(s) for s in sequences]
    if any(not r for r in rows):
        raise PolyrankError("next_token_logits got an empty input; every prompt needs at least one token")
    labels = torch.as_tensor(list(token_ids), dtype=torch.long, device=lm.device)
    extra = cached.length if cached else 0

    def run(batch: list[int]) -> list[np.ndarray]:
        with torch.inference_mode():
            out, _ = _forward(lm, [rows[i] for i in batch], cached, logits_to_keep=1)
        picked = out.logits[:, -1, :].index_select(-1, labels).float().cpu().numpy()
        return list(picked)

    return np.stack(_scheduled([len(r) + extra for r in rows], token_budget, max_batch_size, run))


class _AllowedTokens:
    """Logits processor keeping only ``allowed`` token ids (constrained decoding)."""

    def __init__(self, allowed: Sequence[int], vocab_size: int, device: torch.device) -> None:
        self.mask = torch.full((vocab_size,), float("-inf"), device=device)
        self.mask[torch.as_tensor(list(allowed), dtype=torch.long, device=device)] = 0.0

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        return scores + self.mask[: scores.shape[-1]]


def generate(lm: CausalLM, prompts: Sequence[Sequence[int]], max_new_tokens: int,
             stop_strings: Sequence[str] = (), allowed_token_ids: Sequence[int] | None = None,
             token_budget: int = DEFAULT_TOKEN_BUDGET, max_batch_size: int = DEFAULT_MAX_BATCH,
             min_new_tokens: int = 0) -> list[str]:
    """Greedy continuations of ``prompts`` (token ids), at most ``max_new_tokens`` each, cut after the first stop
    string; ``allowed_token_ids`` restricts decoding to those tokens (plus end-of-sequence); ``min_new_tokens``
    suppresses end-of-sequence before that many tokens (benchmarks force a fixed generation length with it)."""
    from transformers import GenerationConfig, LogitsProcessorList

    if not prompts:
        return []
    tok = lm.tokenizer
    config = GenerationConfig(max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens or None, do_sample=False,
                              pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                              bos_token_id=lm.model.generation_config.bos_token_id,
                              stop_strings=list(stop_strings) or None)
    processors = LogitsProcessorList()
    if allowed_token_ids is not None:
        allowed = list(allowed_token_ids) + [tok.eos_token_id]
        processors.append(_AllowedTokens(allowed, lm.model.get_output_embeddings().weight.shape[0], lm.device))

    def run(batch: list[int]) -> list[str]:
        ids, mask = _left_padded([prompts[i] for i in batch], tok.pad_token_id, lm.device)
        with torch.inference_mode():
            out = lm.model.generate(input_ids=ids, attention_mask=mask, generation_config=config,
                                    logits_processor=processors, tokenizer=tok if stop_strings else None)
        texts = tok.batch_decode(out[:, ids.shape[1]:], skip_special_tokens=False)
        return [_cut(t, stop_strings, tok) for t in texts]

    return _scheduled([len(p) + max_new_tokens for p in prompts], token_budget, max_batch_size, run)


def _cut(text: str, stop_strings: Sequence[str], tokenizer: Any) -> str:
    for special in (tokenizer.pad_token, tokenizer.eos_token):
        if special:
            text = text.split(special)[0] if special == tokenizer.eos_token else text.replace(special, "")
    ends = [text.find(s) + len(s) for s in stop_strings if s in text]
    return text[: min(ends)] if ends else text


def _attention_modules(model: Any) -> list[torch.nn.Module]:
    modules = [m for name, m in model.named_modules() if name.endswith("self_attn")]
    if not modules:
        raise PolyrankError(f"{type(model).__name__} has no '*.self_attn' modules; attention read-outs support "
                            "Llama/Mistral/Qwen-style decoders")
    return modules


class _AttentionMass:
    """Forward hooks summing, layer by layer, the attention each row's query positions pay to every key.

    Per layer ``l``: ``mass[b, k] += sum_heads mean_{q in queries(b)} A_l[b, h, q, k]`` (ICR, arXiv 2410.02642,
    Sec. 3); each layer's weights are reduced in its hook and dropped, so no two layers' attentions coexist.
    """

    def __init__(self, model: Any, query_mask: torch.Tensor) -> None:
        self.query_mask = query_mask.float()
        self.mass: torch.Tensor | None = None
        self.handles = [m.register_forward_hook(self._hook) for m in _attention_modules(model)]

    def _hook(self, module: Any, args: Any, output: Any) -> None:
        weights = output[1] if isinstance(output, tuple) and len(output) > 1 else None
        if weights is None:
            raise PolyrankError("attention weights were not returned; attention read-outs need eager attention")
        per_key = torch.einsum("bhqk,bq->bk", weights.float(), self.query_mask) / self.query_mask.sum(1, keepdim=True)
        self.mass = per_key if self.mass is None else self.mass + per_key

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


def attention_mass(lm: CausalLM, prefix: Sequence[int], suffixes: Sequence[Sequence[int]], reuse_prefix: bool = True,
                   token_budget: int = DEFAULT_TOKEN_BUDGET, max_batch_size: int = DEFAULT_MAX_BATCH) -> np.ndarray:
    """Attention from each suffix's tokens (the query positions) to every prefix token, summed over layers and
    heads and averaged over the suffix tokens: shape ``(len(suffixes), len(prefix))``.

    Runs with eager attention (restored afterwards). With ``reuse_prefix`` the prefix is encoded once and
    every suffix attends to its cache; otherwise each row is the whole ``prefix + suffix``.
    """
    prefix = list(prefix)
    if not prefix or not suffixes or any(not s for s in suffixes):
        raise PolyrankError("attention_mass needs a non-empty prefix and non-empty suffixes")
    model = lm.model
    previous = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        cached = PrefixKV(lm, prefix) if reuse_prefix else None
        rows = [list(s) for s in suffixes] if cached else [prefix + list(s) for s in suffixes]

        def run(batch: list[int]) -> list[np.ndarray]:
            seqs = [rows[i] for i in batch]
            _, mask = _left_padded(seqs, lm.tokenizer.pad_token_id, lm.device)
            width = mask.shape[1]
            query = torch.zeros_like(mask)
            for row, i in enumerate(batch):
                query[row, width - len(suffixes[i]):] = 1
            recorder = _AttentionMass(model, query)
            try:
                with torch.inference_mode():
                    _forward(lm, seqs, cached, logits_to_keep=1)
            finally:
                recorder.close()
            mass = recorder.mass.cpu().numpy()
            if cached:
                return [mass[row, :len(prefix)] for row in range(len(batch))]
            return [mass[row, width - len(seqs[row]):width - len(seqs[row]) + len(prefix)] for row in range(len(batch))]

        extra = cached.length if cached else 0
        return np.stack(_scheduled([len(r) + extra for r in rows], token_budget, max_batch_size, run))
    finally:
        model.set_attn_implementation(previous)
