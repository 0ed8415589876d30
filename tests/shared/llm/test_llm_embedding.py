"""Qwen3-Embedding-style last-token embeddings from a tiny random causal LM."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from polyrank.shared.llm.embedding import LLMEmbedder, last_token_embeddings, query_text
from polyrank.shared.llm.tiny import tiny_causal_lm


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def lm(request):
    return tiny_causal_lm(request.param, words=["water", "boils", "Instruct", "Query"])


def test_last_token_pooling_under_left_padding_equals_unpadded_forward(lm):
    texts = ["water", "water boils at a lower temperature on high mountains", "boils at sea level"]
    seqs = [lm.encode(t) for t in texts]
    assert len({len(s) for s in seqs}) == 3  # different lengths: the batch is really padded
    batched = last_token_embeddings(lm, seqs, normalize=False, max_batch_size=8)
    for row, seq in zip(batched, seqs):
        with torch.no_grad():
            alone = lm.model(torch.tensor([seq]), output_hidden_states=True).hidden_states[-1][0, -1].numpy()
        # guards: right padding or pooling another position (a pad, the first token) instead of the last real token
        np.testing.assert_allclose(row, alone, atol=1e-5)
    normed = last_token_embeddings(lm, seqs)
    np.testing.assert_allclose(np.linalg.norm(normed, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(normed, batched / np.linalg.norm(batched, axis=1, keepdims=True), atol=1e-6)


def test_instruction_prefix_on_queries_only(lm):
    embedder = LLMEmbedder(lm, task="find facts", max_length=64)
    assert query_text("water", "find facts") == "Instruct: find facts\nQuery: water"
    q, d = embedder.encode_queries(["water boils"]), embedder.encode_documents(["water boils"])
    np.testing.assert_allclose(q, embedder.encode(["Instruct: find facts\nQuery: water boils"]), atol=1e-6)
    np.testing.assert_allclose(d, embedder.encode(["water boils"]), atol=1e-6)
    assert not np.allclose(q, d)
    assert embedder.tokens("water")[-1] == lm.tokenizer.eos_token_id and q.shape == (1, embedder.dim)
    assert len(embedder.tokens("water " * 200)) == 64


def test_is_causal_lm_tells_llm_folders_from_sentence_encoders(lm, tmp_path):
    from polyrank.shared.llm.embedding import is_causal_lm
    from polyrank.shared.text_encoder import minilm_path

    lm.save(tmp_path / "llm")
    assert is_causal_lm(tmp_path / "llm") and not is_causal_lm(minilm_path()) and not is_causal_lm(None)
    (tmp_path / "x.gguf").write_bytes(b"GGUF")
    assert is_causal_lm(tmp_path / "x.gguf") and not is_causal_lm(tmp_path / "missing")


def test_cli_index_and_search_with_a_causal_lm_encoder(lm, tmp_path):
    """`polyrank index/search --encoder <causal-LM folder>`: documents plain, queries instructed, same vectors."""
    import json

    from polyrank.shared.cli import main
    from polyrank.shared.llm.loading import load_causal_lm
    from polyrank.shared.runs import read_run
    from polyrank.shared.store import CandidateStore

    lm.save(tmp_path / "lm")
    docs = {"d1": "water boils", "d2": "boils", "d3": "water"}
    (tmp_path / "corpus.jsonl").write_text("\n".join(json.dumps({"_id": d, "title": "", "text": t})
                                                     for d, t in docs.items()))
    (tmp_path / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "water boils"}))
    assert main(["index", str(tmp_path / "store"), "--corpus", str(tmp_path / "corpus.jsonl"),
                 "--encoder", str(tmp_path / "lm")]) == 0
    assert main(["search", str(tmp_path / "store"), str(tmp_path / "run.trec"), "--queries",
                 str(tmp_path / "queries.jsonl"), "--encoder", str(tmp_path / "lm"), "--k", "3",
                 "--instruction", "find facts"]) == 0
    embedder = LLMEmbedder(load_causal_lm(tmp_path / "lm", device="cpu"), task="find facts")
    d = embedder.encode_documents(list(docs.values()))
    q = embedder.encode_queries(["water boils"])[0]
    store = CandidateStore.load(tmp_path / "store")
    assert len(store) == 3
    run = read_run(tmp_path / "run.trec")["q1"]
    np.testing.assert_allclose([run[i] for i in docs], d @ q, atol=1e-4)
