"""Atomic writes: a crash mid-write leaves the previous file or directory intact.

Directories (:func:`atomic_directory`) are staged in a sibling ``.<name>.<host>-<pid>.<random>.staging``
folder, fsynced, and renamed into place; a writer killed mid-save leaves only its staging folder, which the
next save (or a store load) of the same path removes once that process is gone. Only a previous polyrank
output (a directory holding ``marker``) or an empty directory is replaced unless ``overwrite=True``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import shutil
import socket
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from polyrank.shared.errors import PolyrankError

LEGACY_STAGING_AGE_S = 24 * 3600  # staging folders of older polyrank versions carry no pid: removed by age
HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]  # pids are only comparable on one host


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _fsync_tree(root: Path) -> None:
    """fsync every file and directory under ``root`` (children first), so the rename publishes durable data."""
    for folder, _, files in os.walk(root, topdown=False):
        for name in files:
            file = os.path.join(folder, name)
            if not stat.S_ISREG(os.lstat(file).st_mode):  # symlinks, fifos: nothing of ours to flush
                continue
            fd = os.open(file, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(folder))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _remove(path: Path) -> None:
    """Delete a file, symlink or directory tree; missing is fine."""
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    else:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "w", **kwargs) -> Iterator:
    """Open a temporary sibling of ``path``; on success it replaces ``path`` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
    try:
        with os.fdopen(fd, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> Path:
    with atomic_file(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    return Path(path)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_file(path, "wb") as handle:
        handle.write(data)
    return Path(path)


def check_replaceable(path: str | Path, marker: str = "polyrank.json", overwrite: bool = False) -> None:
    """Raise :class:`PolyrankError` unless ``path`` is absent, an empty directory, a directory holding
    ``marker`` (a previous polyrank output), or ``overwrite`` is set."""
    path = Path(path)
    if overwrite or not os.path.lexists(path):
        return
    how = "choose another path, or pass overwrite=True (--overwrite on the command line) to replace it"
    if not path.is_dir():
        kind = "a symlink to nowhere" if not path.exists() else "a regular file"
        raise PolyrankError(f"{path} is {kind}, not a directory written by polyrank; refusing to replace it: {how}")
    entries = sorted(p.name for p in path.iterdir())
    if entries and marker not in entries:
        shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
        raise PolyrankError(f"{path} is a directory of {len(entries)} entries ({shown}) without {marker}, so "
                            f"polyrank did not write it; refusing to delete it: {how}")


def _staging_pattern(name: str) -> re.Pattern:
    return re.compile(rf"\.{re.escape(name)}\.(?:([0-9a-f]{{8}})-(\d+)\.[0-9a-f]{{8}}|[a-z0-9_]{{8}})\.staging")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _newest_mtime(folder: Path) -> float:
    times = [folder.lstat().st_mtime]
    for root, dirs, files in os.walk(folder):
        times.extend(os.lstat(os.path.join(root, n)).st_mtime for n in dirs + files)
    return max(times)


def clean_stale_staging(path: str | Path) -> list[Path]:
    """Remove staging folders of ``path`` left by writers that died mid-save; returns what was removed.

    A folder is stale when its writer (pid in its name, same host) no longer runs; folders of live
    processes, of other hosts, and of other targets are never touched. Staging folders of older polyrank
    versions (no pid in the name) are removed once nothing in them changed for a day.
    """
    path = Path(path)
    pattern, removed = _staging_pattern(path.name), []
    try:
        siblings = list(path.parent.iterdir())
    except OSError:
        return removed
    for entry in siblings:
        match = pattern.fullmatch(entry.name)
        if match is None or entry.is_symlink() or not entry.is_dir():
            continue
        host, pid = match.group(1), match.group(2)
        try:
            if host is None:
                stale = time.time() - _newest_mtime(entry) > LEGACY_STAGING_AGE_S
            else:
                stale = host == HOST and int(pid) != os.getpid() and not _alive(int(pid))
        except OSError:  # vanished meanwhile (its writer renamed or removed it)
            continue
        if stale:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def _make_staging(path: Path) -> Path:
    while True:
        staging = path.with_name(f".{path.name}.{HOST}-{os.getpid()}.{secrets.token_hex(4)}.staging")
        try:
            staging.mkdir(0o777)  # the umask applies, as for any directory
        except FileExistsError:
            continue
        return staging


@contextlib.contextmanager
def atomic_directory(path: str | Path, marker: str = "polyrank.json", overwrite: bool = False) -> Iterator[Path]:
    """Yield a fresh staging directory; on success it replaces ``path`` whole.

    ``path`` may be absent, an empty directory or a directory holding ``marker`` (the file polyrank writes
    there: ``polyrank.json`` for saved rerankers, ``manifest.json`` for candidate stores); anything else
    raises :class:`PolyrankError` before any work, unless ``overwrite=True``.

    The staged files are fsynced, the old copy is moved aside, the new one renamed in, the parent fsynced,
    and only then the old one deleted, so at every instant either the complete old or the complete new
    directory sits at ``path`` (or, between two renames, at its ``.old`` sibling, from which
    :func:`recover_directory` restores it). Staging folders of earlier writers killed mid-save are removed
    first (:func:`clean_stale_staging`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    recover_directory(path)
    check_replaceable(path, marker, overwrite)
    staging = _make_staging(path)
    try:
        yield staging
        _fsync_tree(staging)
        check_replaceable(path, marker, overwrite)  # again: something may have appeared while we wrote
        backup = path.with_name(f".{path.name}.old")
        if os.path.lexists(path):
            _remove(backup)  # a stale copy left by an earlier crash after recovery
            os.replace(path, backup)
        os.replace(staging, path)
        _fsync_dir(path.parent)
        _remove(backup)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def recover_directory(path: str | Path) -> None:
    """Undo what a killed save left behind: if it died between its two renames, put the previous copy back
    at ``path``; if it died after them, delete the superseded ``.old`` copy; then remove the staging folders
    of dead writers (:func:`clean_stale_staging`)."""
    path = Path(path)
    backup = path.with_name(f".{path.name}.old")
    if os.path.lexists(backup):
        if os.path.lexists(path):  # the new copy is in place (a live writer also removes this before use)
            _remove(backup)
        else:
            os.replace(backup, path)
    clean_stale_staging(path)
