"""Issue 13: first stages (OCR text, dense, ranx fusion), splits, MTM's options (CPU-budget head, logit-difference
read-out, warm-up) and the learning test, prior/hub statistics and the random baseline over all claims."""

import math
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from polyrank.domains.mtm.data import _tweet_text, load_politifact, split_by_article, split_by_query
from polyrank.domains.mtm.first_stage import claim_text, dense_first_stage, fuse_runs, ocr_text
from polyrank.domains.mtm.model import MatchingHead, readout_scores
from polyrank.domains.mtm.pipeline import (ArticlePriorNormalised, expected_random_rr, prior_stats,
                                           random_order_mrr)
from polyrank.shared.errors import PolyrankError
from polyrank.shared.protocol import Candidate, Reranker
from polyrank.shared.reproduce import data_dir

TWEET = {"OriginalTweetContent_Raw": "Fracking march. http://t.co/x", "OriginalTweetContent_Processed": "fracking url",
         "Images_in_tweet": "{'http://a.jpg': {'code': '200', 'text_for_the_image': 'OBAMA SAID IT'}, "
                            "'http://b.jpg': {'code': '404'}}"}


def test_ocr_text_reads_the_release_repr_string():
    # guards: the release stores Images_in_tweet as a Python repr *string*; the old reader called .values() on it
    assert ocr_text(TWEET) == "OBAMA SAID IT"
    assert _tweet_text(TWEET, ("OriginalTweetContent_Processed", "ocr"), None, 1) == "fracking url OBAMA SAID IT"
    assert claim_text(TWEET, "raw", ocr=True) == "Fracking march. http://t.co/x OBAMA SAID IT"
    assert claim_text(TWEET, "processed") == "fracking url"
    with pytest.raises(PolyrankError, match="expected 'raw' or 'processed'"):
        claim_text(TWEET, "clean")


def test_rrf_and_score_fusion_match_hand_computed_values():
    a = {"q": {"d1": 3.0, "d2": 2.0, "d3": 1.0}}
    b = {"q": {"d3": 0.9, "d1": 0.5}}
    rrf = fuse_runs([a, b], "rrf", rrf_k=60)["q"]
    assert rrf["d1"] == pytest.approx(1 / 61 + 1 / 62)          # rank 1 in a, rank 2 in b
    assert rrf["d3"] == pytest.approx(1 / 63 + 1 / 61)
    assert rrf["d2"] == pytest.approx(1 / 62)
    assert list(rrf) == ["d1", "d3", "d2"]
    score = fuse_runs([a, b], "score")["q"]                     # min-max per run, equal weights
    assert score == pytest.approx({"d1": 0.5 * 1 + 0.5 * 0, "d3": 0.5 * 0 + 0.5 * 1, "d2": 0.5 * 0.5})
    assert list(score)[:2] == ["d1", "d3"]                       # tie broken by id
    with pytest.raises(PolyrankError, match="expected 'rrf' or 'score'"):
        fuse_runs([a, b], "max")


def test_dense_first_stage_is_exact_inner_product_search():
    arts = {"a": np.array([1, 0, 0], np.float32), "b": np.array([0, 1, 0], np.float32),
            "c": np.array([0.6, 0.8, 0], np.float32)}
    run = dense_first_stage(arts, {"q": np.array([0, 1, 0], np.float32)}, k=2)
    assert list(run["q"]) == ["b", "c"] and run["q"]["c"] == pytest.approx(0.8)


def test_split_by_query_sizes_and_disjointness():
    qrels = {f"q{i}": {f"d{i % 7}": 1} for i in range(100)}
    sp = split_by_query(qrels, seed=3)
    assert [len(sp[s]) for s in ("train", "val", "test")] == [70, 10, 20]
    assert sorted(sp["train"] + sp["val"] + sp["test"]) == sorted(qrels)
    assert split_by_query(qrels, seed=3) == sp and split_by_query(qrels, seed=4) != sp
    by_article = split_by_article(qrels, seed=3)
    train_docs = {d for q in by_article["train"] for d in qrels[q]}
    assert not train_docs & {d for q in by_article["test"] for d in qrels[q]}


def test_politifact_split_sizes():
    folder = (data_dir() or Path("/nonexistent")) / "factcheck" / "politifact"  # data_dir() is None without ../shared
    if not folder.is_dir():
        pytest.skip(f"Politifact not found at {folder} (shared data absent)")
    for split, sizes in (("article", [1429, 194, 403]), ("query", [1418, 203, 405])):
        data = load_politifact(folder, split=split)
        assert [len(data.splits[s]) for s in ("train", "val", "test")] == sizes, split
    with pytest.raises(PolyrankError, match="expected 'article'"):
        load_politifact(folder, split="claim")


def test_logit_difference_readout_is_monotone_and_class1_is_not():
    # guards: the reference ranks by GELU(GELU(z1)), which is not monotone in z1 (GELU dips below 0 near -0.75)
    head = MatchingHead(6, kind="reference", dropout=0.0).eval()
    z1 = torch.linspace(-4, 4, 81)
    raw = torch.stack([torch.zeros_like(z1), z1], dim=1)
    diff = readout_scores(raw, head, "logit_diff")
    assert torch.all(diff[1:] > diff[:-1])
    class1 = readout_scores(raw, head, "class1")
    assert not torch.all(class1[1:] >= class1[:-1])               # e.g. z1=-4 outranks z1=-0.75
    assert torch.allclose(readout_scores(raw, MatchingHead(6, kind="mlp").eval(), "class1"), z1)
    with pytest.raises(ValueError, match="readout"):
        readout_scores(raw, head, "softmax")


class _Losses(L.Callback):
    def __init__(self):
        self.losses = []

    def on_train_epoch_end(self, trainer, module):
        self.losses.append(float(trainer.callback_metrics["train/loss"]))


def _fit_losses(tmp_path, **options):
    from polyrank.domains.mtm.module import MTMModule
    from polyrank.shared.trainer import build_trainer


    from mtm_separable import SeparableData

    dm = SeparableData(source="synthetic", backbone="tiny", batch_size=16, balanced_sampling=True)  # prior loss: ln 2
    module = MTMModule(backbone="tiny", n_key_sentences=3, n_patterns=4, rot_epochs=2, rot_batch_size=64, lr=1e-3,
                       memory_update_pass="none", **options)
    probe = _Losses()
    build_trainer(default_root_dir=tmp_path, max_epochs=6, progress_bar="none", loggers=False,
                  enable_checkpointing=False, callbacks=[probe], limit_val_batches=0).fit(module, datamodule=dm)
    return probe.losses


def test_cpu_budget_options_leave_the_ln2_plateau(tmp_path):
    # guards: MTM that learns nothing (the reference head's loss stays at ln 2 = 0.693 in CPU budgets)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        mlp = _fit_losses(tmp_path / "mlp", head="mlp", readout="logit_diff", warmup_ratio=0.1)
    finally:
        torch.set_num_threads(threads)
    assert mlp[-1] < math.log(2) - 0.1, mlp                      # balanced sampling: a prior-only model stays at ln 2
    assert mlp[-1] < mlp[0] - 0.1, mlp


def test_warmup_ratio_sets_the_first_learning_rates(tmp_path):
    from polyrank.domains.mtm.module import MTMModule

    module = MTMModule(backbone="tiny", n_patterns=4, warmup_ratio=0.5, lr=1e-3)
    module.trainer = type("T", (), {"estimated_stepping_batches": 10, "max_epochs": 1})()
    sched = module.configure_optimizers()["lr_scheduler"]["scheduler"]
    lrs = [sched.get_last_lr()[0]]
    for _ in range(6):
        sched.optimizer.step()
        sched.step()
        lrs.append(sched.get_last_lr()[0])
    assert lrs[0] == 0 and lrs[1] == pytest.approx(2e-4) and lrs[5] == pytest.approx(1e-3, rel=0.05)


def test_random_order_baseline_counts_every_claim():
    assert expected_random_rr(10, 1) == pytest.approx(sum(1 / k for k in range(1, 11)) / 10)   # 0.2929
    assert expected_random_rr(3, 3) == 1.0 and expected_random_rr(5, 0) == 0.0
    assert expected_random_rr(3, 2) == pytest.approx(2 / 3 + (1 / 3) * (1 / 2))
    run = {"q1": {f"d{i}": 10 - i for i in range(10)}, "q2": {f"d{i}": 10 - i for i in range(10)}}
    qrels = {"q1": {"d3": 1}, "q2": {"x": 1}}                      # q2's positive is not retrieved
    over_all, over_hits = random_order_mrr(run, qrels, depth=10)
    assert over_hits == pytest.approx(0.2929, abs=1e-4) and over_all == pytest.approx(over_hits / 2)


def test_prior_stats_and_per_article_normalisation():
    run = {"q1": {"hub": 3.0, "a": 1.0}, "q2": {"hub": 3.0, "b": 2.0}, "q3": {"c": 5.0, "hub": 1.0}}
    stats = prior_stats(run, train_positives={"hub"}, qrels={"q1": {"a": 1}, "q2": {"hub": 1}, "q3": {"c": 1}})
    assert stats == pytest.approx({"seen_top1": 2 / 3, "hub_top1": 2 / 3, "hub_relevant": 1 / 2})

    class Fixed(Reranker):
        def score(self, query, candidates):
            return np.array([{"hub": 3.0, "a": 1.0}[c.id] for c in candidates])

    normalised = ArticlePriorNormalised(Fixed(), {"hub": (3.0, 0.5), "a": (0.0, 1.0)})
    assert normalised.score("q", [Candidate("hub"), Candidate("a")]).tolist() == [0.0, 1.0]


def test_gpu_recipe_config_names_real_arguments():
    # guards: a GPU recipe whose keys no longer match MTMModule / MTMDataModule / build_trainer fails only on the GPU
    import inspect
    from pathlib import Path

    import yaml

    from polyrank.domains.mtm.datamodule import MTMDataModule
    from polyrank.domains.mtm.module import MTMModule
    from polyrank.shared.trainer import build_trainer

    cfg = yaml.safe_load((Path(__file__).resolve().parents[3] / "configs/mtm/gpu_politifact.yaml").read_text())
    for section, target in (("model", MTMModule), ("data", MTMDataModule)):
        assert set(cfg[section]["init_args"]) <= set(inspect.signature(target.__init__).parameters), section
    assert set(cfg["trainer"]) <= set(inspect.signature(build_trainer).parameters)
    # "auto" is bf16-mixed on a bf16-capable CUDA device (shared/trainer.py); the old assertion wanted the literal
    # "bf16-mixed" and failed on the committed recipe
    assert cfg["trainer"]["max_steps"] >= 250_000 and cfg["trainer"]["precision"] in ("auto", "bf16-mixed")
    assert cfg["model"]["init_args"]["head"] == "reference" and cfg["model"]["init_args"]["readout"] == "class1"


def test_head_and_readout_survive_save_and_load(tmp_path):
    # guards: a saved MTM that comes back with the reference head/read-out (wrong shapes or a different score)
    import warnings

    from polyrank.domains.mtm import load

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reranker = load("mtm.tiny", head="mlp", readout="logit_diff")
    assert reranker.model.head.kind == "mlp" and reranker.model.readout == "logit_diff"
    cands = [("a", ["the tax claim is false", "rated"]), ("b", ["a border story"])]
    before = [r.score for r in reranker.rank("tax claim", cands)]
    reranker.save(tmp_path / "m")
    again = load(str(tmp_path / "m"), device="cpu")
    assert again.model.head.kind == "mlp" and again.model.readout == "logit_diff"
    assert np.allclose(before, [r.score for r in again.rank("tax claim", cands)], atol=1e-5)
    assert load(str(tmp_path / "m"), device="cpu", readout="class1").model.readout == "class1"
    with pytest.raises(PolyrankError, match="fixed by the trained checkpoint"):
        load(str(tmp_path / "m"), device="cpu", head="reference")


def _val_better_test_worse():
    """Run "A" wins on the validation claims (v*), run "B" on the test claims (t*)."""
    a = {"v1": {"x": 2.0, "y": 1.0}, "v2": {"x": 2.0, "y": 1.0}, "t1": {"x": 2.0, "y": 1.0}}
    b = {"v1": {"y": 2.0, "x": 1.0}, "v2": {"y": 2.0, "x": 1.0}, "t1": {"y": 2.0, "x": 1.0}}
    val_qrels, test_qrels = {"v1": {"x": 1}, "v2": {"x": 1}}, {"t1": {"y": 1}}
    return {"A": a, "B": b}, val_qrels, test_qrels


def test_choose_on_validation_picks_by_val_not_test():
    # guards: the defect in method of issue 13: the recommended pipeline was picked on the TEST tables
    from polyrank.domains.mtm.pipeline import choose_on_validation

    runs, val_qrels, test_qrels = _val_better_test_worse()
    chosen, scores = choose_on_validation(runs, val_qrels)
    assert chosen == "A" and scores == pytest.approx({"A": 1.0, "B": 0.5})
    assert choose_on_validation(runs, test_qrels)[0] == "B"                  # the hand case does discriminate
    tie = {"simple": runs["A"], "complex": dict(runs["A"])}
    assert choose_on_validation(tie, val_qrels)[0] == "simple"               # ties go to the earlier (simpler) row
    missing = {"A": {"v1": runs["A"]["v1"]}, "B": runs["B"]}                 # A lacks v2: it counts 0 there
    assert choose_on_validation(missing, val_qrels)[1] == pytest.approx({"A": 0.5, "B": 0.5})


def test_demo_reranker_choice_is_made_on_validation_claims(tmp_path):
    # guards: the demo's reranker table choosing (or marking as chosen) the reranker that wins on TEST claims
    from polyrank.domains.mtm import factcheck_demo as fd
    from polyrank.domains.mtm.pipeline import CosineReranker, EmbeddingCache
    from polyrank.shared.demo import DemoContext

    class Fixed:
        dim = 2
        vecs = {"claim v": [1.0, 0.0], "claim t": [1.0, 0.0], "article x": [0.0, 1.0], "article y": [1.0, 0.0]}

        def encode(self, texts):
            return np.array([self.vecs[t] for t in texts], np.float32)

    data = type("D", (), {"articles": {"x": ["article x"], "y": ["article y"]},
                          "qrels": {"v1": {"x": 1}, "v2": {"x": 1}, "t1": {"y": 1}, "t2": {"y": 1}, "r1": {"x": 1}}})()
    first = {q: {"x": 2.0, "y": 1.0} for q in ("v1", "v2", "t1", "t2")}       # first stage: x above y
    env = dict(ctx=DemoContext(out_dir=tmp_path, data_dir=None, seed=0, device="cpu"), data=data,
               texts={"raw+ocr": {"v1": "claim v", "v2": "claim v", "t1": "claim t", "t2": "claim t"}}, out=tmp_path)
    parts = {"train": ["r1"], "val": ["v1", "v2"], "test": ["t1", "t2"]}
    res = fd._rerankers(env, "article", parts, first, "first", CosineReranker(EmbeddingCache(Fixed())),
                        first, first, [], [])
    # on v* the first stage is right (x) and cosine wrong (prefers y); on t* the reverse: val must choose
    assert res["chosen"] == fd.NONE and res["val"] == 1.0 and res["test"] == 0.5
    assert res["n_test"] == 2 and res["base"] == 0.5 and res["p_base"] == "-"   # summary figures: its test claims
    rows = res["tables"][0].rows
    marked = [r[0] for r in rows if "chosen on val" in str(r[0])]
    assert marked == [fd.NONE + "  <- chosen on val"]
    cosine_row = next(r for r in rows if str(r[0]).startswith("MiniLM cosine (zero"))
    assert cosine_row[1] == 1.0 and cosine_row[5] == 0.5                    # test MRR 1.0, val MRR 0.5


def test_learning_curve_records_epoch_zero_and_restores_train_mode(tmp_path):
    # guards: a curve without the before-training point (a model that learns nothing then looks like one that
    # learned in epoch 1) and a validation hook that leaves the model in eval mode (dropout off while training)
    from polyrank.domains.mtm.curves import LearningCurve, plot_curves
    from polyrank.shared.trainer import build_trainer

    class Toy(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.lin, self.modes = torch.nn.Linear(1, 1), []

        def training_step(self, batch, i):
            self.modes.append(self.training)
            x, y = batch
            loss = torch.nn.functional.mse_loss(self.lin(x), y)
            self.log("train/loss", loss, on_step=False, on_epoch=True)
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    x = torch.linspace(-1, 1, 32)[:, None]
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, 3 * x), batch_size=8)
    seen = []
    toy = Toy()
    curve = LearningCurve(lambda m: seen.append(m.training) or {"w": float(m.lin.weight)})
    build_trainer(default_root_dir=tmp_path, max_epochs=3, progress_bar="none", loggers=False,
                  enable_checkpointing=False, callbacks=[curve], limit_val_batches=0).fit(toy, loader)
    assert len(curve.val["w"]) == 4 and len(curve.loss) == 3                 # epoch 0 + one per epoch
    assert curve.val["w"][-1] > curve.val["w"][0] and curve.loss[-1] < curve.loss[0]
    assert seen == [False] * 4 and all(toy.modes)                            # eval to validate, train to train
    assert plot_curves({"toy": curve}, tmp_path / "c.png", {"ref": 1.0}).is_file()
