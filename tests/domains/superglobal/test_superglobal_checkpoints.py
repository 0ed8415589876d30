"""Weight converters: CVNet (pycls) round trip, strictness, and the real EfficientNet-Lite0 weights."""

import pytest
import torch

from polyrank.domains.superglobal.checkpoints import (
    CheckpointError, convert_cvnet_state, convert_efficientnet_lite0, efficientnet_lite0_weights_path, load_cvnet,
    load_efficientnet_lite0, ours_to_pycls, read_state_dict)
from polyrank.domains.superglobal.model import GlobalModel
from polyrank.shared.errors import MissingResourceError


class _Cfg:
    """An arbitrary object: weights_only loading must refuse it."""


@pytest.fixture(scope="module")
def r50():
    torch.manual_seed(0)
    return GlobalModel("resnet50", reduction_dim=2048).eval()


def _as_cvnet(model, prefix="encoder_q."):
    state = {prefix + ours_to_pycls(k): v.clone() for k, v in model.state_dict().items()}
    state["cv_learner.encoder.0.weight"] = torch.zeros(3)  # other CVNet parts are skipped
    return {"model_state": state, "epoch": 99}


def test_pycls_round_trip_on_resnet50(r50, tmp_path):
    names = [ours_to_pycls(k) for k in r50.state_dict()]
    assert None not in names and "s3.b6.f.c_bn.running_var" in names and "head.pool.p" in names
    path = tmp_path / "cvnet_r50.pyth"
    torch.save(_as_cvnet(r50), path)
    fresh = GlobalModel("resnet50", reduction_dim=2048).eval()
    load_cvnet(fresh, path)
    for key, value in r50.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key


@pytest.mark.parametrize("prefix", ["encoder_q.", "globalmodel.", ""])
def test_prefixes_are_detected(r50, prefix):
    converted = convert_cvnet_state(_as_cvnet(r50, prefix)["model_state"])
    assert set(converted) == set(r50.state_dict())


def test_missing_key_fails_loudly(r50, tmp_path):
    blob = _as_cvnet(r50)
    del blob["model_state"]["encoder_q.s2.b1.proj.weight"]
    torch.save(blob, tmp_path / "broken.pyth")
    with pytest.raises(CheckpointError, match="1 missing.*layer2.0.downsample.0.weight"):
        load_cvnet(GlobalModel("resnet50", reduction_dim=2048), tmp_path / "broken.pyth")


def test_shape_mismatch_fails_loudly(r50, tmp_path):
    torch.save(_as_cvnet(r50), tmp_path / "r50.pyth")
    with pytest.raises(CheckpointError, match="shape mismatches"):
        load_cvnet(GlobalModel("resnet50", reduction_dim=512), tmp_path / "r50.pyth")


def test_unknown_key_under_the_prefix_fails(r50):
    state = _as_cvnet(r50)["model_state"]
    state["encoder_q.seb1.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match="no counterpart"):
        convert_cvnet_state(state)


def test_missing_file_and_pickled_objects_are_refused(tmp_path):
    with pytest.raises(MissingResourceError):
        read_state_dict(tmp_path / "nope.pyth")
    torch.save({"model_state": {"x": torch.zeros(1)}, "cfg": _Cfg()}, tmp_path / "obj.pth")
    with pytest.raises(CheckpointError, match="weights_only"):
        read_state_dict(tmp_path / "obj.pth")


def test_efficientnet_lite0_real_weights_load_completely():
    path = efficientnet_lite0_weights_path()  # installed by the `weights` extra: a missing package is a failure
    state = read_state_dict(path)
    converted = convert_efficientnet_lite0(state, keep_classifier=True)
    assert len(converted) == len(state) == 296
    model = GlobalModel("tf_efficientnet_lite0", reduction_dim=None)
    load_efficientnet_lite0(model, path)
    assert torch.equal(model.backbone.conv_stem.weight, state["_conv_stem.weight"])
    assert torch.equal(model.backbone.blocks[6][0].conv_pwl.weight, state["_blocks.15._project_conv.weight"])
