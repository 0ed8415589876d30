"""Lottery-Ticket Sparse Fine-Tuning (LT-SFT; Ansell et al., ACL 2022, Sec. 3) as used by Litschko et al. (2022).

One LT-SFT iteration: (1) full fine-tuning from theta0; (2) keep the K entries with the largest |theta - theta0|
over all maskable parameters; (3) reset every weight to theta0; (4) sparse fine-tuning in which only the K kept
entries move (gradient masks, plus a projection after each optimiser step so decoupled weight decay cannot move
the others); optional L1 toward theta0 in both phases. The result is stored as a sparse difference
``phi = theta - theta0`` (indices and values per tensor) plus dense "heads" copied whole (the ranking classifier).
Composition is addition, ``theta = theta0 + phi_rank + phi_lang`` (Litschko et al. Sec. 3.2), with the head taken
from the ranking diff only (a language SFT's MLM head does not exist in the ranker). :func:`apply` remembers the
entries it overwrote so :func:`revert` restores them bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from polyrank.shared.errors import PolyrankError


def default_maskable(name: str, param: nn.Parameter) -> bool:
    """Maskable entries: every encoder weight except LayerNorms (frozen in the paper's SFT runs)."""
    return "LayerNorm" not in name and "layer_norm" not in name


@dataclass
class SparseDiff:
    """``theta - theta0`` on a sparse support: ``diffs[name] = (flat indices int64, values float32)``; ``heads``
    are whole tensors copied on apply (``with_heads``)."""

    diffs: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    heads: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def n_entries(self) -> int:
        return sum(int(i.numel()) for i, _ in self.diffs.values())

    def to_tensors(self) -> dict[str, torch.Tensor]:
        """Flat tensor dict for safetensors (``diff.<name>.idx``, ``diff.<name>.val``, ``head.<name>``)."""
        out = {}
        for name, (idx, val) in self.diffs.items():
            out[f"diff.{name}.idx"], out[f"diff.{name}.val"] = idx.contiguous(), val.contiguous()
        out.update({f"head.{k}": v.contiguous() for k, v in self.heads.items()})
        return out

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> SparseDiff:
        diff = cls()
        for key, value in tensors.items():
            if key.startswith("diff.") and key.endswith(".idx"):
                name = key[5:-4]
                diff.diffs[name] = (value.long(), tensors[f"diff.{name}.val"])
            elif key.startswith("head."):
                diff.heads[key[5:]] = value
        return diff

    def save(self, path: str | Path) -> None:
        from safetensors.torch import save_file

        save_file(self.to_tensors(), str(path))

    @classmethod
    def load(cls, path: str | Path) -> SparseDiff:
        from safetensors.torch import load_file

        return cls.from_tensors(load_file(str(path)))


def select_topk(deltas: dict[str, torch.Tensor], k: int) -> dict[str, torch.Tensor]:
    """Boolean masks of exactly the ``k`` entries with the largest |delta| over all tensors (LT-SFT step 2; ties
    at the threshold broken by position)."""
    total = sum(int(d.numel()) for d in deltas.values())
    if not 0 < k <= total:
        raise PolyrankError(f"LT-SFT needs 0 < K <= {total} maskable entries, got K={k}")
    flat = torch.cat([d.detach().abs().flatten().float() for d in deltas.values()])
    keep = torch.zeros(total, dtype=torch.bool)
    keep[torch.topk(flat, k, sorted=False).indices] = True
    masks, start = {}, 0
    for name, d in deltas.items():
        masks[name] = keep[start:start + d.numel()].view(d.shape)
        start += d.numel()
    return masks


def pack_masks(masks: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor | list[int]]]:
    """Masks as bits (one byte per 8 entries) with their shapes, for checkpoints."""
    return {n: {"bits": torch.from_numpy(np.packbits(m.cpu().numpy().ravel())), "shape": list(m.shape)}
            for n, m in masks.items()}


def unpack_masks(packed: dict[str, dict[str, torch.Tensor | list[int]]]) -> dict[str, torch.Tensor]:
    """The inverse of :func:`pack_masks`."""
    masks = {}
    for name, entry in packed.items():
        n = int(np.prod(entry["shape"]))
        bits = np.unpackbits(entry["bits"].numpy(), count=n).astype(bool)
        masks[name] = torch.from_numpy(bits).view(entry["shape"])
    return masks


def sparse_diff(model: nn.Module, theta0: dict[str, torch.Tensor], masks: dict[str, torch.Tensor],
                heads: Iterable[str] = ()) -> SparseDiff:
    """The trained ``model``'s difference to ``theta0`` on ``masks`` (+ whole ``heads`` tensors)."""
    params = dict(model.named_parameters())
    diff = SparseDiff()
    for name, mask in masks.items():
        idx = mask.flatten().nonzero().squeeze(1)
        if idx.numel():
            delta = (params[name].detach().cpu().float().flatten() - theta0[name].float().flatten())[idx]
            diff.diffs[name] = (idx, delta)
    for name in heads:
        diff.heads[name] = params[name].detach().cpu().clone()
    return diff


@dataclass
class Applied:
    """What :func:`apply` overwrote (original entries), so :func:`revert` restores them exactly."""

    entries: dict[str, tuple[torch.Tensor, torch.Tensor]]
    heads: dict[str, torch.Tensor]


def _check_names(model: nn.Module, diff: SparseDiff) -> dict[str, nn.Parameter]:
    params = dict(model.named_parameters())
    unknown = sorted((set(diff.diffs) | set(diff.heads)) - set(params))
    if unknown:
        raise PolyrankError(f"this sparse diff names parameters the model lacks: {unknown[:5]}; it was trained on "
                            "another architecture or base model")
    for name, (idx, _) in diff.diffs.items():
        if idx.numel() and int(idx.max()) >= params[name].numel():
            raise PolyrankError(f"sparse diff index out of range for {name} (shape {tuple(params[name].shape)}); "
                                "it was trained on another base model")
    for name, value in diff.heads.items():
        if value.shape != params[name].shape:
            raise PolyrankError(f"sparse diff head {name} has shape {tuple(value.shape)}, the model "
                                f"{tuple(params[name].shape)}")
    return params


@torch.no_grad()
def apply(model: nn.Module, diff: SparseDiff, with_heads: bool = True) -> Applied:
    """Add ``diff`` in place (theta += phi; heads copied when ``with_heads``); returns what :func:`revert` needs."""
    params = _check_names(model, diff)
    entries, heads = {}, {}
    for name, (idx, val) in diff.diffs.items():
        flat = params[name].data.view(-1)
        entries[name] = (idx, flat[idx.to(flat.device)].detach().cpu().clone())
        flat.index_add_(0, idx.to(flat.device), val.to(flat.device, flat.dtype))
    if with_heads:
        for name, value in diff.heads.items():
            heads[name] = params[name].detach().cpu().clone()
            params[name].data.copy_(value.to(params[name].device, params[name].dtype))
    return Applied(entries, heads)


@torch.no_grad()
def revert(model: nn.Module, applied: Applied) -> None:
    """Undo :func:`apply` exactly (the overwritten entries are written back, not subtracted)."""
    params = dict(model.named_parameters())
    for name, (idx, original) in reversed(list(applied.entries.items())):
        params[name].data.view(-1)[idx.to(params[name].device)] = original.to(params[name].device)
    for name, original in applied.heads.items():
        params[name].data.copy_(original.to(params[name].device))


def compose(theta0: dict[str, torch.Tensor], ranking: SparseDiff, *languages: SparseDiff) -> dict[str, torch.Tensor]:
    """``theta0 + phi_rank + sum(phi_lang)`` as a new state dict; the head comes from the ranking diff only."""
    out = {k: v.clone() for k, v in theta0.items()}
    for diff in (ranking, *languages):
        for name, (idx, val) in diff.diffs.items():
            out[name].view(-1).index_add_(0, idx, val.to(out[name].dtype))
    for name, value in ranking.heads.items():
        out[name] = value.clone()
    return out


class GradientMasks:
    """Restrict training to masked entries: gradient hooks zero the rest and :meth:`project` writes theta0 back
    into them after each optimiser step (decoupled weight decay would move them otherwise)."""

    def __init__(self, model: nn.Module, masks: dict[str, torch.Tensor], theta0: dict[str, torch.Tensor]) -> None:
        params = dict(model.named_parameters())
        self.masks = {n: m.to(params[n].device) for n, m in masks.items()}
        self.theta0 = {n: theta0[n].to(params[n].device) for n in masks}
        self.params = {n: params[n] for n in masks}
        self.handles = [params[n].register_hook(self._hook(n)) for n in masks]

    def _hook(self, name: str) -> Callable[[torch.Tensor], torch.Tensor]:
        mask = self.masks[name]
        return lambda grad: grad * mask.to(grad.dtype)

    @torch.no_grad()
    def project(self) -> None:
        for name, p in self.params.items():
            p.data = torch.where(self.masks[name], p.data, self.theta0[name].to(p.dtype))

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []


def l1_to_start(model: nn.Module, theta0: dict[str, torch.Tensor], names: Iterable[str]) -> torch.Tensor:
    """``sum |theta - theta0| / #params`` over ``names`` (the LT-SFT L1 regulariser, scaled as in composable-sft)."""
    params = dict(model.named_parameters())
    names = list(names)
    total = sum(params[n].numel() for n in names)
    reg = sum((params[n] - theta0[n].to(params[n].device)).abs().sum() for n in names)
    return reg / max(total, 1)
