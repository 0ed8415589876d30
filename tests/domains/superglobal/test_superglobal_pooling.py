"""Oracles for the stage-1 modules (GeM+, Regional-GeM, Scale-GeM, ReLU-up) and the model switches."""

import pytest
import torch
import torch.nn.functional as F

from polyrank.domains.superglobal.model import GlobalModel, Stage1
from polyrank.domains.superglobal.pooling import ReLUUp, gem, gem_plus, regional_gem, scale_gem
from polyrank.shared.errors import PolyrankError


def test_gem_with_p1_is_average_pooling():
    x = torch.rand(2, 5, 7, 6) + 0.1
    assert torch.allclose(gem_plus(x, p=1.0), F.adaptive_avg_pool2d(x, 1).flatten(1), atol=1e-6)


def test_gem_tends_to_max_pooling_and_default_p():
    x = torch.rand(2, 5, 7, 6) + 0.1
    assert torch.allclose(gem(x, 200.0), x.amax(dim=(-2, -1)), rtol=2e-2)
    manual = (x.pow(4.6).mean(dim=(-2, -1))).pow(1 / 4.6)
    assert torch.allclose(gem_plus(x), manual, atol=1e-6)


def test_regional_gem_keeps_shape_and_constant_maps():
    x = torch.rand(2, 4, 9, 11)
    assert regional_gem(x).shape == x.shape
    const = torch.full((1, 3, 6, 6), 0.7)
    assert torch.allclose(regional_gem(const), const, atol=1e-6)  # power mean of a constant is the constant


def test_regional_gem_matches_hand_computed_window():
    x = torch.rand(1, 1, 7, 7) + 0.05
    out = regional_gem(x, p=2.5, kernel=5, mix=0.5)
    padded = F.pad(x, (2, 2, 2, 2), mode="reflect")
    window = padded[0, 0, 3:8, 1:6]  # the 5x5 window centred on (3, 1)
    expected = 0.5 * window.pow(2.5).mean().pow(1 / 2.5) + 0.5 * x[0, 0, 3, 1]
    assert torch.isclose(out[0, 0, 3, 1], expected, atol=1e-5)


def test_regional_gem_refuses_a_map_smaller_than_the_kernel():
    with pytest.raises(PolyrankError, match="too small for Regional-GeM"):
        regional_gem(torch.rand(1, 3, 2, 2))


def test_scale_gem_of_one_hot_inputs_is_their_elementwise_max():
    eye = torch.eye(4)
    descriptors = [3 * eye[0:1], 0.5 * eye[2:3], eye[0:1] + eye[2:3]]
    out = scale_gem(descriptors)
    expected = torch.tensor([[1.0, 0.0, 1.0, 0.0]])  # normalised one-hots are 1; the mixed one is 1/sqrt2
    assert torch.allclose(out, expected)


def test_relu_up_clamps_at_alpha():
    x = torch.tensor([-1.0, 0.0, 0.01, 0.5])
    assert torch.equal(ReLUUp(0.014)(x), torch.tensor([0.014, 0.014, 0.014, 0.5]))


def test_relu_up_placement_and_reference_quirk():
    model = GlobalModel("resnet50", reduction_dim=8)
    post = [b.act3.alpha for layer in (model.backbone.layer1, model.backbone.layer2, model.backbone.layer3)
            for b in layer]
    assert post and all(a == 0.014 for a in post)
    assert all(type(b.act3).__name__ == "ReLU" for b in model.backbone.layer4)  # stage 4 keeps ReLU
    assert all(b.act1.alpha == 0.0 for b in model.backbone.layer1)
    model.set_stage1(Stage1.off(relup_stage1_quirk=True))
    assert all(b.act1.alpha == 0.014 and b.act2.alpha == 0.014 for b in model.backbone.layer1)
    assert all(b.act3.alpha == 0.0 for b in model.backbone.layer2)


def test_model_output_is_normalised_and_switches_change_it():
    torch.manual_seed(0)
    model = GlobalModel("test_resnet", reduction_dim=16).eval()
    x = torch.randn(2, 3, 128, 160)
    with torch.no_grad():
        on = model(x)
        off = model.set_stage1(Stage1.off())(x)
    assert on.shape == (2, 16) and torch.allclose(on.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert not torch.allclose(on, off)


def test_reference_placement_needs_a_resnet():
    model = GlobalModel("test_efficientnet", reduction_dim=None)
    assert model.stage1.relup_placement == "output"
    with pytest.raises(PolyrankError, match="needs a ResNet"):
        model.set_stage1(relup_placement="reference")
