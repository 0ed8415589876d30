"""Text LLM rerankers on tiny random models: oracles from hand computations, mutation guards, registry paths."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from polyrank.domains.text import load
from polyrank.domains.text.first import IDENTIFIERS
from polyrank.domains.text.icr import calibrated_document_score
from polyrank.domains.text.windows import order_to_scores, sliding_window_order
from polyrank.shared.errors import PolyrankError
from polyrank.shared.protocol import as_candidates, rerank_run
from polyrank.shared.registry import UntrainedWeightsWarning

QUERY = "what is the boiling point of water"
DOCS = [("d1", "Water boils at 100 degrees Celsius at sea level."), ("d2", "The moon orbits the earth."),
        ("d3", "Boiling point depends on pressure; at altitude water boils sooner."), ("d4", "Cats sleep a lot.")]


def _tiny(name, **overrides):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedWeightsWarning)
        return load(name, **overrides)


@pytest.fixture(scope="module")
def pointwise():
    return _tiny("text.pointwise.tiny")


def _last_logits(lm, ids):
    with torch.no_grad():
        return lm.model(torch.tensor([ids])).logits[0, -1].double().numpy()


def test_yes_no_score_equals_hand_computation_from_logits(pointwise):
    lm, cands = pointwise.lm, as_candidates(DOCS)
    scores = pointwise.score(QUERY, cands)
    before, after = pointwise.prompt_parts(QUERY)
    assert before.endswith("<Document>: ") and "<Instruct>: Given a web search query" in before
    assert after == "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    for score, (_, text) in zip(scores, DOCS):
        logits = _last_logits(lm, lm.encode(before) + lm.encode(text) + lm.encode(after))
        yes, no = logits[lm.single_token("yes")], logits[lm.single_token("no")]
        assert score == pytest.approx(np.exp(yes) / (np.exp(yes) + np.exp(no)), abs=1e-5)


def test_prefix_reuse_equals_no_reuse(pointwise):
    cands = as_candidates(DOCS)
    plain = _tiny("text.pointwise.tiny", reuse_prefix=False)
    np.testing.assert_allclose(pointwise.score(QUERY, cands), plain.score(QUERY, cands), atol=1e-6)


def test_prorank_score_is_logit_one_minus_logit_zero():
    reranker = _tiny("text.pointwise.tiny", variant="prorank")
    lm, cands = reranker.lm, as_candidates(DOCS[:2])
    before, after = reranker.prompt_parts(QUERY)
    assert "Relevance:" in after and before.startswith("<|im_start|>user\nquery: ")
    for score, (_, text) in zip(reranker.score(QUERY, cands), DOCS[:2]):
        logits = _last_logits(lm, lm.encode(before) + lm.encode(text) + lm.encode(after))
        assert score == pytest.approx(logits[lm.single_token("1")] - logits[lm.single_token("0")], abs=1e-4)


def test_first_order_equals_argsort_of_identifier_logits():
    reranker = _tiny("text.first.tiny")
    lm, cands = reranker.lm, as_candidates(DOCS)
    ids = lm.encode(lm.chat(__import__("polyrank.domains.text.first", fromlist=["x"]).first_prompt(
        QUERY, [t for _, t in DOCS])) + "[")
    logits = _last_logits(lm, ids)[[lm.single_token(i) for i in IDENTIFIERS[:4]]]
    expected = list(np.argsort(-logits, kind="stable"))
    assert reranker.order(QUERY, cands) == expected
    ranked = [r.candidate_id for r in reranker.rank(QUERY, DOCS)]
    assert ranked == [DOCS[i][0] for i in expected]


def test_first_generation_mode_malformed_output_falls_back_and_is_counted():
    reranker = _tiny("text.first.tiny", mode="generate", max_new_tokens=6)
    order = reranker.order(QUERY, as_candidates(DOCS))
    assert reranker.stats.parsed == 1
    if reranker.stats.malformed:  # a random model rarely writes a valid "[X]": the window keeps first-stage order
        assert order == [0, 1, 2, 3]
    assert sorted(order) == [0, 1, 2, 3]


def test_sliding_windows_with_an_oracle_judge_give_the_true_order():
    rng = np.random.default_rng(0)
    for _ in range(20):
        relevance = rng.permutation(100)  # item i has relevance relevance[i]; higher is better
        calls = []

        def oracle(items):
            calls.append(len(items))
            return sorted(range(len(items)), key=lambda p: -relevance[items[p]])

        order = sliding_window_order(100, 20, 10, oracle)
        truth = list(np.argsort(-relevance))
        # guards: windows must run bottom to top so the best items bubble up to the first window
        assert order[:10] == truth[:10]
        assert sorted(order) == list(range(100)) and len(calls) == 9
    small = sliding_window_order(7, 20, 10, lambda items: sorted(range(len(items)), key=lambda p: -items[p]))
    assert small == [6, 5, 4, 3, 2, 1, 0]


def test_order_to_scores_sorts_back_to_the_order():
    order = [2, 0, 3, 1]
    scores = order_to_scores(order, 4)
    assert list(np.argsort(-scores)) == order
    with pytest.raises(ValueError):
        order_to_scores([0, 0, 1], 3)


def test_icr_equals_hand_computation_from_attention_tensors():
    reranker = _tiny("text.icr.tiny")
    lm, cands = reranker.lm, as_candidates(DOCS)
    scores = reranker.score(QUERY, cands)
    texts = [t for _, t in DOCS][::-1]  # reverse=True: the first-stage best sits next to the query
    prefix, spans, suffixes = reranker.build(QUERY, texts)
    lm.model.set_attn_implementation("eager")
    try:
        per_pass = []
        for suffix in suffixes:  # the real query, then "N/A"
            with torch.no_grad():
                out = lm.model(torch.tensor([prefix + suffix]), output_attentions=True)
            q = slice(len(prefix), len(prefix) + len(suffix))
            per_pass.append(sum(a[0, :, q, :].mean(1).sum(0) for a in out.attentions).double().numpy())
    finally:
        lm.model.set_attn_implementation("sdpa")
    s, s_na = per_pass
    for slot, (start, end) in enumerate(spans):
        c = s[start:end] - s_na[start:end]
        keep = c > c.mean() - 2 * c.std(ddof=1)
        assert scores[len(DOCS) - 1 - slot] == pytest.approx(c[keep].sum(), abs=1e-5)
    # calibration is the difference of the two passes: without it, the score is the real pass alone
    uncalibrated = _tiny("text.icr.tiny", calibrate=False).score(QUERY, cands)
    for slot, (start, end) in enumerate(spans):
        assert uncalibrated[len(DOCS) - 1 - slot] == pytest.approx(s[start:end].sum(), abs=1e-5)
    assert not np.allclose(scores, uncalibrated)


def test_icr_masking_drops_strongly_biased_tokens():
    s = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    s_na = np.array([0.0] * 9 + [20.0])  # one token is mostly bias: c = -19, far below mean - 2 std
    assert calibrated_document_score(s, s_na) == pytest.approx(9.0)
    assert calibrated_document_score(s, s_na, calibrate=False) == pytest.approx(10.0)


@pytest.mark.parametrize("name", ["text.pointwise.tiny", "text.first.tiny", "text.icr.tiny"])
def test_every_family_through_the_registry_and_rerank_run(name, tmp_path):
    with pytest.warns(UntrainedWeightsWarning):
        reranker = load(name)
    run = {"q1": {d: 10.0 - i for i, (d, _) in enumerate(DOCS)} | {"d9": 0.5}}
    corpus = dict(DOCS) | {"d9": "tail document"}
    out = rerank_run(run, reranker, {"q1": QUERY}, corpus, depth=4)
    assert set(out["q1"]) == set(corpus) and min(out["q1"], key=out["q1"].get) == "d9"
    # a plain HF folder passed as model= is real weights: no untrained warning, same scores
    reranker.lm.save(tmp_path / "hf")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UntrainedWeightsWarning)
        again = load(name.removesuffix(".tiny"), model=str(tmp_path / "hf"))
    np.testing.assert_allclose(again.score(QUERY, as_candidates(DOCS)), reranker.score(QUERY, as_candidates(DOCS)),
                               atol=1e-6)


def test_saved_directory_keeps_options_and_overrides_win(tmp_path):
    reranker = _tiny("text.pointwise.tiny", variant="prorank", instruction="find facts")
    saved = reranker.save(tmp_path / "saved")
    manifest = json.loads((saved / "polyrank.json").read_text())
    assert manifest["reranker"] == "text.pointwise.tiny" and manifest["options"]["variant"] == "prorank"
    again = load(saved)
    assert again.variant == "prorank" and again.instruction == "find facts"
    assert load("text.pointwise.tiny", checkpoint=saved, instruction="other").instruction == "other"


def test_lightning_checkpoint_and_model_plus_checkpoint_are_clear_errors(tmp_path):
    ckpt = tmp_path / "last.ckpt"
    torch.save({"state_dict": {}, "pytorch-lightning_version": "2.4"}, ckpt)
    with pytest.raises(PolyrankError, match="zero-shot"):
        load("text.pointwise.tiny", checkpoint=ckpt)
    with pytest.raises(PolyrankError, match="hub id"):
        load("text.pointwise", model="Qwen/Qwen3-Reranker-0.6B")
    with pytest.raises(PolyrankError, match="does not accept"):
        load("text.icr.tiny", window=3)


def test_cli_rerank_command_with_a_tiny_reranker(tmp_path):
    from polyrank.shared.cli import main
    from polyrank.shared.runs import read_run

    (tmp_path / "corpus.jsonl").write_text("\n".join(json.dumps({"_id": d, "title": "", "text": t}) for d, t in DOCS))
    (tmp_path / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": QUERY}))
    (tmp_path / "first.trec").write_text("".join(f"q1 Q0 {d} {i + 1} {4.0 - i} bm25\n" for i, (d, _) in
                                                 enumerate(DOCS)))
    out = tmp_path / "reranked.trec"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedWeightsWarning)
        assert main(["rerank", "text.pointwise.tiny", str(tmp_path / "first.trec"), str(tmp_path / "queries.jsonl"),
                     str(tmp_path / "corpus.jsonl"), str(out), "--depth", "4"]) == 0
        expected = load("text.pointwise.tiny").score(QUERY, as_candidates(DOCS))
    run = read_run(out)["q1"]
    np.testing.assert_allclose([run[d] for d, _ in DOCS], expected, atol=1e-5)


def test_cli_rerank_with_model_and_overrides_serves_that_model(tmp_path):
    """`polyrank rerank text.pointwise ... --model <folder> --overrides {...}` runs that model with those options."""
    from polyrank.shared.cli import main
    from polyrank.shared.runs import read_run

    (tmp_path / "corpus.jsonl").write_text("\n".join(json.dumps({"_id": d, "title": "", "text": t}) for d, t in DOCS))
    (tmp_path / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": QUERY}))
    (tmp_path / "first.trec").write_text("".join(f"q1 Q0 {d} {i + 1} {4.0 - i} bm25\n" for i, (d, _) in
                                                 enumerate(DOCS)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedWeightsWarning)
        _tiny("text.pointwise.tiny").lm.save(tmp_path / "hf")
    out = tmp_path / "reranked.trec"
    assert main(["rerank", "text.pointwise", str(tmp_path / "first.trec"), str(tmp_path / "queries.jsonl"),
                 str(tmp_path / "corpus.jsonl"), str(out), "--depth", "4", "--model", str(tmp_path / "hf"),
                 "--overrides", '{"variant": "prorank"}']) == 0
    expected = load("text.pointwise", model=str(tmp_path / "hf"), variant="prorank").score(QUERY, as_candidates(DOCS))
    plain = load("text.pointwise", model=str(tmp_path / "hf")).score(QUERY, as_candidates(DOCS))
    run = read_run(out)["q1"]
    np.testing.assert_allclose([run[d] for d, _ in DOCS], expected, atol=1e-5)
    assert not np.allclose(expected, plain)  # the override reached the builder
    assert main(["rerank", "text.pointwise", str(tmp_path / "first.trec"), str(tmp_path / "queries.jsonl"),
                 str(tmp_path / "corpus.jsonl"), str(out), "--overrides", '{"bogus": 1}']) == 2
