"""RagLLaVA pointwise and MM-R5 listwise rerankers, MM-R5's rewards and parser, first stages."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from polyrank.domains.docimage.mmr5 import MMR5Reranker, messages
from polyrank.domains.docimage.pages import Page
from polyrank.domains.docimage.ragllava import RagLLaVAReranker, yes_probability
from polyrank.domains.docimage.rewards import format_reward, parse_ranking, ranking_reward
from polyrank.shared.errors import PolyrankError
from polyrank.shared.protocol import Candidate


@pytest.fixture(scope="module")
def vlm():
    from polyrank.domains.docimage.mmr5 import prompt_words
    from polyrank.shared.llm.tiny_vlm import tiny_vlm

    return tiny_vlm("qwen2_vl", words=prompt_words())


def _pages(n=3, seed=0):
    rng = np.random.default_rng(seed)
    return [Candidate(f"d#{i}", Page("d", i, Image.fromarray(rng.integers(0, 255, (40 + 8 * i, 48, 3), np.uint8)),
                                     f"page {i} text")) for i in range(n)]


# -- rewards and parser (MM-R5 Sec. 3.3) --------------------------------------------------------------------
def test_ranking_reward_hand_cases():
    assert ranking_reward("<think>x</think><answer>[2, 1, 3]</answer>", [2]) == 1.0
    assert ranking_reward("<think>x</think><answer>[1, 2, 3]</answer>", [2]) == pytest.approx(1 / 8)
    # two positives at ranks 1 and 3: (1 + 1/27) / (1 + 1/8)
    assert ranking_reward("<answer>[1, 2, 3]</answer>", [1, 3]) == pytest.approx((1 + 1 / 27) / (1 + 1 / 8))
    assert ranking_reward("<answer>[3, 1, 2]</answer>", [3, 1]) == 1.0
    assert ranking_reward("no answer at all", [1]) == 0.0
    assert ranking_reward("<answer>[a, b]</answer>", [1]) == 0.0
    assert ranking_reward("<answer>[2, 3]</answer>", [1]) == 0.0  # the positive is not listed


def test_format_reward_hand_cases():
    assert format_reward("<think>a</think><answer>[1, 2, 3]</answer>", 3) == 1.0
    assert format_reward("<think>a</think> <answer>[1, 2]</answer>", 3) == pytest.approx(2 / 3)  # length 2 of 3
    assert format_reward("<think>a</think><answer>[1, 2, 7]</answer>", 3) == pytest.approx(2 / 3)  # 7 out of range
    assert format_reward("<think>a</think><answer>[1, 2, 3, 3]</answer>", 3) == pytest.approx(2 / 3)
    assert format_reward("<answer>[1, 2, 3]</answer>", 3) == 0.0  # template needs <think>
    assert format_reward("<answer>[1, 2, 3]</answer>", 3, reasoning=False) == 1.0
    assert format_reward("<think>a</think><answer>1, 2, 3</answer>", 3) == 0.0  # no brackets
    assert format_reward("junk <think>a</think><answer>[1]</answer>", 1) == 0.0  # text outside the template


def test_parser_on_malformed_outputs():
    assert parse_ranking("<think>..</think><answer>[3, 1, 2]</answer>", 3).order == [2, 0, 1]
    dup = parse_ranking("<answer>[2, 2, 9, 1]</answer>", 4)
    assert dup.order == [1, 0, 2, 3] and dup.n_dropped == 2 and dup.n_missing == 2 and not dup.malformed
    for text in ["", "<think>only thinking", "<answer>[]</answer>", "<answer>[x, y]</answer>",
                 "<answer>[9, 10]</answer>"]:
        parsed = parse_ranking(text, 3)
        assert parsed.malformed and parsed.order == [0, 1, 2], text


# -- RagLLaVA pointwise ----------------------------------------------------------------------------------------
def test_yes_probability_equals_hand_softmax():
    logits = np.array([[2.0, 0.5], [-1.0, 3.0]])
    hand = np.exp(logits[:, 0]) / np.exp(logits).sum(1)
    np.testing.assert_allclose(yes_probability(logits), hand)


def test_ragllava_score_is_p_yes_of_the_full_prompt_logits(vlm):
    # guards: reading another position or label, or softmax over the wrong pair, breaks the equality
    from polyrank.shared.llm.vision import SENTINEL, position_ids

    reranker = RagLLaVAReranker(vlm, "docimage.ragllava.tiny")
    cands = _pages(3)
    scores = reranker.score("what is on page one", cands)
    yes, no = vlm.single_token("Yes"), vlm.single_token("No")
    for cand, score in zip(cands, scores):
        text = vlm.render(reranker._messages("what is on page one", "", "")).replace(SENTINEL, "")
        x = vlm.inputs(text, [cand.content.image])
        ids = torch.tensor([x.ids])
        with torch.no_grad():
            logits = vlm.model(input_ids=ids, attention_mask=torch.ones_like(ids),
                               position_ids=position_ids(vlm, ids, torch.ones_like(ids), x.visual), **x.visual).logits
        last = logits[0, -1].double()
        hand = torch.exp(last[yes]) / (torch.exp(last[yes]) + torch.exp(last[no]))
        assert score == pytest.approx(float(hand), abs=1e-5)


def test_ragllava_prefix_reuse_equals_no_reuse(vlm):
    cands = _pages(4, seed=1)
    a = RagLLaVAReranker(vlm, "x", reuse_prefix=True).score("q", cands)
    b = RagLLaVAReranker(vlm, "x", reuse_prefix=False, max_batch_size=1).score("q", cands)
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_ragllava_text_mode_on_a_text_lm():
    from polyrank.shared.llm.tiny import tiny_causal_lm

    lm = tiny_causal_lm("qwen2", words=["Yes", "No", "Question", "Page", "text"])
    reranker = RagLLaVAReranker(lm, "docimage.ragllava.text", input="text")
    cands = [Candidate("a#0", "water boils at 100 degrees"), Candidate("a#1", "the moon")]
    scores = reranker.score("boiling point", cands)
    assert scores.shape == (2,) and np.all((scores > 0) & (scores < 1))
    np.testing.assert_allclose(scores, RagLLaVAReranker(lm, "x", input="text", reuse_prefix=False).score(
        "boiling point", cands), atol=1e-5)
    with pytest.raises(PolyrankError, match="needs a vision-language model"):
        RagLLaVAReranker(lm, "x", input="image")


# -- MM-R5 listwise ------------------------------------------------------------------------------------------
def test_listwise_prompt_has_image_tags_and_reasoning_switch(vlm):
    pages = [c.content for c in _pages(3)]
    text = vlm.render(messages("q?", pages, reasoning=True))
    assert all(f"Image {i}:" in text for i in (1, 2, 3)) and text.count("<|image_pad|>") == 3 and "<think>" in text
    assert "<think>" not in vlm.render(messages("q?", pages, reasoning=False))


def test_listwise_uses_the_parsed_order_and_falls_back_on_malformed(vlm):
    reranker = MMR5Reranker(vlm, "docimage.mmr5.tiny", max_candidates=3)
    cands = _pages(4)
    reranker.generator = lambda q, pages: "<think>page 3 answers it</think><answer>[3, 1, 2]</answer>"
    assert [r.candidate_id for r in reranker.rank("q", cands)] == ["d#2", "d#0", "d#1", "d#3"]  # tail kept
    reranker.generator = lambda q, pages: "I cannot rank these."
    assert [r.candidate_id for r in reranker.rank("q", cands)] == ["d#0", "d#1", "d#2", "d#3"]
    assert reranker.stats.parsed == 2 and reranker.stats.malformed == 1


def test_listwise_first_token_mode_orders_by_id_logits(vlm):
    reranker = MMR5Reranker(vlm, "x", mode="first_token", max_candidates=3)
    cands = _pages(3)
    scores = reranker._first_token_scores("q", [c.content for c in cands])
    expected = sorted(range(3), key=lambda i: (-scores[i], i))
    assert [int(r.candidate_id[-1]) for r in reranker.rank("q", cands)] == expected


def test_registry_tiny_variants_warn_and_reject_bad_input():
    from polyrank.domains.docimage import load
    from polyrank.shared.registry import UntrainedWeightsWarning

    with pytest.warns(UntrainedWeightsWarning):
        reranker = load("docimage.ragllava.tiny", family="llava")
    assert reranker.lm.model_type == "llava"
    with pytest.raises(PolyrankError, match="needs model="):
        with warnings.catch_warnings():
            load("docimage.mmr5")


# -- first stages --------------------------------------------------------------------------------------------
def test_first_stages_rank_within_the_own_document():
    from polyrank.domains.docimage.first_stage import bm25_run, index_pages, tiny_clip
    from polyrank.domains.docimage.pages import PageStore, text_page_image

    store = PageStore()
    store.add_document("a.pdf", [text_page_image("cats"), text_page_image("dogs")], ["cats sleep", "dogs bark loudly"])
    store.add_document("b.pdf", [text_page_image("revenue")], ["revenue grew in 2020"])
    queries, doc_of = {"a.pdf/q0": "which dogs bark"}, {"a.pdf/q0": "a.pdf"}
    bm25 = bm25_run(queries, doc_of, store)
    assert list(bm25["a.pdf/q0"])[0] == "a.pdf#1" and set(bm25["a.pdf/q0"]) == {"a.pdf#0", "a.pdf#1"}
    clip = tiny_clip()
    index = index_pages(store, clip.encode_images, "image")
    vectors = dict(zip(queries, clip.encode_texts(list(queries.values()))))
    own = index.search_own_document(vectors, doc_of, 10)
    assert set(own["a.pdf/q0"]) == {"a.pdf#0", "a.pdf#1"}
    assert set(index.search_corpus(vectors, 10)["a.pdf/q0"]) == {"a.pdf#0", "a.pdf#1", "b.pdf#0"}
    with pytest.raises(PolyrankError, match="has no indexed pages"):
        index.search_own_document(vectors, {"a.pdf/q0": "missing.pdf"}, 10)
