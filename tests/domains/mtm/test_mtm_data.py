"""Readers of the MTM (Twitter/Weibo) and Politifact formats on small fixtures; bad records; BM25 rules."""

import json

import pytest

from polyrank.domains.mtm.bm25 import BM25Index, bm25_tokens, first_stage, swap_in_relevant
from polyrank.domains.mtm.data import load_mtm_release, load_politifact, split_by_article
from polyrank.domains.mtm.reranker import MTMReranker
from polyrank.shared.errors import FormatError, PolyrankError
from polyrank.shared.reproduce import data_dir


def _mtm_release(root, fn=None, dn=None, line_rows=None, list_rows=None):
    (root / "raw").mkdir(parents=True)
    (root / "splits" / "data").mkdir(parents=True)
    fn = fn or [{"_id": 7, "content": "the moon is made of cheese", "debunking_ids": [11]},
                {"_id": 9, "content": "cats can fly", "debunking_ids": [12]}]
    dn = dn or [{"_id": 10, "url": "u0", "content": ["unrelated story", "about trains"]},
                {"_id": 11, "url": "u1", "content": ["a post says the moon is made of cheese", "false"]},
                {"_id": 12, "url": "u2", "content": ["cats cannot fly", "we rated it false"]}]
    (root / "raw" / "FN_2.json").write_text(json.dumps(fn))
    (root / "raw" / "DN_3.json").write_text(json.dumps(dn))
    rows = line_rows or ["7\t0\t10\t0\t0", "7\t0\t11\t1\t1"]
    (root / "splits" / "data" / "top50.train.line").write_text("\n".join(rows) + "\n")
    lists = list_rows or ["9\t1\t[10, 12]\t[0, 2]\t[0, 1]"]
    (root / "splits" / "data" / "top50.test").write_text("\n".join(lists) + "\n")
    return root


def test_mtm_release_loads_claims_articles_splits_candidates(tmp_path):
    data = load_mtm_release(_mtm_release(tmp_path / "Twitter"))
    assert data.claims == {"7": "the moon is made of cheese", "9": "cats can fly"}
    assert data.articles["11"] == ["a post says the moon is made of cheese", "false"]
    assert data.splits == {"train": ["7"], "test": ["9"]}
    assert data.candidates == {"7": ["10", "11"], "9": ["10", "12"]}
    assert data.qrels == {"7": {"11": 1}, "9": {"12": 1}}


def test_weibo_fields_content_all(tmp_path):
    fn = [{"_id": "a", "content": "x", "content_all": "claim text with ocr", "debunking_ids": ["b"], "event": 1},
          {"_id": "c", "content_all": "second", "debunking_ids": []}]
    dn = [{"_id": "b", "content": "ignored", "content_all": ["句子一", "句子二"]},
          {"_id": "x", "content_all": ["其他"]}, {"_id": "y", "content_all": ["另外"]}]
    lines, lists = ["a\t0\tb\t0\t1"], ["c\t1\t['x', 'y']\t[1, 2]\t[0, 0]"]
    data = load_mtm_release(_mtm_release(tmp_path / "Weibo", fn, dn, lines, lists))
    assert data.claims["a"] == "claim text with ocr" and data.articles["b"] == ["句子一", "句子二"]


def test_unknown_article_id_in_split_names_file_and_line(tmp_path):
    root = _mtm_release(tmp_path / "T", line_rows=["7\t0\t10\t0\t0", "7\t0\t99\t1\t1"])
    with pytest.raises(FormatError, match=r"top50\.train\.line:2: unknown article id '99'"):
        load_mtm_release(root)


def test_malformed_split_line_names_file_and_line(tmp_path):
    root = _mtm_release(tmp_path / "T", line_rows=["7\t0\t10\t0\t0", "7 0 11 1 1"])
    with pytest.raises(FormatError, match=r"top50\.train\.line:2: expected 5 tab-separated fields"):
        load_mtm_release(root)
    root = _mtm_release(tmp_path / "U", list_rows=["9\t1\t[10, 12\t[0, 2]\t[0, 1]"])
    with pytest.raises(FormatError, match=r"top50\.test:1: .*Python lists"):
        load_mtm_release(root)


def test_index_column_must_match_raw_position(tmp_path):
    root = _mtm_release(tmp_path / "T", line_rows=["7\t1\t10\t0\t0"])
    with pytest.raises(FormatError, match="claim index 1 does not point at claim '7'"):
        load_mtm_release(root)


def test_empty_article_is_rejected_with_record_number(tmp_path):
    dn = [{"_id": 10, "content": ["  ", ""]}, {"_id": 11, "content": ["x"]}, {"_id": 12, "content": ["y"]}]
    with pytest.raises(FormatError, match=r"DN_3\.json:1: article 10 is empty"):
        load_mtm_release(_mtm_release(tmp_path / "T", dn=dn))


def _politifact(folder):
    folder.mkdir()
    tweets = {"100": {"OriginalTweetContent_Processed": "moon cheese url", "OriginalTweetContent_Raw": "moon",
                      "Images_in_tweet": {"i": {"text_for_the_image": "OCR TEXT"}}},
              "200": {"OriginalTweetContent_Processed": "cats fly", "OriginalTweetContent_Raw": "cats",
                      "Images_in_tweet": {}}}
    arts = {"http://a": {"headerTitle": "Moon cheese?", "body-text": ["The moon is rock.", "False."], "claim": "c"},
            "http://b": {"headerTitle": "Cats", "body-text": [], "claim": "c"}}
    (folder / "queries_content.json").write_text(json.dumps(tweets))
    (folder / "articles_content.json").write_text(json.dumps(arts))
    (folder / "query_mapped.json").write_text(json.dumps({"100": 0, "200": 1}))
    (folder / "article_mapped.json").write_text(json.dumps({"http://a": 0, "http://b": 1}))
    (folder / "query_article_interaction.csv").write_text("0,0\n1,1\n")
    (folder / "query.negatives").write_text("0\t0:1\t1:0\n1\t1:1\t0:0\n")
    return folder


def test_politifact_fixture_fields_and_split_by_article(tmp_path):
    data = load_politifact(_politifact(tmp_path / "p"), tweet_fields=("OriginalTweetContent_Processed", "ocr"))
    assert data.claims["100"] == "moon cheese url OCR TEXT"
    assert data.articles["0"] == ["Moon cheese?", "The moon is rock.", "False."]
    assert data.articles["1"] == ["Cats"]                       # empty body keeps its title
    assert data.qrels == {"100": {"0": 1}, "200": {"1": 1}}
    assert data.candidates["100"] == ["0", "1"]                 # sorted, not positive-first
    assert sorted(q for s in data.splits.values() for q in s) == ["100", "200"]


def test_politifact_malformed_interaction_line(tmp_path):
    folder = _politifact(tmp_path / "p")
    (folder / "query_article_interaction.csv").write_text("0,0\n1;1\n")
    with pytest.raises(FormatError, match=r"query_article_interaction\.csv:2"):
        load_politifact(folder)


def test_split_by_article_never_shares_a_relevant_article():
    qrels = {f"q{i}": {f"d{i % 7}": 1} for i in range(40)} | {"x": {"d1": 1, "d2": 1}}
    splits = split_by_article(qrels, seed=3)
    owner = {}
    for split, qids in splits.items():
        for q in qids:
            for d in qrels[q]:
                assert owner.setdefault(d, split) == split


@pytest.mark.skipif(data_dir() is None or not (data_dir() / "factcheck/politifact").is_dir(),
                    reason="shared Politifact data not present")
def test_real_politifact_counts():
    data = load_politifact(data_dir() / "factcheck/politifact")
    assert len(data.claims) == 2026 and len(data.articles) == 467
    assert sum(len(v) for v in data.qrels.values()) == 2037
    assert sum(len(s) for s in data.splits.values()) == 2026


def test_bm25_tokens_and_swap_rule():
    assert bm25_tokens("Hello, World 42") == ["hello", "world", "42"]
    assert bm25_tokens("疫苗 有毒", "zh") == ["疫", "苗", "有", "毒"]
    ranking = [(f"d{i}", float(10 - i)) for i in range(8)]
    rel = {"d5": 1, "d7": 1}
    assert [d for d, _ in swap_in_relevant(ranking, rel, k=3)] == ["d0", "d1", "d7"]            # deepest
    assert [d for d, _ in swap_in_relevant(ranking, rel, k=3, swap="first")] == ["d0", "d1", "d5"]
    assert [d for d, _ in swap_in_relevant(ranking, {"d1": 1}, k=3)] == ["d0", "d1", "d2"]       # no swap needed


def test_bm25_first_stage_finds_the_quoting_article_and_swaps_only_training_claims():
    articles = {"a": ["the moon is made of cheese"], "b": ["cats cannot fly"], "c": ["trains run late"]}
    index = BM25Index(articles)
    claims = {"q1": "is the moon made of cheese", "q2": "trains"}
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}}
    cands = first_stage(index, claims, qrels, k=1, swap_qids={"q2"})
    assert cands == {"q1": ["a"], "q2": ["b"]}
    assert first_stage(index, claims, qrels, k=1, swap_qids=set())["q2"] == ["c"]


def test_reranker_bad_inputs_are_clear():
    reranker = MTMReranker.untrained("tiny", n_patterns=2, n_key_sentences=2, device="cpu")
    with pytest.raises(PolyrankError, match="article 'x' is empty"):
        reranker.rank("moon cheese", [("x", ["", "  "])])
    with pytest.raises(PolyrankError, match="no tokens"):
        reranker.rank("   ", [("x", ["moon"])])
