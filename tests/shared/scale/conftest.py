"""One local Ray cluster (2 CPUs, no dashboard) for the scale tests; afterwards none of its processes is left."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

HERE = Path(__file__).parent


def _cluster_processes(ray) -> list:
    """The local node's processes (raylet, GCS, workers...) and all their descendants."""
    import psutil

    node = ray._private.worker._global_node
    roots = [info.process.pid for infos in node.all_processes.values() for info in infos if info.process]
    found = []
    for pid in roots:
        try:
            proc = psutil.Process(pid)
            found += [proc, *proc.children(recursive=True)]
        except psutil.NoSuchProcess:
            pass
    return found


def _cmdline(proc) -> str:
    """A process's command line, or "" for one that has exited or is a zombie (short-lived Ray helpers)."""
    import psutil

    try:
        return " ".join(proc.cmdline())
    except psutil.Error:
        return ""


def _alive(proc) -> bool:
    import psutil

    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


@pytest.fixture(scope="session")
def ray_cluster():
    ray = pytest.importorskip("ray")

    if ray.is_initialized():
        pytest.skip("a Ray session is already running in this process")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(HERE)}})
    processes = _cluster_processes(ray)
    assert any("raylet" in _cmdline(p) for p in processes), "no raylet found"
    yield ray
    ray.shutdown()
    deadline = time.monotonic() + 30
    alive = processes
    while time.monotonic() < deadline:
        alive = [p for p in processes if _alive(p)]
        if not alive:
            break
        time.sleep(0.2)
    assert not alive, f"Ray processes left behind after shutdown: {[(p.pid, _cmdline(p)[:80]) for p in alive]}"
