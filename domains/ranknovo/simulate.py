"""SIMULATION (not real base-model output): tryptic peptides, decoy candidates and synthetic spectra.

No base-model checkpoints (Casanovo, ContraNovo, ByNovo...) are reachable offline, so training data and
test candidates are **simulated** here and labelled as such wherever they are used:

- :func:`tryptic_peptides`: fully tryptic peptides of a FASTA (pyteomics ``parser.cleave``);
- :func:`decoy`: realistic wrong candidates of a true peptide: isobaric / near-isobaric swaps (I/L, N/GG,
  Q/AG, K/Q, F/M(ox)), adjacent transpositions and single substitutions;
- :class:`NoisyBaseModel`: a "base model" that returns the truth with probability ``accuracy``, else a decoy;
- :func:`simulate_spectrum`: a b/y fragment ladder (ion offsets from pyteomics ``mass.fast_mass``) with
  missing fragments, m/z jitter and noise peaks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from polyrank.domains.ranknovo.peptides import REFERENCE_MASSES, parse_peptide
from polyrank.domains.ranknovo.spectra import PROTON, Spectrum
from polyrank.shared.extras import require

_PLAIN = [aa for aa in "GASPVTLNDQKEMHFRYW"]
# Isobaric and near-isobaric rewrites (pattern -> replacement), applied at one random site.
_SWAPS = [(["I"], ["L"]), (["L"], ["I"]), (["N"], ["G", "G"]), (["G", "G"], ["N"]), (["Q"], ["A", "G"]),
          (["Q"], ["G", "A"]), (["A", "G"], ["Q"]), (["G", "A"], ["Q"]), (["K"], ["Q"]), (["Q"], ["K"]),
          (["F"], ["M+15.995"]), (["M+15.995"], ["F"])]
DECOY_KINDS = ("isobaric", "transpose", "substitute")


def read_fasta(path: str | Path) -> list[str]:
    """Protein sequences of a FASTA file (pyteomics)."""
    fasta = require("pyteomics.fasta", extra="peptide")

    with fasta.read(str(path)) as entries:
        return [seq for _, seq in entries]


def tryptic_peptides(proteins: Sequence[str], min_length: int = 7, max_length: int = 20,
                     missed_cleavages: int = 0) -> list[str]:
    """Unique fully tryptic peptides of standard residues; C is written carbamidomethylated (``C+57.021``)."""
    parser = require("pyteomics.parser", extra="peptide")

    peptides: set[str] = set()
    for protein in proteins:
        peptides |= parser.cleave(protein, parser.expasy_rules["trypsin"], missed_cleavages,
                                  min_length=min_length, max_length=max_length)
    ok = set("GASPVTCLINDQKEMHFRYW")
    return sorted(p.replace("C", "C+57.021") for p in peptides if set(p) <= ok)


def _swap(tokens: list[str], rng: np.random.Generator) -> list[str] | None:
    sites = [(i, old, new) for old, new in _SWAPS for i in range(len(tokens) - len(old) + 1)
             if tokens[i:i + len(old)] == old]
    if not sites:
        return None
    i, old, new = sites[rng.integers(len(sites))]
    return tokens[:i] + new + tokens[i + len(old):]


def _transpose(tokens: list[str], rng: np.random.Generator) -> list[str] | None:
    def differs(i: int) -> bool:  # I/L (same mass) swaps are no decoys; N-terminal mods stay first
        return abs(REFERENCE_MASSES[tokens[i]] - REFERENCE_MASSES[tokens[i + 1]]) > 0.01 and \
            tokens[i] not in ("+42.011", "+43.006", "-17.027", "+43.006-17.027")

    sites = [i for i in range(len(tokens) - 1) if differs(i)]
    if not sites:
        return None
    i = sites[rng.integers(len(sites))]
    return tokens[:i] + [tokens[i + 1], tokens[i]] + tokens[i + 2:]


def _substitute(tokens: list[str], rng: np.random.Generator) -> list[str]:
    i = int(rng.integers(len(tokens)))
    choices = [aa for aa in _PLAIN if aa != tokens[i]]
    return tokens[:i] + [choices[rng.integers(len(choices))]] + tokens[i + 1:]


def decoy(peptide: str | Sequence[str], rng: np.random.Generator, kind: str | None = None) -> list[str]:
    """A wrong candidate for ``peptide`` (canonical tokens), of ``kind`` (random among DECOY_KINDS if None).

    Falls back to a substitution when the chosen rewrite has no site (e.g. no N/GG/Q/K/F in the peptide).
    """
    tokens = parse_peptide(peptide)
    kind = kind or DECOY_KINDS[rng.integers(len(DECOY_KINDS))]
    if kind not in DECOY_KINDS:
        raise ValueError(f"unknown decoy kind {kind!r}; expected one of {DECOY_KINDS}")
    out = None
    if kind == "isobaric":
        out = _swap(tokens, rng)
    elif kind == "transpose":
        out = _transpose(tokens, rng)
    return out if out is not None else _substitute(tokens, rng)


@dataclass(frozen=True)
class NoisyBaseModel:
    """SIMULATED base model: the true peptide with probability ``accuracy``, else a decoy (1-2 edits)."""

    name: str
    accuracy: float
    kinds: tuple[str, ...] = DECOY_KINDS

    def predict(self, truth: str | Sequence[str], rng: np.random.Generator) -> list[str]:
        tokens = parse_peptide(truth)
        if rng.random() < self.accuracy:
            return tokens
        out = decoy(tokens, rng, self.kinds[rng.integers(len(self.kinds))])
        if rng.random() < 0.3:
            out = decoy(out, rng, self.kinds[rng.integers(len(self.kinds))])
        return out


def _ion_offsets() -> tuple[float, float]:
    """b and y ion (1+) offsets over the residue sum, from pyteomics (``fast_mass('')`` = ion cap only)."""
    mass = require("pyteomics.mass", extra="peptide")

    return mass.fast_mass("", ion_type="b", charge=1), mass.fast_mass("", ion_type="y", charge=1)


def fragment_ladders(peptide: str | Sequence[str], charge: int = 1) -> dict[str, np.ndarray]:
    """m/z of b1..b(n-1) and y1..y(n-1) at ``charge`` (N-terminal mods ride on the b ions)."""
    tokens = parse_peptide(peptide)
    masses = np.array([REFERENCE_MASSES[t] for t in tokens])
    b_off, y_off = _ion_offsets()
    n_term = 1 if tokens and tokens[0] in ("+42.011", "+43.006", "-17.027", "+43.006-17.027") else 0
    prefix = np.cumsum(masses)[n_term:-1]
    suffix = np.cumsum(masses[::-1])[:len(masses) - n_term - 1]
    b = (prefix + b_off - PROTON + charge * PROTON) / charge
    y = (suffix + y_off - PROTON + charge * PROTON) / charge
    return {"b": b, "y": y}


def simulate_spectrum(peptide: str | Sequence[str], charge: int, rng: np.random.Generator,
                      missing: float = 0.3, n_noise: int = 20, jitter: float = 0.005,
                      title: str = "") -> Spectrum:
    """SIMULATED spectrum of ``peptide``: b/y ladders (1+, and 2+ for charge >= 3) with noise peaks."""
    tokens = parse_peptide(peptide)
    neutral = sum(REFERENCE_MASSES[t] for t in tokens) + 18.010565
    mzs, intensities = [], []
    for z in (1, 2) if charge >= 3 else (1,):
        for ion, scale in (("b", 0.5), ("y", 1.0)):
            ladder = fragment_ladders(tokens, z)[ion]
            keep = rng.random(len(ladder)) > (missing if z == 1 else 0.7)
            mzs.append(ladder[keep])
            intensities.append(scale * rng.lognormal(0.0, 0.5, int(keep.sum())))
    noise = int(rng.poisson(n_noise))
    mzs.append(rng.uniform(50.0, max(100.0, neutral), noise))
    intensities.append(0.3 * rng.lognormal(-1.0, 0.7, noise))
    mz = np.concatenate(mzs) + rng.normal(0.0, jitter, sum(len(m) for m in mzs))
    order = np.argsort(mz)
    return Spectrum(mz[order], np.concatenate(intensities)[order], neutral / charge + PROTON, charge, title,
                    "".join(tokens))
