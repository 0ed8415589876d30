"""Real data sets shipped inside the project (``datasets/<name>/data``), and where a demo finds its data.

A fresh clone has no ``../shared/data``; these small sets, whose licences allow redistribution, are then the
demo's default. Each ``datasets/<name>/README.md`` states its source (repository, commit, path), licence, file
count and the digest of its ``SHA256SUMS`` listing; :func:`verify` checks all three against the files.

================  =============================  ===========================================================
name              shared-data equivalent         what
================  =============================  ===========================================================
cranfield         ``text/cranfield``             1,400 aeronautics abstracts, 225 queries, graded qrels
casanovo_sample   ``peptides/casanovo``          128 annotated MS/MS spectra (MGF) + mouse FASTA (Apache-2.0)
sacre_coeur       ``landmarks/sacre_coeur``      10 photos of the Sacre-Coeur, <= 512 px (Apache-2.0)
landmarks_dim     ``landmarks_dim``              60 photos of 6 multi-view scenes, <= 512 px (BSD-3-Clause)
================  =============================  ===========================================================
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from polyrank.shared.errors import MissingResourceError, PolyrankError

ROOT = Path(__file__).resolve().parents[1] / "datasets"
SHARED_EQUIVALENT = {"cranfield": "text/cranfield", "casanovo_sample": "peptides/casanovo",
                     "sacre_coeur": "landmarks/sacre_coeur", "landmarks_dim": "landmarks_dim"}


@dataclass(frozen=True)
class DataSource:
    """Where a data set was found: its folder and whether it is the shared copy or the embedded one."""

    path: Path
    origin: str  # "shared" or "embedded"

    def describe(self) -> str:
        return f"{self.path} ({'shared data folder' if self.origin == 'shared' else 'embedded in the project'})"


def embedded_path(name: str, root: Path = ROOT) -> Path:
    """``datasets/<name>/data`` of an embedded set (raises when the name is unknown or the folder is absent)."""
    if name not in SHARED_EQUIVALENT:
        raise PolyrankError(f"unknown embedded data set {name!r}; embedded sets: {sorted(SHARED_EQUIVALENT)}")
    path = root / name / "data"
    if not path.is_dir():
        raise MissingResourceError(f"embedded data set {name} is missing at {path}; it ships with the repository "
                                   "(a git clone has it; an installed wheel does not)")
    return path


def locate(name: str, data_dir: Path | None) -> DataSource:
    """The shared copy of ``name`` under ``data_dir`` when present, else the embedded one."""
    if data_dir is not None and (Path(data_dir) / SHARED_EQUIVALENT[name]).is_dir():
        return DataSource(Path(data_dir) / SHARED_EQUIVALENT[name], "shared")
    return DataSource(embedded_path(name), "embedded")


def listing(name: str, root: Path = ROOT) -> str:
    """The ``SHA256SUMS`` text of the files of an embedded set (``<sha256>  <relative path>``, sorted)."""
    folder = embedded_path(name, root)
    lines = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        lines.append(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.relative_to(folder).as_posix()}")
    return "\n".join(lines) + "\n"


def recorded(name: str, root: Path = ROOT) -> tuple[int, str]:
    """The file count and the ``SHA256SUMS`` digest stated in ``datasets/<name>/README.md``."""
    readme = root / name / "README.md"
    text = readme.read_text(encoding="utf-8")
    count = re.search(r"Files:\s*\*{0,2}(\d+)", text)
    digest = re.search(r"SHA256SUMS digest:\s*`?([0-9a-f]{64})", text)
    if not count or not digest:
        raise PolyrankError(f"{readme} must state 'Files: N' and 'SHA256SUMS digest: <sha256>'")
    return int(count.group(1)), digest.group(1)


def verify(name: str, root: Path = ROOT) -> None:
    """Check an embedded set's files against its ``SHA256SUMS`` and README (count and digest)."""
    actual = listing(name, root)
    sums = (root / name / "SHA256SUMS").read_text(encoding="utf-8")
    count, digest = recorded(name, root)
    problems = []
    if actual != sums:
        changed = sorted(set(actual.splitlines()) ^ set(sums.splitlines()))
        problems.append(f"files differ from SHA256SUMS: {[line.split('  ')[-1] for line in changed][:5]}")
    if len(actual.splitlines()) != count:
        problems.append(f"{len(actual.splitlines())} files, README says {count}")
    if hashlib.sha256(sums.encode()).hexdigest() != digest:
        problems.append("SHA256SUMS digest differs from the README's")
    if problems:
        raise PolyrankError(f"embedded data set {name} is not as shipped: " + "; ".join(problems))
