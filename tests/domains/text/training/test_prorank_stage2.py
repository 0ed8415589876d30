"""ProRank stage 2: BCE on logit("1") - logit("0") at the last position by hand, learning sanity on a toy set,
and initialisation from a stage-1 LoRA checkpoint with exactly its adapter weights."""

from __future__ import annotations

import math
import re

import lightning as L
import pytest
import torch

from polyrank.domains.text.pointwise import PRORANK_TASK, VOCAB
from polyrank.domains.text.training.prorank_stage2 import ProRankStage2Module, score_bce
from polyrank.shared.errors import PolyrankError
from polyrank.shared.protocol import as_candidates
from polyrank.shared.rl.lora import LoraCheckpointMixin, lora_state_dict

pytest.importorskip("peft")

LORA = {"r": 4, "alpha": 8}
TOY = [("boiling water", "water boils at 100 degrees", 1.0), ("boiling water", "the moon orbits the earth", 0.0),
       ("moon orbit", "moon orbits earth yearly", 1.0), ("moon orbit", "cats sleep all day", 0.0),
       ("sleeping cats", "cats nap on sofas", 0.5), ("sleeping cats", "stock prices fell", 0.0)]
#: whole words for the tiny tokenizer (the prompt and the toy texts): short prompts keep the tests fast
WORDS = sorted(set(VOCAB) | set(re.findall(r"\w+", PRORANK_TASK)) | {w for q, d, _ in TOY for w in f"{q} {d}".split()})


def test_score_bce_equals_hand_computation():
    scores, labels = torch.tensor([2.0, -1.0, 0.5]), torch.tensor([1.0, 0.0, 0.5])

    def term(s, y):
        p = 1 / (1 + math.exp(-s))
        return -(y * math.log(p) + (1 - y) * math.log(1 - p))

    assert score_bce(scores, labels).item() == pytest.approx(sum(map(term, [2.0, -1.0, 0.5], [1.0, 0.0, 0.5])) / 3,
                                                             rel=1e-6)


@pytest.fixture()
def module():
    return ProRankStage2Module(model="tiny:qwen2", words=WORDS, lora=LORA, max_length=16)


def test_scores_are_the_logit_difference_at_the_last_position_of_each_unpadded_prompt(module):
    # guards: reading the last column of a right-padded batch (a pad position), the labels swapped, a non-last position
    module.eval()
    queries, docs = [q for q, _, _ in TOY[:3]], [d for _, d, _ in TOY[:3]]
    with torch.no_grad():
        batched = module.scores(queries, docs)
        zero, one = module.lm.single_token("0"), module.lm.single_token("1")
        for i, (q, d) in enumerate(zip(queries, docs)):
            logits = module.model(torch.tensor([module.encode(q, d)])).logits[0, -1]
            assert batched[i].item() == pytest.approx((logits[one] - logits[zero]).item(), abs=1e-4)
    assert len({len(module.encode(q, d)) for q, d in zip(queries, docs)}) > 1  # the batch really was padded
    served = module.reranker.score(queries[0], as_candidates([("a", docs[0])]))
    assert served[0] == pytest.approx(batched[0].item(), abs=1e-4)  # the training score is the served score


def test_a_few_steps_raise_positive_scores_on_a_toy_set(module):
    # learning sanity: the loss trains the logit difference (a wrong sign or a detached score would not)
    batch = [{"query": q, "document": d, "label": y} for q, d, y in TOY]
    positives = torch.tensor([y > 0 for _, _, y in TOY])

    def margin():
        with torch.no_grad():
            s = module.scores([b["query"] for b in batch], [b["document"] for b in batch])
        return (s[positives].mean() - s[~positives].mean()).item()

    before_margin = margin()
    before_loss = module.loss(batch).item()
    optimizer = torch.optim.AdamW([p for p in module.model.parameters() if p.requires_grad], lr=3e-3)
    module.train()
    for _ in range(10):
        optimizer.zero_grad()
        module.loss(batch).backward()
        optimizer.step()
    after_margin = margin()
    assert module.loss(batch).item() < before_loss
    assert after_margin > before_margin + 0.15  # measured: -0.017 -> 0.227


class StageOne(LoraCheckpointMixin, L.LightningModule):
    """A stage-1-style module (as the RL helper's GRPO recipe): the LoRA model under another attribute name."""

    def __init__(self, model: str = "tiny:qwen2", lora: dict | None = None, serve_as: str = "text.pointwise.prorank"):
        super().__init__()
        from polyrank.domains.text.training.serving import base_causal_lm, lora_settings
        from polyrank.shared.rl.lora import add_lora

        self.save_hyperparameters()
        self.policy = add_lora(base_causal_lm(model, serve_as=serve_as).model, **lora_settings(lora), seed=3)
        with torch.no_grad():
            for name, p in self.policy.named_parameters():
                if "lora_B" in name:
                    p.normal_()  # as after GRPO steps: B is no longer zero


def write_stage_one(path, **kwargs):
    module = StageOne(**kwargs)
    checkpoint = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams), "epoch": 0,
                  "global_step": 3}
    module.on_save_checkpoint(checkpoint)  # adapter weights only, as LoraCheckpointMixin writes them
    torch.save(checkpoint, path)
    return module


def test_stage_two_starts_from_exactly_the_stage_one_adapters(tmp_path):
    path = tmp_path / "stage1.ckpt"
    stage1 = write_stage_one(path, lora=LORA)
    stage2 = ProRankStage2Module(init_from=str(path), max_length=16)
    theirs = {k.removeprefix("policy."): v for k, v in lora_state_dict(stage1).items()}
    mine = {k.removeprefix("model."): v for k, v in lora_state_dict(stage2).items()}
    assert set(mine) == set(theirs) and all(torch.equal(mine[k], theirs[k]) for k in mine)
    assert stage2.hparams.model == "tiny:qwen2" and stage2.hparams.lora["r"] == 4  # inherited from stage 1
    fresh = ProRankStage2Module(lora=LORA, max_length=16)
    assert not torch.equal(stage2.scores(["q"], ["d"]), fresh.scores(["q"], ["d"]))  # the adapters act


def test_stage_two_refuses_a_mismatched_stage_one(tmp_path):
    path = tmp_path / "stage1.ckpt"
    write_stage_one(path, lora=LORA)
    with pytest.raises(PolyrankError, match="lora"):
        ProRankStage2Module(init_from=str(path), lora={"r": 8})
    other = tmp_path / "setwise.ckpt"
    write_stage_one(other, lora=LORA, serve_as="text.setwise")
    with pytest.raises(PolyrankError, match="not ProRank stage 1"):
        ProRankStage2Module(init_from=str(other))


def test_stage_two_continues_the_rl_recipes_stage_one_module(tmp_path):
    # the real stage-1 module (GRPO recipe): its adapter-only checkpoint seeds stage 2, and stage 2's first scores
    # are the scores text.pointwise.prorank serves for that stage-1 checkpoint
    recipes = pytest.importorskip("polyrank.domains.text.training.grpo_recipes")
    stage1 = recipes.ProRankStage1Module(lora=LORA)
    with torch.no_grad():
        for name, p in stage1.policy.named_parameters():
            if "lora_B" in name:
                p.normal_()
    checkpoint = {"state_dict": stage1.state_dict(), "hyper_parameters": dict(stage1.hparams)}
    stage1.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, tmp_path / "stage1.ckpt")
    stage2 = ProRankStage2Module(init_from=str(tmp_path / "stage1.ckpt"), max_length=16).eval()
    from polyrank.domains.text import load

    served = load("text.pointwise.prorank.tiny", checkpoint=str(tmp_path / "stage1.ckpt"), max_length=16)
    with torch.no_grad():
        start = stage2.scores(["boiling water"], ["water boils at 100 degrees"])
    assert served.score("boiling water", as_candidates([("a", "water boils at 100 degrees")]))[0] == \
        pytest.approx(start.item(), abs=1e-4)
