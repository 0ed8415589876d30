"""LoRA wiring: the adapted model starts equal to its base, only adapters train, the disabled-adapter reference
is the base, and adapter-only checkpoints round-trip and refuse another rank."""

import lightning as L
import pytest
import torch

from polyrank.shared.errors import PolyrankError
from polyrank.shared.llm.tiny import tiny_causal_lm
from polyrank.shared.rl.lora import LoraCheckpointMixin, adapters_disabled, add_lora, trainable_parameters

pytest.importorskip("peft")
IDS = torch.tensor([[5, 6, 7, 8, 9]])


class Holder(LoraCheckpointMixin, L.LightningModule):
    def __init__(self, model) -> None:
        super().__init__()
        self.lm = model


def adapted(r: int = 4, seed: int = 0):
    return add_lora(tiny_causal_lm("llama", seed=seed).model, r=r)


def test_adapters_start_at_zero_train_alone_and_switch_off_to_the_base():
    base_logits = tiny_causal_lm("llama").model(IDS).logits
    model = adapted()
    assert torch.equal(model(IDS).logits, base_logits)  # B = 0 at the start (LoRA eq. 3)
    trainable, total = trainable_parameters(model)
    assert 0 < trainable < total / 4
    assert all(("lora_" in name) == p.requires_grad for name, p in model.named_parameters())
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p)
    assert not torch.allclose(model(IDS).logits, base_logits)
    with adapters_disabled(model):
        assert torch.equal(model(IDS).logits, base_logits)


def test_checkpoints_hold_only_adapters_and_reload_them_exactly():
    source = Holder(adapted())
    for name, p in source.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p)
    checkpoint = {"state_dict": source.state_dict()}
    source.on_save_checkpoint(checkpoint)
    assert checkpoint["state_dict"] and all("lora_" in k for k in checkpoint["state_dict"])
    target = Holder(adapted())
    target.load_state_dict(checkpoint["state_dict"])
    assert torch.equal(target.lm(IDS).logits, source.lm(IDS).logits)
    with pytest.raises(PolyrankError, match="another LoRA rank"):
        Holder(adapted(r=2)).load_state_dict(checkpoint["state_dict"])
    with pytest.raises(PolyrankError, match="do not match"):
        Holder(adapted()).load_state_dict({"lm.base_model.model.lm_head.weight": torch.zeros(1)})
