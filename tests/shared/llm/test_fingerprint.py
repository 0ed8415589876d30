"""The cache keys of converted model folders come from one place (shared/llm/loading.py) and stay what they were:
a changed key would silently re-convert every cached GGUF / e5 folder."""

from __future__ import annotations

import hashlib

import pytest

from polyrank.shared.llm.loading import cache_root, file_fingerprint

MIB = 1 << 20


def _expected(data: bytes) -> str:  # the key as written before the helper was shared
    digest = hashlib.sha256(str(len(data)).encode())
    digest.update(data[:MIB])
    digest.update(data[max(0, len(data) - MIB):][:MIB])
    return digest.hexdigest()[:16]


@pytest.mark.parametrize("size", [0, 10, MIB + 17, 3 * MIB])
def test_fingerprint_is_the_old_key(tmp_path, size):
    data = bytes((i * 7 + 3) % 251 for i in range(size))
    path = tmp_path / "weights.bin"
    path.write_bytes(data)
    assert file_fingerprint(path) == file_fingerprint(str(path)) == _expected(data)


def test_fingerprint_sees_a_change_in_the_tail(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"\0" * (3 * MIB))
    before = file_fingerprint(path)
    path.write_bytes(b"\0" * (3 * MIB - 1) + b"\1")
    assert file_fingerprint(path) != before


def test_cache_roots_share_polyrank_cache(monkeypatch, tmp_path):
    from polyrank.domains.crosslingual import e5

    monkeypatch.setenv("POLYRANK_CACHE", str(tmp_path))
    assert cache_root() == tmp_path / "llm"
    assert e5.cache_root() == tmp_path / "crosslingual"
