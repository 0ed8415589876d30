"""Group Relative Policy Optimisation (GRPO; Shao et al., 2024, "DeepSeekMath", arXiv 2402.03300, Sec. 4.1).

For each prompt q the current policy samples a group of G completions o_1..o_G; each gets a scalar reward r_i.
The objective (DeepSeekMath eq. 3, with the outcome-supervision advantage of Sec. 4.1.2) is, per token t of o_i::

    A_i        = (r_i - mean(r)) / (std(r) + eps)                                   (group-normalised advantage)
    rho_{i,t}  = pi_theta(o_{i,t} | q, o_{i,<t}) / pi_old(o_{i,t} | q, o_{i,<t})     (ratio to sampling time)
    L_{i,t}    = -min(rho A_i, clip(rho, 1 - epsilon, 1 + epsilon_high) A_i) + beta KL_{i,t}
    KL_{i,t}   = pi_ref / pi_theta - log(pi_ref / pi_theta) - 1                      (k3 estimator, eq. 4)

``std`` is the unbiased sample standard deviation over the group and ``eps = 1e-4``, as TRL's ``GRPOTrainer``
computes them (``scale_rewards="group"``); ``epsilon_high`` is DAPO's asymmetric upper clip ("clip-higher",
arXiv 2503.14476; ``None`` = symmetric). With ``beta = 0`` (DAPO, Dr. GRPO practice) no reference
log-probs are needed at all, so no reference forward pass is run.

Aggregation (named, because implementations differ and it changes the gradient's weighting of long outputs):

- ``"sequence"``: mean over each completion's tokens, then mean over completions -- DeepSeekMath eq. 3's
  1/G sum_i 1/|o_i| sum_t; TRL's ``loss_type="grpo"``.
- ``"token"``: sum over all completion tokens of the batch divided by their number -- every token weighs the same
  (DAPO's token-level loss); TRL's ``loss_type="bnpo"`` (and ``"dapo"`` on one process, no accumulation).

Checked against TRL 1.16's ``GRPOTrainer`` loss (tests/shared/rl/test_trl_equivalence.py) with
``use_bias_correction_kl=False``: TRL 1.16 multiplies the k3 term by the ratio by default, ours is DeepSeekMath's
plain k3; TRL's defaults are also ``loss_type="dapo"`` and ``beta=0``, ours ``"sequence"`` and 0.04.

Several optimisation steps per sampled batch (``num_iterations`` of :class:`GRPOModule`) are what the ratio and
its clip are for: on the first step rho = 1, afterwards the clip bounds how far the policy moves from pi_old.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from polyrank.shared.errors import PolyrankError
from polyrank.shared.llm.loading import CausalLM
from polyrank.shared.rl.lora import LoraCheckpointMixin, adapters_disabled, add_lora, base_lm, lora_settings
from polyrank.shared.rl.sampling import Samples, sample_group

AGGREGATIONS = ("sequence", "token")


def group_advantages(rewards: torch.Tensor, eps: float = 1e-4, scale: bool = True) -> torch.Tensor:
    """Group-normalised advantages ``(r - mean_g r) / (std_g r + eps)`` (DeepSeekMath Sec. 4.1.2).

    Args:
        rewards: ``[B, G]`` rewards, one row per prompt, one column per sampled completion.
        eps: added to the standard deviation (TRL's 1e-4), so a group of equal rewards gives zero advantages.
        scale: divide by the group's standard deviation; ``False`` gives ``r - mean`` (Dr. GRPO, arXiv
            2503.20783, which argues the division biases towards too easy or too hard prompts).

    Returns:
        ``[B, G]`` advantages. ``std`` is the unbiased sample standard deviation (divides by G - 1), as TRL's
        ``nanstd``; a group of one completion has advantage 0.
    """
    if rewards.dim() != 2:
        raise PolyrankError(f"group_advantages expects rewards of shape [prompts, group_size], got "
                            f"{tuple(rewards.shape)}; reshape flat rewards with rewards.view(-1, group_size)")
    rewards = rewards.float()
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    if not scale:
        return centred
    if rewards.shape[1] < 2:
        return torch.zeros_like(rewards)
    return centred / (rewards.std(dim=1, keepdim=True, correction=1) + eps)


def token_logprobs(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, completion_mask: torch.Tensor,
                   temperature: float = 1.0) -> torch.Tensor:
    """Log-probabilities of each completion token under ``model``, shape ``[N, T_completion]``.

    Args:
        model: a causal LM (``transformers`` or ``peft``) returning ``.logits``.
        input_ids: ``[N, P + T]`` left-padded prompts followed by the completions (right padded after their end).
        attention_mask: ``[N, P + T]``, 1 on real tokens (prompt and completion), 0 on padding.
        completion_mask: ``[N, T]``, 1 on the completion tokens that count (up to and including end-of-sequence).
        temperature: the logits are divided by it before the softmax, so the log-probs are those of the
            distribution that was sampled (TRL does the same); 1.0 for the plain model distribution.

    Returns:
        log pi(o_t | q, o_<t) for the last ``T`` positions of ``input_ids``; 0 where ``completion_mask`` is 0.
        Gradients flow when called outside ``no_grad``. Positions follow the attention mask (left padding is
        skipped), as in ``generate``, so the values equal the sampling-time ones.
    """
    width = completion_mask.shape[1]
    if width == 0:
        return input_ids.new_zeros((input_ids.shape[0], 0), dtype=torch.float32)
    positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions, use_cache=False,
                logits_to_keep=width + 1)
    logits = out.logits[:, -width - 1:-1, :].float()  # position j predicts token j + 1
    if temperature != 1.0:
        logits = logits / temperature
    targets = input_ids[:, -width:]
    picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)
    return picked.masked_fill(completion_mask == 0, 0.0)


def _per_token(advantages: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    if advantages.shape == shape:
        return advantages
    if advantages.numel() == shape[0]:
        return advantages.reshape(shape[0], 1)
    raise PolyrankError(f"advantages of shape {tuple(advantages.shape)} do not fit {shape[0]} completions of "
                        f"{shape[1]} tokens; pass one advantage per completion ([N] or [B, G] flattened prompt-major) "
                        "or one per token ([N, T])")


def grpo_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
              completion_mask: torch.Tensor, ref_logprobs: torch.Tensor | None = None, epsilon: float = 0.2,
              epsilon_high: float | None = None, beta: float = 0.04, aggregation: str = "sequence"
              ) -> tuple[torch.Tensor, dict[str, float]]:
    """The clipped GRPO loss of the module docstring (to minimise) and statistics.

    Args:
        logprobs: ``[N, T]`` current-policy token log-probs (with gradient), from :func:`token_logprobs`.
        old_logprobs: ``[N, T]`` sampling-time log-probs (pi_old, no gradient).
        advantages: one per completion (``[N]``, or ``[B, G]`` with ``B * G = N`` flattened prompt-major, the
            order of :class:`~polyrank.shared.rl.sampling.Samples`) or one per token (``[N, T]``).
        completion_mask: ``[N, T]``, 1 on tokens that count.
        ref_logprobs: ``[N, T]`` reference-policy log-probs; required when ``beta != 0``, may be ``None`` otherwise.
        epsilon: lower clip: ratios below ``1 - epsilon`` stop pushing a negative-advantage token further down.
        epsilon_high: upper clip (``None``: ``epsilon``); ratios above ``1 + epsilon_high`` stop pushing a
            positive-advantage token further up.
        beta: weight of the k3 KL to the reference (DeepSeekMath eq. 4).
        aggregation: ``"sequence"`` or ``"token"`` (module docstring).

    Returns:
        ``(loss, stats)``; stats (floats, masked means over completion tokens): ``clip_fraction`` (tokens whose
        clipped branch is the active minimum, i.e. zero gradient), ``kl`` (k3; 0 without reference),
        ``ratio`` (mean rho), ``ratio_min`` and ``ratio_max``.
    """
    if aggregation not in AGGREGATIONS:
        raise PolyrankError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
    if beta != 0.0 and ref_logprobs is None:
        raise PolyrankError(f"beta={beta} weighs a KL to the reference policy, but ref_logprobs is None; pass the "
                            "reference log-probs (adapters disabled) or set beta=0")
    if logprobs.shape != old_logprobs.shape or logprobs.shape != completion_mask.shape:
        raise PolyrankError(f"logprobs {tuple(logprobs.shape)}, old_logprobs {tuple(old_logprobs.shape)} and "
                            f"completion_mask {tuple(completion_mask.shape)} must have the same [N, T] shape")
    high = epsilon if epsilon_high is None else epsilon_high
    mask = completion_mask.to(logprobs.dtype)
    adv = _per_token(advantages.to(logprobs.dtype), logprobs.shape)
    ratio = torch.exp(logprobs - old_logprobs.detach())
    clipped = torch.clamp(ratio, 1.0 - epsilon, 1.0 + high)
    per_token = -torch.minimum(ratio * adv, clipped * adv)
    kl = None
    if ref_logprobs is not None:
        delta = ref_logprobs.detach() - logprobs
        kl = torch.exp(delta) - delta - 1.0
        if beta != 0.0:
            per_token = per_token + beta * kl
    if aggregation == "sequence":
        loss = ((per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()
    else:
        loss = (per_token * mask).sum() / mask.sum().clamp(min=1.0)

    with torch.no_grad():
        count = mask.sum().clamp(min=1.0)
        region = ((ratio < 1.0 - epsilon) & (adv < 0)) | ((ratio > 1.0 + high) & (adv > 0))
        real = completion_mask.bool()
        stats = {"clip_fraction": float((region.to(mask.dtype) * mask).sum() / count),
                 "kl": float((kl * mask).sum() / count) if kl is not None else 0.0,
                 "ratio": float((ratio * mask).sum() / count),
                 "ratio_min": float(ratio[real].min()) if real.any() else 1.0,
                 "ratio_max": float(ratio[real].max()) if real.any() else 1.0}
    return loss, stats


class GRPOModule(LoraCheckpointMixin, L.LightningModule):
    """GRPO on a LoRA-adapted causal LM (module docstring); a recipe subclasses it and implements
    :meth:`prompts` (token ids of each batch element's prompt) and :meth:`rewards` (``[B, G]`` rewards of the
    sampled completion texts). Each training step samples G completions per prompt with the current policy, then
    takes ``num_iterations`` optimiser steps on that batch (manual optimisation; Lightning's ``global_step``
    counts optimiser steps). The reference policy is the same model with its adapters disabled, run only when
    ``beta != 0``. Hyper-parameters ``model``, ``lora`` and ``serve_as`` let serving rebuild the trained model.

    Args:
        model: base LM: ``"tiny:llama"``/``"tiny:qwen2"`` (tiny random test model), ``"smollm2"`` or a local
            folder/.gguf file (:func:`polyrank.shared.rl.lora.base_lm`).
        words: whole words of the tiny test tokenizer (ignored for real models).
        lora: LoRA settings (keys r, alpha, dropout, target_modules; defaults r=8, alpha=16, dropout 0, all-linear).
        serve_as: registry name of the reranker family that serves the trained weights (e.g. "text.setwise").
        group_size: G, completions sampled per prompt.
        max_new_tokens: the most tokens of a completion.
        temperature: sampling temperature (the log-probs use the same temperature).
        top_p: nucleus sampling mass (1.0: off).
        num_iterations: optimiser steps per sampled batch (mu of DeepSeekMath Alg. 1).
        epsilon: lower clip of the ratio (1 - epsilon).
        epsilon_high: upper clip (1 + epsilon_high); None: epsilon (symmetric).
        beta: weight of the k3 KL to the reference (0: no reference forward at all).
        aggregation: loss aggregation, "sequence" (TRL grpo) or "token" (TRL bnpo).
        scale_rewards: divide advantages by the group's reward std (False: Dr. GRPO's r - mean).
        lr: AdamW learning rate of the adapter weights.
        weight_decay: AdamW weight decay.
        max_grad_norm: gradient-norm clip per optimiser step (None: off).
        token_budget: rows x tokens per sampling batch.
        max_batch_size: the most rows per sampling batch (1: one completion at a time).
        seed: seeds the LoRA initialisation and, with the step number, every sampling call.
    """

    def __init__(self, model: str = "tiny:llama", words: list[str] | None = None, lora: dict[str, Any] | None = None,
                 serve_as: str = "", group_size: int = 4, max_new_tokens: int = 16, temperature: float = 1.0,
                 top_p: float = 1.0, num_iterations: int = 1, epsilon: float = 0.2, epsilon_high: float | None = None,
                 beta: float = 0.04, aggregation: str = "sequence", scale_rewards: bool = True, lr: float = 1e-5,
                 weight_decay: float = 0.0, max_grad_norm: float | None = 1.0, token_budget: int = 16384,
                 max_batch_size: int = 32, seed: int = 0) -> None:
        super().__init__()
        if aggregation not in AGGREGATIONS:
            raise PolyrankError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
        if group_size < 2:
            raise PolyrankError(f"group_size must be >= 2 (advantages are relative to the group), got {group_size}")
        if num_iterations < 1:
            raise PolyrankError(f"num_iterations must be >= 1, got {num_iterations}")
        lora = lora_settings(lora)
        self.save_hyperparameters()
        self.automatic_optimization = False
        lm = base_lm(model, words or ())
        self.policy = add_lora(lm.model, r=lora["r"], alpha=lora["alpha"], dropout=lora["dropout"],
                               target_modules=lora["target_modules"], seed=seed)
        self.policy.train()  # the loaded base is in eval mode; sampling switches to eval by itself
        self.lm = CausalLM(self.policy, lm.tokenizer, lm.source)
        self.history: list[dict[str, float]] = []
        self._local_steps = 0

    # -- what a recipe implements ------------------------------------------------------------------------------
    def prompts(self, batch: Any) -> list[list[int]]:
        """Token ids (chat template applied) of each prompt of ``batch``."""
        raise NotImplementedError

    def rewards(self, batch: Any, completions: list[list[str]]) -> torch.Tensor:
        """``[B, G]`` rewards of ``completions[b][g]``, the g-th completion of batch element b."""
        raise NotImplementedError

    # -- GRPO --------------------------------------------------------------------------------------------------
    def sampling_seed(self) -> int:
        step = self.global_step if self._trainer is not None else self._local_steps
        return (self.hparams.seed * 1_000_003 + step) % (2 ** 63)

    def sample(self, prompts: list[list[int]]) -> Samples:
        hp = self.hparams
        return sample_group(self.lm, prompts, hp.group_size, hp.max_new_tokens, temperature=hp.temperature,
                            top_p=hp.top_p, seed=self.sampling_seed(), token_budget=hp.token_budget,
                            max_batch_size=hp.max_batch_size, logprobs=hp.num_iterations > 1)

    def grpo_step(self, batch: Any, optimizer: Any) -> dict[str, float]:
        """Sample, score, and take ``num_iterations`` optimiser steps; returns the last step's statistics plus the
        batch's mean/std reward and mean completion length. Works inside Lightning (``optimizer`` =
        ``self.optimizers()``) and in a plain loop (a torch optimiser)."""
        hp = self.hparams
        samples = self.sample(self.prompts(batch))
        rewards = torch.as_tensor(self.rewards(batch, samples.texts_by_prompt()), dtype=torch.float32)
        advantages = group_advantages(rewards, scale=hp.scale_rewards).reshape(-1).to(self.lm.device)
        ids, mask, cmask = samples.tensors(self.lm.tokenizer.pad_token_id, self.lm.device)
        ref = None
        if hp.beta != 0.0:
            with torch.no_grad(), adapters_disabled(self.policy):
                ref = token_logprobs(self.policy, ids, mask, cmask, temperature=hp.temperature)
        params = [p for p in self.policy.parameters() if p.requires_grad]
        for _ in range(hp.num_iterations):
            logprobs = token_logprobs(self.policy, ids, mask, cmask, temperature=hp.temperature)
            # one step per batch: pi_old is the current policy, its detached log-probs are the sampling-time ones
            old = samples.logprobs if hp.num_iterations > 1 else logprobs.detach()
            loss, stats = grpo_loss(logprobs, old, advantages, cmask, ref, epsilon=hp.epsilon,
                                    epsilon_high=hp.epsilon_high, beta=hp.beta, aggregation=hp.aggregation)
            optimizer.zero_grad()
            if self._trainer is not None:
                self.manual_backward(loss)
            else:
                loss.backward()
            if hp.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(params, hp.max_grad_norm)
            optimizer.step()
        self._local_steps += 1
        stats = {"loss": float(loss.detach()), **stats, "reward": float(rewards.mean()),
                 "reward_std": float(rewards.std(dim=1).mean()) if rewards.shape[1] > 1 else 0.0,
                 "completion_length": float(cmask.sum(-1).float().mean())}
        self.history.append(stats)
        return stats

    def training_step(self, batch: Any, batch_idx: int) -> None:
        stats = self.grpo_step(batch, self.optimizers())
        for key, value in stats.items():
            self.log(f"train/{key}", value, on_step=True, prog_bar=key == "reward", batch_size=1)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        """Mean reward of G sampled completions per validation prompt (``val/reward``; no update)."""
        hp = self.hparams
        samples = sample_group(self.lm, self.prompts(batch), hp.group_size, hp.max_new_tokens,
                               temperature=hp.temperature, top_p=hp.top_p, seed=self.sampling_seed(),
                               token_budget=hp.token_budget, max_batch_size=hp.max_batch_size, logprobs=False)
        rewards = torch.as_tensor(self.rewards(batch, samples.texts_by_prompt()), dtype=torch.float32)
        self.log("val/reward", float(rewards.mean()), prog_bar=True, batch_size=rewards.shape[0])

    def configure_optimizers(self):
        params = [p for p in self.policy.parameters() if p.requires_grad]
        return torch.optim.AdamW(params, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
