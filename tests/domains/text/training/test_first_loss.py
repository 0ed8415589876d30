"""FIRST's objective: weighted RankNet and the combined loss against hand computations; the LM loss masks the prompt
and the identifiers are read where the served reranker reads them."""

from __future__ import annotations

import math

import pytest
import torch

from polyrank.domains.text.training.first_loss import (FirstModule, first_objective, lm_loss, target_permutation,
                                                       weighted_ranknet)

pytest.importorskip("peft")

SCORES = torch.tensor([2.0, 0.5, 1.0])
RANKS = torch.tensor([2.0, 1.0, 3.0])  # passage 1 is best, then 0, then 2


def softplus(x: float) -> float:
    return math.log(1.0 + math.exp(x))


# pairs (above, below): (1, 0) ranks 1+2, (1, 2) ranks 1+3, (0, 2) ranks 2+3; loss log(1 + exp(s_below - s_above))
PAIRS = [(1 / 3, softplus(2.0 - 0.5)), (1 / 4, softplus(1.0 - 0.5)), (1 / 5, softplus(1.0 - 2.0))]


def test_weighted_ranknet_equals_hand_computation():
    # guards: a wrong pair weight (0-based ranks, 1/|r_i - r_j|), a flipped pair direction, sum vs mean mixed up
    mean = sum(w * loss for w, loss in PAIRS) / 3
    assert weighted_ranknet(SCORES, RANKS).item() == pytest.approx(mean, rel=1e-6)
    assert weighted_ranknet(SCORES, RANKS, reduction="sum").item() == pytest.approx(mean * 3, rel=1e-6)
    assert weighted_ranknet(SCORES, RANKS, weighted=False).item() == pytest.approx(
        sum(loss for _, loss in PAIRS) / 3, rel=1e-6)


def test_weighted_ranknet_matches_rank_llm_bce_formulation():
    # rank_llm: BCEWithLogitsLoss(weight=1/(r_i + r_j))(s_i - s_j, 1) over the pairs with i above j (mean)
    above = torch.tensor([1, 1, 0])
    below = torch.tensor([0, 2, 2])
    weight = 1 / (RANKS[above] + RANKS[below])
    expected = torch.nn.BCEWithLogitsLoss(weight=weight)(SCORES[above] - SCORES[below], torch.ones(3))
    assert weighted_ranknet(SCORES, RANKS).item() == pytest.approx(expected.item(), rel=1e-6)


def test_ranknet_prefers_the_target_order_and_is_zero_without_pairs():
    right = weighted_ranknet(torch.tensor([3.0, 2.0, 1.0]), torch.tensor([1.0, 2.0, 3.0]))
    wrong = weighted_ranknet(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1.0, 2.0, 3.0]))
    assert right < wrong
    assert weighted_ranknet(torch.tensor([1.0]), torch.tensor([1.0])).item() == 0.0


def test_combined_objective_is_lm_plus_ten_times_ranknet_by_hand():
    # guards: the factor 10 dropped, the ranking read at the wrong position, prompt tokens counted in the LM loss
    torch.manual_seed(0)
    vocab, ids = 8, [5, 6, 7]  # identifiers A, B, C are token ids 5, 6, 7
    logits = torch.randn(1, 5, vocab)
    labels = torch.tensor([[-100, -100, -100, 2, 3]])  # target tokens at positions 3 and 4
    readout = torch.tensor([2])
    total, parts = first_objective(logits, labels, readout, torch.tensor(ids), [RANKS])
    log_probs = torch.log_softmax(logits[0], -1)
    lm = -(log_probs[2, 2] + log_probs[3, 3]).item() / 2  # position t predicts token t + 1
    rank = weighted_ranknet(logits[0, 2, ids], RANKS).item()
    assert parts["lm"].item() == pytest.approx(lm, rel=1e-5)
    assert parts["rank"].item() == pytest.approx(rank, rel=1e-5)
    assert total.item() == pytest.approx(lm + 10 * rank, rel=1e-5)
    plain, _ = first_objective(logits, labels, readout, torch.tensor(ids), [RANKS], rank_weight=1.0, lm_weight=0.0)
    assert plain.item() == pytest.approx(rank, rel=1e-5)


def test_lm_loss_ignores_prompt_positions():
    torch.manual_seed(1)
    logits = torch.randn(2, 6, 10)
    labels = torch.tensor([[-100, -100, -100, -100, 4, 5], [-100, -100, 1, 2, 3, 4]])
    base = lm_loss(logits, labels)
    changed = logits.clone()
    changed[0, :3] += 5 * torch.randn(3, 10)  # positions 0-2 of row 0 predict prompt tokens only
    assert lm_loss(changed, labels).item() == pytest.approx(base.item(), rel=1e-6)
    changed[0, 3] += 5 * torch.randn(10)  # position 3 predicts the first target token
    assert lm_loss(changed, labels).item() != pytest.approx(base.item(), rel=1e-6)


@pytest.fixture(scope="module")
def module():
    return FirstModule(lora={"r": 2, "alpha": 4}, max_words=8)


def test_batches_mask_the_prompt_and_read_identifiers_after_the_open_bracket(module):
    batch = [{"query": "boiling water", "passages": ["water boils at 100", "the moon", "cats sleep"],
              "ranks": [1, 3, 2]},
             {"query": "moon", "passages": ["the moon orbits", "water"], "ranks": [2, 1]}]
    ids, mask, positions, labels, readout, ranks = module._batch(batch)
    bracket = module.lm.encode("[")[0]
    for b, item in enumerate(batch):
        prompt, target = module.encode_window(item["query"], item["passages"], item["ranks"])
        assert (labels[b] != -100).sum().item() == len(target)  # only the permutation and end of sequence
        assert ids[b, readout[b]].item() == bracket  # read-out at the prompt's final '[' (as the reranker)
        assert labels[b, readout[b] + 1].item() == target[0]
        assert int(mask[b].sum()) == len(prompt) + len(target)
    assert module.lm.tokenizer.decode(module.encode_window("q", ["a", "b", "c"], [1, 3, 2])[1]).startswith("A")
    assert target_permutation([2, 1, 3]) == "[B] > [A] > [C]"
    loss, parts = module.loss(batch)
    assert torch.isfinite(loss) and parts["rank"] > 0


def test_identifier_logits_match_the_reranker_read_out(module):
    from polyrank.domains.text.first import FirstReranker
    from polyrank.shared.llm.loading import CausalLM

    module.eval()
    reranker = FirstReranker(CausalLM(module.model, module.lm.tokenizer, "m"), "text.first", max_words=8)
    passages = ["water boils at 100 degrees", "the moon", "cats"]
    expected = reranker.identifier_logits("boiling water", passages)
    assert torch.allclose(module.identifier_logits("boiling water", passages), torch.as_tensor(expected), atol=1e-5)


def test_neftune_noise_only_while_training(module):
    # guards: NEFTune noise leaking into evaluation/serving (scores would change from call to call)
    ids = torch.tensor([module.lm.encode("[A] > [B]")])
    embed = module.model.get_input_embeddings()
    module.hparams.neftune_alpha = 5.0
    try:
        module.train()
        noisy = embed(ids)
        module.eval()
        clean = embed(ids)
        assert not torch.equal(noisy, clean) and torch.equal(clean, embed(ids))
        bound = 5.0 / (ids.shape[1] * clean.shape[-1]) ** 0.5
        assert (noisy - clean).abs().max() <= bound + 1e-6
    finally:
        module.hparams.neftune_alpha = 0.0
        module.eval()
