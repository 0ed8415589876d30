"""The domain contract for MTM: untrained warnings, declared overrides, global state, the evaluation protocol
(relevant = debunking articles among the candidates) and a mutation guard on the demo's comparison table.

The ``polyrank fit`` -> ``load(..., checkpoint=last.ckpt)`` round trip is in ``test_mtm_training.py``
(``test_cli_fit_then_served_from_last_ckpt``), beside the other training tests.
"""

from __future__ import annotations

import inspect
import json
import random

import numpy as np
import pytest
import torch

from polyrank.domains.mtm import rank
from polyrank.domains.mtm.datamodule import MTMDataModule
from polyrank.domains.mtm.module import MTMModule
from polyrank.domains.mtm.reproduce import MTMRow
from polyrank.domains.mtm.reranker import _CONFIG_KEYS
from polyrank.domains.mtm.train import compare_bm25_mtm, evaluation_qrels
from polyrank.shared.errors import PolyrankError
from polyrank.shared.evaluation import evaluate
from polyrank.shared.registry import UntrainedWeightsWarning, load, options

ARTICLES = {"a1": ["The moon landing was staged.", "Experts disagree."],
            "a2": ["Vaccines do not cause autism.", "Many studies show it."]}


def _global_state():
    return torch.get_rng_state().clone(), np.random.get_state()[1].copy(), random.getstate()


def _same(a, b) -> bool:
    return torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


# -- defect 2: the default of rank() must not silently serve untrained weights ----------------------------------
def test_rank_default_model_warns_untrained():
    with pytest.warns(UntrainedWeightsWarning, match="mtm.minilm.*checkpoint="):
        ranked = rank("the moon landing was faked", ARTICLES)
    assert sorted(r.candidate_id for r in ranked) == ["a1", "a2"]
    with pytest.raises(PolyrankError, match="checkpoint= applies to a registered name"):
        rank("claim", ARTICLES, model=ranked, checkpoint="x.ckpt")


# -- defect 3: declared overrides, checked before anything is built ----------------------------------------------
@pytest.mark.parametrize("name", ["mtm.minilm", "mtm.tiny"])
def test_overrides_are_declared_and_checked(name):
    from polyrank.domains.mtm.registry import OPTIONS

    assert options(name) == OPTIONS
    assert set(OPTIONS) == set(_CONFIG_KEYS) | {"batch_size", "seed"}   # every key the builders pass on
    with pytest.raises(PolyrankError, match=r"does not accept the override\(s\) \['batchsize'\].*batch_size"):
        load(name, batchsize=4)


def test_save_writes_the_name_it_was_built_under(tmp_path):
    # MTMReranker.save used to write "mtm.minilm" whatever the variant
    with pytest.warns(UntrainedWeightsWarning):
        reranker = load("mtm.tiny", device="cpu", batch_size=3)
    assert reranker.batch_size == 3
    reranker.save(tmp_path / "saved")
    assert json.loads((tmp_path / "saved" / "polyrank.json").read_text())["reranker"] == "mtm.tiny"
    assert load(tmp_path / "saved").registry_name == "mtm.tiny"


# -- defect 4: ROT's nested trainer must not reseed the outer fit ------------------------------------------------
def test_train_rot_leaves_the_outer_rng_stream_alone_and_is_seeded_on_its_own(tmp_path):
    # The old code ran ROT's trainer with build_trainer(seed=h.seed) -> L.seed_everything in the middle of the
    # outer fit: the global torch/NumPy/Python states after train_rot were the reseeded ones.
    dm = MTMDataModule(source="synthetic", backbone="tiny", n_candidates=8, synthetic_claims=20,
                       synthetic_articles=10)
    dm.setup()

    def rot_once(outer_seed: int) -> torch.Tensor:
        module = MTMModule(backbone="tiny", n_key_sentences=2, n_patterns=2, rot_epochs=1, rot_batch_size=16,
                           rot_max_pairs=48, seed=0)
        module.dm = dm
        initial = module.model.bert.embeddings.word_embeddings.weight.detach().clone()
        torch.manual_seed(outer_seed)
        np.random.seed(outer_seed)
        random.seed(outer_seed)
        before = _global_state()
        module.train_rot(tmp_path / f"rot{outer_seed}")
        assert _same(before, _global_state()), "train_rot changed the global RNG state of the outer run"
        trained = module.model.bert.embeddings.word_embeddings.weight.detach().clone()
        assert not torch.equal(initial, trained), "ROT did not train (the test would be vacuous)"
        return trained

    # ROT draws from its own stream seeded with `seed`: the same weights whatever the outer state
    assert torch.equal(rot_once(1), rot_once(2))


# -- defect 5: the reference's relevance rule ---------------------------------------------------------------------
def test_relevant_in_candidates_is_the_default_and_differs_from_all_on_a_hand_case():
    run = {"q": {"a": 3.0, "b": 2.0, "c": 1.0}}
    candidates = {"q": ["a", "b", "c"]}
    qrels = {"q": {"a": 1, "c": 1, "z": 1}}           # z: a debunking article BM25 did not retrieve
    inside = evaluate(run, evaluation_qrels(qrels, candidates, ["q"]), ["MAP@1", "MAP@3", "MRR"]).mean
    every = evaluate(run, evaluation_qrels(qrels, candidates, ["q"], "all"), ["MAP@1", "MAP@3", "MRR"]).mean
    # in candidates: R = {a, c}: MAP@1 = 1/2, MAP@3 = (1/1 + 2/3) / 2; all: R = {a, c, z}: divided by 3
    assert inside["MAP@1"] == pytest.approx(1 / 2) and every["MAP@1"] == pytest.approx(1 / 3)
    assert inside["MAP@3"] == pytest.approx((1 + 2 / 3) / 2) and every["MAP@3"] == pytest.approx((1 + 2 / 3) / 3)
    assert inside["MRR"] == every["MRR"] == 1.0
    assert inspect.signature(compare_bm25_mtm).parameters["relevant"].default == "in_candidates"
    assert inspect.signature(MTMRow).parameters["relevant"].default == "in_candidates"
    with pytest.raises(PolyrankError, match="relevant='some'"):
        evaluation_qrels(qrels, candidates, ["q"], "some")


# -- defects 4 and 7: the demo restores the thread count; its MTM column is MTM's own evaluation ------------------
def test_demo_restores_threads_and_its_mtm_column_is_mtms_own(tmp_path, monkeypatch):
    from polyrank.domains.mtm import demo, train
    from polyrank.shared.demo import DemoContext

    monkeypatch.setattr(demo, "SETTINGS", {**demo.SETTINGS, "backbone": "tiny", "n_patterns": 4,
                                           "train_claims": 24, "test_claims": 12, "synthetic_claims": 60,
                                           "synthetic_articles": 20, "mtm_epochs": 1, "threads": 1})
    captured = {}
    real_fit = train.fit_mtm

    def spy(*args, **kwargs):
        captured["module"] = real_fit(*args, **kwargs)
        return captured["module"]

    monkeypatch.setattr(train, "fit_mtm", spy)
    threads = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        section = demo.run_demo(DemoContext(tmp_path, None, seed=0, device="cpu"))
        # the old demo called torch.set_num_threads(min(2, n)) and never restored it
        assert torch.get_num_threads() == 3
        # without Politifact the section says first, not in a footnote, that its data are generated (issue 10)
        assert section.summary.startswith("GENERATED DATA ONLY")
    finally:
        torch.set_num_threads(threads)

    module = captured["module"]
    dm, depth = module.dm, demo.SETTINGS["depth"]
    qids = dm.data.subset("test")
    qrels = evaluation_qrels(dm.data.qrels, dm.data.candidates, qids)
    # independent of compare_bm25_mtm/rerank_run: the LightningModule's own scoring and BM25's candidate order
    mtm = evaluate(module.rerank("test", depth), qrels, list(demo.MEASURES))
    bm25 = evaluate({q: {d: -i for i, d in enumerate(dm.data.candidates[q])} for q in qids}, qrels,
                    list(demo.MEASURES))
    # the case is one where the two rankers' figures differ, so a swapped/copied column cannot pass
    assert mtm.mean != bm25.mean
    rows = {row[0]: dict(zip(demo.MEASURES, row[1:])) for row in section.tables[0].rows}
    assert rows["MTM"] == pytest.approx(mtm.mean, abs=1e-9)
    assert rows["BM25"] == pytest.approx(bm25.mean, abs=1e-9)
    assert (tmp_path / "mtm" / "mtm.test.trec").is_file() and (tmp_path / "mtm" / "bm25.test.trec").is_file()
