"""The benchmarks' shared helpers (benchmarks/_timing.py, _cross_encoder.py) and that every benchmark that uses them
imports the way it runs (``python benchmarks/<name>.py`` puts benchmarks/ first on sys.path)."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return lambda name: importlib.import_module(name)


def test_best_time_keeps_the_fastest_call_and_warms_up(bench, monkeypatch):
    timing = bench("_timing")
    clock = iter([0.0, 5.0, 10.0, 11.0, 20.0, 23.0])  # calls take 5, 1, 3 seconds
    monkeypatch.setattr(timing.time, "perf_counter", lambda: next(clock))
    calls = []
    assert timing.best_time(lambda: calls.append(1), repeats=3) == 1.0
    assert len(calls) == 3
    clock = iter([0.0, 2.0])
    assert timing.best_time(lambda: calls.append(2), repeats=1, warmup=True) == 2.0
    assert calls[3:] == [2, 2]  # one untimed call first


def test_interleaved_best_alternates_the_contenders(bench):
    order = []
    best = bench("_timing").interleaved_best({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, 3)
    assert order == ["a", "b"] * 3 and set(best) == {"a", "b"} and all(v >= 0 for v in best.values())


def test_generated_pairs_and_the_score_check(bench, monkeypatch):
    ce = bench("_cross_encoder")
    monkeypatch.setattr("polyrank.shared.reproduce.data_dir", lambda: None)
    queries, docs, source = ce.msmarco_pairs(5, ["w", "x", "y"], np.random.default_rng(0))
    assert len(queries) == len(docs) == 5 and source.startswith("generated")
    assert all(len(q.split()) == 8 for q in queries) and all(10 <= len(d.split()) <= 120 for d in docs)
    assert ce.checked_gap(np.array([1.0, 2.0]), [1.0, 2.0005], 1e-3) == pytest.approx(5e-4)
    with pytest.raises(SystemExit, match="differ from sentence-transformers' by 5.00e-04; not timing"):
        ce.checked_gap(np.array([1.0, 2.0]), [1.0, 2.0005], 1e-4)


@pytest.mark.parametrize("name", ["crosslingual", "text_llm", "rl", "docimage", "gpu_check"])
def test_benchmark_imports_as_a_script_would(name):
    """A fresh interpreter, as ``python benchmarks/<name>.py`` starts, minus running main()."""
    code = f"import sys; sys.path.insert(0, {str(BENCHMARKS)!r}); import {name}; assert callable({name}.main)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
