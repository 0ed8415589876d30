"""Question decomposition (merge, sub-question parsing, pipeline) and the trainable text cross-encoder."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from polyrank.domains.text import load
from polyrank.domains.text.decompose import (BM25Searcher, DecomposeReranker, StoreSearcher, merge_pools,
                                             parse_subquestions)
from polyrank.shared.protocol import Reranker, as_candidates
from polyrank.shared.registry import UntrainedWeightsWarning

REPO = Path(__file__).resolve().parents[3]
CORPUS = {"a": "Paris is the capital of France.", "b": "The Eiffel Tower was completed in 1889.",
          "c": "Berlin is the capital of Germany.", "d": "Gustave Eiffel's company built the tower.",
          "e": "Cats sleep for most of the day."}


def _tiny(name, **overrides):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedWeightsWarning)
        return load(name, **overrides)


class Overlap(Reranker):
    """Word overlap with the query; records the queries it was asked about."""

    def __init__(self):
        self.queries = []

    def score(self, query, candidates):
        self.queries.append(query)
        words = set(query.lower().replace("?", "").split())
        return np.array([len(words & set(str(c.content).lower().rstrip(".").split())) for c in candidates], float)


def test_merge_keeps_each_document_once_with_its_best_first_stage_score():
    pools = [[("a", 0.9), ("b", 0.4), ("c", 0.1)], [("b", 0.7), ("d", 0.7)], [("a", 0.2), ("e", -1.0)]]
    merged = merge_pools(pools)
    # guards: keeping the first (or last) score seen instead of the best, or keeping duplicates
    assert merged == {"a": 0.9, "b": 0.7, "d": 0.7, "c": 0.1, "e": -1.0}
    assert list(merged) == ["a", "b", "d", "c", "e"]  # best first, ties by id


def test_parse_subquestions_strips_numbering_and_duplicates():
    text = "1. Who built the Eiffel Tower?\n- When was it completed?\n2) who built the eiffel tower?\n\nok\nQ3: Where?"
    assert parse_subquestions(text, 5) == ["Who built the Eiffel Tower?", "When was it completed?"]
    assert parse_subquestions(text, 1) == ["Who built the Eiffel Tower?"]


def test_decomposition_pipeline_finds_documents_the_original_question_misses():
    question = "When was the tower in the French capital finished and who built it"
    inner = Overlap()
    reranker = DecomposeReranker(_tiny("text.first.tiny").lm, "text.decompose", reranker=inner, k=1)
    prompts = []

    def fake(batch, max_new_tokens, stops):
        prompts.extend(batch)
        return ["1. Which company built the Eiffel tower?\n2. When was the Eiffel Tower completed?"]

    reranker.generator = fake
    searcher = BM25Searcher(CORPUS)
    pools = reranker.retrieve_run({"q": question}, searcher)
    assert question in prompts[0]
    # three searches (original + 2 sub-questions) at k=1, merged: the sub-questions reach b and d
    assert {"b", "d"} <= set(pools["q"]) and len(pools["q"]) <= 3
    run = reranker.search({"q": question}, searcher, CORPUS)
    assert set(run["q"]) == set(pools["q"])
    assert inner.queries == [question]  # rescored against the original question, not a sub-question
    # a generation without sub-questions is counted and the question is searched alone
    reranker.generator = lambda batch, n, s: ["??"]
    assert reranker.retrieve_run({"q": question}, searcher)["q"] == merge_pools(searcher([question], 1))
    assert reranker.stats.malformed == 1


def test_store_searcher_returns_ids_and_scores_from_a_candidate_store():
    from polyrank.shared.store import CandidateStore

    store = CandidateStore(2, factory="Flat", metric="ip")
    store.add(["x", "y", "z"], np.array([[1, 0], [0, 1], [0.6, 0.8]], dtype=np.float32))
    searcher = StoreSearcher(store, lambda texts: np.array([[1, 0] if "x" in t else [0, 1] for t in texts], "f4"))
    hits = searcher(["find x", "find y"], 2)
    assert [d for d, _ in hits[0]] == ["x", "z"] and [d for d, _ in hits[1]] == ["y", "z"]
    assert hits[0][1][1] == pytest.approx(0.6)


def test_decompose_tiny_defaults_to_the_cross_encoder_and_saves_it(tmp_path):
    from polyrank.domains.text.cross_encoder import TextCrossEncoder

    reranker = _tiny("text.decompose.tiny")
    assert isinstance(reranker.reranker, TextCrossEncoder)
    cands = as_candidates(list(CORPUS.items()))
    expected = reranker.reranker.score("who built the tower", cands)
    np.testing.assert_allclose(reranker.score("who built the tower", cands), expected)
    again = load(reranker.save(tmp_path / "saved"))
    np.testing.assert_allclose(again.score("who built the tower", cands), expected, atol=1e-6)


def _beir(folder: Path) -> Path:
    """A tiny BEIR folder: 6 queries, each with one relevant passage sharing its words, plus distractors."""
    topics = ["volcano lava eruption", "violin music strings", "glacier ice melting", "rocket orbit launch",
              "coffee bean roasting", "whale ocean migration"]
    (folder / "qrels").mkdir(parents=True)
    docs = [{"_id": f"p{i}", "title": "", "text": f"{t} explained in detail"} for i, t in enumerate(topics)]
    docs += [{"_id": f"n{i}", "title": "", "text": f"unrelated note number {i} about {topics[(i + 1) % 6]}"}
             for i in range(6)]
    (folder / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in docs))
    (folder / "queries.jsonl").write_text("\n".join(json.dumps({"_id": f"q{i}", "text": f"tell me about {t}"})
                                                    for i, t in enumerate(topics)))
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" +
                                               "".join(f"q{i}\tp{i}\t1\n" for i in range(6)))
    return folder


def test_cli_fit_then_text_cross_encoder_serves_last_ckpt(tmp_path):
    """polyrank fit on configs/text/cross_encoder_tiny.yaml (a generated BEIR folder), then
    load("text.cross_encoder.tiny", checkpoint=last.ckpt) scores exactly as the trained module."""
    from polyrank.shared.cli import main
    from polyrank.shared.cross_encoder import CrossEncoderModule

    folder = _beir(tmp_path / "beir")
    root = tmp_path / "run"
    assert main(["fit", "--config", str(REPO / "configs/text/cross_encoder_tiny.yaml"), "--trainer.default_root_dir",
                 str(root), f"--data.init_args.folder={folder}", "--trainer.max_epochs=3"]) == 0
    ckpt = root / "checkpoints" / "last.ckpt"
    with warnings.catch_warnings():
        warnings.simplefilter("error", UntrainedWeightsWarning)  # trained weights: no untrained warning
        served = load("text.cross_encoder.tiny", checkpoint=ckpt, device="cpu")
        also = load("text.cross_encoder", checkpoint=ckpt, device="cpu")  # architecture from the hparams
    module = CrossEncoderModule.load_from_checkpoint(ckpt, map_location="cpu").eval()
    query = "tell me about glacier ice melting"
    docs = [d["text"] for d in map(json.loads, (folder / "corpus.jsonl").read_text().splitlines())]
    with torch.no_grad():
        expected = module([query] * len(docs), docs).double().numpy()
    got = served.score(query, as_candidates([(f"x{i}", t) for i, t in enumerate(docs)]))
    # guards: a builder that ignores the checkpoint (random weights) or loads it under the wrong prefix
    np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(also.score(query, as_candidates(list(enumerate(docs)))), expected, atol=1e-5)
    untrained = _tiny("text.cross_encoder.tiny").score(query, as_candidates(list(enumerate(docs))))
    assert not np.allclose(untrained, expected, atol=1e-3)
    # and the served model is usable: saved and reloaded it gives the same scores
    again = load(served.save(tmp_path / "saved"))
    np.testing.assert_allclose(again.score(query, as_candidates(list(enumerate(docs)))), expected, atol=1e-5)


def test_foreign_lightning_checkpoint_is_a_clear_error(tmp_path):
    from polyrank.shared.errors import PolyrankError

    ckpt = tmp_path / "last.ckpt"
    torch.save({"state_dict": {"model.bert.x": torch.zeros(1)}, "hyper_parameters": {"n_layers": 2},
                "pytorch-lightning_version": "2.4"}, ckpt)
    with pytest.raises(PolyrankError, match="CrossEncoderModule"):
        load("text.cross_encoder.tiny", checkpoint=ckpt)


def test_decomposition_over_a_candidate_store_of_llm_embeddings():
    """Items together: LLMEmbedder (documents plain, queries instructed) -> CandidateStore -> StoreSearcher."""
    from polyrank.shared.llm.embedding import LLMEmbedder
    from polyrank.shared.store import CandidateStore

    lm = _tiny("text.first.tiny").lm
    embedder = LLMEmbedder(lm, max_length=64)
    store = CandidateStore(embedder.dim, factory="Flat", metric="ip")
    store.add(list(CORPUS), embedder.encode_documents(list(CORPUS.values())))
    reranker = DecomposeReranker(lm, "text.decompose", reranker=Overlap(), k=2)
    reranker.generator = lambda batch, n, s: ["1. Who built the Eiffel tower?\n2. What is the capital of France?"]
    searcher = StoreSearcher(store, embedder.encode_queries)
    texts = reranker.search_texts("q?", reranker.decompose("q?"))
    pools = searcher(texts, 2)
    assert reranker.retrieve_run({"q": "q?"}, searcher)["q"] == merge_pools(pools)
    assert len(pools) == 3 and all(len(p) == 2 for p in pools)


def test_cli_fit_listwise_config_trains_groups_and_serves_them(tmp_path):
    """configs/text/cross_encoder_listwise_tiny.yaml: the data module yields (query, positive, [negatives]) groups,
    the module trains with loss="listwise", and the registry serves that last.ckpt."""
    from polyrank.domains.text.cross_encoder import BeirPairsDataModule
    from polyrank.shared.cli import main
    from polyrank.shared.cross_encoder import CrossEncoderModule

    folder = _beir(tmp_path / "beir")
    data = BeirPairsDataModule(str(folder), negatives="bm25", negatives_per_positive=2, loss="listwise")
    data.setup()
    # guards: groups built with a relevant passage among the negatives, or BCE pairs handed to the listwise step
    assert len(data.pairs) == 6 and all(len(negs) == 2 and pos.startswith(q.removeprefix("tell me about "))
                                        and not any(n.startswith(q.removeprefix("tell me about ")) for n in negs)
                                        for q, pos, negs in data.pairs)
    root = tmp_path / "run"
    assert main(["fit", "--config", str(REPO / "configs/text/cross_encoder_listwise_tiny.yaml"),
                 "--trainer.default_root_dir", str(root), f"--data.init_args.folder={folder}",
                 "--trainer.max_epochs=1"]) == 0
    ckpt = root / "checkpoints" / "last.ckpt"
    module = CrossEncoderModule.load_from_checkpoint(ckpt, map_location="cpu").eval()
    assert module.hparams.loss == "listwise"
    served = load("text.cross_encoder.tiny", checkpoint=ckpt, device="cpu")
    docs = ["glacier ice melting explained in detail", "unrelated note number 3 about coffee bean roasting"]
    with torch.no_grad():
        expected = module(["tell me about glacier ice melting"] * 2, docs).double().numpy()
    np.testing.assert_allclose(served.score("tell me about glacier ice melting", as_candidates(list(enumerate(docs)))),
                               expected, atol=1e-5)
