"""Atomic writes: a crash mid-write leaves the previous file or directory intact."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


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


@contextlib.contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Yield a fresh staging directory; on success it replaces ``path`` whole.

    The old copy is moved aside, the new one renamed in, and only then the old one deleted, so at
    every instant either the complete old or the complete new directory sits at ``path`` (or, between
    two renames, at its ``.old`` sibling, from which :func:`recover_directory` restores it).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    recover_directory(path)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".staging", dir=path.parent))
    os.chmod(staging, 0o777 & ~_umask())
    try:
        yield staging
        backup = path.with_name(f".{path.name}.old")
        if path.exists():
            shutil.rmtree(backup, ignore_errors=True)  # a stale copy left by an earlier crash after recovery
            os.replace(path, backup)
        os.replace(staging, path)
        _fsync_dir(path.parent)
        shutil.rmtree(backup, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def recover_directory(path: str | Path) -> None:
    """If a save died between its two renames, put the previous copy back at ``path``."""
    path = Path(path)
    backup = path.with_name(f".{path.name}.old")
    if backup.exists() and not path.exists():
        os.replace(backup, path)
