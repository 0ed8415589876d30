"""Paper rows of SuperGlobal (Shao et al., ICCV 2023, Tables 1-2) as polyrank reproductions.

Each ``configs/superglobal/<row>.yaml`` builds a :class:`SuperGlobalRow`: CVNet R50/R101 weights, the
stage-1 modules on or off, reranking on or off, ROxford5k or RParis6k, optionally +1M distractors.
It needs the official data layout (see ``datasets/roxford5k/README.md``) and the CVNet checkpoint.
Rankings go through the shared flow (``revisitop.evaluate``: ``CandidateStore.search_run`` -> ``rerank_run`` ->
the revisitop protocol on the ``Run``, with the standard ir-measures AP as ``AP_<protocol>`` beside it).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from polyrank.shared.reproduce import Reproduction, data_dir

logger = logging.getLogger(__name__)


class SuperGlobalRow(Reproduction):
    """One (backbone, modules, rerank, dataset, +1M) row; ``run()`` returns ``mAP_<protocol>`` and ``mP@k_<...>``.

    Args:
        dataset: ``roxford5k`` or ``rparis6k``.
        depth: 50 or 101 (the CVNet ResNet).
        checkpoint: CVNet checkpoint file; relative paths resolve under ``data_root``.
        data_root: folder holding ``roxford5k/``, ``rparis6k/``, ``revisitop1m/`` (default: ``data_dir()/revisitop``).
        modules: the stage-1 modules (GeM+, Regional-GeM, Scale-GeM, ReLU-up) on; off = CVNet's GeM, mean of scales.
        rerank: SuperGlobal stage-2 reranking with ``m``, ``k``, ``beta``.
        with_1m: add the R1M distractors (``revisitop1m/features_r<depth>.npy`` or images).
        exact_reference: reproduce the reference's always-on stage-1 ReLU-up quirk.
        cache: where descriptors are cached between rows (default ``<data_root>/cache``).
    """

    def __init__(self, dataset: Literal["roxford5k", "rparis6k"], depth: Literal[50, 101] = 50,
                 checkpoint: str = "CVPR2022_CVNet_R50.pyth", data_root: str | None = None, modules: bool = True,
                 rerank: bool = True, with_1m: bool = False, m: int = 400, k: int = 10, beta: float = 0.15,
                 exact_reference: bool = True, device: str | None = None, cache: str | None = None) -> None:
        shared = data_dir()
        self.root = Path(data_root) if data_root else (shared / "revisitop" if shared else Path("data/revisitop"))
        self.checkpoint = Path(checkpoint) if Path(checkpoint).is_absolute() else self.root / checkpoint
        self.dataset, self.depth, self.modules, self.rerank, self.with_1m = dataset, depth, modules, rerank, with_1m
        self.m, self.k, self.beta, self.exact_reference = m, k, beta, exact_reference
        self.device = device
        self.cache = Path(cache) if cache else self.root / "cache"

    @property
    def tag(self) -> str:
        """Cache key: every stage-1 setting that changes the descriptors."""
        return f"r{self.depth}_{'sg' if self.modules else 'base'}{'_quirk' if self.exact_reference else ''}"

    def missing(self) -> list[str]:
        needs = [self.root / self.dataset / f"gnd_{self.dataset}.pkl", self.root / self.dataset / "jpg",
                 self.checkpoint]
        if self.with_1m and not (self.root / "revisitop1m" / f"features_{self.tag}.npy").is_file():
            needs.append(self.root / "revisitop1m" / "revisitop1m.txt")
        return [f"{p} (see datasets/{self.dataset}/README.md)" for p in needs if not p.exists()]

    def run(self) -> dict[str, float]:
        import torch

        from polyrank.domains.superglobal import revisitop
        from polyrank.domains.superglobal.metrics import summary
        from polyrank.domains.superglobal.model import Stage1
        from polyrank.shared.registry import load

        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        stage1 = Stage1() if self.modules else Stage1.off()
        stage1_kw = {**stage1.__dict__, "relup_stage1_quirk": self.exact_reference}
        reranker = load(f"superglobal.r{self.depth}", checkpoint=str(self.checkpoint), device=device, **stage1_kw)
        extractor = reranker.extractor
        extractor.convert_mode = True  # OpenCV reads grayscale JPEGs as 3 channels in the reference
        desc = revisitop.extract_dataset(extractor, self.root, self.dataset, self.cache / self.tag)
        distractors = revisitop.distractor_features(self.root, self.tag, extractor) if self.with_1m else None
        results = revisitop.evaluate(desc, self.rerank, self.m, self.k, self.beta, distractors, device=device)
        return summary(results)
