"""Training data readers on hand-made files: MS MARCO text and id triples, BEIR + first-stage run negatives (a
judged positive is never a negative), malformed records located by file and line; the recipes' DataModules."""

from __future__ import annotations

import json

import pytest

from polyrank.domains.text.training.data import (FirstDataModule, PointwiseDataModule, read_beir_with_run,
                                                 read_id_triples, read_text_triples)
from polyrank.shared.errors import FormatError, PolyrankError


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_text_triples_group_by_query_and_drop_negatives_judged_positive(tmp_path):
    path = write(tmp_path / "triples.tsv", "boiling water\twater boils at 100\tthe moon\n"
                                           "boiling water\tboiling point at altitude\twater boils at 100\n"
                                           "moon\tthe moon orbits\tcats sleep\n")
    data = read_text_triples(path)
    first, second = data.queries
    assert first.text == "boiling water" and second.text == "moon"
    texts = {d: data.corpus[d] for d in first.positives}
    assert sorted(texts.values()) == ["boiling point at altitude", "water boils at 100"]
    # "water boils at 100" is the second triple's negative but the first triple's positive: never a negative
    assert [data.corpus[d] for d in first.negatives] == ["the moon"]
    assert [data.corpus[d] for d in second.negatives] == ["cats sleep"]


def test_malformed_triple_is_a_format_error_with_file_and_line(tmp_path):
    path = write(tmp_path / "triples.tsv", "q\tp\tn\n\nq\tonly two\n")
    with pytest.raises(FormatError, match=r"triples\.tsv:3: expected 3 non-empty tab-separated fields") as info:
        read_text_triples(path)
    assert info.value.line == 3
    with pytest.raises(FormatError, match=r"empty\.tsv: no record"):
        read_text_triples(write(tmp_path / "empty.tsv", "\n"))


def test_id_triples_with_qrels_never_keep_a_judged_positive_as_negative(tmp_path):
    collection = write(tmp_path / "collection.tsv", "p1\twater boils\np2\tthe moon\np3\tboiling point\np4\tcats\n")
    queries = write(tmp_path / "queries.tsv", "q1\tboiling water\nq2\tmoon\n")
    triples = write(tmp_path / "triples.tsv", "q1\tp1\tp2\nq1\tp1\tp3\nq1\tp1\tp4\nq2\tp2\tp4\n")
    qrels = write(tmp_path / "qrels.txt", "q1 0 p1 1\nq1 0 p3 2\nq1 0 p4 0\n")
    data = read_id_triples(triples, collection, queries, qrels)
    q1, q2 = data.queries
    assert q1.positives == {"p1": 1, "p3": 2}  # the qrels add p3 (grade 2)
    assert q1.negatives == ["p2", "p4"]  # p3 is judged relevant: dropped; p4 judged 0: a valid negative
    assert q2.positives == {"p2": 1} and q2.negatives == ["p4"]
    bad = write(tmp_path / "bad.tsv", "q1\tp1\tp2\nq1\tp1\tp9\n")
    with pytest.raises(FormatError, match=r"bad\.tsv:2: passage id 'p9' is not in"):
        read_id_triples(bad, collection, queries)
    with pytest.raises(FormatError, match=r"collection2\.tsv:2: id 'p1' appears twice"):
        read_id_triples(triples, write(tmp_path / "collection2.tsv", "p1\ta\np1\tb\n"), queries)


def beir_folder(tmp_path):
    folder = tmp_path / "beir"
    docs = {"d1": "water boils at 100 degrees", "d2": "the moon orbits", "d3": "boiling point and pressure",
            "d4": "cats sleep", "d5": "stock prices", "d6": "the sun is hot"}
    write(folder / "corpus.jsonl", "".join(json.dumps({"_id": k, "title": "", "text": v}) + "\n"
                                           for k, v in docs.items()))
    write(folder / "queries.jsonl", json.dumps({"_id": "q1", "text": "boiling water"}) + "\n" +
          json.dumps({"_id": "q2", "text": "moon"}) + "\n")
    write(folder / "qrels" / "train.tsv", "query-id\tcorpus-id\tscore\nq1\td1\t2\nq1\td3\t1\nq1\td4\t0\nq2\td2\t1\n")
    run = write(tmp_path / "run.trec", "q1 Q0 d1 1 9.0 bm25\nq1 Q0 d4 2 5.0 bm25\nq1 Q0 d3 3 5.0 bm25\n"
                                       "q1 Q0 d6 4 4.0 bm25\nq1 Q0 d5 5 3.0 bm25\n"
                                       "q2 Q0 d5 1 2.0 bm25\nq2 Q0 d2 2 1.5 bm25\n")
    return folder, run


def test_beir_run_negatives_exclude_judged_positives_in_first_stage_order(tmp_path):
    folder, run = beir_folder(tmp_path)
    data = read_beir_with_run(folder, run, split="train", depth=4)
    q1, q2 = data.queries
    assert q1.positives == {"d1": 2, "d3": 1}
    # top-4 of the run: d1 (positive), d4 and d3 tie at 5.0 (id order: d3 first, positive), d6; d4 is judged 0
    assert q1.negatives == ["d4", "d6"]
    assert q2.negatives == ["d5"]
    assert all(d not in q.positives for q in data.queries for d in q.negatives)
    other = write(tmp_path / "other.trec", "q1 Q0 x9 1 1.0 bm25\n")
    with pytest.raises(PolyrankError, match="not in the corpus"):
        read_beir_with_run(folder, other, split="train")


def test_beir_without_run_uses_bm25_and_still_excludes_positives(tmp_path):
    folder, _ = beir_folder(tmp_path)
    data = read_beir_with_run(folder, None, split="train", depth=6)
    for q in data.queries:
        assert q.negatives and not set(q.negatives) & set(q.positives)


def test_first_windows_rank_positives_by_grade_then_first_stage_order(tmp_path):
    folder, run = beir_folder(tmp_path)
    module = FirstDataModule(path=str(folder), run=str(run), window=3, max_positives=2, batch_size=2)
    module.setup("fit")
    windows = {w["qid"]: w for w in module.train_items}
    w = windows["q1"]
    by_rank = [w["doc_ids"][w["ranks"].index(r)] for r in (1, 2, 3)]
    assert by_rank == ["d1", "d3", "d4"]  # grade 2, grade 1, then the first negative of the run
    assert [w["passages"][w["doc_ids"].index(d)] for d in by_rank][0] == "water boils at 100 degrees"
    assert sorted(windows["q2"]["ranks"]) == [1, 2]
    batch = next(iter(module.train_dataloader()))
    assert isinstance(batch, list) and {"query", "passages", "ranks"} <= set(batch[0])


def test_pointwise_pairs_carry_graded_labels(tmp_path):
    folder, run = beir_folder(tmp_path)
    module = PointwiseDataModule(path=str(folder), run=str(run), negatives_per_positive=1)
    module.setup("fit")
    labels = {(p["qid"], p["doc_id"]): p["label"] for p in module.train_items}
    assert labels == {("q1", "d1"): 1.0, ("q1", "d3"): 0.5, ("q1", "d4"): 0.0, ("q1", "d6"): 0.0,
                      ("q2", "d2"): 0.5, ("q2", "d5"): 0.0}
    with pytest.raises(PolyrankError, match="needs path"):
        PointwiseDataModule(format="triples").setup("fit")
