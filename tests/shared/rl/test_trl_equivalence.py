"""Our GRPO loss equals TRL's ``GRPOTrainer`` loss on the same batch (same model, completions, old and
reference log-probs, rewards, beta, epsilon), to 1e-6, for both aggregations and with clipping active.

Guards: a wrong std (biased vs TRL's unbiased), a flipped KL direction, clipping applied to the wrong side,
sequence vs token aggregation mixed up, or log-probs off by the temperature or by one position."""

from __future__ import annotations

import pytest
import torch

from polyrank.shared.llm.tiny import tiny_causal_lm
from polyrank.shared.rl.grpo import group_advantages, grpo_loss, token_logprobs
from polyrank.shared.rl.sampling import pack

trl = pytest.importorskip("trl")
datasets = pytest.importorskip("datasets")

TEMPERATURE, EPSILON, G = 0.7, 0.2, 4


def _trainer(tmp_path, lm, beta: float, loss_type: str):
    folder = tmp_path / "model"  # TRL builds its reference model from the policy's folder when beta != 0
    lm.save(folder)
    config = trl.GRPOConfig(output_dir=str(tmp_path / "trl"), report_to=[], use_cpu=True, beta=beta, epsilon=EPSILON,
                            loss_type=loss_type, temperature=TEMPERATURE, num_generations=G,
                            per_device_train_batch_size=G, max_completion_length=8, logging_steps=1,
                            save_strategy="no", bf16=False, fp16=False, scale_rewards="group",
                            use_bias_correction_kl=False)  # TRL 1.16 defaults to KL x ratio; ours is plain k3
    data = datasets.Dataset.from_dict({"prompt": ["a b c"] * G})
    return trl.GRPOTrainer(model=str(folder), reward_funcs=lambda completions, **kw: [0.0] * len(completions),
                           args=config, train_dataset=data, processing_class=lm.tokenizer)


def _batch(lm):
    prompts = [lm.encode("the cat sat"), lm.encode("a dog"), lm.encode("x y z w v")]
    gen = torch.Generator().manual_seed(3)
    rows, completions = [], []
    for p in prompts:
        for g in range(G):
            n = 1 + (len(p) + g) % 5  # completions of 1..5 tokens
            rows.append(p)
            completions.append(torch.randint(10, 90, (n,), generator=gen).tolist())
    ids, mask, cmask = pack(rows, completions, lm.tokenizer.pad_token_id)
    rewards = torch.tensor([[1.0, 0.0, 0.5, 0.0], [0.0, 0.0, 0.0, 1.0], [0.2, 0.9, 0.4, 0.4]])
    return rows, ids, mask, cmask, rewards, gen


@pytest.mark.parametrize("beta,loss_type,aggregation", [(0.04, "grpo", "sequence"), (0.0, "grpo", "sequence"),
                                                        (0.1, "bnpo", "token")])
def test_our_loss_equals_trl_grpo_trainer_loss(tmp_path, beta, loss_type, aggregation):
    lm = tiny_causal_lm("llama", seed=1)
    rows, ids, mask, cmask, rewards, gen = _batch(lm)
    width = max(len(r) for r in rows)
    with torch.no_grad():
        current = token_logprobs(lm.model, ids, mask, cmask, temperature=TEMPERATURE)
    # sampling-time and reference log-probs away from the current ones, so that ratios leave [0.8, 1.2]
    old = (current + 0.3 * torch.randn(current.shape, generator=gen)) * cmask
    ref = (current + 0.5 * torch.randn(current.shape, generator=gen)) * cmask
    advantages = group_advantages(rewards).reshape(-1)

    trainer = _trainer(tmp_path, lm, beta, loss_type)
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1
    inputs = {"prompt_ids": ids[:, :width], "prompt_mask": mask[:, :width], "completion_ids": ids[:, width:],
              "completion_mask": cmask, "advantages": advantages, "old_per_token_logps": old,
              "num_items_in_batch": cmask.sum()}
    if beta:
        inputs["ref_per_token_logps"] = ref
    theirs = trainer.compute_loss(trainer.model, inputs)

    logprobs = token_logprobs(trainer.model, ids, mask, cmask, temperature=TEMPERATURE)
    ours, stats = grpo_loss(logprobs, old, advantages, cmask, ref if beta else None, epsilon=EPSILON, beta=beta,
                            aggregation=aggregation)
    assert stats["clip_fraction"] > 0.05, "the batch must exercise the clipped branch"
    assert abs(float(ours.detach()) - float(theirs.detach())) < 1e-6, (float(ours.detach()), float(theirs.detach()))
    # TRL computes advantages the same way (group mean, unbiased std, + 1e-4)
    from trl.trainer.utils import nanstd
    std = nanstd(rewards, dim=1).unsqueeze(1)
    assert torch.allclose(advantages.view(-1, G), (rewards - rewards.mean(1, keepdim=True)) / (std + 1e-4))
