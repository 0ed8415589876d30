"""shared/llm on tiny random models: batching, OOM back-off, prefix reuse, read-outs, loading errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from polyrank.shared.errors import PolyrankError
from polyrank.shared.llm.loading import load_causal_lm, resolve_folder
from polyrank.shared.llm.scoring import attention_mass, generate, next_token_logits, token_budget_batches
from polyrank.shared.llm.tiny import tiny_causal_lm


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def lm(request):
    return tiny_causal_lm(request.param, words=["yes", "no", "judge"])


def _texts(lm):
    prefix = lm.encode("<|im_start|>system\njudge the passage yes or no<|im_end|>")
    suffixes = [lm.encode(t) for t in ["short one", "a considerably longer passage with many more words in it", "x",
                                       "medium length passage here"]]
    return prefix, suffixes


def _reference_logits(lm, sequences, labels):
    with torch.no_grad():
        return np.stack([lm.model(torch.tensor([s])).logits[0, -1, labels].numpy() for s in sequences])


def test_label_logits_equal_unbatched_forward_and_prefix_reuse_equals_no_reuse(lm):
    prefix, suffixes = _texts(lm)
    labels = [lm.single_token("yes"), lm.single_token("no")]
    reused = next_token_logits(lm, suffixes, labels, prefix=prefix, reuse_prefix=True, max_batch_size=3)
    plain = next_token_logits(lm, suffixes, labels, prefix=prefix, reuse_prefix=False, max_batch_size=3)
    reference = _reference_logits(lm, [prefix + s for s in suffixes], labels)
    # guards: padding/position-id errors (left padding must not shift positions) and a wrong KV-cache reuse
    np.testing.assert_allclose(plain, reference, atol=1e-5)
    np.testing.assert_allclose(reused, reference, atol=1e-5)


def test_token_budget_batches_sorted_and_packed():
    lengths = [5, 50, 10, 49, 7, 8]
    batches = token_budget_batches(lengths, token_budget=100, max_batch_size=8)
    assert sorted(i for b in batches for i in b) == list(range(6))
    assert all(len(b) * max(lengths[i] for i in b) <= 100 or len(b) == 1 for b in batches)
    assert batches[0] == [1, 3]  # longest first, packed two at a time under the budget
    assert max(len(b) for b in batches) > 1  # never one at a time when more fit


def test_oom_halves_the_batch_and_retries(lm, monkeypatch):
    prefix, suffixes = _texts(lm)
    labels = [lm.single_token("yes")]
    expected = next_token_logits(lm, suffixes, labels, prefix=prefix)
    forward, sizes = lm.model.forward, []

    def flaky(*args, **kwargs):
        batch = kwargs["input_ids"].shape[0]
        sizes.append(batch)
        if batch > 1 and kwargs.get("past_key_values") is not None:
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return forward(*args, **kwargs)

    monkeypatch.setattr(lm.model, "forward", flaky)
    got = next_token_logits(lm, suffixes, labels, prefix=prefix, max_batch_size=4)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert 4 in sizes and 2 in sizes and sizes.count(1) >= 4  # 4 -> 2 + 2 -> 1 + 1 + 1 + 1


def test_oom_on_one_input_is_a_clear_error(lm, monkeypatch):
    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory (injected)")

    monkeypatch.setattr(lm.model, "forward", oom)
    with pytest.raises(PolyrankError, match="does not fit"):
        next_token_logits(lm, [lm.encode("a")], [lm.single_token("yes")])


def test_attention_mass_equals_hand_computation_from_attention_tensors(lm):
    prefix, suffixes = _texts(lm)
    got = attention_mass(lm, prefix, suffixes[:3])
    lm.model.set_attn_implementation("eager")
    try:
        for row, suffix in enumerate(suffixes[:3]):
            with torch.no_grad():
                out = lm.model(torch.tensor([prefix + suffix]), output_attentions=True)
            queries = slice(len(prefix), len(prefix) + len(suffix))
            hand = sum(a[0, :, queries, :len(prefix)].mean(1).sum(0) for a in out.attentions).numpy()
            np.testing.assert_allclose(got[row], hand, atol=1e-5)
    finally:
        lm.model.set_attn_implementation("sdpa")
    np.testing.assert_allclose(attention_mass(lm, prefix, suffixes[:3], reuse_prefix=False), got, atol=1e-5)


def test_generate_stops_and_constrains(lm):
    prefix, suffixes = _texts(lm)
    yes, no = lm.single_token("yes"), lm.single_token("no")
    texts = generate(lm, [prefix + s for s in suffixes], max_new_tokens=4, allowed_token_ids=[yes, no])
    assert len(texts) == 4 and all(set(t.split()) <= {"yes", "no"} for t in texts)
    assert any(t for t in texts)
    stopped = generate(lm, [prefix + suffixes[0]], max_new_tokens=6, stop_strings=["yes"], allowed_token_ids=[yes, no])
    assert stopped[0].endswith("yes") or "yes" not in stopped[0]


def test_single_token_check_and_loading_errors(lm, tmp_path):
    assert isinstance(lm.single_token("yes"), int)
    with pytest.raises(PolyrankError, match="single-token"):
        lm.single_token("yesno maybe")
    with pytest.raises(PolyrankError, match="hub id.*local folder"):
        resolve_folder("Qwen/Qwen3-Reranker-0.6B")
    with pytest.raises(PolyrankError, match="does not exist"):
        resolve_folder(tmp_path / "missing")
    lm.save(tmp_path / "hf")
    again = load_causal_lm(tmp_path / "hf", device="cpu")
    assert again.dtype == torch.float32 and again.tokenizer.padding_side == "left"
    ids = lm.encode("judge yes")
    with torch.no_grad():
        torch.testing.assert_close(again.model(torch.tensor([ids])).logits, lm.model(torch.tensor([ids])).logits)


def test_min_new_tokens_forces_the_generation_length():
    """Guards the FIRST benchmark: without min_new_tokens a model that ends early makes generation look cheap."""
    lm = tiny_causal_lm("llama", words=["yes"], seed=3)
    with torch.no_grad():
        # the end-of-sequence logit dominates: greedy decoding stops at once unless forced on
        lm.model.lm_head.weight[lm.tokenizer.eos_token_id] = 50 * lm.model.model.norm.weight.sign()
    prompt = lm.encode("judge yes")
    calls = []
    original = lm.model.generate

    def counting(*args, **kwargs):
        out = original(*args, **kwargs)
        calls.append(out.shape[1] - kwargs["input_ids"].shape[1])
        return out

    lm.model.generate = counting
    generate(lm, [prompt], 7)
    generate(lm, [prompt], 7, min_new_tokens=7)
    assert calls[0] < 7 and calls[1] == 7
