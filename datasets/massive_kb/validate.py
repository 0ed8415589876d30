"""Check a MassIVE-KB training folder: MGF + aligned candidates (pickle or CSV) parse and align."""

from __future__ import annotations

import sys
from pathlib import Path


def validate(folder: Path) -> int:
    from polyrank.domains.ranknovo.candidates import read_candidate_pickle, read_candidate_table
    from polyrank.domains.ranknovo.spectra import read_mgf
    from polyrank.shared.errors import PolyrankError

    problems = 0
    for split in ("train", "val"):
        mgf = folder / f"{split}.mgf"
        if not mgf.is_file():
            print(f"{split}: {mgf} missing")
            problems += 1
            continue
        try:
            read = read_mgf(mgf)
        except PolyrankError as exc:  # unreadable as a whole (not text, no spectrum): report it, go on
            print(f"{split}: {exc}")
            problems += 1
            continue
        pkl, csv = folder / f"{split}_candidates.pkl", folder / f"{split}_candidates.csv"
        cands = read_candidate_pickle(pkl) if pkl.is_file() else read_candidate_table(csv) if csv.is_file() else None
        n = len(cands.rows) if cands else 0
        aligned = cands is not None and n == len(read.spectra)
        problems += len(read.errors) + (not aligned)
        print(f"{split}: {len(read.spectra)} spectra ({len(read.errors)} bad), {n} candidate lists, "
              f"{'aligned' if aligned else 'NOT aligned'}")
    return problems


if __name__ == "__main__":
    from polyrank.shared.reproduce import data_dir

    root = Path(sys.argv[1]) if len(sys.argv) > 1 else (data_dir() or Path("../shared/data")) / "massive_kb"
    sys.exit(1 if validate(root) else 0)
