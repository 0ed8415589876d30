"""rerank_run in-process: Rich progress (shown when asked or on a terminal, silent in captured output), names
built in-process, and no silently dropped queries."""

from __future__ import annotations

from polyrank.shared.protocol import rerank_run

from scale_helpers import build_length_reranker, domain_run


def test_progress_bar_only_when_asked_and_same_run(tmp_path, capsys):
    """Guards: a bar leaking into non-terminal (captured, piped) output by default, or changing the run."""
    run, queries, corpus = domain_run("text", tmp_path, n_queries=7)
    quiet = rerank_run(run, build_length_reranker(), queries, corpus, depth=3, batch_size=2)
    out = capsys.readouterr()
    assert out.err == "" and out.out == ""
    shown = rerank_run(run, build_length_reranker(), queries, corpus, depth=3, batch_size=2, progress=True)
    err = capsys.readouterr().err
    assert "reranking" in err and "7/7" in err
    assert shown == quiet


def test_registry_name_builds_in_process(tmp_path):
    """Guards: rerank_run accepting a name for Ray but not in-process (the two paths take the same input)."""
    import warnings

    from polyrank.shared.registry import load
    run, queries, corpus = domain_run("ranknovo", tmp_path, n_queries=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        saved = load("ranknovo.tiny").save(tmp_path / "saved")
    assert rerank_run(run, str(saved), queries, corpus, depth=3) == rerank_run(run, load(saved), queries, corpus,
                                                                               depth=3)


def test_score_batch_returning_too_few_arrays_is_an_error(tmp_path):
    """Guards: zip() silently dropping the last queries of a batch when score_batch returns fewer score arrays."""
    import pytest

    from polyrank.shared.errors import PolyrankError
    from scale_helpers import LengthReranker

    class Short(LengthReranker):
        def score_batch(self, queries, candidate_lists):
            return super().score_batch(queries, candidate_lists)[:-1]

    run, queries, corpus = domain_run("text", tmp_path, n_queries=4)
    with pytest.raises(PolyrankError, match="returned 1 score arrays for 2 queries"):
        rerank_run(run, Short(), queries, corpus, depth=3, batch_size=2)
