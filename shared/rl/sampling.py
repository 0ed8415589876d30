"""Sampling a group of completions per prompt from the current policy, batched under a token budget.

GRPO (DeepSeekMath, arXiv 2402.03300, Sec. 4.1) needs G samples o_1..o_G ~ pi_old(.|q) per prompt q and their
token log-probs under pi_old. Every prompt is repeated G times and the rows go through ``transformers``'
``generate`` (temperature, nucleus top-p; Holtzman et al., 2020) in length-sorted batches with
``rows x (prompt + max_new_tokens) <= token_budget`` and CUDA out-of-memory back-off (the batching of
:mod:`polyrank.shared.llm.scoring`). ``max_batch_size=1`` samples one completion at a time (the benchmark's
baseline).

Reproducibility without global side effects: the draws happen inside :func:`torch.random.fork_rng` seeded with
``seed``, so the same call gives the same completions and the caller's RNG state is unchanged afterwards.

A completion runs up to and including its first end-of-sequence token (or ``max_new_tokens``); when the pad
token differs from end-of-sequence it is suppressed during sampling, so every pad in the output is padding.
The sampling-time log-probs are recomputed by one no-grad forward pass (:func:`~polyrank.shared.rl.grpo.
token_logprobs` with the same temperature): the full temperature-scaled distribution, as TRL computes
``old_per_token_logps`` (top-p truncation is not folded into them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from polyrank.shared.errors import PolyrankError
from polyrank.shared.llm.loading import CausalLM
from polyrank.shared.llm.scoring import DEFAULT_MAX_BATCH, DEFAULT_TOKEN_BUDGET, _scheduled


@dataclass
class Samples:
    """``group_size`` completions of each prompt, rows prompt-major (row ``b * G + g`` is sample g of prompt b).

    Attributes:
        prompt_ids: ``N = B * G`` prompt token lists (each prompt repeated G times).
        completion_ids: ``N`` completion token lists (end-of-sequence included when generated, no padding).
        texts: ``N`` decoded completions (special tokens skipped).
        group_size: G.
        logprobs: ``[N, T]`` sampling-time token log-probs (0 past each completion's end), on the model's device.
        completion_mask: ``[N, T]`` 1 on completion tokens.
    """

    prompt_ids: list[list[int]]
    completion_ids: list[list[int]]
    texts: list[str]
    group_size: int
    logprobs: torch.Tensor
    completion_mask: torch.Tensor

    def texts_by_prompt(self) -> list[list[str]]:
        """``[B][G]`` completion texts (the layout a reward function receives)."""
        g = self.group_size
        return [self.texts[i:i + g] for i in range(0, len(self.texts), g)]

    def tensors(self, pad_id: int, device: torch.device | str = "cpu"
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(input_ids, attention_mask, completion_mask)``: left-padded prompts followed by right-padded
        completions, ``[N, P + T]``, ``[N, P + T]`` and ``[N, T]`` (the inputs of ``token_logprobs``)."""
        return pack(self.prompt_ids, self.completion_ids, pad_id, device)


def pack(prompts: Sequence[Sequence[int]], completions: Sequence[Sequence[int]], pad_id: int,
         device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Left-pad prompts, right-pad completions, concatenate: ``(input_ids, attention_mask, completion_mask)``."""
    width_p = max(len(p) for p in prompts)
    width_c = max((len(c) for c in completions), default=0)
    n = len(prompts)
    ids = torch.full((n, width_p + width_c), pad_id, dtype=torch.long)
    mask = torch.zeros((n, width_p + width_c), dtype=torch.long)
    for row, (p, c) in enumerate(zip(prompts, completions)):
        ids[row, width_p - len(p):width_p] = torch.as_tensor(list(p), dtype=torch.long)
        mask[row, width_p - len(p):width_p] = 1
        if c:
            ids[row, width_p:width_p + len(c)] = torch.as_tensor(list(c), dtype=torch.long)
            mask[row, width_p:width_p + len(c)] = 1
    return ids.to(device), mask.to(device), mask[:, width_p:].to(device)


def _completion(row: Sequence[int], eos_id: int | None, pad_id: int) -> list[int]:
    out: list[int] = []
    for token in row:
        if token == eos_id:
            return out + [token]
        if token == pad_id:
            return out
        out.append(token)
    return out


def sample_group(lm: CausalLM, prompts: Sequence[Sequence[int]], group_size: int, max_new_tokens: int,
                 temperature: float = 1.0, top_p: float = 1.0, seed: int = 0,
                 token_budget: int = DEFAULT_TOKEN_BUDGET, max_batch_size: int = DEFAULT_MAX_BATCH,
                 logprobs: bool = True) -> Samples:
    """Sample ``group_size`` completions of each prompt (token ids) from ``lm`` (its current weights).

    Args:
        lm: the policy (``lm.model`` may be a ``peft`` model); it is put in eval mode while sampling, then restored.
        prompts: token ids of each prompt (chat template already applied), all non-empty.
        group_size: G completions per prompt.
        max_new_tokens: the most tokens of a completion.
        temperature: softmax temperature (> 0).
        top_p: nucleus sampling mass (1.0: off).
        seed: seeds the draws inside a forked RNG (global RNG state unchanged).
        token_budget: ``rows x (longest prompt + max_new_tokens)`` per generate batch.
        max_batch_size: the most rows per batch (1: one completion at a time).
        logprobs: compute the sampling-time log-probs (one no-grad forward); ``False`` leaves
            ``Samples.logprobs`` empty (``[N, 0]``), for a caller that takes one optimiser step per batch, where
            pi_old = pi_theta and the detached current log-probs serve (TRL's shortcut for num_iterations = 1).

    Returns:
        :class:`Samples` with ``B * G`` rows, prompt-major.
    """
    from transformers import GenerationConfig

    from polyrank.shared.rl.grpo import token_logprobs  # grpo imports this module

    if group_size < 1 or max_new_tokens < 1:
        raise PolyrankError(f"group_size and max_new_tokens must be >= 1, got {group_size} and {max_new_tokens}")
    if temperature <= 0 or not 0 < top_p <= 1:
        raise PolyrankError(f"temperature must be > 0 and top_p in (0, 1], got {temperature} and {top_p}")
    if not prompts or any(len(p) == 0 for p in prompts):
        raise PolyrankError("sample_group needs at least one prompt and every prompt needs at least one token")
    tok = lm.tokenizer
    pad_id, eos_id = tok.pad_token_id, tok.eos_token_id
    rows = [list(p) for p in prompts for _ in range(group_size)]
    config = GenerationConfig(do_sample=True, temperature=temperature, top_p=top_p, top_k=0,
                              max_new_tokens=max_new_tokens, pad_token_id=pad_id, eos_token_id=eos_id,
                              bos_token_id=getattr(lm.model.generation_config, "bos_token_id", None),
                              suppress_tokens=[pad_id] if pad_id != eos_id else None)

    def run(batch: list[int]) -> list[list[int]]:
        seqs = [rows[i] for i in batch]
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for r, s in enumerate(seqs):
            ids[r, width - len(s):] = torch.as_tensor(s)
            mask[r, width - len(s):] = 1
        with torch.inference_mode():
            out = lm.model.generate(input_ids=ids.to(lm.device), attention_mask=mask.to(lm.device),
                                    generation_config=config)
        return [_completion(row.tolist(), eos_id, pad_id) for row in out[:, width:].cpu()]

    was_training = lm.model.training
    cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    lm.model.eval()
    try:
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(seed)
            completions = _scheduled([len(r) + max_new_tokens for r in rows], token_budget, max_batch_size, run)
        ids, mask, cmask = pack(rows, completions, pad_id, lm.device)
        step = max(1, min(max_batch_size, token_budget // max(1, ids.shape[1])))
        with torch.no_grad():
            old = torch.cat([token_logprobs(lm.model, ids[i:i + step], mask[i:i + step], cmask[i:i + step],
                                            temperature=temperature) for i in range(0, len(rows), step)]) \
                if logprobs else torch.zeros((len(rows), 0), device=lm.device)
    finally:
        lm.model.train(was_training)
    texts = tok.batch_decode(completions, skip_special_tokens=True)
    return Samples(rows, completions, texts, group_size, old, cmask)
