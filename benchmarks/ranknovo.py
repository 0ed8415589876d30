"""RankNovo benchmarks: reranking throughput / peak memory, and batched vs per-pair label computation.

    python benchmarks/ranknovo.py [--device cpu|cuda] [--model tiny|base] [--spectra 256] [--pairs 2000]

Prints (1) spectra reranked per second with 7 candidates per spectrum and peak memory, (2) PMD/RMD labels
for many (candidate, truth) pairs: the vectorised ``pmd_batch``/``rmd_batch`` vs a per-pair Python loop
(``pmd_loop``/``rmd_loop``), checking that both give the same numbers. Inputs are SIMULATED.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch

from polyrank.domains.ranknovo.masses import pmd_batch, pmd_loop, rmd_batch, rmd_loop, unit_masses
from polyrank.domains.ranknovo.registry import BASE, TINY
from polyrank.domains.ranknovo.reranker import build_reranker
from polyrank.domains.ranknovo.simulate import NoisyBaseModel, simulate_spectrum

PEPTIDES = ["PEPTIDEK", "LGEYGFQNALIVR", "AEFVEVTK", "SLHTLFGDELC+57.021K", "VVAGVANALAHK", "GAGSSEPVTGLDAK",
            "TLNDELEIIEGMK", "ALLDMYEGEDR", "QTALVELLK", "YLYEIAR"]


def _workload(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    models = [NoisyBaseModel(f"m{k}", 0.3 + 0.08 * k) for k in range(7)]
    truths = [PEPTIDES[i % len(PEPTIDES)] for i in range(n)]
    spectra = [simulate_spectrum(t, 2 + i % 2, rng) for i, t in enumerate(truths)]
    cands = [["".join(m.predict(t, rng)) for m in models] for t in truths]
    return spectra, cands, truths


def bench_rerank(args) -> None:
    spectra, cands, _ = _workload(args.spectra)
    config = BASE if args.model == "base" else TINY
    reranker = build_reranker(config, f"ranknovo.{args.model}", device=args.device, batch_size=args.batch)
    reranker.bf16 = args.bf16
    reranker.rerank(spectra[:args.batch], cands[:args.batch])  # warm-up
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    results = reranker.rerank(spectra, cands)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    peak = (torch.cuda.max_memory_allocated() / 2**20 if args.device.startswith("cuda")
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    assert len(results) == len(spectra) and all(np.isfinite(r.pmd).all() for r in results)
    cuda = args.device.startswith("cuda")
    kind = "CUDA allocated" if cuda else f"process max RSS, was {rss0 / 1024:.0f} before"
    where = f"{args.device}{' bf16' if args.bf16 else ''}"
    print(f"rerank ranknovo.{args.model} on {where}: {len(spectra)} spectra "
          f"x 7 candidates, batch {args.batch}: {len(spectra) / elapsed:.1f} spectra/s; peak memory "
          f"{peak:.0f} MiB ({kind})")


def bench_labels(args) -> None:
    rng = np.random.default_rng(1)
    models = [NoisyBaseModel("m", 0.3)]
    truths = [PEPTIDES[i % len(PEPTIDES)] for i in range(args.pairs)]
    queries = [unit_masses(models[0].predict(t, rng)) for t in truths]
    targets = [unit_masses(t) for t in truths]
    start = time.perf_counter()
    loop_pmd = np.array([pmd_loop(q, t) for q, t in zip(queries, targets)])
    loop_rmd = [rmd_loop(q, t) for q, t in zip(queries, targets)]
    t_loop = time.perf_counter() - start
    start = time.perf_counter()
    fast_pmd = pmd_batch(queries, targets)
    fast_rmd = rmd_batch(queries, targets)
    t_fast = time.perf_counter() - start
    same = np.allclose(fast_pmd, loop_pmd, rtol=0, atol=1e-12) and all(np.array_equal(a, b) for a, b in
                                                                        zip(fast_rmd, loop_rmd))
    print(f"labels for {args.pairs} pairs: per-pair loop {t_loop * 1e3:.1f} ms, "
          f"batched {t_fast * 1e3:.1f} ms, "
          f"speed-up x{t_loop / t_fast:.1f}; same results: {same}")
    if not same:
        raise SystemExit("batched labels differ from the per-pair loop")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--model", choices=["tiny", "base"], default="tiny")
    parser.add_argument("--spectra", type=int, default=256)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--bf16", action="store_true", help="autocast to bfloat16")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    bench_labels(args)
    bench_rerank(args)


if __name__ == "__main__":
    main()
