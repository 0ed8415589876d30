"""Candidates as an MSA (RankNovo ``msa/tokenizer.py``): vocabulary, padding and PMD/RMD labels.

The N candidates of a spectrum are the rows; each is right-padded with the gap token ``-`` to the
longest candidate (no real alignment) and ``<cls>`` is prepended at column 0. Batches of spectra with
fewer candidates or shorter MSAs are filled with ``<pad>``; a row that is all ``<pad>`` is a padded row
(masked everywhere, never picked).

Vocabulary (reference ``Alphabet``): ``<cls> <pad> <eos> <unk>``, residues with I mapped to L for the
MSA, the modification marks ``0``..``7``, ``.`` and ``-``, ``<null_i>`` fillers to a multiple of 8, then
``<mask>``. The reference vocabulary has no slot for plain (unmodified) ``C``; it takes the first filler
(``<null_1>``), so every other token keeps the reference's index and the authors' embedding table loads
row for row (``checkpoints.py``). A reference checkpoint never saw plain ``C``: that row is untrained there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from polyrank.domains.ranknovo.masses import UNIT_MASS, pmd_batch, rmd_batch
from polyrank.domains.ranknovo.peptides import PTM_MARKS, mass_table, parse_peptide

_RESIDUES = list("GASPVTLINDQKEMHFRYW") + list("01234567") + [".", "-"]  # reference msa/constants.py
REFERENCE_TOKENS = ["<cls>", "<pad>", "<eos>", "<unk>"] + _RESIDUES
REFERENCE_TOKENS += [f"<null_{i + 1}>" for i in range((8 - len(REFERENCE_TOKENS) % 8) % 8)] + ["<mask>"]
TOKENS = ["C" if t == "<null_1>" else t for t in REFERENCE_TOKENS]  # plain C in the first unused filler
TOKEN_INDEX = {t: i for i, t in enumerate(TOKENS)}
CLS, PAD, GAP = TOKEN_INDEX["<cls>"], TOKEN_INDEX["<pad>"], TOKEN_INDEX["-"]


def token_masses(table: str | Mapping[str, float] = "reference") -> torch.Tensor:
    """Residue mass (Da) of each vocabulary entry; special tokens and ``-`` weigh 0."""
    masses = mass_table(table)
    by_char = {PTM_MARKS.get(k, k): v for k, v in masses.items() if k in PTM_MARKS or len(k) == 1}
    return torch.tensor([by_char.get(t, 0.0) for t in TOKENS], dtype=torch.float64)


def encode(tokens: Sequence[str]) -> list[int]:
    """Vocabulary ids of canonical tokens (mods -> marks, I -> L)."""
    return [TOKEN_INDEX["L" if t == "I" else PTM_MARKS.get(t, t)] for t in tokens]


@dataclass
class MSABatch:
    """Model inputs (and labels when the truth is known) for B spectra with up to N candidates."""

    tokens: torch.Tensor  # (B, N, L+1) int64, <cls> at column 0
    pmd: torch.Tensor | None = None  # (B, N) PMD labels (units), 0 at padded rows
    rmd: torch.Tensor | None = None  # (B, N, L+1) RMD labels aligned after <cls>
    rmd_mask: torch.Tensor | None = None  # (B, N, L+1) True at real residues

    @property
    def row_mask(self) -> torch.Tensor:
        """(B, N) True for real candidate rows."""
        return self.tokens[:, :, 0] == CLS


def build_msa(candidates: Sequence[Sequence[str | Sequence[str] | None]],
              truths: Sequence[str | None] | None = None,
              table: str | Mapping[str, float] = "reference", unit: float = UNIT_MASS,
              max_length: int | None = None) -> MSABatch:
    """Tokenise candidate lists (one list per spectrum; ``None`` entries become padded rows) into an MSA.

    With ``truths``, PMD/RMD labels are computed in one batched call over every (candidate, truth) pair.
    ``max_length`` truncates candidates (the positional table holds ``max_length`` columns incl. ``<cls>``).
    """
    parsed = [[None if c is None or (isinstance(c, str) and not c.strip()) else parse_peptide(c) for c in row]
              for row in candidates]
    n_rows = max((len(r) for r in parsed), default=0)
    width = max((len(c) for r in parsed for c in r if c is not None), default=0)
    if max_length is not None:
        width = min(width, max_length - 1)
    tokens = torch.full((len(parsed), max(n_rows, 1), width + 1), PAD, dtype=torch.long)
    for b, row in enumerate(parsed):
        longest = min(max((len(c) for c in row if c is not None), default=0), width)
        for k, cand in enumerate(row):
            if cand is None:
                continue
            ids = encode(cand[:width])
            tokens[b, k, 0] = CLS
            tokens[b, k, 1:1 + len(ids)] = torch.tensor(ids, dtype=torch.long)
            tokens[b, k, 1 + len(ids):1 + longest] = GAP
    batch = MSABatch(tokens)
    if truths is not None:
        _add_labels(batch, parsed, truths, table, unit)
    return batch


def _add_labels(batch: MSABatch, parsed: list[list[list[str] | None]], truths: Sequence[str | None],
                table: str | Mapping[str, float], unit: float) -> None:
    masses = mass_table(table)
    pairs = [(b, k) for b, row in enumerate(parsed) for k, c in enumerate(row) if c is not None]
    if any(truths[b] is None for b, _ in pairs):
        raise ValueError("labels need a true peptide for every spectrum that has candidates")
    true_units = {b: np.array([masses[t] for t in parse_peptide(truths[b])]) / unit for b, _ in pairs}
    queries = [np.array([masses[t] for t in parsed[b][k]]) / unit for b, k in pairs]
    targets = [true_units[b] for b, _ in pairs]
    pmd = pmd_batch(queries, targets)
    rmd = rmd_batch(queries, targets)
    batch.pmd = torch.zeros(batch.tokens.shape[:2], dtype=torch.float32)
    batch.rmd = torch.zeros(batch.tokens.shape, dtype=torch.float32)
    batch.rmd_mask = torch.zeros(batch.tokens.shape, dtype=torch.bool)
    width = batch.tokens.shape[2] - 1
    for (b, k), value, residual in zip(pairs, pmd, rmd):
        batch.pmd[b, k] = float(value)
        n = min(len(residual), width)
        batch.rmd[b, k, 1:1 + n] = torch.from_numpy(residual[:n]).float()
        batch.rmd_mask[b, k, 1:1 + n] = True
