"""SFT and GRPO steps on tiny VLMs change only LoRA weights; `polyrank fit` output is what `load` serves."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from polyrank.domains.docimage.training import (MMR5GRPOModule, MMR5SFTModule, RagLLaVAModule, add_diffusion_noise,
                                                noise_weights, synthetic_examples)

CONFIGS = Path(__file__).parents[3] / "configs" / "docimage"


def _changed(module, before):
    return [k for k, v in module.model.state_dict().items() if not torch.equal(v, before[k])]


def _snapshot(module):
    return {k: v.clone() for k, v in module.model.state_dict().items()}


@pytest.mark.parametrize("family", ["qwen2_vl", "llava"])
def test_one_sft_step_changes_only_lora_weights(family):
    # guards: an unfrozen base/vision tower, or a loss that does not reach the adapters
    module = MMR5SFTModule(model=f"tiny:{family}", lora={"r": 2, "alpha": 8}, lr=0.01)
    examples = synthetic_examples(2, n_pages=2)
    before = _snapshot(module)
    optimiser = module.configure_optimizers()
    module.train()
    loss = module.loss(examples)
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()
    changed = _changed(module, before)
    assert torch.isfinite(loss) and changed and all("lora_" in k for k in changed)
    assert module.loss(examples) < loss  # the step lowered the SFT loss on the same batch


def test_sft_target_is_positives_first_then_ascending():
    from polyrank.domains.docimage.mmr5 import target_text
    from polyrank.domains.docimage.training import RankExample

    ex = RankExample("q", [None] * 4, [3, 1], "why")  # type: ignore[list-item]
    assert target_text(ex.order(), True, ex.think) == "<think>why</think><answer>[1, 3, 2, 4]</answer>"


@pytest.mark.parametrize("family", ["qwen2_vl", "llava"])
def test_one_grpo_step_changes_only_lora_weights(family):
    # hand-written completions (one correct, one malformed per group) give non-zero advantages; guards: rewards
    # not reaching the loss, the reference computed with adapters on, or base weights updated
    module = MMR5GRPOModule(model=f"tiny:{family}", lora={"r": 2, "alpha": 8}, group_size=2, lr=0.01, beta=0.04)
    examples = synthetic_examples(1, n_pages=2)
    good = f"<think>x</think><answer>[{examples[0].positives[0]}, {3 - examples[0].positives[0]}]</answer>"
    texts = [good, "nonsense"]
    module.sampler = lambda rows, seed: [module.vlm.encode(t) for t in texts * (len(rows) // 2)]
    before = _snapshot(module)
    stats = module.grpo_step(examples, module.configure_optimizers())
    changed = _changed(module, before)
    assert stats["reward"] == pytest.approx(1.0) and stats["reward_std"] > 0  # (2 + 0) / 2
    assert changed and all("lora_" in k for k in changed)
    assert stats["ratio"] == pytest.approx(1.0) and stats["kl"] == pytest.approx(0.0, abs=1e-6)  # first step


def test_noise_injection_pieces():
    x = torch.ones(2, 8)
    noised = add_diffusion_noise(x, 500, torch.Generator().manual_seed(0))
    assert noised.shape == x.shape and not torch.allclose(noised, x)
    assert torch.equal(add_diffusion_noise(x, 0, torch.Generator().manual_seed(0)).round(decimals=1), x)
    w = noise_weights(torch.tensor([3.0, 10.0, 0.0]), torch.tensor([0.0, 0.0, 2.0]))
    assert w.tolist() == [3.0, 5.0, 1.0]  # clamp(clean - noisy, 1, 5)


def test_ragllava_noise_injected_loss_uses_the_weights(monkeypatch):
    # guards: the noise weights computed but not applied to the per-token loss
    from polyrank.domains.docimage import training

    examples = synthetic_examples(1, n_pages=2)
    plain = RagLLaVAModule(model="tiny:llava", lora={"r": 2, "alpha": 8}).loss(examples)
    noisy = RagLLaVAModule(model="tiny:llava", lora={"r": 2, "alpha": 8}, noise_injection=True)
    assert torch.isfinite(noisy.loss(examples))
    monkeypatch.setattr(training, "noise_weights", lambda clean, noised: torch.tensor([[1.0], [4.0]]))
    assert not torch.isclose(plain, noisy.loss(examples))


def _fit(config: Path, root: Path) -> Path:
    from polyrank.shared.cli import main

    assert main(["fit", "--config", str(config), f"--trainer.default_root_dir={root}"]) == 0
    ckpt = root / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()
    return ckpt


def test_fit_mmr5_sft_tiny_then_load_serves_the_trained_weights(tmp_path):
    from polyrank.domains.docimage import load
    from polyrank.shared.checkpoints import read_lightning_checkpoint
    from polyrank.shared.registry import UntrainedWeightsWarning

    ckpt = _fit(CONFIGS / "mmr5_sft_tiny.yaml", tmp_path)
    hp = read_lightning_checkpoint(ckpt).hparams
    module = MMR5SFTModule(**{k: hp[k] for k in ("model", "lora", "serve_as", "reasoning", "lr", "seed")})
    module.load_state_dict(torch.load(ckpt, weights_only=True)["state_dict"])
    pages = synthetic_examples(1, n_pages=3, seed=5)[0].pages
    own = module.first_token_scores("Which page is red?", pages)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UntrainedWeightsWarning)  # trained weights: no warning
        served = load("docimage.mmr5.tiny", checkpoint=str(ckpt), mode="first_token")
    got = served._first_token_scores("Which page is red?", pages)
    np.testing.assert_allclose(got, own, atol=1e-4)  # merged adapters = the module's own predictions
    with pytest.warns(UntrainedWeightsWarning):
        untrained = load("docimage.mmr5.tiny", mode="first_token")
    assert not np.allclose(untrained._first_token_scores("Which page is red?", pages), got, atol=1e-3)
    with pytest.raises(Exception, match="not written by a docimage ragllava recipe"):
        load("docimage.ragllava.tiny", checkpoint=str(ckpt))


def test_fit_ragllava_tiny_with_noise_injection(tmp_path):
    from polyrank.domains.docimage import load

    ckpt = _fit(CONFIGS / "ragllava_tiny.yaml", tmp_path)
    served = load("docimage.ragllava.tiny", checkpoint=str(ckpt))
    assert served.lm.model_type == "llava"  # the architecture comes from the checkpoint's hparams
    pages = synthetic_examples(1, n_pages=3, seed=2)[0].pages
    from polyrank.shared.protocol import Candidate

    scores = served.score("Which page is red?", [Candidate(p.id, p) for p in pages])
    assert np.all((scores > 0) & (scores < 1))


def test_mmdocir_examples_hold_their_positives(shared_data):
    # guards: positives numbered 0-based or against the unshuffled window
    from polyrank.domains.docimage.data import parsed_subset, qrels_of
    from polyrank.domains.docimage.training import mmdocir_examples

    if not (shared_data / "docimage" / "mmdocir" / "parsed").is_dir():
        pytest.skip("MMDocIR parsed subset absent")
    examples = mmdocir_examples(shared_data, n_pages=3, seed=0)
    queries, qrels, _ = qrels_of(parsed_subset(shared_data, draw=False)[0])
    labelled = {}
    for qid, text in queries.items():
        labelled.setdefault(text, set()).update(qrels[qid])
    assert len(examples) == 39
    for ex in examples:
        assert len(ex.pages) == 3 and ex.positives
        for i, page in enumerate(ex.pages, 1):
            assert (page.id in labelled[ex.query]) == (i in ex.positives)


@pytest.mark.slow
def test_demo_without_data_runs_only_the_tiny_path(tmp_path):
    from polyrank.domains.docimage.demo import run_demo
    from polyrank.shared.demo import DemoContext

    section = run_demo(DemoContext(tmp_path, None))
    assert any("only the tiny-random" in n for n in section.notes)
    assert len(section.tables) == 1 and "RANDOM" in section.tables[0].title
