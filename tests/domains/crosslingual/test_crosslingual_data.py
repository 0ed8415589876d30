"""Loaders of the official formats (HC4 on the real files, CLEF-2003 SGML/TREC, MS MARCO triples) and the
per-pair evaluation with its paired test against full fine-tuning."""

from __future__ import annotations

import gzip

import pytest

from polyrank.domains.crosslingual import data as D
from polyrank.shared.errors import FormatError, PolyrankError

CLEF_TOPICS = """<top>
<num> C141 </num>
<EN-title> Letter Bomb for Kiesbauer </EN-title>
<EN-desc> Find information on the explosion of a letter bomb. </EN-desc>
<EN-narr> Relevant documents name the victim. </EN-narr>
</top>
<top>
<num> C142 </num>
<EN-title> Christo wraps German Reichstag </EN-title>
<EN-desc> What happened? </EN-desc>
</top>
"""
CLEF_DOCS = """<DOC>
<DOCNO> GH950102-000001 </DOCNO>
<DOCID> GH950102-000001 </DOCID>
<HEADLINE> Letter bomb </HEADLINE>
<TEXT> A letter bomb exploded in Vienna. </TEXT>
</DOC>
<DOC>
<DOCNO>GH950102-000002</DOCNO>
<TEXT>Christo wrapped the Reichstag.</TEXT>
</DOC>
"""


def test_clef_topics_qrels_and_collection(tmp_path):
    (tmp_path / "topics.en.sgml").write_text(CLEF_TOPICS)
    topics = D.read_clef_topics(tmp_path / "topics.en.sgml")
    assert sorted(topics) == ["141", "142"]
    assert topics["141"]["title"] == "Letter Bomb for Kiesbauer" and topics["141"]["lang"] == "en"
    assert topics["141"]["desc"].startswith("Find information") and "narr" not in topics["142"]
    folder = tmp_path / "collection"
    folder.mkdir()
    with gzip.open(folder / "gh95.gz", "wt") as handle:
        handle.write(CLEF_DOCS)
    docs = D.read_clef_collection(folder)
    assert docs["GH950102-000001"] == "GH950102-000001 Letter bomb A letter bomb exploded in Vienna."
    assert docs["GH950102-000002"] == "Christo wrapped the Reichstag."
    (tmp_path / "bad.sgml").write_text("<top>\n<EN-title> no number </EN-title>\n</top>\n")
    with pytest.raises(FormatError, match="without <num>"):
        D.read_clef_topics(tmp_path / "bad.sgml")


def test_hc4_topics_and_qrels_on_the_real_files(shared_data):
    folder = shared_data / "crosslingual" / "hc4"
    if not folder.is_dir():
        pytest.skip("HC4 topics/qrels not in the shared data folder")
    topics, qrels = D.load_hc4(folder, "test", "rus")
    assert len(topics) == 118  # HC4 v1.0 test topics file
    with_rus = [t for t in topics.values() if ("rus", "human translation") in t.texts]
    assert len(with_rus) == 50
    t = topics["101"]
    assert t.text("eng", "original", "title") == "Shipwrecks and Historical European Trade"
    assert "Кораблекрушения" in t.text("rus", "human translation")
    assert qrels and all(q in topics for q in qrels)
    with pytest.raises(PolyrankError, match="no 'fas' text"):
        topics["101"].text("fas", "human translation")
    with pytest.raises(PolyrankError, match="fas, rus, zho"):
        D.load_hc4(folder, "test", "deu")


def test_hc4_bad_record_and_id_lists(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"topic_id": "1", "topics": []}\n{"nope": 1}\n')
    with pytest.raises(FormatError, match=r"t.jsonl.*2"):
        D.read_hc4_topics(path)
    (tmp_path / "ids.jsonl").write_text('{"id": "a"}\n{"id": "b"}\n')
    (tmp_path / "docs.jsonl").write_text('{"id": "a", "title": "T", "text": "x"}\n{"id": "c", "text": "y"}\n')
    assert D.read_id_list(tmp_path / "ids.jsonl") == ["a", "b"]
    with pytest.raises(PolyrankError, match="lacks 1 of the 2"):
        D.read_hc4_documents(tmp_path / "docs.jsonl", ["a", "b"])
    assert D.read_hc4_documents(tmp_path / "docs.jsonl", ["a"]) == {"a": "T x"}


def test_triples_give_pairs_at_one_to_four(tmp_path):
    path = tmp_path / "triples.tsv"
    path.write_text("".join(f"q1\tpos\tneg{i}\n" for i in range(6)) + "q2\tp2\tn\n")
    pairs = D.triples_to_pairs(D.read_triples(path), 4)
    assert [(q, d, y) for q, d, y in pairs if q == "q1"] == [("q1", "pos", 1)] + [("q1", f"neg{i}", 0)
                                                                               for i in range(4)]
    (tmp_path / "bad.tsv").write_text("a\tb\n")
    with pytest.raises(FormatError, match="3 tab-separated"):
        D.read_triples(tmp_path / "bad.tsv")


def test_beir_query_split_is_disjoint_and_on_the_real_msmarco_subset(shared_data):
    folder = shared_data / "text" / "beir" / "msmarco"
    if not folder.is_dir():
        pytest.skip("msmarco BEIR subset not in the shared data folder")
    from polyrank.shared.runs import load_beir

    _, queries, qrels = load_beir(folder)
    folds = {q: D.query_fold(q) for q in qrels}
    assert {"train", "heldout"} == set(folds.values())
    from polyrank.domains.crosslingual.module import beir_pairs

    train = beir_pairs(folder, fold="train", negatives="random", max_positives=2, max_queries=5)
    held = {queries[q] for q, f in folds.items() if f == "heldout"}
    assert train and not {q for q, _, _ in train} & held
    positives = sum(y for _, _, y in train)
    assert sum(1 - y for _, _, y in train) == 4 * positives


def test_bm25_negatives_keep_the_1_to_4_ratio_on_deeply_judged_queries(shared_data):
    """TREC-DL-style queries have ~100 positives: BM25's top 200 holds too few non-relevant passages for 4 each;
    the pool is topped up with random non-relevant ones (the old code silently gave about 1:1)."""
    folder = shared_data / "text" / "beir" / "msmarco"
    if not folder.is_dir():
        pytest.skip("msmarco BEIR subset not in the shared data folder")
    from polyrank.domains.crosslingual.module import beir_pairs
    from polyrank.shared.runs import load_beir

    _, queries, qrels = load_beir(folder)
    pairs = beir_pairs(folder, fold="train", negatives="bm25", max_queries=3)
    by_text = {t: q for q, t in queries.items()}
    positives = sum(y for _, _, y in pairs)
    assert positives > 100 and sum(1 - y for _, _, y in pairs) == 4 * positives
    corpus, _, _ = load_beir(folder)
    ids = {f"{v.get('title', '')} {v.get('text', '')}".strip(): d for d, v in corpus.items()}
    assert all(qrels[by_text[q]].get(ids[d], 0) <= 0 for q, d, y in pairs if y == 0)


def test_per_pair_evaluation_with_the_paired_test_against_full_fine_tuning():
    from polyrank.domains.crosslingual.evaluation import evaluate_pairs

    qrels = {f"q{i}": {"d1": 1} for i in range(6)}
    good = {f"q{i}": {"d1": 2.0, "d2": 1.0} for i in range(6)}
    bad = {f"q{i}": {"d1": 1.0, "d2": 2.0} for i in range(6)}
    res = evaluate_pairs({"en-de": {"full": bad, "adapter": good}}, {"en-de": qrels}, "clef")
    by = {r.system: r for r in res}
    assert by["full"].means["MAP"] == pytest.approx(0.5) and by["adapter"].means["MAP"] == pytest.approx(1.0)
    assert by["full"].p_values["MAP"] is None and by["adapter"].p_values["MAP"] is not None
    assert by["adapter"].marked("MAP").startswith("1.000")
    with pytest.raises(PolyrankError, match="no qrels"):
        evaluate_pairs({"en-fi": {"full": bad}}, {"en-de": qrels})
