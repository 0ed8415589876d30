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


@pytest.fixture(scope="session")
def ray_cluster():
    ray = pytest.importorskip("ray")
    import psutil

    if ray.is_initialized():
        pytest.skip("a Ray session is already running in this process")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(HERE)}})
    processes = _cluster_processes(ray)
    assert any("raylet" in " ".join(p.cmdline()) for p in processes if p.is_running()), "no raylet found"
    yield ray
    ray.shutdown()
    deadline = time.monotonic() + 30
    alive = processes
    while time.monotonic() < deadline:
        alive = [p for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        if not alive:
            break
        time.sleep(0.2)
    assert not alive, f"Ray processes left behind after shutdown: {[(p.pid, p.name()) for p in alive]}"
