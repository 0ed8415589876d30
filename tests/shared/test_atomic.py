"""Atomic directory writes: a crash leaves the old copy; a stale backup never blocks later saves."""

from __future__ import annotations

import pytest

from polyrank.shared.atomic import atomic_directory, recover_directory


def _save(path, text):
    with atomic_directory(path) as staging:
        (staging / "data.txt").write_text(text)


def test_crash_inside_the_write_keeps_the_previous_copy(tmp_path):
    target = tmp_path / "store"
    _save(target, "v1")
    with pytest.raises(RuntimeError), atomic_directory(target) as staging:
        (staging / "data.txt").write_text("half")
        raise RuntimeError("disk full")
    assert (target / "data.txt").read_text() == "v1"
    assert [p.name for p in tmp_path.iterdir()] == ["store"]  # no staging folder left behind


def test_crash_between_the_renames_is_recovered_and_stale_backups_do_not_block(tmp_path):
    target = tmp_path / "store"
    _save(target, "v1")
    target.rename(tmp_path / ".store.old")  # as if the process died after moving the old copy aside
    recover_directory(target)
    assert (target / "data.txt").read_text() == "v1"
    (tmp_path / ".store.old").mkdir()
    (tmp_path / ".store.old" / "junk").write_text("stale")
    _save(target, "v2")
    assert (target / "data.txt").read_text() == "v2"


def test_written_files_and_directories_get_the_usual_permissions(tmp_path):
    import os

    from polyrank.shared.atomic import atomic_write_text

    mask = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "report.html", "<html>")
        _save(tmp_path / "store", "v1")
    finally:
        os.umask(mask)
    assert (path.stat().st_mode & 0o777) == 0o644
    assert ((tmp_path / "store").stat().st_mode & 0o777) == 0o755
