"""Learning sanity (loss falls, positives rise), save/load round trip, the API, and the CLI on tiny.yaml."""

from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from polyrank.domains.mtm import rank
from polyrank.domains.mtm.datamodule import MTMDataModule
from polyrank.domains.mtm.module import MTMModule
from polyrank.domains.mtm.train import compare_bm25_mtm
from polyrank.shared.errors import PolyrankError
from polyrank.shared.evaluation import evaluate
from polyrank.shared.protocol import as_candidates, rerank_run
from polyrank.shared.registry import list_rerankers, load
from polyrank.shared.trainer import build_trainer
from mtm_separable import SeparableData

REPO = Path(__file__).resolve().parents[3]


def _mean_rr(module, split="train"):
    run = module.rerank(split)
    return evaluate(run, {q: module.dm.data.qrels[q] for q in run}, ["MRR"]).mean["MRR"]


class _Probe(L.Callback):
    def __init__(self):
        self.rr, self.losses, self.memories = [], [], []

    def on_train_start(self, trainer, module):
        self.rr.append(_mean_rr(module))
        self.memories.append(module.model.memory.clone())

    def on_train_epoch_end(self, trainer, module):
        self.losses.append(float(trainer.callback_metrics["train/loss"]))

    def on_train_end(self, trainer, module):
        self.rr.append(_mean_rr(module))
        self.memories.append(module.model.memory.clone())




@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("mtm")
    dm = SeparableData(source="synthetic", backbone="tiny", batch_size=16)
    module = MTMModule(backbone="tiny", n_key_sentences=3, n_patterns=4, lr=2e-3, rot_epochs=2, rot_batch_size=64,
                       dropout=0.1, memory_update_pass="eval")
    probe = _Probe()
    trainer = build_trainer(default_root_dir=root, max_epochs=8, progress_bar="none", loggers=False,
                            enable_checkpointing=False, callbacks=[probe], limit_val_batches=0)
    trainer.fit(module, datamodule=dm)
    return module, dm, probe, root


def test_loss_falls_and_positive_rank_rises(trained):
    module, _, probe, _ = trained
    assert probe.losses[-1] < probe.losses[0] * 0.8, probe.losses
    assert probe.rr[1] > probe.rr[0] + 0.1, probe.rr
    assert int(module.stages_done) == 1


def test_memory_was_initialised_and_updated(trained):
    _, _, probe, _ = trained
    start, end = probe.memories
    assert start.abs().sum() > 0                     # k-means init, not zeros
    assert not torch.allclose(start, end)            # per-epoch PMB updates moved it


def test_round_trip_and_registry_load_give_same_scores(trained):
    module, dm, _, root = trained
    reranker = module.to_reranker()
    qid = dm.data.subset("test")[0]
    cands = [(d, dm.data.articles[d]) for d in dm.data.candidates[qid]]
    before = [r.score for r in reranker.rank(dm.data.claims[qid], cands)]
    reranker.save(root / "saved")
    again = load(str(root / "saved"), device="cpu")
    after = [r.score for r in again.rank(dm.data.claims[qid], cands)]
    assert np.allclose(before, after, atol=1e-5)
    assert torch.equal(again.model.memory.cpu(), module.model.memory.cpu())
    ranked = rank(dm.data.claims[qid], dict(cands), model=again, top_k=3)
    assert len(ranked) == 3 and ranked[0].rank == 1
    keys = ranked[0].explanation["key_sentences"]
    assert 1 <= len(keys) <= 3 and abs(sum(k["weight"] for k in keys) - 1) < 1e-4
    assert all(k["sentence"] in dm.data.articles[ranked[0].candidate_id] for k in keys)
    assert load(str(root / "saved"), device="cpu", batch_size=4).batch_size == 4
    with pytest.raises(PolyrankError, match=r"does not accept the override\(s\) \['batchsize'\]"):
        load(str(root / "saved"), device="cpu", batchsize=4)
    with pytest.raises(PolyrankError, match=r"\['n_patterns'\] are fixed by the trained checkpoint"):
        load(str(root / "saved"), device="cpu", n_patterns=7)


def test_bm25_and_mtm_metrics_are_each_rankers_own(trained):
    # Mutation guard: compare_bm25_mtm's "MTM" figures must be an evaluation of the matcher's own run, not a copy
    # of BM25's. BM25's order is reversed here (relevant articles last), so the two must differ.
    module, dm, _, _ = trained
    measures = ["MRR", "MAP@5", "HIT@5"]
    original = dict(dm.data.candidates)
    try:
        for qid in dm.data.subset("test"):
            rel = dm.data.qrels[qid]
            dm.data.candidates[qid] = ([d for d in original[qid] if d not in rel] +
                                       [d for d in original[qid] if d in rel])
        runs = {}
        res = compare_bm25_mtm(module, dm, "test", measures, runs=runs)
        qrels = {q: dm.data.qrels[q] for q in dm.data.subset("test")}
        own = evaluate(module.rerank("test"), qrels, measures).mean        # the LightningModule's own scoring
        first = evaluate({q: {d: -i for i, d in enumerate(dm.data.candidates[q])} for q in qrels}, qrels, measures)
    finally:
        dm.data.candidates.clear()
        dm.data.candidates.update(original)
    assert res["MTM"] == pytest.approx(own, abs=1e-9)
    assert res["BM25"] == pytest.approx(first.mean, abs=1e-9)
    assert res["BM25"]["MRR"] < res["MTM"]["MRR"] - 0.2, res       # trained on separable data vs relevant-last
    assert set(runs) == {"BM25", "MTM"} and set(runs["MTM"]) == set(qrels)


def test_registered_names():
    assert {"mtm.minilm", "mtm.tiny"} <= set(list_rerankers("mtm.*"))


def test_cli_fit_then_served_from_last_ckpt(tmp_path):
    """polyrank fit on tiny.yaml, then load("mtm.tiny", checkpoint=last.ckpt) serves exactly the trained matcher."""
    import warnings

    import yaml

    from polyrank.shared.cli import main
    from polyrank.shared.registry import UntrainedWeightsWarning

    config = REPO / "configs/mtm/tiny.yaml"
    status = main(["fit", "--config", str(config), "--trainer.default_root_dir", str(tmp_path)])
    assert status == 0
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    with warnings.catch_warnings():
        warnings.simplefilter("error", UntrainedWeightsWarning)       # a trained checkpoint is not "untrained"
        served = load("mtm.tiny", checkpoint=ckpt, device="cpu")

    # the LightningModule's own predictions on the same claim and articles
    module = MTMModule.load_from_checkpoint(ckpt, map_location="cpu").eval()
    dm = MTMDataModule(**yaml.safe_load(config.read_text())["data"]["init_args"])
    dm.setup("test")
    module.dm = dm
    qid = dm.data.subset("test")[0]
    dids = dm.data.candidates[qid]
    expected = module.score_query(qid, dids)
    got = served.score(dm.data.claims[qid], as_candidates([(d, dm.data.articles[d]) for d in dids]))
    assert np.allclose(got, expected, atol=1e-5)

    # the weights are the checkpoint's (strict), ROT's front layers and the fitted PMB memory included
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    served_state = served.model.state_dict()
    assert set(served_state) == {k[len("model."):] for k in state if k.startswith("model.")}
    assert all(torch.equal(v, state[f"model.{k}"]) for k, v in served_state.items())
    with pytest.warns(UntrainedWeightsWarning):
        untrained = load("mtm.tiny", device="cpu")
    emb = "bert.embeddings.word_embeddings.weight"
    assert not torch.equal(served_state[emb], untrained.model.state_dict()[emb])     # ROT moved the front layers
    assert served.model.memory.abs().sum() > 0 and untrained.model.memory.abs().sum() == 0
    before = untrained.score(dm.data.claims[qid], as_candidates([(d, dm.data.articles[d]) for d in dids]))
    assert not np.allclose(got, before, atol=1e-3)

    # figures: the served reranker through the shared flow equals the module's own run
    qrels = {q: dm.data.qrels[q] for q in dm.data.subset("test")}
    first = {q: {d: -i for i, d in enumerate(dm.data.candidates[q])} for q in qrels}
    shared_flow = rerank_run(first, served, dm.data.claims, dm.data.articles, depth=len(dids))
    assert evaluate(shared_flow, qrels, ["MRR", "MAP@5"]).mean == pytest.approx(
        evaluate(module.rerank("test"), qrels, ["MRR", "MAP@5"]).mean, abs=1e-9)

    # save() keeps the variant; a broken checkpoint is a clear, strict error naming the keys
    served.save(tmp_path / "saved")
    assert load(tmp_path / "saved").registry_name == "mtm.tiny"
    raw = torch.load(ckpt, map_location="cpu", weights_only=True)
    raw["state_dict"].pop("model.memory")
    raw["state_dict"]["model.extra.weight"] = torch.zeros(1)
    torch.save(raw, tmp_path / "broken.ckpt")
    with pytest.raises(PolyrankError, match=r"missing keys \['memory'\].*unexpected keys \['extra.weight'\]"):
        load("mtm.tiny", checkpoint=tmp_path / "broken.ckpt")
    with pytest.raises(PolyrankError, match="fixed by the trained checkpoint"):
        load("mtm.tiny", checkpoint=ckpt, n_mlp_layers=3)
