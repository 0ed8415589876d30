"""The shared reranking protocol: rank(), typed results, tie-break, rerank_run, registry."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from polyrank.shared.errors import PolyrankError
from polyrank.shared.protocol import Candidate, RankedCandidate, Reranker, rerank_run
from polyrank.shared.registry import list_rerankers, load, register_reranker, write_manifest


class Overlap(Reranker):
    """Scores a candidate by the number of query words it contains."""

    def __init__(self, bonus: float = 0.0, checkpoint: str | None = None) -> None:
        self.bonus, self.checkpoint = bonus, checkpoint

    def score(self, query, candidates):
        words = set(query.split())
        return np.array([len(words & set(str(c.content).split())) + self.bonus for c in candidates], float)


class Broken(Reranker):
    def score(self, query, candidates):
        return np.full(len(candidates) + 1, np.nan)


def test_rank_sorts_with_tie_break_and_returns_typed_results():
    cands = [("z", "red"), ("b", "red fox"), ("a", "red")]
    ranked = Overlap().rank("red fox", cands)
    assert all(isinstance(r, RankedCandidate) for r in ranked)
    assert [(r.candidate_id, r.rank, r.score) for r in ranked] == [("b", 1, 2.0), ("a", 2, 1.0), ("z", 3, 1.0)]
    assert [r.candidate_id for r in Overlap().rank("red fox", cands, top_k=1)] == ["b"]
    assert Overlap().rank("red", []) == []


def test_rank_rejects_bad_input_and_bad_scores():
    with pytest.raises(PolyrankError, match="duplicate candidate id 'a'"):
        Overlap().rank("q", [("a", "x"), ("a", "y")])
    with pytest.raises(ValueError, match="top_k must be a positive integer"):
        Overlap().rank("q", ["x"], top_k=0)
    with pytest.raises(PolyrankError, match="returned 3 scores for 2 candidates"):
        Broken().rank("q", ["x", "y"])


def test_rerank_run_reorders_head_and_keeps_tail_below():
    run = {"q1": {"d1": 3.0, "d2": 2.0, "d3": 1.0, "d4": 0.5}}
    corpus = {"d1": "blue", "d2": "sky", "d3": "red fox", "d4": "red fox runs"}
    out = rerank_run(run, Overlap(), {"q1": "red fox"}, corpus, depth=3)
    order = sorted(out["q1"], key=out["q1"].get, reverse=True)
    assert order == ["d3", "d1", "d2", "d4"]  # d4 is beyond depth: stays last even though it matches
    with pytest.raises(PolyrankError, match="corpus has no such id"):
        rerank_run(run, Overlap(), {"q1": "x"}, {"d1": "a"}, depth=2)
    with pytest.raises(PolyrankError, match="have no query text"):
        rerank_run(run, Overlap(), {}, corpus)


def test_registry_lists_loads_with_overrides_and_explains_unknown_names(tmp_path):
    register_reranker("testing.overlap", "word overlap (tests)")(lambda **kw: Overlap(**kw))
    assert "testing.overlap" in list_rerankers("testing.*")
    assert load("testing.overlap", bonus=1.0).bonus == 1.0
    with pytest.raises(PolyrankError, match=r"unknown reranker 'testing.overlp'\. Did you mean testing.overlap"):
        load("testing.overlp")
    write_manifest(tmp_path, "testing.overlap")
    assert load(tmp_path).checkpoint == str(tmp_path)
    (tmp_path / "polyrank.json").write_text("{")
    with pytest.raises(PolyrankError, match="not a valid manifest"):
        load(tmp_path)


def test_candidate_inputs_normalise():
    cands = Overlap().rank("a", [Candidate("x", "a"), {"id": 7, "content": "b"}])
    assert {r.candidate_id for r in cands} == {"x", "7"}


def test_core_imports_without_timm_open_clip_adapters():
    code = ("import sys\n"
            "for m in ('timm', 'open_clip', 'adapters'): sys.modules[m] = None\n"
            "import polyrank.shared, polyrank.shared.cli, polyrank.shared.evaluation, polyrank.shared.runs\n"
            "import polyrank.shared.protocol, polyrank.shared.registry, polyrank.shared.trainer\n"
            "import polyrank.shared.report, polyrank.shared.reproduce, polyrank.shared.demo\n"
            "import polyrank.shared.store\n"
            "assert not any(sys.modules.get(m) for m in ('timm', 'open_clip', 'adapters'))\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_order_to_scores_is_the_one_way_an_order_becomes_a_ranking():
    import numpy as np
    import pytest

    from polyrank.shared.protocol import order_to_scores

    class Listwise(Reranker):
        def score(self, query, candidates):  # the judge prefers longer texts: order = by length, descending
            order = sorted(range(len(candidates)), key=lambda i: -len(candidates[i].content))
            return order_to_scores(order, len(candidates))

    ranked = Listwise().rank("q", [("a", "x"), ("b", "xxx"), ("c", "xx")])
    assert [r.candidate_id for r in ranked] == ["b", "c", "a"]
    assert list(order_to_scores([2, 0, 1], 3)) == [2.0, 1.0, 3.0]
    assert np.all(np.diff(order_to_scores([1, 0], 2)[[1, 0]]) < 0)
    with pytest.raises(ValueError, match="permutation"):
        order_to_scores([0, 0, 1], 3)
