"""Descriptor extraction: images or folders -> L2-normalised SuperGlobal descriptors ``(N, D)``.

As in the official ``test/test_utils.py``, images are processed one at a time at their own resolution
(queries cropped to their ``bbx`` first); consecutive images of equal size are batched together.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from polyrank.domains.superglobal.data import Preprocess, crop_bbx, list_images, load_image
from polyrank.domains.superglobal.model import GlobalModel

logger = logging.getLogger(__name__)


class Extractor:
    """A :class:`GlobalModel` with its preprocessing, on one device (``dtype`` may be bfloat16 on CUDA)."""

    def __init__(self, model: GlobalModel, preprocess: Preprocess, device: str = "cpu",
                 dtype: torch.dtype = torch.float32, convert_mode: bool = False) -> None:
        self.model = model.eval().to(device)
        self.preprocess = preprocess
        self.device = device
        self.dtype = dtype
        self.convert_mode = convert_mode

    @property
    def dim(self) -> int:
        return self.model.dim

    def tensor(self, path: str | Path, bbx: Sequence[float] | None = None) -> torch.Tensor:
        return self.preprocess(crop_bbx(load_image(path, self.convert_mode), bbx), path)

    @torch.no_grad()
    def extract(self, paths: Sequence[str | Path], bbxs: Sequence[Sequence[float] | None] | None = None,
                batch_size: int = 8) -> np.ndarray:
        """Descriptors ``(len(paths), D)`` float32; ``bbxs`` optionally crops each image (queries)."""
        bbxs = bbxs if bbxs is not None else [None] * len(paths)
        out = np.zeros((len(paths), self.dim), dtype=np.float32)
        pending: list[tuple[int, torch.Tensor]] = []
        for index, (path, bbx) in enumerate(zip(paths, bbxs)):
            tensor = self.tensor(path, bbx)
            if pending and (tensor.shape != pending[0][1].shape or len(pending) >= batch_size):
                self._flush(pending, out)
            pending.append((index, tensor))
        if pending:
            self._flush(pending, out)
        return out

    def _flush(self, pending: list[tuple[int, torch.Tensor]], out: np.ndarray) -> None:
        batch = torch.stack([t for _, t in pending]).to(self.device)
        autocast = torch.autocast(device_type=self.device.split(":")[0], dtype=self.dtype,
                                  enabled=self.dtype != torch.float32)
        with autocast:
            descriptors = self.model(batch).float()
        descriptors = torch.nn.functional.normalize(descriptors, dim=-1)
        out[[i for i, _ in pending]] = descriptors.cpu().numpy()
        pending.clear()

    def extract_folder(self, folder: str | Path, batch_size: int = 8) -> tuple[list[str], np.ndarray]:
        """``(ids, descriptors)`` of every image under ``folder``; ids are paths relative to it."""
        paths = list_images(folder)
        return [str(p.relative_to(folder)) for p in paths], self.extract(paths, batch_size=batch_size)
