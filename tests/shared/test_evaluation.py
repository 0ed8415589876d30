"""Evaluation: hand-computed values, pytrec_eval agreement, tie-break determinism, significance."""

from __future__ import annotations

import math
import random
import warnings

import numpy as np
import pytest

from polyrank.shared.errors import PolyrankError
from polyrank.shared.evaluation import (EvalResult, MissingQueriesWarning, canonical_measure, compare, evaluate,
                                        paired_test, tie_broken)

RUN = {"q1": {"a": 3.0, "b": 2.0, "c": 1.0, "d": 0.5}, "q2": {"x": 1.0, "y": 0.9, "z": 0.8}}
QRELS = {"q1": {"b": 1, "d": 2, "e": 1}, "q2": {"x": 1}}


def test_aliases_map_to_ir_measures_names():
    assert [canonical_measure(m) for m in ["MRR", "MRR@10", "MAP", "MAP@5", "HIT@3", "Recall@100", "nDCG@10"]] == \
        ["RR", "RR@10", "AP", "AP@5", "Success@3", "R@100", "nDCG@10"]


def test_hand_computed_values():
    res = evaluate(RUN, QRELS, ["MRR", "MAP", "MAP@2", "HIT@1", "P@2", "Recall@4", "nDCG@4"])
    # q1: relevant b at rank 2, d at rank 4 (e never retrieved; 3 relevant in all).
    assert res.per_query["MRR"]["q1"] == pytest.approx(0.5)
    assert res.per_query["MAP"]["q1"] == pytest.approx((1 / 2 + 2 / 4) / 3)
    assert res.per_query["MAP@2"]["q1"] == pytest.approx((1 / 2) / 3)  # divided by ALL relevant (map_cut)
    assert res.per_query["HIT@1"]["q1"] == 0.0 and res.per_query["HIT@1"]["q2"] == 1.0
    assert res.per_query["P@2"]["q1"] == pytest.approx(0.5)
    assert res.per_query["Recall@4"]["q1"] == pytest.approx(2 / 3)
    dcg = 1 / math.log2(3) + 2 / math.log2(5)
    idcg = 2 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)
    assert res.per_query["nDCG@4"]["q1"] == pytest.approx(dcg / idcg)
    assert res.mean["MRR"] == pytest.approx((0.5 + 1.0) / 2)


def test_agrees_with_pytrec_eval_on_random_runs():
    import pytrec_eval

    rng = np.random.default_rng(0)
    run = {f"q{i}": {f"d{j}": float(rng.random()) for j in range(30)} for i in range(20)}
    qrels = {f"q{i}": {f"d{j}": int(rng.integers(0, 3)) for j in rng.choice(40, 8, replace=False)} for i in range(20)}
    qrels = {q: d for q, d in qrels.items() if any(v > 0 for v in d.values())}
    ours = evaluate(run, qrels, ["AP", "RR", "nDCG@10", "P@5"])
    ref = pytrec_eval.RelevanceEvaluator(qrels, {"map", "recip_rank", "ndcg_cut.10", "P.5"}).evaluate(run)
    for qid in qrels:
        assert ours.per_query["AP"][qid] == pytest.approx(ref[qid]["map"])
        assert ours.per_query["RR"][qid] == pytest.approx(ref[qid]["recip_rank"])
        assert ours.per_query["nDCG@10"][qid] == pytest.approx(ref[qid]["ndcg_cut_10"])
        assert ours.per_query["P@5"][qid] == pytest.approx(ref[qid]["P_5"])


def test_tie_break_is_score_desc_then_id_asc_whatever_the_input_order():
    ids = ["d3", "d1", "d2", "d0"]
    for seed in range(5):
        random.Random(seed).shuffle(ids)
        run = {"q": {d: (1.0 if d != "d0" else 0.0) for d in ids}}
        ranked = tie_broken(run)["q"]
        assert sorted(ranked, key=ranked.get, reverse=True) == ["d1", "d2", "d3", "d0"]
        # trec_eval alone would put d3 first among the ties (id descending); ours gives RR 1 for d1.
        assert evaluate(run, {"q": {"d1": 1}}, ["RR"]).mean["RR"] == 1.0


def test_missing_and_unjudged_queries():
    qrels = {"q1": {"a": 1}, "q2": {"x": 0}, "q3": {"m": 1}}
    run = {"q1": {"a": 1.0}, "q2": {"x": 1.0}}
    with pytest.warns(MissingQueriesWarning):
        res = evaluate(run, qrels, ["RR"])
    assert res.queries == ["q1", "q3"]  # q2 has no relevant document: skipped
    assert res.mean["RR"] == pytest.approx(0.5)  # q3 missing from the run counts 0
    with pytest.warns(MissingQueriesWarning):
        assert evaluate(run, qrels, ["RR"], missing_as_zero=False).mean["RR"] == 1.0


ALIAS_PAIRS = [("MRR", "RR"), ("MRR@10", "RR@10"), ("MAP", "AP"), ("MAP@2", "AP@2"), ("HIT@1", "Success@1"),
               ("Recall@3", "R@3")]


@pytest.mark.parametrize("names", [list(p) for p in ALIAS_PAIRS] + [list(reversed(p)) for p in ALIAS_PAIRS]
                         + [["RR", "RR"], ["MRR", "MRR"], ["MRR", "nDCG@4", "RR", "MAP", "AP", "MRR"]])
def test_every_requested_name_gets_its_value_with_aliases_and_repeats(names):
    """Issue 8.1: with an alias and its canonical name both asked for, the first one came back 0.0."""
    res = evaluate(RUN, QRELS, names)
    assert list(res.mean) == list(dict.fromkeys(names))  # requested order, each name once
    for name in names:
        alone = evaluate(RUN, QRELS, [name])
        assert res.mean[name] == pytest.approx(alone.mean[name]) and res.mean[name] > 0
        assert res.per_query[name] == pytest.approx(alone.per_query[name])
        assert res.mean[name] == pytest.approx(evaluate(RUN, QRELS, [canonical_measure(name)]).mean[
            canonical_measure(name)])


def test_missing_queries_are_listed_and_warned_with_counts():
    """Issue 9.5: a run lacking most judged queries averaged zeros in and warned nothing."""
    qrels = {f"q{i}": {"a": 1} for i in range(10)}
    run = {"q0": {"a": 1.0}, "q1": {"b": 1.0, "a": 0.5}}
    with pytest.warns(MissingQueriesWarning, match=r"the run lacks 8 of the 10 judged queries \('q2', 'q3', 'q4', "
                                                   r"'q5', 'q6', \.\.\.\); each counts as 0 \(missing_as_zero=True\)"):
        res = evaluate(run, qrels, ["RR"])
    assert res.missing == [f"q{i}" for i in range(2, 10)] and res.missing_as_zero is True
    assert len(res.queries) == 10 and res.mean["RR"] == pytest.approx(1.5 / 10)
    with pytest.warns(MissingQueriesWarning, match=r"they are skipped \(missing_as_zero=False\)"):
        skipped = evaluate(run, qrels, ["RR"], missing_as_zero=False)
    assert skipped.missing == res.missing and skipped.missing_as_zero is False
    assert skipped.queries == ["q0", "q1"] and skipped.mean["RR"] == pytest.approx(0.75)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a complete run warns nothing
        full = evaluate({q: {"a": 1.0} for q in qrels}, qrels, ["RR"])
    assert full.missing == [] and full.mean["RR"] == 1.0
    assert EvalResult({}, {}, []).missing == [] and EvalResult({}, {}, []).missing_as_zero  # defaults


@pytest.mark.parametrize("run", [{"1": {"a": 1.0}, "2": {"b": 1.0}}, {}, {"q9": {}}])
def test_a_run_sharing_no_query_with_the_qrels_raises(run):
    """Issue 9.5: a run in another id space scored 0.0 silently."""
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}, "q3": {"c": 0}}
    with pytest.raises(PolyrankError, match=rf"the run shares no query with the qrels: the run has {len(run)} queries "
                                            r".*the qrels 3 \(2 with a relevant document: 'q1', 'q2'\).*id spaces"):
        evaluate(run, qrels, ["RR"])
    with pytest.raises(PolyrankError, match="shares no query"):
        evaluate(run, qrels, ["RR"], missing_as_zero=False)


def test_bad_measure_and_empty_qrels_raise_clear_errors():
    with pytest.raises(PolyrankError, match="unknown measure 'nDCG@x'"):
        evaluate(RUN, QRELS, ["nDCG@x"])
    with pytest.raises(PolyrankError, match="no relevant document"):
        evaluate(RUN, {"q1": {"a": 0}}, ["RR"])


def test_paired_significance():
    qrels = {f"q{i}": {"good": 1} for i in range(30)}
    worse = {f"q{i}": {"bad": 2.0, "good": 1.0} for i in range(30)}
    better = {f"q{i}": ({"good": 2.0, "bad": 1.0} if i % 5 else {"bad": 2.0, "good": 1.0}) for i in range(30)}
    mixed = {f"q{i}": ({"good": 2.0, "bad": 1.0} if i % 2 else {"bad": 2.0, "good": 1.0}) for i in range(30)}
    strong = compare(worse, better, qrels, "RR")
    assert strong.delta == pytest.approx(0.5 * 24 / 30) and strong.p_value < 1e-6
    flipped = {f"q{i}": ({"good": 2.0, "bad": 1.0} if i % 2 == 0 else {"bad": 2.0, "good": 1.0}) for i in range(30)}
    for test in ("ttest", "wilcoxon", "permutation"):
        same_mean = compare(mixed, flipped, qrels, "RR", test=test)  # per-query +-0.5, mean difference 0
        assert same_mean.delta == 0.0 and same_mean.p_value > 0.5
    one_sided_gain = compare(worse, mixed, qrels, "RR", test="permutation")  # 15 gains of 0.5, no losses
    assert one_sided_gain.p_value < 0.001
    assert compare(worse, worse, qrels, "RR").p_value == 1.0
    with pytest.raises(PolyrankError, match="unknown test"):
        paired_test(np.zeros(3), np.ones(3), "z-test")
