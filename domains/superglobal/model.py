"""The SuperGlobal global model: a timm backbone, the CVNet head (``fc`` + GeM) and the stage-1 modules.

Shao et al., ICCV 2023 (arXiv 2308.06954), Sec. 3.1 and Fig. 2. The ResNet-50/101 backbone with the
CVNet global head (Lee et al., CVPR 2022: ``fc`` 2048->2048 after a learned-p GeM) follows the official
``model/resnet.py``: per scale, ``stage4 -> [Regional-GeM] -> GeM+ (or the learned GeM) -> L2 ->
fc``; scales are combined by Scale-GeM (or their plain mean when off) and the result is L2-normalised.

ReLU-up placement (named option ``relup_placement``):

- ``"reference"`` (default for ResNets): the post-residual activation of every block of stages 1-3 is
  ReLU-up, stage 4 keeps ReLU, as switched by ``SupG.relup`` in the official code.
- ``"output"``: ReLU-up on the backbone's final feature map only (any timm backbone).

``relup_stage1_quirk=True`` reproduces the official code exactly: because of a name shadowing there,
the two inner activations of every stage-1 bottleneck are ReLU-up **whatever the flag says**.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from polyrank.domains.superglobal.pooling import RELU_UP_ALPHA, ReLUUp, gem, gem_plus, regional_gem, scale_gem
from polyrank.shared.errors import PolyrankError

logger = logging.getLogger(__name__)

SCALES_3 = (0.7071, 1.0, 1.4142)


@dataclass(frozen=True)
class Stage1:
    """Switches of the stage-1 modules (all on = SuperGlobal; all off = the CVNet-style baseline)."""

    gemp: bool = True
    rgem: bool = True
    sgem: bool = True
    relup: bool = True
    relup_placement: Literal["reference", "output"] = "reference"
    relup_stage1_quirk: bool = False
    scales: tuple[float, ...] = SCALES_3

    @classmethod
    def off(cls, **kw) -> "Stage1":
        return cls(**{"gemp": False, "rgem": False, "sgem": False, "relup": False, **kw})


class GlobalModel(nn.Module):
    """Backbone + CVNet head; ``forward(images) -> (B, D)`` L2-normalised SuperGlobal descriptors.

    Args:
        backbone: a timm model name (``resnet50``, ``resnet101``, ``tf_efficientnet_lite0``, ``test_resnet``).
        reduction_dim: output size of the head ``fc``; None keeps the backbone width with no ``fc``.
        gem_p: initial value of the learned GeM p (the CVNet checkpoint carries its own).
        stage1: the module switches (changeable later with :meth:`set_stage1`).
    """

    def __init__(self, backbone: str = "resnet50", reduction_dim: int | None = 2048, gem_p: float = 3.0,
                 stage1: Stage1 | None = None) -> None:
        super().__init__()
        from polyrank.shared.extras import require

        timm = require("timm", extra="image")
        self.backbone_name = backbone
        self.backbone = timm.create_model(backbone, pretrained=False, num_classes=0, global_pool="")
        self.feature_dim = int(self.backbone.num_features)
        self.gem_p = nn.Parameter(torch.full((1,), float(gem_p)))
        self.fc = nn.Linear(self.feature_dim, reduction_dim) if reduction_dim else nn.Identity()
        self.dim = reduction_dim or self.feature_dim
        self._relup_sites = self._install_relup_sites()
        self.stage1 = Stage1()
        self.set_stage1(stage1 or Stage1(relup_placement=self._default_placement()))

    def _default_placement(self) -> str:
        return "reference" if self._relup_sites["post"] else "output"

    def _install_relup_sites(self) -> dict[str, list[ReLUUp]]:
        """Replace ReLU/ReLU6 modules at the ReLU-up sites by :class:`ReLUUp` (alpha 0 = plain ReLU)."""
        sites: dict[str, list[ReLUUp]] = {"post": [], "stage1_inner": []}
        layers = [getattr(self.backbone, f"layer{i}", None) for i in range(1, 5)]
        if any(layer is None for layer in layers):
            return sites  # not a ResNet: only the "output" placement applies
        for stage, layer in enumerate(layers[:3], start=1):
            for block in layer:
                names = [n for n in ("act1", "act2", "act3") if isinstance(getattr(block, n, None), nn.ReLU)]
                if not names:
                    continue
                post = ReLUUp(0.0)
                setattr(block, names[-1], post)
                sites["post"].append(post)
                if stage == 1:
                    for name in names[:-1]:
                        inner = ReLUUp(0.0)
                        setattr(block, name, inner)
                        sites["stage1_inner"].append(inner)
        return sites

    def set_stage1(self, stage1: Stage1 | None = None, **switches) -> "GlobalModel":
        """Set the stage-1 switches (a :class:`Stage1` and/or keyword overrides such as ``rgem=False``)."""
        stage1 = replace(stage1 or self.stage1, **switches)
        if stage1.relup_placement == "reference" and not self._relup_sites["post"]:
            raise PolyrankError(f"relup_placement='reference' needs a ResNet backbone; {self.backbone_name} "
                                "has no layer1..layer4 blocks. Use relup_placement='output'.")
        if not stage1.scales or min(stage1.scales) <= 0:
            raise PolyrankError(f"scales must be positive numbers, got {stage1.scales}")
        post_alpha = RELU_UP_ALPHA if stage1.relup and stage1.relup_placement == "reference" else 0.0
        inner_alpha = RELU_UP_ALPHA if stage1.relup_stage1_quirk else 0.0
        for module in self._relup_sites["post"]:
            module.alpha = post_alpha
        for module in self._relup_sites["stage1_inner"]:
            module.alpha = inner_alpha
        self.stage1 = stage1
        return self

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's last feature map ``(B, C, h, w)`` (ReLU-up inside it for the reference placement)."""
        return self.backbone.forward_features(x)

    def pool(self, fmap: torch.Tensor, p: float | None = None) -> torch.Tensor:
        """One scale's head: ``[ReLU-up at output] -> [Regional-GeM] -> GeM+ or GeM -> L2 -> fc``.

        ``p`` replaces the learned GeM p when GeM+ is off (``p=1``: average pooling), for pooling comparisons.
        """
        if self.stage1.relup and self.stage1.relup_placement == "output":
            fmap = fmap.clamp(min=RELU_UP_ALPHA)
        if self.stage1.rgem:
            fmap = regional_gem(fmap)
        pooled = gem_plus(fmap) if self.stage1.gemp else gem(fmap, self.gem_p if p is None else p)
        return self.fc(F.normalize(pooled, p=2, dim=-1))

    def forward_singlescale(self, x: torch.Tensor) -> torch.Tensor:
        """One scale's descriptor ``(B, D)`` (not normalised), as the reference ``_forward_singlescale``."""
        return self.pool(self.feature_map(x))

    def aggregate(self, fmaps: list[torch.Tensor], p: float | None = None) -> torch.Tensor:
        """Per-scale feature maps -> Scale-GeM (or mean) -> L2: the final ``(B, D)`` descriptor.

        Splitting :meth:`forward` here lets callers compare pooling variants on the same backbone maps
        (valid when ReLU-up is off or placed at the output); ``p`` as in :meth:`pool`.
        """
        per_scale = [self.pool(fmap, p) for fmap in fmaps]
        combined = scale_gem(per_scale) if self.stage1.sgem else torch.stack(per_scale, 0).mean(0)
        return F.normalize(combined, p=2, dim=-1)

    def scale_maps(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The backbone feature map at every configured scale."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise PolyrankError(f"expected normalised images of shape (B, 3, H, W), got {tuple(images.shape)}")
        return [self.feature_map(resize(images, s)) for s in self.stage1.scales]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Multi-scale descriptor ``(B, D)``, L2-normalised; ``images`` are normalised ``(B, 3, H, W)``."""
        return self.aggregate(self.scale_maps(images))


def resize(images: torch.Tensor, scale: float) -> torch.Tensor:
    """Bilinear (antialiased) resize by ``scale`` to ``int(H*s) x int(W*s)``, as torchvision's ``resize``."""
    if scale == 1.0:
        return images
    height, width = images.shape[-2:]
    size = (max(1, int(height * scale)), max(1, int(width * scale)))
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=True)
