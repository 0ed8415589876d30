"""Check a nine-species folder with polyrank's readers: alignment, labels, parseable peptides."""

from __future__ import annotations

import sys
from pathlib import Path


def validate(folder: Path) -> int:
    from polyrank.domains.ranknovo.candidates import read_candidate_pickle
    from polyrank.domains.ranknovo.peptides import parse_peptide
    from polyrank.domains.ranknovo.spectra import read_mgf
    from polyrank.shared.errors import PolyrankError

    problems = 0
    for mgf in sorted(folder.glob("*_V1.mgf")):
        species = mgf.name.removesuffix("_V1.mgf")
        try:
            read = read_mgf(mgf)
        except PolyrankError as exc:  # unreadable as a whole (not text, no spectrum): report it, go on
            print(f"{species}: {exc}")
            problems += 1
            continue
        line = f"{species}: {len(read.spectra)} spectra, {len(read.errors)} bad records"
        problems += len(read.errors)
        pickle_path = folder / f"{species}_6m_V1.pkl"
        if pickle_path.is_file():
            cands = read_candidate_pickle(pickle_path)
            if len(cands.rows) != len(read.spectra):
                problems += 1
                line += f"; MISALIGNED: {len(cands.rows)} candidate lists"
            else:
                wrong = sum(parse_peptide(s.peptide) != parse_peptide(t) for s, t in zip(read.spectra, cands.truths)
                            if s.peptide)
                problems += wrong
                line += f"; {len(cands.rows)} candidate lists, {wrong} SEQ/true mismatches"
        print(line)
    return problems


if __name__ == "__main__":
    from polyrank.shared.reproduce import data_dir

    root = Path(sys.argv[1]) if len(sys.argv) > 1 else (data_dir() or Path("../shared/data")) / "nine_species"
    sys.exit(1 if validate(root) else 0)
