"""Error types shared by every part of polyrank.

The library raises; only the CLI prints. Every message says what was wrong, what was expected and how
to fix it.
"""

from __future__ import annotations

from pathlib import Path


class PolyrankError(Exception):
    """Base class for errors polyrank raises on bad input or bad state."""


class FormatError(PolyrankError, ValueError):
    """A record in a file is malformed; carries the file and the 1-based line (or record) number."""

    def __init__(self, path: str | Path, line: int | None, message: str) -> None:
        self.path = str(path)
        self.line = line
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


class MissingResourceError(PolyrankError, FileNotFoundError):
    """Data, weights or an optional package that a step needs is not present."""
