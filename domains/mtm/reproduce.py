"""``polyrank reproduce configs/mtm/{twitter,weibo}.yaml``: MTM's full setting on its own releases.

Needs the release folder (``raw/FN_*.json``, ``raw/DN_*.json``, ``splits/data/top50.*``; the Twitter
train split and the Weibo data are not in the repository copy: see ``datasets/mtm_*/README.md``) and a
local BERT checkpoint (``bert-base-uncased`` / ``bert-base-chinese`` directory). Trains ROT, initialises
the PMB, trains MTM and reports the test split's MRR, MAP@k and HIT@k (BM25 figures go to the log).
"""

from __future__ import annotations

import logging
from pathlib import Path

from polyrank.shared.reproduce import Reproduction, data_dir

logger = logging.getLogger(__name__)


class MTMRow(Reproduction):
    """One dataset row of MTM's Table 2 (hyper-parameters of ``model/ckpts/*/args.txt``)."""

    def __init__(self, dataset: str = "Twitter", data_path: str | None = None, backbone: str = "bert-base-uncased",
                 n_key_sentences: int = 5, lr: float = 5e-6, batch_size: int = 16, epochs: int = 10,
                 balanced_sampling: bool = True, rot_l2: float = 0.05, rot_epochs: int = 10,
                 rot_max_pairs: int | None = None, language: str = "en", out_dir: str = "runs/reproduce/mtm") -> None:
        self.dataset, self.backbone, self.language = dataset, backbone, language
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
        results = compare_bm25_mtm(module, dm, "test")
        logger.info("BM25 on the %s test split: %s", self.dataset, results["BM25"])
        return results["MTM"]
