"""Vision-language models in the shared engine: tiny random Qwen2-VL and LLaVA built from configs (no hub)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from polyrank.shared.errors import PolyrankError
from polyrank.shared.llm import vision as V
from polyrank.shared.llm.tiny_vlm import tiny_vlm

FAMILIES = ["qwen2_vl", "llava"]


@pytest.fixture(scope="module", params=FAMILIES)
def vlm(request):
    return tiny_vlm(request.param)


def _image(seed: int, size=(60, 48)) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (*size, 3), dtype=np.uint8))


def _prompt(vlm, question: str, tail: str, image):
    msgs = [{"role": "user", "content": [{"type": "text", "text": f"Question: {question}\n"},
                                         {"type": "text", "text": V.SENTINEL}, {"type": "image"},
                                         {"type": "text", "text": tail}]}]
    before, after = vlm.split(msgs)
    return vlm.encode(before), vlm.inputs(after, [image])


def test_image_placeholders_are_expanded_by_the_models_own_processor(vlm):
    _, x = _prompt(vlm, "q", "Answer Yes or No", _image(0))
    image_id = V.image_token_ids(vlm)
    n_image = sum(1 for t in x.ids if t in image_id)
    assert n_image >= 4 and "pixel_values" in x.visual  # 4 merged patches (Qwen2-VL) / 4 patches (LLaVA) + markers


def test_prefix_reuse_equals_one_by_one(vlm):
    # guards: wrong positions after a cached prefix (Qwen2-VL M-RoPE offsets, left padding between prefix and
    # suffix) or images collated out of row order would change the logits
    prefix, a = _prompt(vlm, "what is the revenue", "Answer Yes or No", _image(1))
    _, b = _prompt(vlm, "what is the revenue", "Is this image relevant? Answer Yes or No", _image(2, (90, 120)))
    labels = [vlm.single_token("Yes"), vlm.single_token("No")]
    reused = V.next_token_logits(vlm, [a, b], labels, prefix=prefix, reuse_prefix=True)
    full = V.next_token_logits(vlm, [a, b], labels, prefix=prefix, reuse_prefix=False)
    single = np.stack([V.next_token_logits(vlm, [x], labels, prefix=prefix, reuse_prefix=False)[0] for x in (a, b)])
    np.testing.assert_allclose(reused, single, atol=1e-4)
    np.testing.assert_allclose(full, single, atol=1e-4)
    assert not np.allclose(single[0], single[1])  # the two pages really differ


def test_token_budget_splits_batches_without_changing_scores(vlm):
    prefix, a = _prompt(vlm, "q", "Answer Yes or No", _image(3))
    _, b = _prompt(vlm, "q", "Answer Yes or No", _image(4))
    labels = [vlm.single_token("Yes")]
    one_batch = V.next_token_logits(vlm, [a, b], labels, prefix=prefix)
    tiny_budget = V.next_token_logits(vlm, [a, b], labels, prefix=prefix, token_budget=1)
    np.testing.assert_allclose(one_batch, tiny_budget, atol=1e-4)


def test_completion_logprobs_match_next_token_logits(vlm):
    prefix, a = _prompt(vlm, "q", "Answer", _image(5))
    full = V.VisionInput(prefix + a.ids, a.visual)
    yes = vlm.single_token("Yes")
    logprobs, mask = V.completion_logprobs(vlm, [full], [[yes]], grad=False)
    vocab = list(range(vlm.model.get_output_embeddings().weight.shape[0]))
    logits = V.next_token_logits(vlm, [full], vocab)[0].astype(np.float64)
    expected = logits[yes] - np.log(np.exp(logits - logits.max()).sum()) - logits.max()
    assert mask.tolist() == [[1]]
    assert abs(float(logprobs[0, 0]) - expected) < 1e-4


def test_sampling_is_seeded_and_leaves_the_global_rng_alone(vlm):
    prefix, a = _prompt(vlm, "q", "Answer", _image(6))
    full = V.VisionInput(prefix + a.ids, a.visual)
    state = torch.get_rng_state().clone()
    first = V.generate(vlm, [full], 6, do_sample=True, seed=3)
    assert torch.equal(state, torch.get_rng_state())
    assert V.generate(vlm, [full], 6, do_sample=True, seed=3) == first
    assert not set(sum(first, [])) & set(V.image_token_ids(vlm))  # never emits image placeholders


def test_save_then_load_vlm_gives_the_same_logits(vlm, tmp_path):
    prefix, a = _prompt(vlm, "q", "Answer", _image(7))
    labels = [vlm.single_token("Yes")]
    vlm.save(tmp_path / "m")
    again = V.load_vlm(tmp_path / "m", device="cpu")
    assert type(again.model) is type(vlm.model)
    _, b = _prompt(again, "q", "Answer", _image(7))
    # same weights and processor; BLAS kernels may differ in the last float bit with memory alignment
    np.testing.assert_allclose(V.next_token_logits(vlm, [a], labels, prefix=prefix),
                               V.next_token_logits(again, [b], labels, prefix=prefix), rtol=1e-5, atol=1e-6)


def test_collate_pads_image_split_axes():
    parts = [{"pixel_values": torch.ones(1, 2, 3, 4, 4)}, {"pixel_values": torch.ones(1, 5, 3, 4, 4)}]
    out = V.collate_visual(parts)["pixel_values"]
    assert out.shape == (2, 5, 3, 4, 4) and out[0, 2:].abs().sum() == 0


def test_hub_id_and_missing_folder_are_clear_errors(tmp_path):
    with pytest.raises(PolyrankError, match="never downloads"):
        V.load_vlm("Qwen/Qwen2.5-VL-3B-Instruct")
    with pytest.raises(PolyrankError, match="no config.json"):
        V.load_vlm(tmp_path)
