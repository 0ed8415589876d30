"""build_trainer on a GPU: bf16-mixed agrees with fp32 and learns; DDP runs on one GPU. Run by
``benchmarks/gpu_check.py`` (``pytest -m gpu``), skipped without CUDA."""

from __future__ import annotations

import pytest
import torch

from polyrank.shared.trainer import build_trainer, resolve_precision
from tiny_lightning import TinyData, TinyRegressor

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

QUIET = dict(progress_bar="none", loggers=False, enable_checkpointing=False, accelerator="gpu", devices=1)


def _val_loss(model: TinyRegressor, data: TinyData) -> float:
    x, y = data.val_set.tensors
    with torch.no_grad():
        return float(torch.nn.functional.mse_loss(model.float().cpu()(x), y))


def _fit(precision: str, tmp_path, **overrides) -> tuple[TinyRegressor, TinyData]:
    torch.manual_seed(0)
    model, data = TinyRegressor(dim=16, hidden=64), TinyData(n=512, dim=16, batch_size=32)
    settings = {**QUIET, "precision": precision, "max_epochs": 8, "seed": 0, **overrides}
    build_trainer(default_root_dir=tmp_path / precision, **settings).fit(model, datamodule=data)
    return model, data


def test_auto_precision_is_bf16_on_a_bf16_gpu():
    expected = "bf16-mixed" if torch.cuda.is_bf16_supported() else "32-true"
    assert resolve_precision("auto", "gpu") == expected


def test_one_bf16_step_matches_fp32():
    torch.manual_seed(0)
    model = TinyRegressor(dim=16, hidden=64).cuda()
    x, y = torch.randn(64, 16, device="cuda"), torch.randn(64, device="cuda")
    losses, grads = {}, {}
    for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        model.zero_grad()
        with torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        losses[name] = loss.item()
        grads[name] = torch.cat([p.grad.flatten() for p in model.parameters()])
    assert abs(losses["bf16"] - losses["fp32"]) <= 2e-2 * abs(losses["fp32"])
    cosine = torch.nn.functional.cosine_similarity(grads["bf16"], grads["fp32"], dim=0)
    assert cosine > 0.99


def test_bf16_and_fp32_training_both_learn_and_agree(tmp_path):
    torch.manual_seed(0)  # the same initial model and data as _fit builds
    start = _val_loss(TinyRegressor(dim=16, hidden=64), TinyData(n=512, dim=16, batch_size=32))
    fp32 = _val_loss(*_fit("32-true", tmp_path))
    bf16 = _val_loss(*_fit("bf16-mixed", tmp_path))
    assert fp32 < 0.3 * start and bf16 < 0.3 * start
    assert abs(bf16 - fp32) <= 0.25 * start


def test_ddp_strategy_on_one_gpu(tmp_path):
    torch.manual_seed(0)
    model, data = TinyRegressor(dim=16, hidden=64), TinyData(n=512, dim=16, batch_size=32)
    trainer = build_trainer(default_root_dir=tmp_path, max_epochs=6, strategy="ddp", precision="32-true", seed=0,
                            **QUIET)
    before = _val_loss(model, data)
    trainer.fit(model, datamodule=data)
    assert type(trainer.strategy).__name__ == "DDPStrategy" and trainer.world_size == 1
    assert _val_loss(model, data) < 0.5 * before
