"""ArcFace fine-tuning: learning sanity and the CLI end to end on configs/superglobal/tiny.yaml."""

from dataclasses import replace
from pathlib import Path

import torch

from polyrank.domains.superglobal.module import ArcFace, SuperGlobalDataModule, SuperGlobalModule
from polyrank.shared.trainer import build_trainer

CONFIG = Path(__file__).resolve().parents[3] / "configs" / "superglobal" / "tiny.yaml"


def test_arcface_adds_the_margin_to_the_target_only():
    head = ArcFace(2, 2, margin=0.5, scale=1.0)
    with torch.no_grad():
        head.weight.copy_(torch.eye(2))
    emb = torch.tensor([[1.0, 1.0]])  # 45 degrees from both classes
    logits = head(emb, torch.tensor([0]))
    assert torch.isclose(logits[0, 0], torch.cos(torch.tensor(torch.pi / 4 + 0.5)), atol=1e-5)
    assert torch.isclose(logits[0, 1], torch.cos(torch.tensor(torch.pi / 4)), atol=1e-5)


def test_loss_falls_on_generated_landmarks(tmp_path):
    torch.manual_seed(0)
    module = SuperGlobalModule(num_classes=4, backbone="test_resnet", reduction_dim=32, lr=3e-3)
    data = SuperGlobalDataModule(synthetic_classes=4, synthetic_per_class=8, image_size=64, batch_size=8)
    data.setup()
    batch = next(iter(data.train_dataloader()))
    module.eval()
    with torch.no_grad():
        before = module.loss(batch)[0].item()
    module.train()
    trainer = build_trainer(default_root_dir=tmp_path, max_epochs=6, accelerator="cpu", precision="32-true",
                            progress_bar="none", loggers=False, enable_checkpointing=False)
    trainer.fit(module, datamodule=data)
    module.eval()
    with torch.no_grad():
        after = module.loss(batch)[0].item()
    assert after < 0.7 * before
    module.test_stage1 = replace(module.test_stage1, rgem=False)  # 64 px images: too small for a 5x5 window
    descriptors = torch.cat(trainer.predict(module, datamodule=data))
    assert descriptors.shape[1] == 32 and torch.allclose(descriptors.norm(dim=-1), torch.ones(len(descriptors)))


def test_cli_fit_on_tiny_config(tmp_path):
    from polyrank.shared.cli import main

    assert main(["fit", "--config", str(CONFIG), "--trainer.default_root_dir", str(tmp_path)]) == 0
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
