"""Setwise heap sort (Rank-R1) and REBEL on hand-written outputs (a fake generator replaces the LLM)."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

from polyrank.domains.text import load
from polyrank.domains.text.rebel import rebel_final, rebel_order
from polyrank.domains.text.setwise import parse_setwise, setwise_prompt
from polyrank.domains.text.windows import setwise_heapsort_top_k
from polyrank.shared.errors import PolyrankError
from polyrank.shared.llm.parsers import parse_rebel_criteria
from polyrank.shared.protocol import as_candidates
from polyrank.shared.registry import UntrainedWeightsWarning

QUERY = "what is the boiling point of water"


def _tiny(name, **overrides):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedWeightsWarning)
        return load(name, **overrides)


def _docs(relevance):
    """Documents whose text carries their (hidden) relevance, so a fake judge can act as an oracle."""
    return as_candidates([(f"d{i}", f"passage about water rel{r}x") for i, r in enumerate(relevance)])


def _rel(text):
    return [int(r) for r in re.findall(r"rel(\d+)x", text)]


@pytest.mark.parametrize("num_child", [1, 3, 19])
def test_setwise_heapsort_with_an_oracle_returns_the_true_top_k(num_child):
    rng = np.random.default_rng(num_child)
    for n in [1, 2, 5, 20, 57, 100]:
        relevance = rng.permutation(n)
        calls = []

        def oracle(items):
            calls.append(len(items))
            return int(np.argmax([relevance[i] for i in items]))

        order = setwise_heapsort_top_k(n, 10, num_child, oracle)
        truth = list(np.argsort(-relevance))
        # guards: a wrong child range, a missing sift-down after extraction or a build loop that skips
        # internal nodes would let a non-maximum reach the root
        assert order[: min(10, n)] == truth[: min(10, n)]
        assert sorted(order) == list(range(n))
        assert order[10:] == [i for i in range(n) if i not in set(order[:10])]  # rest in first-stage order
        assert all(size <= num_child + 1 for size in calls)


def test_setwise_reranker_end_to_end_with_a_reasoning_oracle_generator():
    reranker = _tiny("text.setwise.tiny", num_child=4, k=5)
    prompts_seen = []

    def oracle(prompts, max_new_tokens, stop_strings):
        prompts_seen.extend(prompts)
        rels = _rel(prompts[0])
        return [f"<think>document {int(np.argmax(rels)) + 1} answers it</think> <answer>[{int(np.argmax(rels)) + 1}]"
                "</answer>"]

    reranker.generator = oracle
    relevance = [3, 11, 0, 7, 5, 9, 1, 2, 8, 10, 4, 6]
    ranked = [r.candidate_id for r in reranker.rank(QUERY, _docs(relevance))]
    truth = [f"d{i}" for i in np.argsort(relevance)[::-1]]
    assert ranked[:5] == truth[:5]
    assert reranker.stats.parsed == reranker.calls and reranker.stats.malformed == 0
    # the Rank-R1 prompt: think-then-answer system prompt, numbered documents, the query quoted
    assert "<think> reasoning process here </think>" in prompts_seen[0] and f'"{QUERY}"' in prompts_seen[0]
    assert "[1] passage about water" in prompts_seen[0]


def test_setwise_malformed_outputs_fall_back_to_the_parent_and_are_counted():
    reranker = _tiny("text.setwise.tiny", num_child=3, k=3)
    outputs = iter(["no tags at all", "<answer>[2]</answer>", "<think>hmm</think><answer>[9]</answer>"] * 20)
    reranker.generator = lambda prompts, n, stops: [next(outputs)]
    order = reranker.order(QUERY, _docs([0, 1, 2, 3, 4, 5, 6]))
    assert sorted(order) == list(range(7))
    # reasoning=True: the answer without a think block is malformed too; [9] is out of range in a set of <= 4
    assert reranker.stats.parsed == reranker.calls and reranker.stats.malformed == reranker.calls
    # every comparison fell back to "the parent wins" (position 0): the same order as a judge that always says 0;
    # the first-stage best is never displaced from the root
    assert order == setwise_heapsort_top_k(7, 3, 3, lambda items: 0) and order[0] == 0
    assert parse_setwise("<think>x</think>\n<answer> [3] </answer>", 4, reasoning=True) == 2
    assert parse_setwise("<answer>[3]</answer>", 4, reasoning=False) == 2
    assert parse_setwise("<answer>[3]</answer>", 4, reasoning=True) is None


def test_setwise_likelihood_reads_letter_logits_without_generation():
    reranker = _tiny("text.setwise.tiny", reasoning=False, scoring="likelihood", num_child=3, k=2)
    reranker.generator = lambda *a: pytest.fail("likelihood scoring must not generate")
    from polyrank.shared.llm.scoring import next_token_logits

    lm, texts = reranker.lm, ["a b", "c d", "e f"]
    prompt = lm.chat(setwise_prompt(QUERY, texts, False, ["A", "B", "C"])) + "<answer>["
    logits = next_token_logits(lm, [lm.encode(prompt)], [lm.single_token(c) for c in "ABC"])[0]
    assert reranker.best_of(QUERY, texts) == int(np.argmax(logits))
    assert "[A] a b" in prompt and "<think>" not in prompt  # the answer-only prompt, letters as labels
    with pytest.raises(PolyrankError, match="reasoning=False"):
        _tiny("text.setwise.tiny", scoring="likelihood")


def test_rebel_scoring_rule_on_hand_outputs():
    text = ("Doc: 1, Relevance: 8, Depth: 4, Diversity: 2, Clarity: 5, Authority: 3, Recency: 1\n"
            "Doc: 2, Relevance: 2, Depth: 5, Diversity: 5, Clarity: 5, Authority: 5, Recency: 5\n"
            "Doc: 3, Relevance: 9, Depth: 1, Diversity: 1, Clarity: 1, Authority: 1, Recency: 0\n"
            "Doc: 4, Relevance: 7, Depth: 2, Diversity: 2, Clarity: 2, Authority: 2, Recency: 4\n"
            "Doc: 5, Relevance: 7, Depth: 2, Diversity: 2, Clarity: 2, Authority: 4, Recency: 2\n")
    parsed = parse_rebel_criteria(text, 6)
    assert parsed[0] == {"relevance": 8, "depth": 4, "diversity": 2, "clarity": 5, "authority": 3, "recency": 1}
    finals = [rebel_final(parsed[i]) for i in range(5)]
    # Final = Relevance + 0.5 x secondary sum; Relevance < 3 discarded (doc 2 despite perfect secondaries)
    assert finals == [8 + 0.5 * 15, None, 9 + 0.5 * 4, 7 + 0.5 * 12, 7 + 0.5 * 12]
    # docs 4 and 5 tie at 13.0: authoritativeness breaks it (doc 5 has 4 > 2, so it goes first despite its later
    # first-stage position); doc 2 (dropped) and doc 6 (unlisted) follow in first-stage order
    assert rebel_order(parsed, 6) == [0, 4, 3, 2, 1, 5]
    assert rebel_final({"relevance": 2.0}, one_turn=False) == 2.0  # two-turn: the generated prompt's score


def test_rebel_one_turn_batches_of_ten_through_the_reranker():
    reranker = _tiny("text.rebel.tiny", mode="one-turn")
    seen = []

    def fake(prompts, max_new_tokens, stops):
        seen.extend(prompts)
        out = []
        for prompt in prompts:  # relevance from the hidden label; doc numbers restart at 1 in each batch
            rels = _rel(prompt)
            out.append("\n".join(f"Doc: {i + 1}, Relevance: {r}, Depth: 0, Diversity: 0, Clarity: 0, Authority: 0, "
                                 f"Recency: 0" for i, r in enumerate(rels)))
        return out

    reranker.generator = fake
    relevance = [5, 1, 10, 4, 9, 6, 0, 8, 3, 7, 2, 10, 6]
    order = reranker.order(QUERY, _docs(relevance))
    assert len(seen) == 2 and len(_rel(seen[0])) == 10 and len(_rel(seen[1])) == 3
    kept = [i for i in order if relevance[i] >= 3]
    assert kept == sorted(kept, key=lambda i: (-relevance[i], i))  # batches share one absolute scale
    assert order[len(kept):] == [i for i in range(13) if relevance[i] < 3]  # discarded: below, first-stage order
    assert reranker.stats.malformed == 0


def test_rebel_two_turn_writes_one_prompt_per_query_and_counts_malformed_batches():
    reranker = _tiny("text.rebel.tiny")  # two-turn is REBEL's default
    calls = []

    def fake(prompts, max_new_tokens, stops):
        calls.append(prompts)
        if "Write only the prompt" in prompts[0]:
            return ["Score documents on relevance and recency (weight 2)."]
        return ["Doc: 2, Relevance: 9.5\nDoc: 1, Relevance: 4", "I cannot rank these."]

    reranker.generator = fake
    cands = _docs(list(range(12)))
    order = reranker.order(QUERY, cands)
    reranker.order(QUERY, cands)
    meta_calls = [c for c in calls if "Write only the prompt" in c[0]]
    assert len(meta_calls) == 1  # the query-specific prompt is written once per query, then reused
    assert "Score documents on relevance and recency" in calls[1][0] and QUERY in calls[1][0]
    assert order[:2] == [1, 0] and order[2:] == list(range(2, 12))
    assert reranker.stats.parsed == 4 and reranker.stats.malformed == 2  # the second batch each time


def test_first_force_length_generates_a_whole_permutation(monkeypatch):
    """Guards the benchmark ratio: 'full generation' must write as many tokens as a whole permutation."""
    import polyrank.domains.text.first as first

    reranker = _tiny("text.first.tiny", mode="generate", force_length=True)
    seen = {}

    def fake(lm, prompts, max_new_tokens, **kwargs):
        seen.update(max_new_tokens=max_new_tokens, min_new_tokens=kwargs.get("min_new_tokens"))
        return ["[B] > [A] > [C]"]

    monkeypatch.setattr(first, "generate", fake)
    assert reranker.order(QUERY, _docs([1, 2, 3])) == [1, 0, 2]
    n_tokens = len(reranker.lm.encode("[A] > [B] > [C]"))
    assert seen == {"max_new_tokens": n_tokens, "min_new_tokens": n_tokens}


@pytest.mark.parametrize("name", ["text.setwise.tiny", "text.rebel.tiny"])
def test_new_families_run_through_rerank_run_with_the_real_tiny_model(name):
    """No fake generator: the tiny random model's real (garbage) outputs are parsed, counted and fall back."""
    from polyrank.shared.protocol import rerank_run

    reranker = _tiny(name)
    docs = {f"d{i}": f"water passage {i}" for i in range(5)}
    run = {"q": {d: 5.0 - i for i, d in enumerate(docs)}}
    out = rerank_run(run, reranker, {"q": QUERY}, docs, depth=5)
    assert set(out["q"]) == set(docs)
    assert reranker.stats.parsed >= 1 and 0 <= reranker.stats.malformed <= reranker.stats.parsed
    with pytest.raises(PolyrankError, match="does not accept"):
        load(name, window=3)


def test_setwise_without_reasoning_uses_the_answer_only_prompt():
    reranker = _tiny("text.setwise.tiny", reasoning=False)
    prompts = []
    reranker.generator = lambda batch, n, stops: prompts.extend(batch) or ["<answer>[2]</answer>"]
    assert reranker.best_of(QUERY, ["a", "b", "c"]) == 1 and reranker.stats.malformed == 0
    assert "<think>" not in prompts[0] and "<answer>[3]</answer>" in prompts[0]
