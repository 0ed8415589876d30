"""Atomic directory writes: a crash leaves the old copy; a stale backup never blocks later saves; only polyrank's
own outputs are replaced; staged data is fsynced; staging folders of dead writers are cleaned, live ones kept."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

import polyrank.shared.atomic as atomic
from polyrank.shared.atomic import atomic_directory, clean_stale_staging, recover_directory
from polyrank.shared.errors import PolyrankError


def _save(path, text, **kwargs):
    with atomic_directory(path, **kwargs) as staging:
        (staging / "data.txt").write_text(text)
        (staging / "polyrank.json").write_text("{}")  # what write_manifest puts in every saved reranker


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


# Issue 9 item 1: atomic_directory replaced whatever sat at the path.
def test_only_an_empty_folder_or_a_previous_output_is_replaced_without_overwrite(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"jpeg")
    with pytest.raises(PolyrankError, match=r"photos is a directory of 1 entries \(a.jpg\) without polyrank.json"):
        _save(folder, "v1")
    assert (folder / "a.jpg").read_bytes() == b"jpeg" and sorted(os.listdir(tmp_path)) == ["photos"]
    file = tmp_path / "run.trec"
    file.write_text("q 0 d 1 1.0 x")
    with pytest.raises(PolyrankError, match=r"run.trec is a regular file.*another path.*overwrite=True"):
        _save(file, "v1")
    assert file.read_text() == "q 0 d 1 1.0 x"
    _save(tmp_path / "model", "v1")  # absent
    _save(tmp_path / "model", "v2")  # holds polyrank.json: a previous save
    assert (tmp_path / "model" / "data.txt").read_text() == "v2"
    (tmp_path / "empty").mkdir()
    _save(tmp_path / "empty", "v1")
    with pytest.raises(PolyrankError, match="without manifest.json"):  # a store save does not take a model dir
        _save(tmp_path / "model", "v3", marker="manifest.json")
    for target in (folder, file):
        _save(target, "forced", overwrite=True)
        assert (target / "data.txt").read_text() == "forced"
    assert sorted(os.listdir(tmp_path)) == ["empty", "model", "photos", "run.trec"]


def test_a_file_appearing_at_the_path_during_the_write_is_not_replaced(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(PolyrankError, match="regular file"), atomic_directory(target) as staging:
        (staging / "data.txt").write_text("v1")
        target.write_text("someone else's")
    assert target.read_text() == "someone else's" and sorted(os.listdir(tmp_path)) == ["out"]


# Issue 9 item 3: staged files were not fsynced before the rename.
def test_every_staged_file_and_the_staging_folder_are_fsynced_before_the_rename(tmp_path, monkeypatch):
    synced, renamed = [], []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    def replace(src, dst):
        renamed.append(len(synced))
        real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    monkeypatch.setattr(atomic.os, "replace", replace)
    with atomic_directory(tmp_path / "out") as staging:
        (staging / "sub").mkdir()
        for name in ("a.bin", "sub/b.bin"):
            (staging / name).write_bytes(b"x" * 1000)
    before_rename = synced[:renamed[0]]
    assert {str(staging / "a.bin"), str(staging / "sub" / "b.bin"), str(staging / "sub"), str(staging)} <= \
        set(before_rename)
    assert synced[-1] == str(tmp_path)  # and the rename itself is made durable


def _staging(tmp_path, name, tag):
    folder = tmp_path / f".{name}.{tag}.staging"
    folder.mkdir()
    (folder / "index.faiss").write_bytes(b"half")
    return folder


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# Issue 9 item 3: staging folders of killed writers were never removed.
def test_stale_staging_of_dead_writers_is_removed_and_live_or_foreign_ones_are_kept(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = _staging(tmp_path, "s", f"{atomic.HOST}-{_dead_pid()}.0123abcd")
        live = _staging(tmp_path, "s", f"{atomic.HOST}-{sleeper.pid}.0123abcd")
        mine = _staging(tmp_path, "s", f"{atomic.HOST}-{os.getpid()}.0123abcd")  # another thread's save
        other_host = _staging(tmp_path, "s", f"ffffffff-{_dead_pid()}.0123abcd")
        other_target = _staging(tmp_path, "s2", f"{atomic.HOST}-{_dead_pid()}.0123abcd")
        legacy_old = _staging(tmp_path, "s", "k2j4_x9q")  # named by older polyrank (mkdtemp, no pid)
        legacy_new = _staging(tmp_path, "s", "a8d7f6e5")
        day_ago = time.time() - atomic.LEGACY_STAGING_AGE_S - 60
        for path in (legacy_old, legacy_old / "index.faiss"):
            os.utime(path, (day_ago, day_ago))
        assert sorted(clean_stale_staging(tmp_path / "s")) == sorted([dead, legacy_old])
        assert all(p.exists() for p in (live, mine, other_host, other_target, legacy_new))
        dead2 = _staging(tmp_path, "s", f"{atomic.HOST}-{_dead_pid()}.4567cdef")
        _save(tmp_path / "s", "v1")  # the next save cleans too (and so does a store load: recover_directory)
        assert not dead2.exists() and live.exists()
        dead3 = _staging(tmp_path, "s", f"{atomic.HOST}-{_dead_pid()}.89abcdef")
        recover_directory(tmp_path / "s")
        assert not dead3.exists()
    finally:
        sleeper.kill()
        sleeper.wait()
