"""The domain contract for SuperGlobal: `polyrank fit` checkpoints reload exactly, the tiny config and the
registered tiny variant agree, loading leaves the caller's RNG alone, overrides are declared, and every
stage-1 switch (Regional-GeM above all) really reaches the descriptors (an oracle of the paper's equations)."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from polyrank.domains.superglobal.checkpoints import CheckpointError
from polyrank.domains.superglobal.model import Stage1, resize
from polyrank.domains.superglobal.module import SuperGlobalDataModule, SuperGlobalModule
from polyrank.domains.superglobal.registry import OPTIONS, STAGE1_OPTIONS
from polyrank.shared.errors import PolyrankError
from polyrank.shared.protocol import Candidate
from polyrank.shared.registry import UntrainedWeightsWarning, load, options

CONFIG = Path(__file__).resolve().parents[3] / "configs" / "superglobal" / "tiny.yaml"


def _untrained(name: str = "superglobal.tiny", **overrides):
    with pytest.warns(UntrainedWeightsWarning):
        return load(name, **overrides)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[str]:
    """Four 160x128 PNG photos (lossless, so file -> tensor is exact), each a coloured block on noise."""
    root = tmp_path_factory.mktemp("sg_images")
    rng = np.random.default_rng(3)
    paths = []
    for i in range(4):
        array = rng.integers(0, 90, (128, 160, 3)).astype(np.uint8)
        array[10 + 20 * i:60 + 20 * i, 15 + 25 * i:75 + 25 * i] = rng.integers(60, 255, 3)
        path = root / f"photo{i}.png"
        Image.fromarray(array).save(path)
        paths.append(str(path))
    return paths


@pytest.fixture(scope="module")
def fitted(tmp_path_factory) -> Path:
    """`polyrank fit --config configs/superglobal/tiny.yaml` once for the module; returns its last.ckpt."""
    from polyrank.shared.cli import main

    root = tmp_path_factory.mktemp("sg_fit")
    assert main(["fit", "--config", str(CONFIG), "--trainer.default_root_dir", str(root)]) == 0
    ckpt = root / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()
    return ckpt


def _module_from(ckpt: Path, trained: bool) -> tuple[SuperGlobalModule, dict]:
    """The LightningModule of the fit (trained weights, or the seed-0 init the fit started from)."""
    blob = torch.load(ckpt, map_location="cpu", weights_only=True)
    hparams = {k: v for k, v in blob["hyper_parameters"].items() if not k.startswith("_")}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # the CLI's seed_everything(0) before it builds the model
        module = SuperGlobalModule(**hparams)
    if trained:
        module.load_state_dict(blob["state_dict"])  # strict: model. + head.
    return module.eval(), blob


# ------------------------------------------------------------------------ items 1, 2, 6: fit -> load(checkpoint=)
def test_fit_checkpoint_serves_the_trained_weights(fitted, images):
    """Guards: load(..., checkpoint=last.ckpt) silently returning the seed-0 random model (defect 1)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", UntrainedWeightsWarning)  # trained weights must not warn
        reranker = load("superglobal.tiny", checkpoint=fitted)
    module, blob = _module_from(fitted, trained=True)
    state = reranker.extractor.model.state_dict()
    trained = {k[len("model."):]: v for k, v in blob["state_dict"].items() if k.startswith("model.")}
    assert set(state) == set(trained) and all(torch.equal(state[k], trained[k]) for k in state)

    # the reloaded reranker's descriptors are SuperGlobalModule.predict_step's on the same images
    batch = torch.stack([reranker.extractor.tensor(p) for p in images])
    with torch.no_grad():
        predicted = module.predict_step(batch, 0).numpy()
    served = reranker.extractor.extract(images)
    assert np.allclose(served, predicted, atol=1e-5)
    cands = [Candidate(f"d{i}", p) for i, p in enumerate(images[1:])]
    assert not np.allclose(reranker.score(images[0], cands), _untrained().score(images[0], cands), atol=1e-3)


def test_fit_improves_arcface_loss_and_accuracy(fitted):
    """Guards: a CLI run that exits 0 but learns nothing (or saves the initial weights)."""
    blob = torch.load(fitted, map_location="cpu", weights_only=True)
    data = SuperGlobalDataModule(**{k: v for k, v in blob["datamodule_hyper_parameters"].items()
                                    if not k.startswith("_")})
    data.setup()
    figures = {}
    for trained in (False, True):
        module, _ = _module_from(fitted, trained)
        with torch.no_grad():
            losses, accs = zip(*(module.loss(batch) for batch in data.val_dataloader()))
        figures[trained] = (float(torch.stack(losses).mean()), float(torch.stack(accs).mean()))
    (loss0, acc0), (loss1, acc1) = figures[False], figures[True]
    # measured: val loss 9.24 -> 0.03, val accuracy 0.00 -> 1.00 (4 classes, 8 val images, 3 epochs)
    assert loss1 < 0.25 * loss0 and acc1 >= acc0 + 0.5, figures


def test_checkpoint_architecture_comes_from_hparams(fitted, tmp_path):
    """The ckpt, not the variant, defines reduction_dim: a 32-d fit loads as a 32-d tiny (defect 2)."""
    blob = torch.load(fitted, map_location="cpu", weights_only=True)
    module = SuperGlobalModule(num_classes=4, reduction_dim=32)
    blob["state_dict"] = {k: v.clone() for k, v in module.state_dict().items()}
    blob["hyper_parameters"]["reduction_dim"] = 32
    torch.save(blob, tmp_path / "d32.ckpt")
    reranker = load("superglobal.tiny", checkpoint=tmp_path / "d32.ckpt")
    assert reranker.dim == 32 and torch.equal(reranker.extractor.model.fc.weight, module.model.fc.weight)
    reranker.save(tmp_path / "saved")  # the saved directory keeps the checkpoint's architecture
    assert load(tmp_path / "saved").dim == 32


def test_tiny_config_and_registered_tiny_agree():
    """Guards: configs/superglobal/tiny.yaml training another architecture than superglobal.tiny (defect 2)."""
    init = yaml.safe_load(CONFIG.read_text())["model"]["init_args"]
    tiny = _untrained()
    assert (init["backbone"], init["reduction_dim"]) == (tiny.config["backbone"], tiny.config["reduction_dim"])
    assert tiny.dim == init["reduction_dim"]


def test_checkpoint_loading_is_strict(fitted, tmp_path):
    blob = torch.load(fitted, map_location="cpu", weights_only=True)
    broken = dict(blob, state_dict={k: v for k, v in blob["state_dict"].items() if k != "model.fc.bias"})
    torch.save(broken, tmp_path / "missing.ckpt")
    with pytest.raises(CheckpointError, match=r"1 missing \['fc.bias'\]"):
        load("superglobal.tiny", checkpoint=tmp_path / "missing.ckpt")
    extra = dict(blob, state_dict={**blob["state_dict"], "model.extra.weight": torch.zeros(2)})
    torch.save(extra, tmp_path / "extra.ckpt")
    with pytest.raises(CheckpointError, match=r"1 unexpected \['extra.weight'\]"):
        load("superglobal.tiny", checkpoint=tmp_path / "extra.ckpt")
    foreign = dict(blob, hyper_parameters={"_class_path": "polyrank.domains.mtm.module.MTMModule", "lr": 1.0})
    torch.save(foreign, tmp_path / "foreign.ckpt")
    with pytest.raises(PolyrankError, match="MTMModule.*not of"):
        load("superglobal.tiny", checkpoint=tmp_path / "foreign.ckpt")
    with pytest.raises(PolyrankError, match="trained with backbone 'test_resnet'.*superglobal.r50"):
        load("superglobal.r50", checkpoint=fitted)
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(PolyrankError, match="cannot be read"):
        load("superglobal.tiny", checkpoint=tmp_path / "junk.ckpt")


# ------------------------------------------------------------------------ items 3, 4: global state, overrides
def test_load_leaves_the_torch_rng_alone_and_is_seeded():
    """Guards: torch.manual_seed(seed) inside build() reseeding the caller's RNG (defect 3)."""
    torch.manual_seed(1234)
    expected = torch.rand(3)
    torch.manual_seed(1234)
    a = _untrained()
    assert torch.equal(torch.rand(3), expected), "load() moved the caller's torch RNG"
    b, c = _untrained(), _untrained(seed=1)
    wa, wb, wc = (r.extractor.model.fc.weight for r in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)  # the seed still defines the random weights


def test_overrides_are_declared_and_checked():
    """Guards: a misspelt override ending in a TypeError deep inside a constructor (defect 4)."""
    from polyrank.domains.superglobal.reranker import build

    assert set(STAGE1_OPTIONS) == {f.name for f in dataclasses.fields(Stage1)}
    import inspect

    named = {p for p in inspect.signature(build).parameters} - {"registry_name", "backbone", "reduction_dim",
                                                                 "preprocess", "weights", "checkpoint", "device",
                                                                 "stage1"}
    assert named <= set(OPTIONS)
    for name in ("superglobal.tiny", "superglobal.r50", "superglobal.r101", "superglobal.effnet_lite0"):
        assert set(options(name)) == set(OPTIONS)
        with pytest.raises(PolyrankError, match=r"does not accept.*'rgemm'.*did you mean rgem"):
            load(name, rgemm=False)
    small = _untrained(m=5, k=2, beta=0.3, rgem=False, scales=[1.0])
    assert (small.m, small.k, small.beta) == (5, 2, 0.3)
    assert small.extractor.model.stage1 == Stage1(rgem=False, scales=(1.0,))


# ------------------------------------------------------------------------ item 5: stage-1 mutation guard
def _power_mean_windows(fmap: np.ndarray, p: float, kernel: int) -> np.ndarray:
    """Paper Eq. (Regional-GeM): the p-power mean of every kernel x kernel window (stride 1, reflection pad)."""
    pad = kernel // 2
    padded = np.pad(fmap, ((0, 0), (pad, pad), (pad, pad)), mode="reflect")
    out = np.empty_like(fmap)
    for i in range(fmap.shape[1]):
        for j in range(fmap.shape[2]):
            window = padded[:, i:i + kernel, j:j + kernel].reshape(fmap.shape[0], -1)
            out[:, i, j] = np.mean(window ** p, axis=1) ** (1 / p)
    return out


def _oracle(model, image: torch.Tensor, rgem: bool) -> np.ndarray:
    """SuperGlobal stage 1 by hand on the backbone maps (float64): [Regional-GeM: 0.5 * 5x5 GeM(p=2.5) + 0.5 x]
    -> GeM+ (p=4.6) -> L2 -> fc -> L2 per scale -> Scale-GeM (element-wise max) -> L2."""
    weight, bias = model.fc.weight.detach().double().numpy(), model.fc.bias.detach().double().numpy()
    per_scale = []
    for scale in model.stage1.scales:
        with torch.no_grad():
            fmap = model.backbone.forward_features(resize(image[None], scale))[0].double().numpy()
        if rgem:
            fmap = 0.5 * _power_mean_windows(fmap, 2.5, 5) + 0.5 * fmap
        pooled = np.mean(np.maximum(fmap, 1e-8) ** 4.6, axis=(1, 2)) ** (1 / 4.6)
        desc = weight @ (pooled / np.linalg.norm(pooled)) + bias
        per_scale.append(desc / np.linalg.norm(desc))
    out = np.max(per_scale, axis=0)
    return out / np.linalg.norm(out)


def test_regional_gem_reaches_the_extractor_and_matches_the_paper_oracle(images):
    """Guards: Regional-GeM silently not applied in GlobalModel.pool / Extractor (defect 5)."""
    on = _untrained()
    off = _untrained(rgem=False)
    image = on.extractor.tensor(images[0])
    with_rgem = on.extractor.extract(images[:1])[0]
    without = off.extractor.extract(images[:1])[0]
    assert np.allclose(with_rgem, _oracle(on.extractor.model, image, rgem=True), atol=1e-5)
    assert np.allclose(without, _oracle(off.extractor.model, image, rgem=False), atol=1e-5)
    assert np.abs(with_rgem - without).max() > 1e-3  # 100x the tolerance: the oracles differ, so "ignored" cannot pass


@pytest.mark.parametrize("switch", ["gemp", "rgem", "sgem", "relup"])
def test_every_stage1_switch_changes_the_descriptors(images, switch):
    """Guards: any stage-1 switch (given as a load() override) silently ignored (defect 5)."""
    on = _untrained().extractor.extract(images)
    off = _untrained(**{switch: False}).extractor.extract(images)
    assert np.abs(on - off).max() > 1e-3, f"{switch}=False left the descriptors unchanged"


# ------------------------------------------------------------------------ item 7: the shared flow
def test_run_flow_equals_the_descriptor_matrix_flow():
    """revisitop.evaluate (search_run -> rerank_run -> Run metric) equals rerank_topm + revisitop_map on arrays."""
    from polyrank.domains.superglobal import revisitop
    from polyrank.domains.superglobal.data import RevisitopGnd
    from polyrank.domains.superglobal.metrics import revisitop_map
    from polyrank.domains.superglobal.rerank import rerank_topm

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 16))
    labels = rng.integers(0, 4, 50)
    db = centres[labels] + 0.8 * rng.normal(size=(50, 16))
    q = centres[[0, 1, 2, 3, 0]] + 0.8 * rng.normal(size=(5, 16))
    db, q = (x / np.linalg.norm(x, axis=1, keepdims=True) for x in (db.astype(np.float32), q.astype(np.float32)))
    gnd = [{"easy": np.flatnonzero(labels == c)[::2], "hard": np.flatnonzero(labels == c)[1::2],
            "junk": np.flatnonzero(labels == (c + 1) % 4)[:2]} for c in (0, 1, 2, 3, 0)]
    desc = revisitop.Descriptors(q, db, RevisitopGnd([str(i) for i in range(50)], [f"q{i}" for i in range(5)], gnd))
    first = np.argsort(-(q @ db.T), axis=1, kind="stable")
    reranked, _ = rerank_topm(q, db, first, m=20, k=4, beta=0.15)
    for ranks, out in ((first, revisitop.evaluate(desc, rerank=False)),
                       (reranked, revisitop.evaluate(desc, rerank=True, m=20, k=4))):
        expected = revisitop_map(ranks, gnd)
        for protocol in ("easy", "medium", "hard"):
            assert out[protocol].map == pytest.approx(expected[protocol].map, abs=1e-9)
            assert out[protocol].mp_at == pytest.approx(expected[protocol].mp_at)
            assert 0 < out[protocol].standard_ap <= 100  # ir-measures AP of the junk-free run


def test_package_load_and_rank(images):
    import polyrank.domains.superglobal as sg

    reranker = _untrained_pkg(sg)
    ranked = sg.rank(images[0], [(f"d{i}", p) for i, p in enumerate(images[1:])], top_k=2, model=reranker)
    assert [r.rank for r in ranked] == [1, 2]
    with pytest.warns(UntrainedWeightsWarning):
        sg.rank(images[0], [("d0", images[1])], model="superglobal.tiny")  # a name of random weights warns


def _untrained_pkg(sg):
    with pytest.warns(UntrainedWeightsWarning):
        return sg.load("superglobal.tiny")
