"""Oracles: ROUGE targets, PMB filter/update, key-sentence scoring, metrics (hand-computed values)."""

import math

import numpy as np
import pytest
import torch
from rouge_score import rouge_scorer

from polyrank.domains.mtm.pmb import init_memory, percentile_filter, static_embeddings, update_memory
from polyrank.domains.mtm.rot import l2_to_initial, rouge2_targets
from polyrank.domains.mtm.selection import min_max_closeness, select_key_sentences
from polyrank.shared.evaluation import evaluate


def test_rouge2_targets_match_rouge_score_and_hand_values():
    claim = [5, 6, 7, 8, 5, 6]            # bigrams: 5-6 x2, 6-7, 7-8, 8-5  (5 bigrams)
    sentence = [5, 6, 7, 9]                # bigrams: 5-6, 6-7, 7-9          (3 bigrams)
    got = rouge2_targets(claim, [sentence, [1], [5, 6, 7, 8, 5, 6]])
    # overlap = min counts: 5-6 -> 1, 6-7 -> 1  => P = 2/3, R = 2/5
    assert got[0] == pytest.approx([2 / 3, 2 / 5])
    assert got[1] == pytest.approx([0.0, 0.0])
    assert got[2] == pytest.approx([1.0, 1.0])
    direct = rouge_scorer.RougeScorer(["rouge2"]).score("5 6 7 8 5 6", "5 6 7 9")["rouge2"]
    assert got[0] == pytest.approx([direct.precision, direct.recall])


def test_l2_to_initial_is_squared_distance():
    layer = torch.nn.Linear(2, 1, bias=False)
    init = {n: p.detach().clone() for n, p in layer.named_parameters()}
    with torch.no_grad():
        layer.weight += torch.tensor([[1.0, 2.0]])
    assert float(l2_to_initial(layer, init).detach()) == pytest.approx(5.0)


def test_static_embeddings_mean_rows_and_zero_for_empty():
    table = torch.arange(12, dtype=torch.float32).reshape(6, 2)
    out = static_embeddings(table, [[1, 3], [], [5]])
    assert out.tolist() == [[4.0, 5.0], [0.0, 0.0], [10.0, 11.0]]


def test_percentile_filter_keeps_strictly_between_25th_and_50th():
    d = np.arange(1, 10, dtype=float)          # 25th = 3, 50th = 5
    assert percentile_filter(d).tolist() == [False, False, False, True, False, False, False, False, False]


def test_init_memory_clusters_filtered_residuals():
    rng = np.random.default_rng(0)
    res = np.concatenate([rng.normal(0, 0.01, (40, 2)) + [3, 0], rng.normal(0, 0.01, (40, 2)) + [0, 3.2],
                          rng.normal(0, 0.01, (40, 2)) * 0.1, rng.normal(0, 0.01, (40, 2)) + [30, 0]])
    mem = init_memory(res, n_patterns=2)
    # norms: ~0 (25%), ~3 (25%), ~3.2 (25%), ~30: only the ~3 group lies in (p25, p50), so both centres are near it
    assert np.allclose(np.sort(mem[:, 0]), [3, 3], atol=0.05)


def test_update_memory_moves_toward_correct_and_away_from_wrong():
    memory = torch.tensor([[1.0, 0.0], [0.0, 2.0], [5.0, 5.0]])
    residuals = torch.tensor([[2.0, 0.0], [1.0, 1.0], [0.0, 3.0]])
    slots = torch.tensor([0, 0, 1])
    p_true = torch.tensor([0.9, 0.3, 0.1])      # correct (w .4), wrong (w .2), wrong (w .4)
    labels = torch.tensor([1, 0, 1])
    new = update_memory(memory, residuals, slots, p_true, labels, step=0.3)
    # slot 0: a = (2,0)-(1,0) = (1,0); b = (1,0)-(1,1) = (0,-1); alpha=.4/.6, beta=.2/.6 -> g ~ (2/3,-1/3)
    g = torch.tensor([2 / 3, -1 / 3]) / math.sqrt(5 / 9)
    assert torch.allclose(new[0], torch.tensor([1.0, 0.0]) + 0.3 * 1.0 * g, atol=1e-5)
    # slot 1: only wrong: g = m - n = (0,-1) -> moves away from (0,3) by 0.3*||m||=0.6
    assert torch.allclose(new[1], torch.tensor([0.0, 1.4]), atol=1e-5)
    assert torch.equal(new[2], memory[2])       # untouched slot


def test_p_equal_half_counts_as_correct_only_for_negative_label():
    # weight |p - .5| = 0, so the group's weighted centre is the origin (as in the reference):
    # y=0 -> "correct" -> pulled toward the origin; y=1 -> "wrong" -> pushed away from it.
    memory = torch.tensor([[1.0, 0.0]])
    residuals = torch.tensor([[3.0, 0.0]])
    as_correct = update_memory(memory, residuals, torch.tensor([0]), torch.tensor([0.5]), torch.tensor([0]))
    as_wrong = update_memory(memory, residuals, torch.tensor([0]), torch.tensor([0.5]), torch.tensor([1]))
    assert as_correct[0].tolist() == pytest.approx([0.7, 0.0])
    assert as_wrong[0].tolist() == pytest.approx([1.3, 0.0])


def test_key_sentence_scores_hand_computed():
    claim = torch.tensor([[0.0, 0.0]])
    sents = torch.tensor([[[1.0, 0.0], [0.0, 3.0], [2.0, 0.0], [0.0, 0.0]]])
    mask = torch.tensor([[True, True, True, False]])
    memory = torch.tensor([[2.0, 0.0], [0.0, 10.0]])
    keys = select_key_sentences(claim, sents, mask, memory, k=2)
    # dQ = 1, 3, 2 -> cQ = 1, 0, .5 ; dP = 1, sqrt(13), 0 -> cP = 1 - 1/sqrt(13), 0, 1
    # score = .6 cQ + .4 cP = .6 + .4 (1 - 1/sqrt(13)), 0, .7
    s0 = 0.6 + 0.4 * (1 - 1 / math.sqrt(13))
    assert keys.indices.tolist() == [[0, 2]]
    assert keys.scores[0].tolist() == pytest.approx([s0, 0.7], abs=1e-5)
    assert keys.weights[0].tolist() == pytest.approx([s0 / (s0 + 0.7), 0.7 / (s0 + 0.7)], abs=1e-5)
    assert keys.patterns.tolist() == [[0, 0]]


def test_short_article_is_padded_with_zero_weight():
    keys = select_key_sentences(torch.zeros(1, 2), torch.ones(1, 1, 2), torch.ones(1, 1, dtype=torch.bool),
                                torch.zeros(3, 2), k=3)
    assert keys.indices.tolist() == [[0, -1, -1]]
    assert keys.weights[0].tolist() == pytest.approx([1.0, 0.0, 0.0], abs=1e-6)


def test_min_max_closeness_constant_row_is_one():
    out = min_max_closeness(torch.tensor([[2.0, 2.0, 9.0]]), torch.tensor([[True, True, False]]))
    assert out.tolist() == [[1.0, 1.0, 0.0]]


def test_metrics_hand_computed_with_a_query_missing_its_relevant_article():
    run = {"q1": {"a": 3.0, "b": 2.0, "c": 1.0},          # relevant b, c -> ranks 2, 3
           "q2": {"a": 3.0, "b": 2.0, "c": 1.0}}          # relevant z is not among the candidates
    qrels = {"q1": {"b": 1, "c": 1}, "q2": {"z": 1}}
    res = evaluate(run, qrels, ["MRR", "MAP@1", "MAP@3", "HIT@1", "HIT@3"])
    q1 = {m: res.per_query[m]["q1"] for m in res.per_query}
    assert q1["MRR"] == pytest.approx(0.5)
    assert q1["MAP@1"] == 0.0
    assert q1["MAP@3"] == pytest.approx((1 / 2 + 2 / 3) / 2)     # divided by all relevant (2)
    assert q1["HIT@1"] == 0.0 and q1["HIT@3"] == 1.0
    assert all(res.per_query[m]["q2"] == 0.0 for m in res.per_query)
    assert res.mean["MRR"] == pytest.approx(0.25)


def test_map_at_k_divides_by_all_relevant_even_beyond_k():
    run = {"q": {"a": 2.0, "b": 1.0}}
    res = evaluate(run, {"q": {"a": 1, "x": 1, "y": 1}}, ["MAP@1"])
    assert res.mean["MAP@1"] == pytest.approx(1 / 3)
