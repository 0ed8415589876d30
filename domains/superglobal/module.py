"""Fine-tuning the global descriptor with ArcFace (the CVNet/DELG recipe SuperGlobal builds on).

SuperGlobal itself is training-free (its modules act at test time; Shao et al., ICCV 2023, Sec. 3);
this LightningModule trains the underlying global model: single-scale ``GeM (learned p) -> L2 -> fc``
descriptors, ArcFace loss (Deng et al., CVPR 2019, Eq. 3: ``s * cos(theta_y + m)`` for the target class)
on a labelled image folder or a GLDv2-style CSV.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from polyrank.domains.superglobal.data import list_images, load_image, read_label_csv
from polyrank.domains.superglobal.model import GlobalModel, Stage1
from polyrank.shared.errors import PolyrankError

logger = logging.getLogger(__name__)


class ArcFace(nn.Module):
    """Additive angular margin head: logits ``s * cos(theta + m)`` for the target, ``s * cos(theta)`` else."""

    def __init__(self, dim: int, num_classes: int, margin: float = 0.15, scale: float = 30.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, dim))
        nn.init.xavier_uniform_(self.weight)
        self.margin, self.scale = margin, scale

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cosine = F.linear(F.normalize(embeddings), F.normalize(self.weight)).clamp(-1 + 1e-7, 1 - 1e-7)
        sine = torch.sqrt(1.0 - cosine**2)
        phi = cosine * math.cos(self.margin) - sine * math.sin(self.margin)
        # beyond theta = pi - m, cos(theta + m) is no longer decreasing: use the linear fallback
        phi = torch.where(cosine > math.cos(math.pi - self.margin), phi,
                          cosine - math.sin(math.pi - self.margin) * self.margin)
        target = F.one_hot(labels, cosine.shape[1]).bool()
        return self.scale * torch.where(target, phi, cosine)


class SuperGlobalModule(L.LightningModule):
    """Global model + ArcFace head; ``predict_step`` returns multi-scale SuperGlobal descriptors.

    ``load("superglobal.<variant>", checkpoint=<last.ckpt>)`` serves the ``model.`` weights of this module (the
    ArcFace ``head.`` is training-only), built from the hyper-parameters below.

    Args:
        num_classes: number of landmark classes of the training data (rows of the ArcFace weight).
        backbone: timm model name of the global model (test_resnet, resnet50, resnet101, tf_efficientnet_lite0).
        reduction_dim: output size of the head fc (descriptor size); null keeps the backbone width, no fc.
        margin: ArcFace additive angular margin m (radians).
        scale: ArcFace logit scale s.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        gem_p: initial value of the learned GeM p used in training.
    """

    def __init__(self, num_classes: int, backbone: str = "test_resnet", reduction_dim: int | None = 64,
                 margin: float = 0.15, scale: float = 30.0, lr: float = 1e-3, weight_decay: float = 1e-4,
                 gem_p: float = 3.0) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = GlobalModel(backbone, reduction_dim=reduction_dim, gem_p=gem_p,
                                 stage1=None)
        self.train_stage1 = Stage1.off(relup_placement=self.model.stage1.relup_placement, scales=(1.0,))
        self.test_stage1 = self.model.stage1
        self.head = ArcFace(self.model.dim, num_classes, margin, scale)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Single-scale training descriptor (learned GeM, no stage-1 modules), L2-normalised."""
        self.model.set_stage1(self.train_stage1)
        return F.normalize(self.model.forward_singlescale(images), dim=-1)

    def loss(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """ArcFace cross-entropy and accuracy of one ``(images, labels)`` batch."""
        images, labels = batch
        if int(labels.max()) >= self.hparams.num_classes:
            raise PolyrankError(f"label {int(labels.max())} >= num_classes={self.hparams.num_classes}; set "
                                "model.num_classes to the number of classes in the data")
        logits = self.head(self.embed(images), labels)
        return F.cross_entropy(logits, labels), (logits.argmax(-1) == labels).float().mean()

    def _loss(self, batch, stage: str) -> torch.Tensor:
        loss, accuracy = self.loss(batch)
        self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=len(batch[1]))
        self.log(f"{stage}/acc", accuracy, batch_size=len(batch[1]))
        return loss

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._loss(batch, "train")

    def validation_step(self, batch, batch_idx: int) -> None:
        self._loss(batch, "val")

    def predict_step(self, batch, batch_idx: int) -> torch.Tensor:
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        self.model.set_stage1(self.test_stage1)
        return self.model(images)

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)


class _Images(Dataset):
    def __init__(self, items: list[tuple[object, int]], size: int, train: bool, mean, std) -> None:
        self.items, self.size, self.train = items, size, train
        self.mean, self.std = torch.tensor(mean).view(3, 1, 1), torch.tensor(std).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        source, label = self.items[index]
        if isinstance(source, torch.Tensor):
            image = source
        else:
            import numpy as np

            pil = load_image(source, convert_mode=True).resize((self.size, self.size))
            image = torch.from_numpy(np.asarray(pil, dtype="float32") / 255.0).permute(2, 0, 1)
        if self.train and torch.rand(()) < 0.5:
            image = image.flip(-1)
        return (image - self.mean) / self.std, label


def synthetic_landmarks(classes: int, per_class: int, size: int, seed: int = 0) -> list[tuple[torch.Tensor, int]]:
    """Generated "landmarks": each class is a coloured shape at a class-specific place on a noisy background."""
    gen = torch.Generator().manual_seed(seed)
    items = []
    for c in range(classes):
        colour = torch.rand(3, 1, 1, generator=gen)
        y0, x0 = (int(v) for v in torch.randint(0, size // 2, (2,), generator=gen))
        for _ in range(per_class):
            image = 0.3 * torch.rand(3, size, size, generator=gen)
            dy, dx = (int(v) for v in torch.randint(-size // 16, size // 16 + 1, (2,), generator=gen))
            y, x = max(0, y0 + dy), max(0, x0 + dx)
            image[:, y:y + size // 2, x:x + size // 2] = colour
            items.append((image, c))
    return items


class SuperGlobalDataModule(L.LightningDataModule):
    """Labelled images from a GLDv2-style CSV, a ``<class>/<image>`` folder, or generated classes.

    Exactly one of ``csv`` (with ``image_root``), ``folder`` or ``synthetic_classes > 0`` is used.

    Args:
        csv: GLDv2-style CSV with columns id (or path) and landmark_id.
        image_root: folder the CSV's ids resolve under (default: the CSV's folder).
        folder: a <class>/<image> folder of labelled images.
        synthetic_classes: number of generated landmark classes (0: use csv or folder).
        synthetic_per_class: generated images per class.
        image_size: training images are resized to image_size x image_size px.
        batch_size: images per batch.
        val_fraction: share of the images held out for validation.
        num_workers: DataLoader worker processes.
        seed: seed of the train/val split and of the generated images.
        mean: per-channel normalisation mean (RGB).
        std: per-channel normalisation std (RGB).
    """

    def __init__(self, csv: str | None = None, image_root: str | None = None, folder: str | None = None,
                 synthetic_classes: int = 0, synthetic_per_class: int = 8, image_size: int = 128,
                 batch_size: int = 16, val_fraction: float = 0.25, num_workers: int = 0, seed: int = 0,
                 mean: tuple[float, float, float] = (0.485, 0.456, 0.406),
                 std: tuple[float, float, float] = (0.229, 0.224, 0.225)) -> None:
        super().__init__()
        self.save_hyperparameters()
        if sum([csv is not None, folder is not None, synthetic_classes > 0]) != 1:
            raise PolyrankError("give exactly one data source: csv= (+ image_root=), folder=, or synthetic_classes>0")

    def _items(self) -> list[tuple[object, int]]:
        hp = self.hparams
        if hp.synthetic_classes:
            return synthetic_landmarks(hp.synthetic_classes, hp.synthetic_per_class, hp.image_size, hp.seed)
        if hp.csv:
            paths, labels, _ = read_label_csv(hp.csv, hp.image_root or Path(hp.csv).parent)
            return list(zip(paths, labels))
        paths = list_images(hp.folder)
        classes = sorted({p.parent.name for p in paths})
        return [(p, classes.index(p.parent.name)) for p in paths]

    def setup(self, stage: str | None = None) -> None:
        items = self._items()
        order = torch.randperm(len(items), generator=torch.Generator().manual_seed(self.hparams.seed)).tolist()
        n_val = int(round(len(items) * self.hparams.val_fraction))
        args = (self.hparams.image_size, self.hparams.mean, self.hparams.std)
        self.train_set = _Images([items[i] for i in order[n_val:]], args[0], True, *args[1:])
        self.val_set = _Images([items[i] for i in order[:n_val]], args[0], False, *args[1:])

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.hparams.batch_size, shuffle=True,
                          num_workers=self.hparams.num_workers)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.hparams.batch_size, num_workers=self.hparams.num_workers)

    def predict_dataloader(self) -> DataLoader:
        return self.val_dataloader()
