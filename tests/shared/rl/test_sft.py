"""SFT: completion-only labels mask prompt and pad tokens on either padding side; a LoRA SFT step keeps the loss
finite, changes only adapter weights, and lowers the loss of the trained completion."""

from __future__ import annotations

import math

import pytest
import torch

from polyrank.shared.errors import PolyrankError
from polyrank.shared.rl.sft import IGNORE, SFTModule, completion_nll, completion_only_labels

pytest.importorskip("peft")


def test_completion_only_labels_by_hand():
    ids = torch.tensor([[0, 0, 5, 6, 7, 8], [1, 2, 3, 4, 9, 0]])
    pad = torch.tensor([[1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 1]])  # left padded row, right padded row
    labels = completion_only_labels([2, 3], ids, pad)
    assert labels.tolist() == [[IGNORE, IGNORE, IGNORE, IGNORE, 7, 8], [IGNORE, IGNORE, IGNORE, 4, 9, IGNORE]]
    with pytest.raises(PolyrankError, match="prompt length"):
        completion_only_labels([5, 3], ids, pad)


EXAMPLES = [{"messages": [{"role": "user", "content": "is the sky blue"}], "completion": "yes"},
            {"messages": [{"role": "user", "content": "is grass red"}], "completion": "no it is green"}]


def test_encode_masks_the_chat_prompt_and_keeps_the_completion_and_end_of_turn():
    module = SFTModule(words=["yes", "no", "sky", "blue"], lora={"r": 2})
    ids, mask, labels = module.encode(EXAMPLES)
    tok = module.lm.tokenizer
    for row, ex in enumerate(EXAMPLES):
        kept = labels[row][labels[row] != IGNORE].tolist()
        assert tok.decode(kept).replace(" ", "") == (ex["completion"] + tok.eos_token).replace(" ", "")
    assert int((mask == 0).sum()) > 0  # rows of different length: padding exists and is never a label
    assert torch.all(labels[mask == 0] == IGNORE)


def test_sft_steps_change_only_lora_weights_and_lower_the_loss():
    module = SFTModule(words=["yes", "no"], lora={"r": 4, "alpha": 8}, lr=5e-2)
    module.train()
    optimizer = module.configure_optimizers()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    losses = []
    for _ in range(6):
        ids, mask, labels = module.encode(EXAMPLES)
        loss = completion_nll(module.policy, ids, mask, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0] - 0.5, losses
    changed = {k for k, v in module.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all("lora_" in k for k in changed)
    assert module.hparams.model == "tiny:llama" and module.hparams.lora["r"] == 4 and "serve_as" in module.hparams
