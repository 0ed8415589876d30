"""The text domain's GRPO recipes: Rank-R1's and ProRank stage 1's rewards on hand cases, their prompts are the
serving prompts, their data never uses a judged positive as a negative, and ``polyrank fit`` trains each tiny
config into a LoRA-only checkpoint whose hyper-parameters rebuild the model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from polyrank.domains.text.training.grpo_recipes import (BinaryRelevanceDataModule,
                                                         ProRankStage1Module, RankR1Module, SetwiseDataModule,
                                                         prorank_stage1_reward, rank_r1_reward)
from polyrank.shared.cli import main
from polyrank.shared.trainer import EpochShuffle

pytest.importorskip("peft")
CONFIGS = Path(__file__).parents[3] / "configs" / "text"


@pytest.mark.parametrize("text,reward", [
    ("<think>doc 2 talks about it</think> <answer>[2]</answer>", 1.0),
    ("<think>x</think><answer>2</answer>", 1.0),                       # a bare label is a label
    ("  <think>x</think>\n<answer> [2] </answer>\n", 1.0),             # whitespace around is fine
    ("<think>x</think> <answer>[3]</answer>", 0.0),                    # wrong document
    ("<answer>[2]</answer>", 0.0),                                     # no reasoning block
    ("<think>x</think> <answer>[2]</answer> and more", 0.0),           # text after the answer
    ("I pick [2]", 0.0),                                               # no tags at all
    ("<think>x</think> <answer>[9]</answer>", 0.0),                    # not a label of the set
])
def test_rank_r1_reward(text, reward):
    assert rank_r1_reward(text, gold=1, n=4) == reward


@pytest.mark.parametrize("text,label,reward", [("1", 1.0, 1.0), (" 0\n", 0.0, 1.0), ("0", 1.0, 0.1),
                                               ("1", 0.0, 0.1), ("yes", 1.0, 0.0), ("1 because", 1.0, 0.0),
                                               ("", 0.0, 0.0), ("1", 0.75, 1.0)])
def test_prorank_stage1_reward(text, label, reward):
    assert prorank_stage1_reward(text, label) == reward


def test_prompts_are_the_serving_prompts():
    from polyrank.domains.text.pointwise import PointwiseReranker
    from polyrank.domains.text.setwise import setwise_prompt

    pro = ProRankStage1Module(lora={"r": 2}, max_doc_tokens=8)
    reranker = PointwiseReranker(pro.lm, "text.pointwise.prorank", variant="prorank")
    before, after = reranker.prompt_parts("what is lift")
    ids = pro.prompts([{"query": "what is lift", "document": "the wing makes lift at speed", "label": 1.0}])[0]
    doc = pro.lm.encode("the wing makes lift at speed")[:8]
    assert ids == pro.lm.encode(before) + doc + pro.lm.encode(after)
    r1 = RankR1Module(lora={"r": 2})
    item = {"query": "q", "documents": ["a", "b", "c"], "gold": 2}
    assert r1.prompts([item])[0] == r1.lm.encode(r1.lm.chat(setwise_prompt("q", ["a", "b", "c"], reasoning=True)))
    assert r1.rewards([item], [["<think>.</think><answer>[3]</answer>", "<answer>[3]</answer>"]]).tolist() == \
        [[1.0, 0.0]]


def test_data_never_uses_a_judged_positive_as_negative_and_shuffles_per_epoch():
    from polyrank.shared.cranfield import read_cranfield
    from polyrank.shared.embedded import locate

    _, _, qrels = read_cranfield(locate("cranfield", None).path)
    setwise = SetwiseDataModule(path=None, max_queries=5, set_size=4, max_words=5, positives_per_query=2)
    setwise.setup()
    assert setwise.train_items and all(len(i["documents"]) == 4 for i in setwise.train_items)
    binary = BinaryRelevanceDataModule(path=None, max_queries=5, positives_per_query=2, negatives="hard", depth=30)
    binary.setup()
    labels = [i["label"] for i in binary.train_items]
    assert labels.count(1.0) == labels.count(0.0) > 0
    for item in binary.train_items:
        assert (qrels[item["qid"]].get(item["doc_id"], 0) > 0) == (item["label"] == 1.0)
    sampler = EpochShuffle(10, seed=3)
    first = list(sampler)
    sampler.set_epoch(1)
    assert sorted(first) == list(range(10)) and list(sampler) != first
    sampler.set_epoch(0)
    assert list(sampler) == first  # a resumed epoch draws the same order


@pytest.mark.parametrize("config,module", [("rank_r1_tiny.yaml", RankR1Module),
                                           ("prorank_stage1_tiny.yaml", ProRankStage1Module)])
def test_polyrank_fit_trains_each_tiny_recipe(tmp_path, config, module):
    args = ["fit", "--config", str(CONFIGS / config), "--trainer.default_root_dir", str(tmp_path),
            "--trainer.max_epochs", "1", "--data.init_args.max_queries", "2"]
    assert main(args) == 0
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    hp = ckpt["hyper_parameters"]
    assert {"model", "lora", "serve_as", "words"} <= set(hp) and hp["model"].startswith("tiny:")
    assert hp["serve_as"] == ("text.setwise" if module is RankR1Module else "text.pointwise.prorank")
    assert ckpt["state_dict"] and all("lora_" in k for k in ckpt["state_dict"])
    assert ckpt["global_step"] > 0 and ckpt["optimizer_states"] and "polyrank_rng_states" in ckpt
    # the hyper-parameters rebuild the same model, and the file's adapters load into it strictly
    rebuilt = module(**{k: v for k, v in hp.items() if not k.startswith("_")})
    rebuilt.load_state_dict(ckpt["state_dict"])
    for key, value in ckpt["state_dict"].items():
        assert torch.equal(rebuilt.state_dict()[key], value)
