"""Scale-out benchmark: Ray reranking throughput vs in-process, and Milvus-lite vs FAISS search latency.

    python benchmarks/scale.py                                   # both parts, defaults below
    python benchmarks/scale.py --part rerank --queries 64 --depth 50 --reranker text.cross_encoder.tiny
    python benchmarks/scale.py --part store --n 100000 --dim 64
    python benchmarks/scale.py --part encode --passages 512       # MiniLM passages/s, local vs Ray 1 and 2 actors
    python benchmarks/scale.py --part extract --backbone resnet101  # SuperGlobal-size image backbone, images/s

1. Reranking, one run (``--queries`` x ``--depth`` pairs, ``--batch_size`` queries per batch): wall time and
   pairs/s of :func:`~polyrank.shared.protocol.rerank_run` in-process, then through Ray Data with 1 and 2 CPU
   actors on a local cluster started once beforehand (its start-up is reported apart; actor start-up and model
   loading are inside each Ray figure, as a user pays them). The three runs must be identical. In-process torch
   uses ``--threads`` threads; each Ray actor gets 1 CPU (Ray sets OMP_NUM_THREADS=1 in it).
2. Store: exact (Flat, inner product) search over ``--n`` clustered unit vectors, through the FAISS
   ``CandidateStore`` and through ``MilvusCandidateStore`` on an embedded milvus-lite file: build (add) time,
   per-query latency of a batch of ``--store_queries`` queries and of single queries (median), k=10; top-10 agreement.
3. Encoding (``--part encode``, not in ``all``): all-MiniLM-L6-v2 passages/s over ``--passages`` generated
   passages of ~200 words (truncated to 256 tokens), locally and through ``polyrank index``'s Ray path with 1
   and 2 actors (same vectors checked); the per-page encode cost of the cost model.
4. Extraction (``--part extract``, not in ``all``): a timm ``--backbone`` (random weights: the speed of the
   trained network) forward pass on ``--images`` 512x384 images at 1 scale and at SuperGlobal's 3 scales
   (0.7071, 1, 1.4142), images/s: the per-image encode cost of ROxf+1M with the paper's ResNet backbones.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np


def _run(n_queries: int, depth: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    words = ["water", "boils", "moon", "orbit", "peptide", "claim", "false", "landmark", "oxford", "paris", "the",
             "at", "sea", "level", "degrees", "temperature", "altitude", "experts", "study", "vaccine"]
    corpus = {f"d{j}": " ".join(rng.choice(words, size=int(rng.integers(8, 40)))) for j in range(depth * 4)}
    queries = {f"q{i}": " ".join(rng.choice(words, size=6)) for i in range(n_queries)}
    docs = list(corpus)
    run = {q: {docs[j]: float(rng.normal()) for j in rng.choice(len(docs), depth, replace=False)} for q in queries}
    return run, queries, corpus


def bench_rerank(args) -> dict:
    import ray
    import torch

    from polyrank.shared.protocol import rerank_run
    from polyrank.shared.registry import UntrainedWeightsWarning, load

    torch.set_num_threads(args.threads)
    run, queries, corpus = _run(args.queries, args.depth)
    pairs = args.queries * args.depth
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedWeightsWarning)
        saved = str(load(args.reranker).save(Path(folder) / "saved"))
        local_model = load(saved)
        start = time.perf_counter()
        local = rerank_run(run, local_model, queries, corpus, args.depth, args.batch_size)
        t_local = time.perf_counter() - start
        start = time.perf_counter()
        ray.init(num_cpus=args.ray_cpus, include_dashboard=False, log_to_driver=False)
        t_init = time.perf_counter() - start
        rows = {"in-process": {"seconds": t_local}}
        try:
            for actors in (1, 2):
                start = time.perf_counter()
                distributed = rerank_run(run, saved, queries, corpus, args.depth, args.batch_size, ray="local",
                                         actors=actors)
                rows[f"ray x{actors}"] = {"seconds": time.perf_counter() - start,
                                          "identical": distributed == local}
        finally:
            ray.shutdown()
    for row in rows.values():
        row["pairs_per_s"] = pairs / row["seconds"]
        row["vs_in_process"] = t_local / row["seconds"]
    print(f"\nreranking {args.reranker}: {args.queries} queries x depth {args.depth} = {pairs} pairs, batch "
          f"{args.batch_size} queries; in-process {args.threads} torch thread(s); Ray cluster start {t_init:.1f} s "
          "(not counted below)")
    print(f"  {'path':<11} {'seconds':>8} {'pairs/s':>9} {'x in-proc':>9}  identical")
    for name, row in rows.items():
        print(f"  {name:<11} {row['seconds']:>8.2f} {row['pairs_per_s']:>9.1f} {row['vs_in_process']:>9.2f}  "
              f"{row.get('identical', '-')}")
    ratio = rows["ray x2"]["seconds"] and rows["ray x1"]["seconds"] / rows["ray x2"]["seconds"]
    print(f"  Ray 2 actors vs 1 actor: {ratio:.2f}x (ideal 2x needs 2 idle cores; this machine's 2 cores are shared)")
    return {"pairs": pairs, "ray_init_s": t_init, "rows": rows, "ray_2_vs_1": ratio}


def _latency(search, xq: np.ndarray, repeats: int) -> tuple[float, float]:
    """(ms per query in one batch call, median ms of a single-query call)."""
    search(xq[:2])
    batch = min(_timed(lambda: search(xq)) for _ in range(repeats)) / len(xq)
    singles = [_timed(lambda i=i: search(xq[i:i + 1])) for i in range(min(len(xq), 50))]
    return batch * 1e3, float(np.median(singles)) * 1e3


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_store(args) -> dict:
    import faiss

    from polyrank.shared.store import CandidateStore
    from polyrank.shared.store.milvus import MilvusCandidateStore

    faiss.omp_set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((100, args.dim)).astype(np.float32)
    x = centres[rng.integers(0, 100, args.n + args.store_queries)] + rng.standard_normal(
        (args.n + args.store_queries, args.dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    xb, xq = x[:args.n], x[args.n:]
    ids = [f"doc{i}" for i in range(args.n)]
    out = {}
    start = time.perf_counter()
    flat = CandidateStore(args.dim, "Flat", device="cpu")
    flat.add(ids, xb)
    out["faiss"] = {"build_s": time.perf_counter() - start}
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        milvus = MilvusCandidateStore(args.dim, "Flat", uri=str(Path(folder) / "bench.db"), collection="bench")
        milvus.add(ids, xb)
        milvus.save()
        out["milvus-lite"] = {"build_s": time.perf_counter() - start}
        try:
            for name, store in (("faiss", flat), ("milvus-lite", milvus)):
                batch_ms, single_ms = _latency(lambda q, s=store: s.search(q, 10), xq, args.repeats)
                out[name].update(batch_ms_per_query=batch_ms, single_query_ms=single_ms)
            agree = (milvus.search(xq, 10)[1] == flat.search(xq, 10)[1]).mean()
        finally:
            milvus.close()
    print(f"\nexact search, {args.n} x {args.dim} unit vectors, k=10, {args.store_queries} queries, "
          f"{args.threads} FAISS thread(s); milvus-lite is a local server process (its threads are its own)")
    print(f"  {'store':<12} {'build s':>8} {'ms/query (batch)':>17} {'ms (1 query)':>13}")
    for name, row in out.items():
        print(f"  {name:<12} {row['build_s']:>8.1f} {row['batch_ms_per_query']:>17.3f} {row['single_query_ms']:>13.3f}")
    ratio = out["milvus-lite"]["single_query_ms"] / out["faiss"]["single_query_ms"]
    print(f"  milvus-lite / FAISS single-query latency: {ratio:.1f}x; same top-10 ids: {agree * 100:.1f}%")
    return {"rows": out, "milvus_over_faiss_single": ratio, "top10_agreement": float(agree)}


def bench_encode(args) -> dict:
    import ray
    import torch

    from polyrank.shared.scale.ray_encode import encode_with_ray
    from polyrank.shared.text_encoder import SentenceEncoder

    torch.set_num_threads(args.threads)
    texts = [" ".join(_run(1, 1, seed=i)[2]["d0"].split() * 6)[:1400] for i in range(args.passages)]
    start = time.perf_counter()
    local = SentenceEncoder(batch_size=32).encode(texts)
    rows = {"in-process": {"seconds": time.perf_counter() - start}}
    ray.init(num_cpus=args.ray_cpus, include_dashboard=False, log_to_driver=False)
    try:
        for actors in (1, 2):
            start = time.perf_counter()
            vectors = encode_with_ray(texts, None, 32, address="local", actors=actors)
            rows[f"ray x{actors}"] = {"seconds": time.perf_counter() - start, "identical": bool(
                np.array_equal(vectors, local))}
    finally:
        ray.shutdown()
    print(f"\nencoding {args.passages} passages (~200 words, max 256 tokens) with all-MiniLM-L6-v2, batch 32")
    for name, row in rows.items():
        row["passages_per_s"] = args.passages / row["seconds"]
        print(f"  {name:<11} {row['seconds']:>8.2f} s {row['passages_per_s']:>8.1f} passages/s  "
              f"{row.get('identical', '-')}")
    return {"rows": rows}


def bench_extract(args) -> dict:
    import timm
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(args.threads)
    model = timm.create_model(args.backbone, pretrained=False, num_classes=0).eval()
    images = torch.randn(args.images, 1, 3, 384, 512)
    rows = {}
    with torch.inference_mode():
        model.forward_features(images[0])  # warm-up
        for scales in ((1.0,), (0.7071, 1.0, 1.4142)):
            start = time.perf_counter()
            for image in images:
                for scale in scales:
                    model.forward_features(F.interpolate(image, scale_factor=scale, mode="bilinear")
                                           if scale != 1.0 else image)
            rate = args.images / (time.perf_counter() - start)
            rows[f"{len(scales)} scale(s)"] = {"images_per_s": rate}
            print(f"{args.backbone} forward at 512x384, {len(scales)} scale(s): {rate:6.2f} images/s "
                  f"({1000 / rate:7.1f} ms/image), {args.threads} thread(s)")
    return rows


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["all", "rerank", "store", "encode", "extract"], default="all")
    parser.add_argument("--passages", type=int, default=512)
    parser.add_argument("--backbone", default="resnet101")
    parser.add_argument("--images", type=int, default=6)
    parser.add_argument("--reranker", default="text.cross_encoder.tiny")
    parser.add_argument("--queries", type=int, default=64)
    parser.add_argument("--depth", type=int, default=50)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2, help="torch/FAISS threads in the driver")
    parser.add_argument("--ray_cpus", type=int, default=2)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--store_queries", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    results = {"config": vars(args)}
    if args.part in ("all", "rerank"):
        results["rerank"] = bench_rerank(args)
    if args.part in ("all", "store"):
        results["store"] = bench_store(args)
    if args.part == "encode":
        results["encode"] = bench_encode(args)
    if args.part == "extract":
        results["extract"] = bench_extract(args)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    return results


if __name__ == "__main__":
    main()
