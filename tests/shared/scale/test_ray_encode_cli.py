"""Ray Data encoding for `polyrank index --ray`, and the CLI's Ray and Milvus paths end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from polyrank.shared.cli import _bare_ray, main
from polyrank.shared.runs import read_run
from polyrank.shared.store import CandidateStore, open_store

TEXTS = [f"document {i} " + "about boiling water and the moon " * (1 + i % 5) for i in range(18)]


def _beir(folder, n_queries=4):
    folder.mkdir(exist_ok=True)
    with open(folder / "corpus.jsonl", "w") as handle:
        for i, text in enumerate(TEXTS):
            handle.write(json.dumps({"_id": f"d{i}", "title": "", "text": text}) + "\n")
    with open(folder / "queries.jsonl", "w") as handle:
        for i in range(n_queries):
            handle.write(json.dumps({"_id": f"q{i}", "text": f"what boils at {i} degrees"}) + "\n")
    return folder / "corpus.jsonl", folder / "queries.jsonl"


@pytest.mark.slow  # ~55 s: two MiniLM actors load on 2 cores
def test_index_with_ray_equals_local_and_serves_milvus(ray_cluster, tmp_path):
    """Guards: Ray shards encoded in other batches (other padding), vectors placed at the wrong rows, a shard
    dropped; and a Milvus --output / store silently ignored by index and search."""
    corpus, queries = _beir(tmp_path / "beir")
    assert main(["index", str(tmp_path / "local"), "--corpus", str(corpus), "--batch_size", "4"]) == 0
    assert main(["index", str(tmp_path / "ray"), "--corpus", str(corpus), "--batch_size", "4", "--ray",
                 "--actors", "2"]) == 0
    local, distributed = CandidateStore.load(tmp_path / "local"), CandidateStore.load(tmp_path / "ray")
    probe = np.random.default_rng(0).standard_normal((5, local.dim)).astype(np.float32)
    scores_l, ids_l = local.search(probe, len(TEXTS))
    scores_r, ids_r = distributed.search(probe, len(TEXTS))
    assert ids_r.tolist() == ids_l.tolist() and np.array_equal(scores_r, scores_l)  # same vectors, bit for bit

    db = str(tmp_path / "m.db")
    assert main(["index", db, "--corpus", str(corpus), "--batch_size", "4"]) == 0
    milvus = open_store(db)
    try:
        assert milvus.count == len(TEXTS)
        m_scores, m_ids = milvus.search(probe, 5)
        assert m_ids.tolist() == ids_l[:, :5].tolist() and np.allclose(m_scores, scores_l[:, :5], atol=1e-5)
    finally:
        milvus.close()
    assert main(["search", db, str(tmp_path / "m.trec"), "--queries", str(queries), "--k", "5"]) == 0
    assert main(["search", str(tmp_path / "local"), str(tmp_path / "l.trec"), "--queries", str(queries),
                 "--k", "5"]) == 0
    m_run, l_run = read_run(tmp_path / "m.trec"), read_run(tmp_path / "l.trec")
    assert {q: sorted(d) for q, d in m_run.items()} == {q: sorted(d) for q, d in l_run.items()}


@pytest.mark.slow  # ~20 s
def test_rerank_cli_with_ray_equals_local(ray_cluster, tmp_path):
    """Guards: `polyrank rerank --ray` losing --checkpoint/overrides on the way to the actors or writing another
    run than the local command."""
    corpus, queries = _beir(tmp_path / "beir")
    run = tmp_path / "first.trec"
    rng = np.random.default_rng(1)
    with open(run, "w") as handle:
        for q in range(4):
            for rank, d in enumerate(rng.permutation(len(TEXTS))[:8]):
                handle.write(f"q{q} Q0 d{d} {rank + 1} {10 - rank} bm25\n")
    common = ["rerank", "text.cross_encoder.tiny", str(run), str(queries), str(corpus)]
    assert main([*common, str(tmp_path / "local.trec"), "--depth", "5", "--batch_size", "2"]) == 0
    assert main([*common, str(tmp_path / "ray.trec"), "--depth", "5", "--batch_size", "2", "--ray", "local"]) == 0
    assert read_run(tmp_path / "ray.trec") == read_run(tmp_path / "local.trec")


def test_bare_ray_flag_means_local():
    assert _bare_ray(["rerank", "--ray"]) == ["rerank", "--ray", "local"]
    assert _bare_ray(["index", "--ray", "--actors", "2"]) == ["index", "--ray", "local", "--actors", "2"]
    assert _bare_ray(["index", "--ray", "ray://h:10001"]) == ["index", "--ray", "ray://h:10001"]


def test_milvus_index_keeps_foreign_collection(tmp_path, capsys):
    """Guards: `polyrank index` dropping a Milvus collection it did not write."""
    pymilvus = pytest.importorskip("pymilvus")
    db = str(tmp_path / "foreign.db")
    client = pymilvus.MilvusClient(db)
    client.create_collection("polyrank", dimension=4)
    client.close()
    vectors, ids = tmp_path / "v.npy", tmp_path / "ids.txt"
    np.save(vectors, np.eye(3, 4, dtype=np.float32))
    ids.write_text("a\nb\nc\n")
    assert main(["index", db, "--vectors", str(vectors), "--ids", str(ids)]) == 2
    assert "not written by polyrank" in capsys.readouterr().err
    assert main(["index", db, "--vectors", str(vectors), "--ids", str(ids), "--overwrite", "true"]) == 0
    assert main(["index", db, "--vectors", str(vectors), "--ids", str(ids)]) == 0  # its own collection: replaced
    assert main(["index", str(tmp_path / "faiss"), "--vectors", str(vectors), "--ids", str(ids)]) == 0
    np.save(tmp_path / "q.npy", np.array([[0, 1, 0, 0], [0.2, 0.1, 0.5, 0]], dtype=np.float32))
    (tmp_path / "qids.txt").write_text("x\ny\n")
    for store, out in ((db, "m.trec"), (str(tmp_path / "faiss"), "f.trec")):
        assert main(["search", store, str(tmp_path / out), "--query_vectors", str(tmp_path / "q.npy"),
                     "--query_ids", str(tmp_path / "qids.txt"), "--k", "2"]) == 0
    assert read_run(tmp_path / "m.trec") == read_run(tmp_path / "f.trec")
    assert read_run(tmp_path / "m.trec")["x"]["b"] == 1.0
