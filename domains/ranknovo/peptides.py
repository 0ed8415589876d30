"""Peptide notation: one parser for Casanovo mass tags, ProForma names/deltas and N-terminal mods.

Every notation is parsed into the same **canonical tokens**, the Casanovo-v4 / RankNovo mass-tag keys
(``"M+15.995"``, ``"C+57.021"``, N-terminal ``"+42.011"`` ... as the first token) so that masses,
labels (PMD/RMD) and metrics see one vocabulary:

==========================  ===========================================
notation                    example
==========================  ===========================================
Casanovo v4 mass tags       ``+43.006-17.027PEPM+15.995C+57.021K``
ProForma names (v5)         ``[Acetyl]-PEPM[Oxidation]C[Carbamidomethyl]K``
ProForma deltas             ``[+42.011]-PEPM[+15.995]K``
==========================  ===========================================

Named modifications are mapped to mass deltas **offline** (pyteomics' ProForma resolver would fetch
Unimod); unknown residues or modifications raise :class:`PeptideError` naming the culprit.

Masses: :data:`REFERENCE_MASSES` is RankNovo's own residue table (``MassAgent.residual_to_mass`` in
``RankNovo/msa/tokenizer.py``, 6-decimal values of Casanovo's config), used by default so labels match the
reference exactly (e.g. the combined N-terminal ``+43.006-17.027`` is 25.980265, not the 25.979265 sum of
the two deltas). :func:`mass_table` ``("pyteomics")`` gives pyteomics' monoisotopic masses instead.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import lru_cache

from polyrank.shared.errors import PolyrankError
from polyrank.shared.extras import require

#: RankNovo's residue masses (Da), keyed by canonical token. Plain ``C`` is free cysteine (absent from
#: the reference table, which only ever sees ``C+57.021``).
REFERENCE_MASSES: dict[str, float] = {
    "G": 57.021464, "A": 71.037114, "S": 87.032028, "P": 97.052764, "V": 99.068414, "T": 101.047670,
    "C": 103.009185, "C+57.021": 160.030649, "L": 113.084064, "I": 113.084064, "N": 114.042927,
    "D": 115.026943, "Q": 128.058578, "K": 128.094963, "E": 129.042593, "M": 131.040485,
    "H": 137.058912, "F": 147.068414, "R": 156.101111, "Y": 163.063329, "W": 186.079313,
    "M+15.995": 147.035400, "N+0.984": 115.026943, "Q+0.984": 129.042594,
    "+42.011": 42.010565, "+43.006": 43.005814, "-17.027": -17.026549, "+43.006-17.027": 25.980265,
}

#: N-terminal modification tokens (they come first and carry no residue).
N_TERM_TOKENS = ("+42.011", "+43.006", "-17.027", "+43.006-17.027")
#: RankNovo's single-character marks for modified tokens (``MassAgent.ptm_to_mark``).
PTM_MARKS = {"C+57.021": "0", "M+15.995": "1", "N+0.984": "2", "Q+0.984": "3", "+42.011": "4",
             "+43.006-17.027": "5", "+43.006": "6", "-17.027": "7"}

# Named modifications (Unimod names as Casanovo v5 writes them) -> mass-tag suffix, per site.
_NAMED = {
    ("C", "carbamidomethyl"): "+57.021", ("M", "oxidation"): "+15.995",
    ("N", "deamidated"): "+0.984", ("Q", "deamidated"): "+0.984", ("N", "deamidation"): "+0.984",
    ("Q", "deamidation"): "+0.984",
    ("", "acetyl"): "+42.011", ("", "carbamyl"): "+43.006", ("", "carbamylation"): "+43.006",
    ("", "ammonia-loss"): "-17.027", ("", "ammonia loss"): "-17.027",
}
_DELTA_TOL = 0.01  # Da, to recognise ``[+15.9949]`` as ``+15.995``
_TAG = re.compile(r"[+-]\d+(?:\.\d+)?")
_AA = set("GASPVTCLINDQKEMHFRYW")


class PeptideError(PolyrankError, ValueError):
    """A peptide string holds a residue or modification the vocabulary does not know."""


def _known_mods(site: str) -> list[str]:
    if not site:
        return list(N_TERM_TOKENS)
    return sorted(t for t in REFERENCE_MASSES if t.startswith(site) and len(t) > 1)


def _mod_token(site: str, mod: str, peptide: str) -> str:
    """Canonical token for modification text ``mod`` (name, ``+delta`` or mass tag) on ``site``."""
    name = mod.strip().lower()
    if (site, name) in _NAMED:
        return site + _NAMED[(site, name)]
    if _TAG.fullmatch(mod.strip()) or re.fullmatch(r"([+-]\d+(?:\.\d+)?)+", mod.strip()):
        delta = sum(float(x) for x in _TAG.findall(mod))
        for token in _known_mods(site):
            base = REFERENCE_MASSES[site] if site else 0.0
            if abs(REFERENCE_MASSES[token] - base - delta) < _DELTA_TOL:
                return token
    where = f"residue {site}" if site else "the N-terminus"
    raise PeptideError(f"unknown modification {mod!r} on {where} in peptide {peptide!r}; known: "
                       f"{_known_mods(site) or 'none'} (names: Oxidation, Carbamidomethyl, Deamidated, "
                       "Acetyl, Carbamyl, Ammonia-loss); add it to ranknovo.peptides.REFERENCE_MASSES")


def _n_term(peptide: str) -> tuple[list[str], int]:
    """Parse a leading N-terminal modification; returns (tokens, characters consumed)."""
    proforma = re.match(r"((?:\[[^\]]+\])+)-", peptide)
    if proforma:
        mods = [_mod_token("", m, peptide) for m in re.findall(r"\[([^\]]+)\]", proforma.group(1))]
        return [_mod_token("", "".join(mods), peptide) if len(mods) > 1 else mods[0]], proforma.end()
    tag = re.match(r"(?:[+-]\d+\.\d+)+", peptide)
    if tag:
        return [_mod_token("", tag.group(0), peptide)], tag.end()
    return [], 0


@lru_cache(maxsize=200_000)
def _parse_cached(peptide: str) -> tuple[str, ...]:
    tokens, pos = _n_term(peptide)
    while pos < len(peptide):
        site = peptide[pos]
        if site not in _AA:
            raise PeptideError(f"unknown residue {site!r} at position {pos + 1} of peptide {peptide!r}; "
                               f"expected one of {''.join(sorted(_AA))}, optionally followed by a "
                               "modification such as M+15.995, M[Oxidation] or M[+15.995]")
        pos += 1
        bracket = re.match(r"\[([^\]]+)\]", peptide[pos:])
        tag = None if bracket else re.match(r"[+-]\d+\.\d+", peptide[pos:])
        if bracket or tag:
            mod = bracket.group(1) if bracket else tag.group(0)
            tokens.append(_mod_token(site, mod, peptide))
            pos += (bracket or tag).end()
        else:
            tokens.append(site)
    return tuple(tokens)


def parse_peptide(peptide: str | Sequence[str]) -> list[str]:
    """Canonical tokens of a peptide in any supported notation (a token list passes through, checked).

    >>> parse_peptide("[Acetyl]-PEM[Oxidation]K")
    ['+42.011', 'P', 'E', 'M+15.995', 'K']
    >>> parse_peptide("+42.011PEM+15.995K") == parse_peptide("[+42.011]-PEM[+15.995]K")
    True
    """
    if isinstance(peptide, str):
        return list(_parse_cached(peptide.strip()))
    unknown = [t for t in peptide if t not in REFERENCE_MASSES]
    if unknown:
        raise PeptideError(f"unknown tokens {unknown} in {list(peptide)}; expected keys of REFERENCE_MASSES")
    return list(peptide)


def to_mass_tags(tokens: Sequence[str]) -> str:
    """Casanovo-v4 mass-tag string (the reference pickle notation) of canonical tokens."""
    return "".join(tokens)


_PROFORMA_NAMES = {"+57.021": "Carbamidomethyl", "+15.995": "Oxidation", "+0.984": "Deamidated",
                   "+42.011": "Acetyl", "+43.006": "Carbamyl", "-17.027": "Ammonia-loss",
                   "+43.006-17.027": "+25.980265"}


def to_proforma(tokens: Sequence[str]) -> str:
    """Casanovo-v5 ProForma string of canonical tokens (``[Acetyl]-PEM[Oxidation]K``)."""
    out = []
    for i, token in enumerate(tokens):
        if i == 0 and token in N_TERM_TOKENS:
            out.append(f"[{_PROFORMA_NAMES[token]}]-")
        elif len(token) > 1:
            out.append(f"{token[0]}[{_PROFORMA_NAMES[token[1:]]}]")
        else:
            out.append(token)
    return "".join(out)


def to_marks(tokens: Sequence[str], i_to_l: bool = True) -> str:
    """RankNovo's one-character-per-token string (mods -> ``0``..``7``; I -> L for the MSA)."""
    chars = [PTM_MARKS.get(t, t) for t in tokens]
    return "".join("L" if (c == "I" and i_to_l) else c for c in chars)


@lru_cache(maxsize=4)
def _pyteomics_masses() -> dict[str, float]:
    mass = require("pyteomics.mass", extra="peptide")

    delta = {"+57.021": "H3C2NO", "+15.995": "O", "+0.984": "H-1N-1O", "+42.011": "H2C2O", "+43.006": "HCNO",
             "-17.027": "H-3N-1"}
    d = {k: mass.calculate_mass(formula=f) for k, f in delta.items()}
    out = {aa: mass.std_aa_mass[aa] for aa in "GASPVTCLINDQKEMHFRYW"}
    for token in REFERENCE_MASSES:
        if len(token) > 1 and token[0] in _AA:
            out[token] = out[token[0]] + d[token[1:]]
    for token in N_TERM_TOKENS:
        out[token] = sum(d[t] for t in _TAG.findall(token))
    return out


def mass_table(name: str | Mapping[str, float] = "reference") -> dict[str, float]:
    """Residue masses by canonical token: ``"reference"`` (RankNovo's table) or ``"pyteomics"``."""
    if isinstance(name, Mapping):
        return dict(name)
    if name == "reference":
        return dict(REFERENCE_MASSES)
    if name == "pyteomics":
        return dict(_pyteomics_masses())
    raise PolyrankError(f"unknown mass table {name!r}; expected 'reference' or 'pyteomics' (or a dict)")


def peptide_mass(tokens: Sequence[str], table: str | Mapping[str, float] = "reference") -> float:
    """Neutral monoisotopic peptide mass (residues + H2O)."""
    masses = mass_table(table)
    return sum(masses[t] for t in tokens) + 18.010565
