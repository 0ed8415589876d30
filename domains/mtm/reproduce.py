"""``polyrank reproduce configs/mtm/{twitter,weibo}.yaml``: MTM's full setting on its own releases.

Needs the release folder (``raw/FN_*.json``, ``raw/DN_*.json``, ``splits/data/top50.*``; the Twitter
train split and the Weibo data are not in the repository copy: see ``datasets/mtm_*/README.md``) and a
local BERT checkpoint (``bert-base-uncased`` / ``bert-base-chinese`` directory). Trains ROT, initialises
the PMB, trains MTM and reports the test split's MRR, MAP@k and HIT@k (BM25 figures go to the log).
Relevance follows the reference's ``model/evaluation.py``: the debunking articles among each claim's 50
candidates (``relevant="in_candidates"``); ``relevant="all"`` counts every debunking article.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from polyrank.shared.reproduce import Reproduction, data_dir

logger = logging.getLogger(__name__)


class MTMRow(Reproduction):
    """One dataset row of MTM's Table 2 (hyper-parameters of ``model/ckpts/*/args.txt``).

    Args:
        dataset: release folder name under ``$POLYRANK_DATA_DIR/factcheck/mtm`` (``Twitter``/``Weibo``).
        data_path: the release folder itself (overrides ``dataset``'s default location).
        backbone: a local BERT checkpoint directory (``"tiny"``/``"minilm"`` for smoke runs).
        n_key_sentences: key sentences per article (5 Twitter, 3 Weibo).
        lr: matcher learning rate.
        batch_size: training pairs per batch.
        epochs: matcher epochs.
        balanced_sampling: class-balanced sampling of training pairs (Twitter).
        rot_l2: ROT's L2 pull to its initial weights (0.05 Twitter, 0.01 Weibo).
        rot_epochs: ROT epochs.
        rot_max_pairs: cap on ROT's training pairs (None: all, the reference).
        language: ``"en"`` word-level or ``"zh"`` character-level BM25.
        relevant: ``"in_candidates"`` (the reference: relevant = debunking articles among the 50 candidates,
            the MAP@k denominator) or ``"all"`` (every debunking article of the claim).
        out_dir: where the training runs go (one sub-folder per dataset).
    """

    def __init__(self, dataset: str = "Twitter", data_path: str | None = None, backbone: str = "bert-base-uncased",
                 n_key_sentences: int = 5, lr: float = 5e-6, batch_size: int = 16, epochs: int = 10,
                 balanced_sampling: bool = True, rot_l2: float = 0.05, rot_epochs: int = 10,
                 rot_max_pairs: int | None = None, language: str = "en",
                 relevant: Literal["in_candidates", "all"] = "in_candidates",
                 out_dir: str = "runs/reproduce/mtm") -> None:
        self.dataset, self.backbone, self.language, self.relevant = dataset, backbone, language, relevant
        self.path = Path(data_path) if data_path else ((data_dir() or Path("missing")) / "factcheck" / "mtm" / dataset)
        self.model_args = dict(backbone=backbone, n_key_sentences=n_key_sentences, lr=lr, rot_l2=rot_l2,
                               rot_epochs=rot_epochs, rot_max_pairs=rot_max_pairs)
        self.batch_size, self.epochs, self.balanced = batch_size, epochs, balanced_sampling
        self.out_dir = Path(out_dir) / dataset

    def missing(self) -> list[str]:
        out = []
        split_dir = self.path / "splits" / "data"
        for pattern in ("FN_*.json", "DN_*.json"):
            if not list((self.path / "raw").glob(pattern)) and not list(self.path.glob(pattern)):
                out.append(f"{self.path}/raw/{pattern} (MTM {self.dataset} release)")
        for name in ("top50.train.line", "top50.test"):
            if not (split_dir / name).is_file():
                out.append(f"{split_dir / name}")
        if self.backbone not in ("tiny", "minilm") and not (Path(self.backbone) / "config.json").is_file():
            out.append(f"local BERT checkpoint directory {self.backbone} (config.json, weights, vocab)")
        return out

    def run(self) -> dict[str, float]:
        from polyrank.domains.mtm.datamodule import MTMDataModule
        from polyrank.domains.mtm.train import compare_bm25_mtm, fit_mtm

        dm = MTMDataModule(source="mtm", path=str(self.path), backbone=self.backbone, language=self.language,
                           batch_size=self.batch_size, balanced_sampling=self.balanced)
        module = fit_mtm(dm, self.out_dir, self.model_args, dict(max_epochs=self.epochs, monitor="val/loss"))
        results = compare_bm25_mtm(module, dm, "test", relevant=self.relevant)
        logger.info("BM25 on the %s test split (relevant=%s): %s", self.dataset, self.relevant, results["BM25"])
        return results["MTM"]
