"""polyrank fit on the tiny configs -> load(..., checkpoint=last.ckpt) serves those weights (contract item 7)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

from polyrank.domains.crosslingual import load
from polyrank.shared.registry import UntrainedWeightsWarning

REPO = Path(__file__).parents[3]
QUERIES = ["capital of france", "hauptstadt von frankreich", "capital of france"]
DOCS = ["paris is the capital and largest city of france", "bananen enthalten viel kalium", "bananas are rich"]


@pytest.mark.parametrize("kind, variant", [("adapter", "adapters"), ("sft", "sft"), ("full", "full")])
def test_fit_tiny_config_then_load_serves_the_trained_weights(kind, variant, tmp_path):
    from polyrank.domains.crosslingual.module import RankingModule
    from polyrank.shared.checkpoints import read_lightning_checkpoint
    from polyrank.shared.cli import main

    assert main(["fit", "--config", str(REPO / f"configs/crosslingual/ranking_{kind}_tiny.yaml"),
                 "--trainer.default_root_dir", str(tmp_path)]) in (0, None)
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    with warnings.catch_warnings():
        warnings.simplefilter("error", UntrainedWeightsWarning)  # trained weights: no warning
        served = load(f"crosslingual.{variant}.tiny", checkpoint=ckpt)
    # the module's own predictions with the checkpoint's weights
    saved = read_lightning_checkpoint(ckpt, prefix="model.", module="RankingModule")
    allowed = RankingModule.__init__.__code__.co_varnames
    module = RankingModule(**{k: v for k, v in saved.hparams.items() if k in allowed})
    module.model.load_state_dict(saved.state_dict)
    with torch.no_grad():
        own = module.eval()(QUERIES, DOCS).numpy()
    got = served.score_pairs(QUERIES, DOCS)
    assert abs(got - own).max() < 1e-5
    with pytest.warns(UntrainedWeightsWarning):
        untrained = load(f"crosslingual.{variant}.tiny")
    assert abs(untrained.score_pairs(QUERIES, DOCS) - got).max() > 1e-4
    # the exported module file composes on the tiny base to the same scores; its metadata counts parameters
    meta = json.loads((tmp_path / "module" / "module.json").read_text())
    assert meta["kind"] == f"ranking_{'adapter' if kind == 'adapter' else kind}" and meta["trainable_params"] > 0
    composed = load("tiny", ranking_module=str(tmp_path / "module"))
    assert abs(composed.score_pairs(QUERIES, DOCS) - got).max() < 1e-5
    # training learned something on the tiny bilingual set: the positive outranks the negatives
    assert got[0] > got[2]


def test_fit_language_adapter_exports_a_language_module(tmp_path):
    from polyrank.shared.cli import main

    assert main(["fit", "--config", str(REPO / "configs/crosslingual/language_adapter_tiny.yaml"),
                 "--trainer.default_root_dir", str(tmp_path), "--model.init_args.language", "de"]) in (0, None)
    meta = json.loads((tmp_path / "module" / "module.json").read_text())
    assert meta["kind"] == "language_adapter" and meta["language"] == "de" and meta["invertible"] is True
    assert meta["reduction_factor"] == 2
