"""RankNovo as a polyrank :class:`Reranker` and the ``rerank(spectra, candidates)`` API.

Query = a :class:`~polyrank.domains.ranknovo.spectra.Spectrum`; candidates = peptide strings (any
notation). ``score = -predicted PMD``, so the shared ``rank`` puts the lowest predicted PMD first (the
reference's ``argmin``); ``explain`` gives the predicted RMD of each residue. Works zero-shot with any
number of candidates (no row embedding), e.g. a different number or set of base models.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polyrank.domains.ranknovo.dataset import Example, collate
from polyrank.domains.ranknovo.model import RankNovo
from polyrank.domains.ranknovo.peptides import parse_peptide
from polyrank.domains.ranknovo.spectra import Spectrum
from polyrank.shared.atomic import atomic_directory
from polyrank.shared.errors import PolyrankError
from polyrank.shared.protocol import Candidate, Reranker
from polyrank.shared.registry import write_manifest

WEIGHTS, CONFIG = "model.safetensors", "config.json"


@dataclass
class RerankResult:
    """One spectrum: index of the pick, the pick, predicted PMD per candidate, predicted RMD per residue."""

    pick_index: int
    pick: str | None
    pmd: np.ndarray  # (N,), inf for missing candidates
    rmd: list[np.ndarray | None]


class RankNovoReranker(Reranker):
    """Inference wrapper: batches spectra, builds MSAs, runs the network under ``torch.inference_mode``."""

    name = "ranknovo"

    def __init__(self, model: RankNovo, config: Mapping[str, Any], registry_name: str = "ranknovo.tiny",
                 device: str | torch.device = "cpu", batch_size: int = 64, n_peaks: int = 300,
                 bf16: bool = False) -> None:
        self.model = model.to(device).eval()
        self.config = dict(config)
        self.registry_name = registry_name
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.n_peaks = n_peaks
        self.bf16 = bf16  # autocast matmuls to bfloat16 (CUDA); masses and sinusoids stay float32

    def rerank(self, spectra: Sequence[Spectrum],
               candidates: Sequence[Sequence[str | None]]) -> list[RerankResult]:
        """Pick the lowest-predicted-PMD candidate of each spectrum (``None`` candidates never win)."""
        if len(spectra) != len(candidates):
            raise PolyrankError(f"{len(spectra)} spectra but {len(candidates)} candidate lists; "
                                "they must align")
        results: list[RerankResult] = []
        for start in range(0, len(spectra), self.batch_size):
            examples = [Example(s, list(c)) for s, c in zip(spectra[start:start + self.batch_size],
                                                              candidates[start:start + self.batch_size])]
            results.extend(self._rerank_batch(examples))
        return results

    @torch.inference_mode()
    def _rerank_batch(self, examples: Sequence[Example]) -> list[RerankResult]:
        table = self.config.get("mass_table", "reference")
        batch = collate(examples, self.n_peaks, table, self.model.max_length, with_labels=False)
        batch = batch.to(self.device)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            out = self.model(batch.spectra, batch.precursors, batch.msa.tokens)
        pmd, rmd = out["pmd"].cpu().numpy(), out["rmd"].cpu().float().numpy()
        results = []
        for b, ex in enumerate(examples):
            n = len(ex.candidates)
            scores = pmd[b, :n]
            lengths = [None if c is None or not str(c).strip() else len(parse_peptide(c))
                       for c in ex.candidates]
            per_residue = [None if ln is None else rmd[b, k, 1:1 + ln].copy() for k, ln in enumerate(lengths)]
            if not n or np.all(np.isinf(scores)):
                results.append(RerankResult(-1, None, scores, per_residue))
                continue
            k = int(np.argmin(scores))
            results.append(RerankResult(k, ex.candidates[k], scores, per_residue))
        return results

    def score(self, query: Spectrum, candidates: Sequence[Candidate]) -> np.ndarray:
        return self.score_batch([query], [candidates])[0]

    def score_batch(self, queries: Sequence[Spectrum],
                    candidate_lists: Sequence[Sequence[Candidate]]) -> list[np.ndarray]:
        results = self.rerank(list(queries), [[c.content for c in cands] for cands in candidate_lists])
        return [_finite_scores(-r.pmd) for r in results]

    def explain(self, query: Spectrum, candidates: Sequence[Candidate]) -> list[Mapping[str, Any] | None]:
        return self.score_and_explain(query, candidates)[1]

    def score_and_explain(self, query: Spectrum, candidates: Sequence[Candidate]
                          ) -> tuple[np.ndarray, list[Mapping[str, Any] | None]]:
        """Scores (-PMD) and per-residue RMD evidence from one forward pass."""
        result = self.rerank([query], [[c.content for c in candidates]])[0]
        evidence = [None if result.rmd[k] is None else
                    {"predicted_pmd": float(result.pmd[k]), "tokens": parse_peptide(c.content),
                     "predicted_rmd": result.rmd[k].tolist()} for k, c in enumerate(candidates)]
        return _finite_scores(-result.pmd), evidence

    def save(self, directory: str | Path) -> Path:
        """Weights (safetensors) + architecture config + polyrank manifest, written atomically."""
        from safetensors.torch import save_file

        with atomic_directory(directory) as tmp:
            save_file({k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()},
                      str(Path(tmp) / WEIGHTS))
            (Path(tmp) / CONFIG).write_text(json.dumps(self.config, indent=2, sort_keys=True))
            write_manifest(tmp, self.registry_name)
        return Path(directory)


ARCH_KEYS = ("dim_model", "n_head", "dim_feedforward", "n_layers", "dropout", "max_length", "max_charge",
             "use_col", "mass_table")
RERANKER_KEYS = ("batch_size", "n_peaks", "bf16")


def build_reranker(config: Mapping[str, Any], registry_name: str, checkpoint: str | None = None,
                   device: str = "cpu", seed: int = 0, **kwargs: Any) -> RankNovoReranker:
    """A reranker from an architecture ``config``; ``checkpoint``: a saved directory or a ``.ckpt``/``.pt``.

    The architecture comes from the checkpoint when it records one (``config.json`` of a saved directory,
    the ``hparams`` of a ``polyrank fit`` checkpoint, the shapes of the authors' checkpoint), so the model
    holds exactly the stored weights; any missing, unexpected or misshapen key is an error naming it.
    Random weights (no checkpoint) are drawn from a private generator seeded with ``seed``: building never
    touches the global RNG.
    """
    from polyrank.domains.ranknovo.checkpoints import check_buffers, convert_reference_state_dict, load_exact

    config = {k: v for k, v in config.items() if k in ARCH_KEYS}
    state, buffers, source = None, None, None
    if checkpoint is not None:
        config, state, buffers, source = _load_checkpoint(Path(checkpoint), config)
        if buffers is None and source.startswith("reference"):
            state, buffers = convert_reference_state_dict(state)
    with torch.random.fork_rng(devices=[]):  # random init must not advance the caller's RNG
        torch.random.default_generator.manual_seed(seed)  # CPU generator only; restored on exit
        model = RankNovo(**config)
    if state is not None:
        if buffers:
            check_buffers(model, buffers, source)
        load_exact(model, state, source)
    return RankNovoReranker(model, config, registry_name, device, **kwargs)


def _load_checkpoint(path: Path, config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, torch.Tensor],
                                                                  dict[str, torch.Tensor] | None, str]:
    """``(architecture, weights, reference buffers or None, description)`` of a checkpoint path."""
    from polyrank.domains.ranknovo.checkpoints import read_checkpoint, reference_architecture

    if path.is_dir():
        from safetensors.torch import load_file

        if not (path / WEIGHTS).is_file():
            raise PolyrankError(f"{path} has no {WEIGHTS}; expected a directory written by "
                                "RankNovoReranker.save")
        saved = json.loads((path / CONFIG).read_text()) if (path / CONFIG).is_file() else {}
        arch = {**config, **{k: v for k, v in saved.items() if k in ARCH_KEYS}}
        return arch, load_file(str(path / WEIGHTS)), {}, f"saved RankNovo {path}"
    if not path.is_file():
        raise PolyrankError(f"checkpoint {path} does not exist")
    state, hparams, layout = read_checkpoint(path)
    if layout == "reference":  # the authors' Spec2Pep: architecture from the weights' shapes
        arch = reference_architecture(state, hparams, n_head=int(config.get("n_head", 8)))
        return {**config, **arch}, state, None, f"reference checkpoint {path}"
    return {**config, **{k: v for k, v in hparams.items() if k in ARCH_KEYS}}, state, {}, f"checkpoint {path}"


def _finite_scores(scores: np.ndarray) -> np.ndarray:
    """Empty/invalid candidates (PMD = inf) rank just below the lowest real candidate, keeping scores finite."""
    finite = np.isfinite(scores)
    if finite.all():
        return scores
    floor = scores[finite].min() - 1.0 if finite.any() else 0.0
    return np.where(finite, scores, floor)
