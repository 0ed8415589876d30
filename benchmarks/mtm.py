"""MTM speed: BM25 indexing/query (bm25s vs rank-bm25, same tokens) and claims reranked per second.

    HF_HUB_OFFLINE=1 python benchmarks/mtm.py [--backbone tiny|minilm] [--claims 4] [--threads 2]

Uses the Politifact articles from ``$POLYRANK_DATA_DIR`` when present, else generated text. Reranking
speed is reported for the batched path (all 50 candidates' key sentences in one encoder batch) against
scoring one candidate at a time, in the same process.
"""

from __future__ import annotations

import argparse
import random
import time

import numpy as np
import torch


def _corpus():
    from polyrank.shared.reproduce import data_dir

    folder = data_dir() / "factcheck" / "politifact" if data_dir() else None
    if folder is not None and folder.is_dir():
        from polyrank.domains.mtm.data import load_politifact

        data = load_politifact(folder)
        return "politifact", data.articles, list(data.claims.values())
    from polyrank.domains.mtm.synthetic import synthetic_factcheck

    data = synthetic_factcheck(2000, 500)
    return "generated", data.articles, list(data.claims.values())


def bench_bm25(articles, claims, n_queries=300):
    from rank_bm25 import BM25Okapi

    from polyrank.domains.mtm.bm25 import BM25Index, bm25_tokens

    t = time.perf_counter()
    index = BM25Index(articles)
    t_ours = time.perf_counter() - t
    t = time.perf_counter()
    tokens = [bm25_tokens(" ".join(s)) for s in articles.values()]
    baseline = BM25Okapi(tokens, k1=1.5, b=0.75)
    t_base = time.perf_counter() - t
    queries = claims[:n_queries]
    t = time.perf_counter()
    ours = [index.scores(q) for q in queries]
    q_ours = time.perf_counter() - t
    t = time.perf_counter()
    base = [baseline.get_scores(bm25_tokens(q)) for q in queries]
    q_base = time.perf_counter() - t
    top_agree = np.mean([np.argmax(a) == np.argmax(b) for a, b in zip(ours, base)])
    print(f"BM25 index {len(articles)} articles: bm25s {t_ours*1e3:.1f} ms, rank-bm25 {t_base*1e3:.1f} ms "
          f"(ratio {t_base / t_ours:.2f}x)")
    print(f"BM25 query x{len(queries)}: bm25s {len(queries)/q_ours:.0f} q/s, rank-bm25 {len(queries)/q_base:.0f} q/s "
          f"(ratio {q_base / q_ours:.2f}x); top-1 agreement {top_agree:.2f} (Lucene vs Okapi idf)")


def bench_rerank(backbone, articles, claims, n_claims):
    from polyrank.domains.mtm.reranker import MTMReranker
    from polyrank.shared.protocol import Candidate

    reranker = MTMReranker.untrained(backbone, device="cpu", n_patterns=20, n_key_sentences=5,
                                     max_length=256, claim_max_length=180)
    ids = list(articles)
    rng = random.Random(0)
    lists = [[Candidate(d, articles[d]) for d in rng.sample(ids, 50)] for _ in range(n_claims)]
    reranker.score(claims[0], lists[0][:2])                      # warm-up
    t = time.perf_counter()
    for claim, cands in zip(claims, lists):
        reranker.score(claim, cands)
    batched = n_claims / (time.perf_counter() - t)
    t = time.perf_counter()
    for claim, cands in zip(claims, lists):
        for c in cands:
            reranker.score(claim, [c])
    single = n_claims / (time.perf_counter() - t)
    print(f"MTM rerank ({backbone}, k=5, 50 candidates/claim, {torch.get_num_threads()} threads): "
          f"batched {batched:.2f} claims/s, one-at-a-time {single:.2f} claims/s (ratio {batched / single:.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="tiny")
    parser.add_argument("--claims", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    name, articles, claims = _corpus()
    print(f"corpus: {name}")
    bench_bm25(articles, claims)
    bench_rerank(args.backbone, articles, claims, args.claims)


if __name__ == "__main__":
    main()
