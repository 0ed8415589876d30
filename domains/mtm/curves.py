"""Learning curves of the fact-check rerankers: training loss and validation MRR per epoch.

:class:`LearningCurve` is a Lightning callback: it records the epoch's mean ``train/loss`` and calls
``validate(module) -> {name: MRR}`` once before the first epoch (epoch 0: the starting weights, after MTM's ROT
and PMB stages) and after every epoch, restoring the module's train/eval mode. A model that learns nothing shows
a flat validation MRR and, for class-balanced cross-entropy, a loss that stays at ln 2.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path

import lightning as L
import torch


class LearningCurve(L.Callback):
    """Train loss per epoch (``loss[i]`` = epoch i+1) and validation MRR per epoch (``val[name][0]`` = before
    training); ``validate`` is called in eval mode without gradients."""

    def __init__(self, validate: Callable[[L.LightningModule], Mapping[str, float]]) -> None:
        self.validate = validate
        self.loss: list[float] = []
        self.val: dict[str, list[float]] = {}

    def _record(self, module: L.LightningModule) -> None:
        was_training = module.training
        module.eval()
        try:
            with torch.no_grad():
                for name, value in self.validate(module).items():
                    self.val.setdefault(name, []).append(float(value))
        finally:
            module.train(was_training)

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._record(module)

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.loss.append(float(trainer.callback_metrics.get("train/loss", float("nan"))))
        self._record(module)


def plot_curves(curves: Mapping[str, LearningCurve], path: str | Path, reference: Mapping[str, float] | None = None,
                title: str = "") -> Path:
    """Two panels: train loss per epoch (ln 2 dashed) and validation MRR per epoch (epoch 0 = before training);
    ``reference`` draws horizontal lines (e.g. the first stage's validation MRR)."""
    import matplotlib.pyplot as plt

    from polyrank.shared.report import save_figure

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for label, curve in curves.items():
        axes[0].plot(range(1, len(curve.loss) + 1), curve.loss, marker="o", label=label)
        for name, values in curve.val.items():
            axes[1].plot(range(len(values)), values, marker="o", label=f"{label}: {name}" if name else label)
    axes[0].axhline(math.log(2), color="grey", ls="--", lw=1, label="ln 2 (learns nothing)")
    axes[0].set(xlabel="epoch", ylabel="train loss (mean over the epoch)")
    for ax in axes:
        ax.xaxis.get_major_locator().set_params(integer=True)
    for name, value in (reference or {}).items():
        axes[1].axhline(value, color="black", ls=":", lw=1, label=name)
    axes[1].set(xlabel="epoch (0 = before training)", ylabel="validation MRR")
    axes[0].legend(fontsize=6)
    axes[1].legend(fontsize=6)
    if title:
        fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)
