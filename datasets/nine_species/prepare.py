"""Fetch (https) or link the RankNovo Bacillus test files into ``<data_dir>/nine_species/``, checksum-verified.

The files are the ones ``RankNovo/README.md`` (GitHub BEAM-Labs/denovo) links on Google Drive: the test MGF,
the base-model candidate pickle and the authors' checkpoint. Google Drive serves them over https only.

Checksums: a file with a recorded sha256 (:data:`FILES`) must match it. The README publishes none, so the
first copy's sha256 is computed and written to a ``<file>.sha256`` sidecar; every later run verifies the file
against that sidecar (a changed or truncated file is an error, never silently accepted).

Offline (or when the host refuses), nothing is guessed: the script prints exactly which file to download from
which page and where to place it, then exits with status 1.

    python datasets/nine_species/prepare.py [--out DIR] [--from DOWNLOAD_DIR] [--offline]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

CHUNK = 1 << 20


@dataclass(frozen=True)
class Remote:
    """One released file: its Google Drive id (``RankNovo/README.md``) and its sha256 when known."""

    drive_id: str
    sha256: str | None = None  # None: not published; computed on first download into <file>.sha256
    note: str = ""

    @property
    def page(self) -> str:
        return f"https://drive.google.com/file/d/{self.drive_id}/view"

    @property
    def url(self) -> str:
        return f"https://drive.usercontent.google.com/download?id={self.drive_id}&export=download&confirm=t"


FILES: dict[str, Remote] = {
    "bacillus_V1.mgf": Remote("1CtmRpAHSK7uqi5q3KraCaLY7QSsFQhcR", note="test MGF (Bacillus, 9-species-V1)"),
    "bacillus_6m_V1.pkl": Remote("1_iERygz8wNEsOvLYv7CMDPhY7lr-JJ-A", note="candidates of six base models"),
    "model_0.660.ckpt": Remote("1Zfzpu5JHUvMXfvNPA-QVGzXMyF499vFL", note="the authors' RankNovo checkpoint"),
}


class ChecksumError(RuntimeError):
    """A file does not match its recorded or sidecar sha256."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def verify(path: Path, expected: str | None = None) -> str:
    """Check ``path`` against ``expected`` or its sidecar; with neither, record the sidecar. Returns the sha256."""
    from polyrank.shared.atomic import atomic_write_text

    actual = sha256_of(path)
    recorded = expected
    if recorded is None and sidecar(path).is_file():
        recorded = sidecar(path).read_text().split()[0].strip().lower()
    if recorded is None:
        atomic_write_text(sidecar(path), f"{actual}  {path.name}\n")
        print(f"{path}: sha256 {actual} (first copy; recorded in {sidecar(path)})")
        return actual
    if actual != recorded.lower():
        source = "recorded in prepare.py" if expected is not None else f"recorded in {sidecar(path)}"
        raise ChecksumError(f"{path}: sha256 {actual} does not match {recorded} ({source}); the file is changed "
                            "or truncated. Delete it (and its .sha256 if the source really changed) and fetch again")
    return actual


def download(url: str, target: Path, timeout: float = 60.0) -> Path:
    """Stream ``url`` (https only) into ``target`` atomically; an HTML page instead of the file is an error."""
    from polyrank.shared.atomic import atomic_file

    if not url.startswith("https://"):
        raise ValueError(f"refusing to download {url!r}: only https URLs are used")
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (https checked above)
        if "text/html" in response.headers.get("Content-Type", ""):
            raise OSError(f"{url} answered with an HTML page (a sign-in or quota page), not the file")
        with atomic_file(target, "wb") as handle:
            while block := response.read(CHUNK):
                handle.write(block)
    return target


def instructions(missing: dict[str, Remote], out: Path) -> str:
    lines = ["Could not fetch these files; download each from its page and place it exactly here:"]
    for name, remote in missing.items():
        lines.append(f"  {remote.page}  ->  {out / name}   ({remote.note})")
    lines.append(f"then run: python {Path(__file__).as_posix()} --out {out}   (verifies/records the sha256)")
    return "\n".join(lines)


def prepare(out: Path, download_dir: Path | None = None, offline: bool = False,
            files: dict[str, Remote] = FILES) -> int:
    """Place and verify every file; returns the process status (0 all present and verified, 1 otherwise)."""
    out.mkdir(parents=True, exist_ok=True)
    missing: dict[str, Remote] = {}
    for name, remote in files.items():
        target = out / name
        if not target.exists() and download_dir is not None:
            found = sorted(download_dir.rglob(name))
            if found:
                os.symlink(found[0].resolve(), target)
                print(f"{target} -> {found[0]}")
        if not target.exists() and not offline:
            try:
                download(remote.url, target)
                print(f"{target} <- {remote.page}")
            except (urllib.error.URLError, OSError, TimeoutError) as exc:
                print(f"{name}: download failed ({exc})", file=sys.stderr)
        if not target.exists():
            missing[name] = remote
            continue
        verify(target, remote.sha256)
    if missing:
        print(instructions(missing, out), file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=None, help="default: $POLYRANK_DATA_DIR/nine_species")
    parser.add_argument("--from", dest="download_dir", type=Path, default=None,
                        help="folder holding a manual download (linked instead of fetched)")
    parser.add_argument("--offline", action="store_true", help="never use the network; print what to place where")
    args = parser.parse_args(argv)
    from polyrank.shared.reproduce import data_dir

    out = args.out or (data_dir() or Path("../shared/data")) / "nine_species"
    try:
        return prepare(out, args.download_dir, args.offline)
    except ChecksumError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
