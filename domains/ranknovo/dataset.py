"""Examples, batching and the (clearly SIMULATED) training sets of RankNovo.

An :class:`Example` is one spectrum with its candidate peptides (one per base model) and, for training,
its true peptide. :func:`collate` preprocesses the peaks (``spectra.preprocess``), pads them into
``(B, P, 2)``, builds the precursor tensor ``(B, 3) = [neutral mass, charge, m/z]`` and the candidate MSA
with PMD/RMD labels (``msa.build_msa``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import Dataset

from polyrank.domains.ranknovo.msa import MSABatch, build_msa
from polyrank.domains.ranknovo.simulate import NoisyBaseModel, simulate_spectrum
from polyrank.domains.ranknovo.spectra import Spectrum, preprocess


@dataclass
class Example:
    spectrum: Spectrum
    candidates: list[str | None]
    truth: str | None = None


@dataclass
class Batch:
    spectra: torch.Tensor  # (B, P, 2)
    precursors: torch.Tensor  # (B, 3)
    msa: MSABatch
    candidates: list[list[str | None]] = field(default_factory=list)

    def to(self, device: torch.device | str) -> Batch:
        msa = MSABatch(*(t.to(device) if t is not None else None for t in
                         (self.msa.tokens, self.msa.pmd, self.msa.rmd, self.msa.rmd_mask)))
        return Batch(self.spectra.to(device), self.precursors.to(device), msa, self.candidates)


def spectra_tensor(spectra: Sequence[Spectrum], n_peaks: int = 300,
                   **preprocess_kwargs: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Preprocessed, zero-padded peaks ``(B, P, 2)`` and precursors ``(B, 3)``."""
    peaks = [preprocess(s.mz, s.intensity, s.precursor_mz, s.charge, n_peaks=n_peaks, **preprocess_kwargs)
             for s in spectra]
    out = torch.zeros(len(peaks), max((len(p) for p in peaks), default=1), 2)
    for b, p in enumerate(peaks):
        out[b, :len(p)] = torch.from_numpy(p)
    precursors = torch.tensor([[s.precursor_mass, s.charge, s.precursor_mz] for s in spectra],
                              dtype=torch.float32)
    return out, precursors


def collate(examples: Sequence[Example], n_peaks: int = 300, mass_table: str = "reference",
            max_length: int = 100, with_labels: bool = True) -> Batch:
    """Batch examples; labels are computed when every example has a true peptide and ``with_labels``."""
    spectra, precursors = spectra_tensor([e.spectrum for e in examples], n_peaks)
    truths = [e.truth for e in examples]
    labelled = with_labels and all(t is not None for t in truths)
    msa = build_msa([e.candidates for e in examples], truths if labelled else None, mass_table,
                    max_length=max_length)
    return Batch(spectra, precursors, msa, [list(e.candidates) for e in examples])


class ExampleDataset(Dataset):
    """A list of :class:`Example` as a torch dataset."""

    def __init__(self, examples: Sequence[Example]) -> None:
        self.examples = list(examples)

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> Example:
        return self.examples[index]


DEFAULT_BASE_MODELS = tuple(NoisyBaseModel(f"sim-{name}", acc) for name, acc in
                            zip("ABCDEF", (0.45, 0.55, 0.65, 0.5, 0.6, 0.7)))


def simulated_examples(peptides: Sequence[str], n: int, seed: int = 0,
                       base_models: Sequence[NoisyBaseModel] = DEFAULT_BASE_MODELS,
                       charges: Sequence[int] = (2, 2, 2, 3)) -> list[Example]:
    """SIMULATED training examples: a synthetic spectrum of a random peptide, noisy base-model candidates."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        truth = peptides[int(rng.integers(len(peptides)))]
        charge = int(charges[rng.integers(len(charges))])
        spectrum = simulate_spectrum(truth, charge, rng, title=f"simulated-{i}")
        candidates = ["".join(m.predict(truth, rng)) for m in base_models]
        out.append(Example(spectrum, candidates, truth))
    return out
