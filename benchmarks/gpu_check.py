"""GPU check: run the tests marked ``gpu`` and time the GPU paths against the CPU ones, in under 8 minutes.

On a CUDA machine it

1. runs ``pytest -m gpu tests`` (FAISS GPU store vs CPU results, bf16 vs fp32 training step, DDP on one GPU);
2. times ``CandidateStore.search`` on CPU vs GPU (Flat and IVF, 200k x 64, 10k queries) when faiss has GPU
   support, and a training step of a small transformer on CPU fp32 vs GPU fp32 vs GPU bf16-autocast;
3. writes everything to one JSON file (``--out``, default ``runs/gpu_check.json``) and exits with pytest's
   status.

Without CUDA it says so, writes ``{"cuda": false, ...}`` and exits 0: CI never needs a GPU.

Usage: ``python benchmarks/gpu_check.py [--out runs/gpu_check.json] [--pytest-timeout 300]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import torch
from _timing import best_time

ROOT = Path(__file__).resolve().parents[1]


def run_gpu_tests(timeout_s: int, junit: Path, paths: list[str]) -> dict:
    """``pytest -m gpu <paths>`` in a subprocess; counts parsed from its JUnit XML."""
    command = [sys.executable, "-m", "pytest", "-m", "gpu", *paths, "-q", "-p", "no:cacheprovider",
               f"--junitxml={junit}"]
    start = time.perf_counter()
    try:
        proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s,
                              env={**os.environ, "HF_HUB_OFFLINE": "1"})
        rc, tail = proc.returncode, (proc.stdout + proc.stderr)[-3000:]
    except subprocess.TimeoutExpired as err:
        rc, tail = 124, f"timed out after {timeout_s}s\n{(err.stdout or b'')[-2000:]!r}"
    result = {"rc": rc, "duration_s": round(time.perf_counter() - start, 1), "output_tail": tail}
    if junit.is_file():
        suite = ET.parse(junit).getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        result.update({key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")})
    return result


def time_store(n: int = 200_000, dim: int = 64, n_queries: int = 10_000) -> dict:
    """CandidateStore search throughput, CPU (all cores) vs GPU, and how often their top-10 agree."""
    from polyrank.shared.store import CandidateStore
    from polyrank.shared.store.index import gpu_count

    if gpu_count() == 0:
        return {"skipped": "faiss has no GPU support here (faiss-cpu build); pip install faiss-gpu-cu12"}
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n + n_queries, dim)).astype(np.float32)
    xb, xq = x[:n], x[n:]
    out = {}
    for factory in ("Flat", "IVF1024,Flat"):
        row, found = {}, {}
        for device in ("cpu", "cuda"):
            store = CandidateStore(dim, factory, device=device)
            store.train(xb[:50_000])
            store.add(np.arange(n), xb)
            store.search(xq[:10], 10)  # builds the GPU copy outside the timing
            row[f"{device}_qps"] = n_queries / best_time(lambda: store.search(xq, 10))
            found[device] = store.search(xq, 10)[1]
        row["gpu_speedup"] = row["cuda_qps"] / row["cpu_qps"]
        row["top10_agreement"] = float((found["cpu"][:, :, None] == found["cuda"][:, None, :]).any(-1).mean())
        out[factory] = row
    return out


def time_train_step(steps: int = 10) -> dict:
    """ms per forward+backward+step of a small transformer encoder: CPU fp32, GPU fp32, GPU bf16."""
    def make(device: str):
        torch.manual_seed(0)
        layer = torch.nn.TransformerEncoderLayer(256, 4, 1024, batch_first=True)
        model = torch.nn.TransformerEncoder(layer, 4).to(device)
        return model, torch.optim.AdamW(model.parameters(), 1e-4), torch.randn(32, 128, 256, device=device)

    def step_time(device: str, dtype: torch.dtype | None, n: int) -> float:
        model, opt, x = make(device)

        def step():
            with torch.autocast(device.split(":")[0], dtype=dtype or torch.float32, enabled=dtype is not None):
                loss = model(x).float().pow(2).mean()
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if device != "cpu":
                torch.cuda.synchronize()

        step()  # warm-up (cuBLAS handles, autotuning)
        return 1e3 * best_time(lambda: [step() for _ in range(n)], repeats=2) / n

    cpu = step_time("cpu", None, max(1, steps // 5))
    out = {"cpu_fp32_ms": cpu}
    if torch.cuda.is_available():
        out["gpu_fp32_ms"] = step_time("cuda", None, steps)
        out["gpu_bf16_ms"] = step_time("cuda", torch.bfloat16, steps) if torch.cuda.is_bf16_supported() else None
        out["gpu_fp32_speedup_vs_cpu"] = cpu / out["gpu_fp32_ms"]
        if out["gpu_bf16_ms"]:
            out["bf16_speedup_vs_gpu_fp32"] = out["gpu_fp32_ms"] / out["gpu_bf16_ms"]
    return out


def time_mtm_epoch(timeout_s: int = 420) -> dict:
    """Wall time of one epoch of ``configs/mtm/gpu_politifact.yaml`` (its 10 ROT epochs, PMB init and one
    validation included) and the projection to the recipe's 250k steps; skipped without Politifact."""
    import tempfile

    from polyrank.shared.checkpoints import read_lightning_checkpoint
    from polyrank.shared.reproduce import data_dir

    folder = (data_dir() or Path("/missing")) / "factcheck" / "politifact"
    if not folder.is_dir():
        return {"skipped": f"Politifact not found at {folder}"}
    with tempfile.TemporaryDirectory() as root:
        command = [str(Path(sys.executable).with_name("polyrank")), "fit", "--config",
                   str(ROOT / "configs/mtm/gpu_politifact.yaml"), f"--data.path={folder}", "--trainer.max_steps=-1",
                   "--trainer.max_epochs=1", "--trainer.val_check_interval=1.0",
                   "--trainer.check_val_every_n_epoch=1", f"--trainer.default_root_dir={root}"]
        start = time.perf_counter()
        try:
            proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s,
                                  env={**os.environ, "HF_HUB_OFFLINE": "1"})
        except subprocess.TimeoutExpired:
            return {"timed_out_s": timeout_s}
        wall = time.perf_counter() - start
        if proc.returncode:
            return {"rc": proc.returncode, "output_tail": (proc.stdout + proc.stderr)[-2000:]}
        steps = read_lightning_checkpoint(Path(root) / "checkpoints" / "last.ckpt").global_step or 1
        return {"epoch_wall_s": round(wall, 1), "steps": steps, "s_per_step_incl_rot": wall / steps,
                "projected_250k_steps_h": 250_000 * wall / steps / 3600}


def time_grpo_bf16() -> dict:
    """One LoRA GRPO step in bf16 vs fp32 on the GPU (benchmarks/rl.py): seconds, finiteness, gradient agreement."""
    sys.path.insert(0, str(Path(__file__).parent))
    from rl import gpu_grpo_check

    return gpu_grpo_check()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/gpu_check.json")
    parser.add_argument("--pytest-timeout", type=int, default=300)
    parser.add_argument("--tests", nargs="+", default=["tests"], help="where pytest looks for gpu tests")
    parser.add_argument("--mtm-epoch", action="store_true",
                        help="also time one epoch of configs/mtm/gpu_politifact.yaml (needs Politifact; minutes)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    if not torch.cuda.is_available():
        print("no CUDA device: GPU checks skipped (CI never needs a GPU)")
        out.write_text(json.dumps({"cuda": False, "reason": "torch.cuda.is_available() is False"}, indent=1))
        return 0
    results: dict = {"cuda": True, "device": torch.cuda.get_device_name(0), "torch": torch.__version__}
    print(f"CUDA device: {results['device']}; running pytest -m gpu ...", flush=True)
    results["pytest"] = run_gpu_tests(args.pytest_timeout, out.with_suffix(".junit.xml"), args.tests)
    print(f"pytest -m gpu: rc={results['pytest']['rc']} in {results['pytest']['duration_s']}s", flush=True)
    timings = [("store_search", time_store), ("train_step", time_train_step), ("grpo_bf16", time_grpo_bf16)]
    if args.mtm_epoch:
        timings.append(("mtm_epoch", time_mtm_epoch))
    for name, fn in timings:
        try:
            results[name] = fn()
        except Exception as err:  # a timing failure must not hide the test results already gathered
            results[name] = {"error": f"{type(err).__name__}: {err}"}
        print(f"{name}: {json.dumps(results[name], default=float)}", flush=True)
    results["total_s"] = round(time.perf_counter() - start, 1)
    out.write_text(json.dumps(results, indent=1, default=float))
    print(f"wrote {out} ({results['total_s']}s)")
    return 0 if results["pytest"]["rc"] in (0, 5) else results["pytest"]["rc"]  # 5: no test selected


if __name__ == "__main__":
    sys.exit(main())
