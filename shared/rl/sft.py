"""Supervised fine-tuning of a LoRA-adapted causal LM with a completion-only loss.

The loss is the causal-LM negative log-likelihood of the *completion* tokens given the prompt (prompt and pad
tokens are masked with -100, as TRL's ``SFTTrainer`` does with ``completion_only_loss``; the setting of the
SFT baselines of Rank-R1, arXiv 2503.06034 Sec. 4, and of FIRST's LM term, arXiv 2406.15657 Sec. 3):

    L = - 1/|C| sum_{t in C} log p_theta(y_t | x, y_<t)        (C: the completion tokens of the batch)

Prompts are chat messages rendered with the model's chat template (generation prompt added); the completion is
the assistant's reply followed by the end-of-turn token. Packing is off: one example per row, left padded, so no
example ever attends to another.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
import torch

from polyrank.shared.errors import PolyrankError
from polyrank.shared.llm.loading import CausalLM
from polyrank.shared.rl.grpo import base_lm, lora_settings
from polyrank.shared.rl.lora import LoraCheckpointMixin, add_lora
from polyrank.shared.rl.sampling import pack

IGNORE = -100


def completion_only_labels(prompt_lengths: Sequence[int] | torch.Tensor, input_ids: torch.Tensor,
                           pad_mask: torch.Tensor) -> torch.Tensor:
    """Labels for the completion-only loss: ``input_ids`` with prompt and pad tokens set to -100.

    Args:
        prompt_lengths: ``[N]`` number of prompt tokens of each row (its first real tokens).
        input_ids: ``[N, L]`` prompt followed by completion, padded on either side.
        pad_mask: ``[N, L]``, True (or 1) on padding positions.

    Returns:
        ``[N, L]`` labels (unshifted: the model shifts them, as ``transformers``' ``labels=`` does).
    """
    real = ~pad_mask.bool()
    rank = real.long().cumsum(-1)  # 1-based index of each real token in its row
    lengths = torch.as_tensor(prompt_lengths, device=input_ids.device).reshape(-1, 1)
    if (lengths > real.sum(-1, keepdim=True)).any():
        raise PolyrankError("a prompt length exceeds its row's number of real tokens; pass the prompt token counts")
    return input_ids.masked_fill(~(real & (rank > lengths)), IGNORE)


def completion_nll(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor
                   ) -> torch.Tensor:
    """Mean NLL of the labelled tokens (next-token prediction; positions follow the attention mask)."""
    positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions, use_cache=False).logits
    shifted = labels[:, 1:]
    if not (shifted != IGNORE).any():
        raise PolyrankError("a batch has no completion token to learn from (every label is masked)")
    return torch.nn.functional.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]),
                                             shifted.reshape(-1), ignore_index=IGNORE)


class SFTModule(LoraCheckpointMixin, L.LightningModule):
    """Completion-only supervised fine-tuning with LoRA (module docstring). A batch is a list of examples
    ``{"messages": [chat messages of the prompt], "completion": "assistant reply"}``; a subclass may override
    :meth:`example` to turn its own batch elements into that form.

    Args:
        model: base LM: ``"tiny:llama"``/``"tiny:qwen2"`` (tiny random test model) or a local folder/.gguf file.
        words: whole words of the tiny test tokenizer (ignored for real models).
        lora: LoRA settings (keys r, alpha, dropout, target_modules).
        serve_as: registry name of the reranker family that serves the trained weights.
        lr: AdamW learning rate of the adapter weights.
        weight_decay: AdamW weight decay.
        max_length: prompts are cut from the left and completions from the right to fit this many tokens.
        seed: seeds the LoRA initialisation.
    """

    def __init__(self, model: str = "tiny:llama", words: list[str] | None = None, lora: dict[str, Any] | None = None,
                 serve_as: str = "", lr: float = 1e-4, weight_decay: float = 0.0, max_length: int = 1024,
                 seed: int = 0) -> None:
        super().__init__()
        lora = lora_settings(lora)
        self.save_hyperparameters()
        lm = base_lm(model, words or ())
        self.policy = add_lora(lm.model, r=lora["r"], alpha=lora["alpha"], dropout=lora["dropout"],
                               target_modules=lora["target_modules"], seed=seed)
        self.policy.train()
        self.lm = CausalLM(self.policy, lm.tokenizer, lm.source)

    def example(self, item: Any) -> dict[str, Any]:
        """One batch element as ``{"messages": [...], "completion": str}``."""
        return item

    def encode(self, batch: Sequence[Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(input_ids, attention_mask, labels)`` of a batch: chat-templated prompt + completion + end of turn."""
        prompts, completions = [], []
        end = self.lm.tokenizer.eos_token or ""
        for item in batch:
            ex = self.example(item)
            prompt = self.lm.encode(self.lm.chat(ex["messages"], add_generation_prompt=True))
            completion = self.lm.encode(ex["completion"] + end)
            budget = self.hparams.max_length - len(completion)
            if budget < 1:
                completion = completion[: self.hparams.max_length - 1]
                budget = 1
            prompts.append(prompt[-budget:])
            completions.append(completion)
        ids, mask, _ = pack(prompts, completions, self.lm.tokenizer.pad_token_id, self.lm.device)
        labels = completion_only_labels([len(p) for p in prompts], ids, mask == 0)
        return ids, mask, labels

    def training_step(self, batch: Sequence[Any], batch_idx: int) -> torch.Tensor:
        ids, mask, labels = self.encode(batch)
        loss = completion_nll(self.policy, ids, mask, labels)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch))
        return loss

    def validation_step(self, batch: Sequence[Any], batch_idx: int) -> torch.Tensor:
        ids, mask, labels = self.encode(batch)
        loss = completion_nll(self.policy, ids, mask, labels)
        self.log("val/loss", loss, prog_bar=True, batch_size=len(batch))
        return loss

    def configure_optimizers(self):
        params = [p for p in self.policy.parameters() if p.requires_grad]
        return torch.optim.AdamW(params, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
