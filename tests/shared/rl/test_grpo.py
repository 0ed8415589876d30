"""GRPO: advantages and loss on hand batches, the clip's active and inactive cases, no reference at beta = 0,
token log-probs under left padding, reproducible sampling that leaves the global RNG alone, a step that trains
only LoRA weights, and a toy task on which the mean reward rises."""

from __future__ import annotations

import math

import pytest
import torch

from polyrank.shared.errors import PolyrankError
from polyrank.shared.llm.tiny import tiny_causal_lm
from polyrank.shared.rl import grpo as grpo_module
from polyrank.shared.rl.grpo import GRPOModule, group_advantages, grpo_loss, token_logprobs
from polyrank.shared.rl.sampling import pack, sample_group

pytest.importorskip("peft")


def test_group_advantages_by_hand():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [2.0, 2.0, 2.0, 2.0], [0.0, 3.0, 0.0, 1.0]])
    adv = group_advantages(rewards)
    std = math.sqrt(4 * 0.25 / 3)  # unbiased: divides by G - 1 (TRL's nanstd); a biased std fails this
    assert torch.allclose(adv[0], torch.tensor([0.5, -0.5, -0.5, 0.5]) / (std + 1e-4))
    assert torch.equal(adv[1], torch.zeros(4))  # equal rewards: no signal, no division by zero
    std3 = math.sqrt(((1.0) ** 2 + 2.0 ** 2 + 1.0 ** 2 + 0.0) / 3)
    assert torch.allclose(adv[2], torch.tensor([-1.0, 2.0, -1.0, 0.0]) / (std3 + 1e-4))
    assert torch.equal(group_advantages(rewards, scale=False)[2], torch.tensor([-1.0, 2.0, -1.0, 0.0]))
    with pytest.raises(PolyrankError, match="prompts, group_size"):
        group_advantages(rewards.reshape(-1))


def _reference_loss(lp, old, adv, mask, ref, eps, eps_high, beta, aggregation):
    """Plain-Python DeepSeekMath eq. 3 with the k3 KL (eq. 4), token by token."""
    per_seq, total, count = [], 0.0, 0
    for i in range(len(lp)):
        terms = []
        for t in range(len(lp[i])):
            if not mask[i][t]:
                continue
            rho = math.exp(lp[i][t] - old[i][t])
            clipped = min(max(rho, 1 - eps), 1 + eps_high)
            term = -min(rho * adv[i], clipped * adv[i])
            if beta:
                d = ref[i][t] - lp[i][t]
                term += beta * (math.exp(d) - d - 1)
            terms.append(term)
        per_seq.append(sum(terms) / len(terms))
        total, count = total + sum(terms), count + len(terms)
    return sum(per_seq) / len(per_seq) if aggregation == "sequence" else total / count


@pytest.mark.parametrize("aggregation", ["sequence", "token"])
@pytest.mark.parametrize("beta,eps_high", [(0.0, None), (0.1, 0.28)])
def test_loss_on_a_hand_batch(aggregation, beta, eps_high):
    lp = torch.tensor([[-1.0, -2.0, -0.5], [-0.3, -1.2, 0.0], [-2.0, -0.1, -0.7]])
    old = torch.tensor([[-1.3, -1.9, -0.5], [-0.1, -1.5, 0.0], [-1.5, -0.4, -0.2]])
    ref = torch.tensor([[-1.1, -2.2, -0.4], [-0.2, -1.0, 0.0], [-1.9, -0.3, -0.6]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 0]])
    adv = torch.tensor([1.0, -0.5, 2.0])
    loss, stats = grpo_loss(lp, old, adv, mask, ref if beta else None, epsilon=0.2, epsilon_high=eps_high, beta=beta,
                            aggregation=aggregation)
    expected = _reference_loss(lp.tolist(), old.tolist(), adv.tolist(), mask.tolist(), ref.tolist(), 0.2,
                               eps_high or 0.2, beta, aggregation)
    assert abs(float(loss) - expected) < 1e-6
    assert 0 < stats["clip_fraction"] < 1 and stats["ratio_min"] < 1 < stats["ratio_max"]
    assert (stats["kl"] > 0) == bool(beta)
    # sequence and token aggregation differ when lengths differ (the weighting of long completions)
    other = grpo_loss(lp, old, adv, mask, ref if beta else None, epsilon=0.2, epsilon_high=eps_high, beta=beta,
                      aggregation="token" if aggregation == "sequence" else "sequence")[0]
    assert abs(float(other) - float(loss)) > 1e-4


def _grad(lp_value: float, old_value: float, advantage: float, epsilon_high: float | None = None):
    lp = torch.tensor([[lp_value]], requires_grad=True)
    loss, stats = grpo_loss(lp, torch.tensor([[old_value]]), torch.tensor([advantage]), torch.ones(1, 1), beta=0.0,
                            epsilon_high=epsilon_high)
    loss.backward()
    return float(lp.grad), stats["clip_fraction"]


def test_clipping_active_and_inactive():
    up, down = math.log(1.5), math.log(0.5)  # ratios 1.5 and 0.5, outside [0.8, 1.2]
    # inside the trust region: gradient = -A * rho (d/d lp of -rho A)
    grad, clipped = _grad(math.log(1.1), 0.0, 1.0)
    assert abs(grad + 1.1) < 1e-6 and clipped == 0.0
    # ratio above 1 + eps with A > 0: clipped, no gradient (the policy may not move further up)
    assert _grad(up, 0.0, 1.0) == (0.0, 1.0)
    # ratio above 1 + eps with A < 0: the unclipped branch is the minimum, the gradient stays (pulls back down)
    grad, clipped = _grad(up, 0.0, -1.0)
    assert abs(grad - 1.5) < 1e-6 and clipped == 0.0
    # ratio below 1 - eps with A < 0: clipped; with A > 0: not clipped
    assert _grad(down, 0.0, -1.0) == (0.0, 1.0)
    grad, clipped = _grad(down, 0.0, 1.0)
    assert abs(grad + 0.5) < 1e-6 and clipped == 0.0
    # DAPO's asymmetric upper clip: 1.5 < 1 + 0.6, so no clipping
    grad, clipped = _grad(up, 0.0, 1.0, epsilon_high=0.6)
    assert abs(grad + 1.5) < 1e-6 and clipped == 0.0


def test_beta_needs_reference_and_zero_beta_needs_none():
    lp, mask, adv = torch.zeros(2, 3), torch.ones(2, 3), torch.tensor([1.0, -1.0])
    with pytest.raises(PolyrankError, match="ref_logprobs is None"):
        grpo_loss(lp, lp, adv, mask, None, beta=0.04)
    loss, stats = grpo_loss(lp, lp, adv, mask, None, beta=0.0)
    assert float(loss) == 0.0 and stats["kl"] == 0.0
    with pytest.raises(PolyrankError, match="aggregation"):
        grpo_loss(lp, lp, adv, mask, None, beta=0.0, aggregation="mean")


def test_token_logprobs_under_left_padding_equal_the_unpadded_sequences():
    lm = tiny_causal_lm("llama", seed=2)
    prompts, completions = [[5, 6, 7, 8], [9, 10]], [[11, 12, 13], [14]]
    ids, mask, cmask = pack(prompts, completions, lm.tokenizer.pad_token_id)
    got = token_logprobs(lm.model, ids, mask, cmask, temperature=0.5)
    for row, (p, c) in enumerate(zip(prompts, completions)):
        logits = lm.model(torch.tensor([p + c])).logits[0] / 0.5
        want = logits.log_softmax(-1)[len(p) - 1:-1].gather(-1, torch.tensor(c)[:, None])[:, 0]
        assert torch.allclose(got[row, :len(c)], want, atol=1e-5)  # an off-by-one position fails this
        assert torch.all(got[row, len(c):] == 0)


def test_sampling_is_reproducible_batched_and_leaves_the_global_rng_alone():
    lm = tiny_causal_lm("llama", seed=0)
    prompts = [lm.encode("hello world"), lm.encode("a b c d e f")]
    before = torch.get_rng_state()
    a = sample_group(lm, prompts, 3, 6, temperature=1.2, top_p=0.9, seed=7, token_budget=40)
    assert torch.equal(before, torch.get_rng_state())
    b = sample_group(lm, prompts, 3, 6, temperature=1.2, top_p=0.9, seed=7, token_budget=40)
    c = sample_group(lm, prompts, 3, 6, temperature=1.2, top_p=0.9, seed=8, token_budget=40)
    assert a.texts == b.texts and a.texts != c.texts
    assert len(a.texts) == 6 and a.prompt_ids[0] == a.prompt_ids[2] == prompts[0] and a.prompt_ids[3] == prompts[1]
    assert len(a.texts_by_prompt()) == 2 and all(len(g) == 3 for g in a.texts_by_prompt())
    assert all(len(c) <= 6 for c in a.completion_ids)
    assert torch.equal(a.completion_mask.sum(-1), torch.tensor([len(c) for c in a.completion_ids]))
    # the stored log-probs are those of the sampled tokens at the sampling temperature
    ids, mask, cmask = a.tensors(lm.tokenizer.pad_token_id)
    assert torch.allclose(a.logprobs, token_logprobs(lm.model, ids, mask, cmask, temperature=1.2), atol=1e-5)


def test_sampling_batches_respect_the_token_budget(monkeypatch):
    lm = tiny_causal_lm("llama", seed=0)
    prompts = [lm.encode("hello world"), lm.encode("a b c d e f")]
    shapes = []
    generate = lm.model.generate

    def recording(**kwargs):
        shapes.append(tuple(kwargs["input_ids"].shape))
        return generate(**kwargs)

    monkeypatch.setattr(lm.model, "generate", recording)
    sample_group(lm, prompts, 4, 6, token_budget=64)
    assert sum(rows for rows, _ in shapes) == 8 and len(shapes) > 1  # split, and every row sampled once
    assert all(rows * (width + 6) <= 64 for rows, width in shapes)
    shapes.clear()
    sample_group(lm, prompts, 4, 6, max_batch_size=1)  # one completion at a time
    assert [rows for rows, _ in shapes] == [1] * 8


class Digits(GRPOModule):
    """Toy task: reward = share of completion tokens that are digits (about 10 % of the tiny vocabulary)."""

    QUERIES = ["hello there", "a b c", "what is it", "x y"]

    def prompts(self, batch):
        return [self.lm.encode(self.lm.chat([{"role": "user", "content": q}])) for q in batch]

    def rewards(self, batch, completions):
        digits = {self.lm.tokenizer.convert_tokens_to_ids(p + d) for d in "0123456789" for p in ("", "##")}
        ids = [[self.lm.encode(t) for t in group] for group in completions]
        return torch.tensor([[sum(i in digits for i in c) / max(1, len(c)) for c in group] for group in ids])


def test_a_grpo_step_changes_only_lora_weights_and_beta_zero_runs_no_reference(monkeypatch):
    calls = []
    original = grpo_module.adapters_disabled

    def spy(model):
        calls.append(1)
        return original(model)

    monkeypatch.setattr(grpo_module, "adapters_disabled", spy)
    for beta, reference_runs in ((0.0, 0), (0.05, 1)):
        calls.clear()
        module = Digits(group_size=4, max_new_tokens=4, lr=1e-2, beta=beta, num_iterations=2, lora={"r": 2})
        before = {k: v.clone() for k, v in module.state_dict().items()}
        stats = module.grpo_step(Digits.QUERIES[:2], module.configure_optimizers())
        assert len(calls) == reference_runs  # beta = 0: the reference (adapters off) is never run
        assert all(math.isfinite(v) for v in stats.values())
        changed = {k for k, v in module.state_dict().items() if not torch.equal(v, before[k])}
        assert changed and all("lora_" in k for k in changed), sorted(changed)[:3]
        assert any("lora_B" in k for k in changed)
        # the second iteration saw a ratio != 1 (the policy had moved since sampling)
        assert stats["ratio_min"] != 1.0 or stats["ratio_max"] != 1.0


def test_mean_reward_rises_on_a_toy_task():
    module = Digits(group_size=8, max_new_tokens=4, lr=3e-2, beta=0.0, lora={"r": 4, "alpha": 8},
                    max_grad_norm=None, seed=0)
    optimizer = module.configure_optimizers()
    module.train()
    rewards = [module.grpo_step(Digits.QUERIES, optimizer)["reward"] for _ in range(8)]
    assert sum(rewards[-3:]) / 3 > rewards[0] + 0.25, rewards  # a sign error in the loss makes it fall
