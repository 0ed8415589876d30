"""``polyrank fit`` on the tiny FIRST and ProRank stage-2 configs, then ``load(<family>.tiny, checkpoint=last.ckpt)``
serves exactly the trained (LoRA-merged) weights: its read-outs equal the trained module's own and differ from the
untrained model's; a checkpoint of another family, a tampered one or a zero-shot family is a clear error."""

from __future__ import annotations

import inspect
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from polyrank.domains.text import load
from polyrank.shared.cli import main
from polyrank.shared.errors import PolyrankError
from polyrank.shared.protocol import as_candidates
from polyrank.shared.registry import UntrainedWeightsWarning

pytest.importorskip("peft")

CONFIGS = Path(__file__).parents[4] / "configs" / "text"
QUERY = "boiling point of water at altitude"
PASSAGES = ["Water boils at 100 degrees at sea level.", "The moon orbits the earth.", "At altitude water boils sooner."]


def fit(config: str, root: Path) -> Path:
    assert main(["fit", "--config", str(CONFIGS / config), "--trainer.default_root_dir", str(root)]) == 0
    return root / "checkpoints" / "last.ckpt"


def trained_module(cls, last: Path):
    """The LightningModule rebuilt from the checkpoint's hyper-parameters with its adapter weights loaded."""
    ckpt = torch.load(last, weights_only=True)
    accepted = inspect.signature(cls.__init__).parameters
    module = cls(**{k: v for k, v in ckpt["hyper_parameters"].items() if k in accepted})
    module.load_state_dict(ckpt["state_dict"])
    return module.eval(), ckpt


def served(name: str, last: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("error", UntrainedWeightsWarning)  # a .ckpt load must not warn
        return load(name, checkpoint=str(last))


def untrained(name: str):
    with pytest.warns(UntrainedWeightsWarning):
        return load(name)


@pytest.fixture(scope="module")
def first_ckpt(tmp_path_factory):
    return fit("first_tiny.yaml", tmp_path_factory.mktemp("first"))


@pytest.fixture(scope="module")
def prorank_ckpt(tmp_path_factory):
    return fit("prorank_stage2_tiny.yaml", tmp_path_factory.mktemp("prorank"))


def test_fit_first_then_load_serves_the_trained_identifier_logits(first_ckpt, tmp_path):
    from polyrank.domains.text.training.first_loss import FirstModule
    from polyrank.domains.text.windows import order_to_scores

    module, ckpt = trained_module(FirstModule, first_ckpt)
    assert ckpt["global_step"] == 6 and ckpt["hyper_parameters"]["serve_as"] == "text.first"  # 6 windows / 2 x 2
    reranker = served("text.first.tiny", first_ckpt)
    logits = reranker.identifier_logits(QUERY, PASSAGES)
    np.testing.assert_allclose(logits, module.identifier_logits(QUERY, PASSAGES).numpy(), atol=1e-4)
    assert not np.allclose(logits, untrained("text.first.tiny").identifier_logits(QUERY, PASSAGES), atol=1e-3)
    cands = as_candidates(list(zip("abc", PASSAGES)))
    expected = order_to_scores(list(np.argsort(-logits, kind="stable")), 3)
    np.testing.assert_array_equal(reranker.score(QUERY, cands), expected)
    reranker.save(tmp_path / "saved")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UntrainedWeightsWarning)
        np.testing.assert_array_equal(load(str(tmp_path / "saved")).score(QUERY, cands), expected)
    assert served("text.first", first_ckpt).identifier_logits(QUERY, PASSAGES) == pytest.approx(logits, abs=1e-4)


def test_fit_prorank_stage2_then_load_serves_the_trained_scores(prorank_ckpt):
    from polyrank.domains.text.training.prorank_stage2 import ProRankStage2Module

    module, ckpt = trained_module(ProRankStage2Module, prorank_ckpt)
    assert ckpt["hyper_parameters"]["serve_as"] == "text.pointwise.prorank"
    cands = as_candidates(list(zip("abc", PASSAGES)))
    scores = served("text.pointwise.prorank.tiny", prorank_ckpt).score(QUERY, cands)
    with torch.no_grad():
        direct = module.scores([QUERY] * 3, PASSAGES).numpy()
    np.testing.assert_allclose(scores, direct, atol=1e-4)
    assert not np.allclose(scores, untrained("text.pointwise.prorank.tiny").score(QUERY, cands), atol=1e-3)
    np.testing.assert_allclose(served("text.prorank", prorank_ckpt).score(QUERY, cands), scores, atol=1e-4)


def test_a_checkpoint_of_another_family_or_a_zero_shot_family_is_a_clear_error(prorank_ckpt, first_ckpt):
    with pytest.raises(PolyrankError, match=r"trained for 'text.pointwise.prorank'.*load\('text.pointwise.prorank'"):
        load("text.first.tiny", checkpoint=str(prorank_ckpt))
    with pytest.raises(PolyrankError, match="trained for 'text.first'"):
        load("text.pointwise.tiny", checkpoint=str(first_ckpt))
    with pytest.raises(PolyrankError, match="zero-shot"):
        load("text.icr.tiny", checkpoint=str(first_ckpt))
    with pytest.raises(PolyrankError, match="variant"):
        load("text.pointwise.prorank.tiny", checkpoint=str(prorank_ckpt), variant="yesno")


def test_tampered_or_foreign_checkpoints_are_refused(first_ckpt, tmp_path):
    from polyrank.domains.text.training.serving import lm_from_recipe_checkpoint

    ckpt = torch.load(first_ckpt, weights_only=True)
    dropped = sorted(ckpt["state_dict"])[0]
    del ckpt["state_dict"][dropped]
    torch.save(ckpt, tmp_path / "missing.ckpt")
    with pytest.raises(PolyrankError, match="missing"):
        lm_from_recipe_checkpoint(tmp_path / "missing.ckpt")
    ckpt["hyper_parameters"].pop("serve_as")
    torch.save(ckpt, tmp_path / "foreign.ckpt")
    with pytest.raises(PolyrankError, match="serve_as"):
        load("text.first.tiny", checkpoint=str(tmp_path / "foreign.ckpt"))
