"""Test-wide settings: offline hubs, few threads, a helper folder on sys.path, shared-data fixture."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent / "helpers"))

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared real-data folder, or skip when it is absent."""
    from polyrank.shared.reproduce import data_dir

    folder = data_dir()
    if folder is None or not folder.is_dir():
        pytest.skip("shared data folder not found (set POLYRANK_DATA_DIR or place ../shared/data)")
    return folder
