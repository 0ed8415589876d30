"""Link a manual download of the nine-species files into the layout of README.md (no network)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("download", type=Path, help="folder holding *_V1.mgf, *_6m_V1.pkl and the checkpoint")
    parser.add_argument("--out", type=Path, default=None, help="default: $POLYRANK_DATA_DIR/nine_species")
    args = parser.parse_args()
    from polyrank.shared.reproduce import data_dir

    out = args.out or (data_dir() or Path("../shared/data")) / "nine_species"
    out.mkdir(parents=True, exist_ok=True)
    found = sorted([*args.download.rglob("*.mgf"), *args.download.rglob("*.pkl")])
    if not found:
        raise SystemExit(f"no .mgf or .pkl files under {args.download}; download them from RankNovo/README.md links")
    for path in found:
        target = out / path.name
        if not target.exists():
            os.symlink(path.resolve(), target)
        print(f"{target} -> {path}")


if __name__ == "__main__":
    main()
