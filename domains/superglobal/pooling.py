"""SuperGlobal stage-1 modules: GeM+, Regional-GeM, Scale-GeM and ReLU-up.

Shao et al., "Global Features are All You Need for Image Retrieval and Reranking", ICCV 2023
(arXiv 2308.06954), Sec. 3.1. Default hyper-parameters follow the official code
(github ShihaoShao-GH/SuperGlobal, ``modules/coarse_retrieval``): GeM+ p=4.6, Regional-GeM 5x5 with
p=2.5 and a 0.5 residual mix, Scale-GeM as the element-wise max of L2-normalised per-scale
descriptors (its p -> infinity case), ReLU-up clamp at 0.014.

All functions take a feature map ``x`` of shape ``(B, C, H, W)`` (non-negative after ReLU) unless
stated otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from polyrank.shared.errors import PolyrankError

GEM_PLUS_P = 4.6
RGEM_P = 2.5
RGEM_KERNEL = 5
RELU_UP_ALPHA = 0.014
GEM_EPS = 1e-8


def gem(x: torch.Tensor, p: float | torch.Tensor, eps: float = GEM_EPS) -> torch.Tensor:
    """Generalised mean over all spatial positions: ``(mean_hw max(x, eps)^p)^(1/p)`` -> ``(B, C)``."""
    if x.dim() != 4:
        raise PolyrankError(f"gem expects a (B, C, H, W) feature map, got shape {tuple(x.shape)}")
    return x.clamp(min=eps).pow(p).mean(dim=(-2, -1)).pow(1.0 / p)


def gem_plus(x: torch.Tensor, p: float = GEM_PLUS_P) -> torch.Tensor:
    """GeM+ (paper Sec. 3.1): GeM with the fixed, larger p that replaces the p learnt with ArcFace."""
    return gem(x, p)


def regional_gem(x: torch.Tensor, p: float = RGEM_P, kernel: int = RGEM_KERNEL, mix: float = 0.5) -> torch.Tensor:
    """Regional-GeM: a ``kernel x kernel`` GeM (stride 1, reflection padding) mixed residually with ``x``.

    ``x' = mix * LPPool_p(pad(x) / (k^2)^(1/p)) + (1 - mix) * x``; dividing by ``(k^2)^(1/p)`` turns the
    LP-pool power sum into a power mean. Output shape equals input shape.
    """
    if kernel % 2 != 1:
        raise PolyrankError(f"regional_gem needs an odd kernel so the output keeps its size, got {kernel}")
    pad = (kernel - 1) // 2
    height, width = x.shape[-2:]
    if height <= pad or width <= pad:
        raise PolyrankError(
            f"feature map {height}x{width} is too small for Regional-GeM's {kernel}x{kernel} reflection pad "
            f"(needs both sides > {pad}); use a larger image (at least ~{32 * (pad + 1)} px per side for a "
            "stride-32 backbone) or disable rgem")
    scaled = x / (kernel * kernel) ** (1.0 / p)
    pooled = F.lp_pool2d(F.pad(scaled, (pad, pad, pad, pad), mode="reflect"), p, kernel, stride=1)
    return mix * pooled + (1.0 - mix) * x


def scale_gem(descriptors: Sequence[torch.Tensor] | torch.Tensor) -> torch.Tensor:
    """Scale-GeM with p -> infinity: element-wise max over scales of L2-normalised descriptors.

    ``descriptors``: a list of ``(B, D)`` tensors or one ``(S, B, D)`` tensor. Returns ``(B, D)``.
    """
    stacked = torch.stack(list(descriptors), 0) if not torch.is_tensor(descriptors) else descriptors
    return F.normalize(stacked, p=2, dim=-1).max(dim=0).values


class ReLUUp(nn.Module):
    """ReLU-up: ``max(x, alpha)``; values below ``alpha`` become ``alpha`` instead of 0 (paper Sec. 3.1)."""

    def __init__(self, alpha: float = RELU_UP_ALPHA, cap: float | None = None) -> None:
        super().__init__()
        self.alpha = alpha
        self.cap = cap  # ReLU6-style backbones keep their upper bound

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(min=self.alpha, max=self.cap)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, cap={self.cap}"
