"""Run/qrels/BEIR/JSONL I/O: round trips, real files, bad lines reported with file and line."""

from __future__ import annotations

import pytest

from polyrank.shared.errors import FormatError, PolyrankError
from polyrank.shared.runs import (load_beir, read_beir_qrels, read_candidates, read_qrels, read_run,
                                  write_candidates, write_qrels, write_run)

RUN = {"q1": {"a": 0.5, "b": 0.5, "c": 2.0}, "q2": {"x": -1.0}}


def test_run_round_trip_sorted_with_tie_break(tmp_path):
    path = write_run(RUN, tmp_path / "r.trec", tag="t")
    lines = path.read_text().splitlines()
    assert lines[0] == "q1 Q0 c 1 2.0 t"
    assert [line.split()[2] for line in lines[:3]] == ["c", "a", "b"]
    assert read_run(path) == RUN


def test_qrels_and_candidates_round_trip(tmp_path):
    qrels = {"q1": {"a": 1, "b": 0}, "q2": {"x": 3}}
    assert read_qrels(write_qrels(qrels, tmp_path / "q.txt")) == qrels
    assert read_candidates(write_candidates(RUN, tmp_path / "c.jsonl")) == RUN


@pytest.mark.parametrize("content, message", [
    ("q1 Q0 a 1 0.5 t\nq1 Q0 b 2\n", r"r\.trec:2: expected 6 columns"),
    ("q1 Q0 a 1 high t\n", r"r\.trec:1: score 'high' is not a number"),
    ("q1 Q0 a 1 0.5 t\n\nq1 Q0 a 2 0.4 t\n", r"r\.trec:3: document 'a' appears twice"),
])
def test_bad_run_lines_name_file_and_line(tmp_path, content, message):
    path = tmp_path / "r.trec"
    path.write_text(content)
    with pytest.raises(FormatError, match=message):
        read_run(path)


def test_bad_qrels_and_jsonl(tmp_path):
    (tmp_path / "q.txt").write_text("q1 0 a 1\nq1 0 b yes\n")
    with pytest.raises(FormatError, match=r"q\.txt:2: relevance 'yes' is not an integer"):
        read_qrels(tmp_path / "q.txt")
    (tmp_path / "c.jsonl").write_text('{"qid": "q", "candidates": []}\n{"qid": \n')
    with pytest.raises(FormatError, match=r"c\.jsonl:2: invalid JSON"):
        read_candidates(tmp_path / "c.jsonl")
    with pytest.raises(PolyrankError, match="does not exist"):
        read_run(tmp_path / "missing.trec")


def test_beir_qrels_with_and_without_header(tmp_path):
    (tmp_path / "h.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    (tmp_path / "n.tsv").write_text("q1\td1\t1\nq1\td2\t2\n")
    assert read_beir_qrels(tmp_path / "h.tsv") == {"q1": {"d1": 1}}
    assert read_beir_qrels(tmp_path / "n.tsv") == {"q1": {"d1": 1, "d2": 2}}


def test_real_beir_msmarco_keeps_every_judgment(shared_data):
    corpus, queries, qrels = load_beir(shared_data / "text" / "beir" / "msmarco")
    assert len(corpus) == 5000 and len(queries) == 50
    assert sum(len(d) for d in qrels.values()) == 4102  # no header: the first row must not be dropped
    assert len(qrels) == 43


def test_real_beir_files_read_without_warnings_and_keep_the_header_rule(shared_data):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no duplicate, no skipped record in the real files
        full = read_beir_qrels(shared_data / "text" / "beir" / "arcd" / "qrels" / "test.tsv")
    with pytest.warns(UserWarning, match="652 of 702 judged queries"):  # the subset ships the full qrels
        corpus, queries, qrels = load_beir(shared_data / "text" / "beir" / "arcd")
    assert len(corpus) == 255 and len(queries) == 50
    assert len(full) == 702  # 'query-id corpus-id score' header skipped, every judged query kept
    assert set(qrels) <= set(queries) and len(qrels) == 50


def test_beir_folder_missing_parts(tmp_path):
    with pytest.raises(PolyrankError, match="corpus.jsonl is missing"):
        load_beir(tmp_path)


def test_run_scores_round_trip_exactly(tmp_path):
    run = {"q": {"a": 0.1234559, "b": 0.1234561, "c": 1e-12}}
    assert read_run(write_run(run, tmp_path / "r.trec")) == run  # close scores keep their order on disk


def test_load_beir_warns_with_counts_when_judged_queries_lack_query_text(tmp_path):
    import pytest

    from polyrank.shared.runs import load_beir, write_jsonl

    write_jsonl([{"_id": "d1", "text": "a"}], tmp_path / "corpus.jsonl")
    write_jsonl([{"_id": "q1", "text": "x"}], tmp_path / "queries.jsonl")
    (tmp_path / "qrels").mkdir()
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td1\t1\nq3\td1\t1\n")
    with pytest.warns(UserWarning, match="2 of 3 judged queries"):
        _, _, qrels = load_beir(tmp_path)
    assert list(qrels) == ["q1"]
