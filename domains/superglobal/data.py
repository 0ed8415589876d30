"""Readers: revisitop ground truth (restricted unpickler), images, GLDv2-style CSVs, landmark folders, Paris6k subset.

The official ``gnd_roxford5k.pkl`` / ``gnd_rparis6k.pkl`` (Radenovic et al., CVPR 2018) hold a dict with
``imlist`` and ``qimlist`` (names without extension) and ``gnd``: one dict per query with ``bbx``
``[x1, y1, x2, y2]`` and the index lists ``easy``, ``hard``, ``junk``. They are read with an unpickler
that only builds plain containers and NumPy arrays and refuses every other global.
"""

from __future__ import annotations

import csv
import logging
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polyrank.shared.errors import FormatError, PolyrankError

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
_SAFE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler for data files: containers, numbers, strings and NumPy arrays only."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}: only plain data and NumPy "
                                     "arrays are allowed in a ground-truth file")


def safe_load_pickle(path: str | Path) -> Any:
    """Load a pickle with :class:`RestrictedUnpickler`; a refused or corrupt file raises ``FormatError``."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            return RestrictedUnpickler(handle, encoding="latin1").load()
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise FormatError(path, None, f"not a safe revisitop ground-truth pickle: {exc}") from exc


@dataclass
class RevisitopGnd:
    """A revisitop ground truth: database and query names plus per-query ``bbx/easy/hard/junk``."""

    imlist: list[str]
    qimlist: list[str]
    gnd: list[dict[str, Any]]

    @property
    def n_db(self) -> int:
        return len(self.imlist)


def read_gnd(path: str | Path) -> RevisitopGnd:
    """Read and validate ``gnd_<dataset>.pkl``; a malformed entry raises ``FormatError`` with its query number."""
    raw = safe_load_pickle(path)
    if not isinstance(raw, dict) or not {"imlist", "qimlist", "gnd"} <= set(raw):
        raise FormatError(path, None, "expected a dict with keys imlist, qimlist and gnd")
    imlist, qimlist, gnd = [str(x) for x in raw["imlist"]], [str(x) for x in raw["qimlist"]], list(raw["gnd"])
    if len(gnd) != len(qimlist):
        raise FormatError(path, None, f"{len(qimlist)} queries but {len(gnd)} gnd entries")
    clean = []
    for number, entry in enumerate(gnd, start=1):
        if not isinstance(entry, dict):
            raise FormatError(path, number, f"gnd entry is a {type(entry).__name__}, expected a dict")
        item = {key: np.asarray(entry.get(key, []), dtype=np.int64).reshape(-1) for key in ("easy", "hard", "junk")}
        for key, values in item.items():
            if values.size and (values.min() < 0 or values.max() >= len(imlist)):
                raise FormatError(path, number, f"{key} index out of range [0, {len(imlist)})")
        bbx = entry.get("bbx")
        item["bbx"] = None if bbx is None else [float(v) for v in np.asarray(bbx).reshape(-1)[:4]]
        clean.append(item)
    return RevisitopGnd(imlist, qimlist, clean)


def load_image(path: str | Path, convert_mode: bool = False):
    """Open an image as a PIL RGB image; unreadable files and non-RGB modes raise a clear error.

    ``convert_mode=True`` converts grayscale/RGBA/palette images to RGB (as OpenCV's ``imread`` does in
    the reference code); the default refuses them so silent colour changes never go unnoticed.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        image = Image.open(path)
        image.load()
    except FileNotFoundError:
        raise PolyrankError(f"image {path} does not exist") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise PolyrankError(f"{path}: cannot be read as an image ({exc}); expected a JPEG/PNG file") from exc
    if image.mode != "RGB":
        if not convert_mode:
            raise PolyrankError(f"{path}: image mode is {image.mode} (expected 3-channel RGB); convert it "
                                "(e.g. PIL .convert('RGB')) or pass convert_mode=True")
        image = image.convert("RGB")
    return image


@dataclass(frozen=True)
class Preprocess:
    """Image -> normalised tensor. CVNet: BGR order, ImageNet mean/std, native size; Lite0: RGB, mean=std=0.5."""

    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    bgr: bool = False
    max_side: int | None = None  # resize so the longer side is at most this (None: native resolution)
    min_side: int = 64
    upscale: bool = False  # also enlarge images whose longer side is below max_side (to exactly max_side)

    def __call__(self, image, path: str | Path = "<image>") -> torch.Tensor:
        from PIL import Image

        if self.max_side and (max(image.size) > self.max_side or (self.upscale and max(image.size) < self.max_side)):
            factor = self.max_side / max(image.size)
            image = image.resize((max(1, round(image.width * factor)), max(1, round(image.height * factor))),
                                 Image.BILINEAR)
        if min(image.size) < self.min_side:
            raise PolyrankError(f"{path}: image is {image.width}x{image.height} px, smaller than the minimum side "
                                f"{self.min_side} px the multi-scale extractor needs; use a larger image")
        array = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)  # (3, H, W) RGB
        mean, std = torch.tensor(self.mean).view(3, 1, 1), torch.tensor(self.std).view(3, 1, 1)
        array = (array - mean) / std
        return array.flip(0) if self.bgr else array


CVNET_PREPROCESS = Preprocess(bgr=True)
LITE0_PREPROCESS = Preprocess(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), max_side=512)


def crop_bbx(image, bbx: Sequence[float] | None):
    """Crop a PIL image to a revisitop query box ``[x1, y1, x2, y2]`` (None keeps the whole image)."""
    if bbx is None:
        return image
    x1, y1, x2, y2 = (round(v) for v in bbx)
    return image.crop((max(0, x1), max(0, y1), min(image.width, x2), min(image.height, y2)))


def list_images(folder: str | Path) -> list[Path]:
    """Image files under ``folder`` (recursive), sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PolyrankError(f"{folder} is not a directory of images")
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)


def landmark_folder_gnd(root: str | Path) -> tuple[list[Path], list[str], RevisitopGnd]:
    """A revisitop-style ground truth from ``root/<landmark>/*.jpg``: every image queries all the others.

    Same landmark = positive (``easy``), the query image itself = ``junk``; ``hard`` is empty, so only
    the Easy and Medium protocols have positives.
    """
    paths = list_images(root)
    labels = [p.parent.name for p in paths]
    names = [str(p.relative_to(root).with_suffix("")) for p in paths]
    gnd = []
    for i, label in enumerate(labels):
        easy = [j for j, other in enumerate(labels) if other == label and j != i]
        gnd.append({"easy": np.array(easy, dtype=np.int64), "hard": np.zeros(0, np.int64),
                    "junk": np.array([i], dtype=np.int64), "bbx": None})
    return paths, labels, RevisitopGnd(names, list(names), gnd)


def read_label_csv(path: str | Path, image_root: str | Path) -> tuple[list[Path], list[int], list[str]]:
    """A GLDv2-style CSV with columns ``id`` (or ``path``) and ``landmark_id``; returns paths, labels, classes.

    ``id`` resolves to ``image_root/a/b/c/<id>.jpg`` (the GLDv2 layout) or ``image_root/<id>.jpg``.
    """
    path, image_root = Path(path), Path(image_root)
    paths, raw_labels = [], []
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        fields = set(reader.fieldnames or [])
        if "landmark_id" not in fields or not fields & {"id", "path"}:
            raise FormatError(path, 1, f"header {sorted(fields)} lacks 'landmark_id' and 'id' (or 'path')")
        for line, row in enumerate(reader, start=2):
            label = (row.get("landmark_id") or "").strip()
            if not label:
                raise FormatError(path, line, "empty landmark_id")
            image = _resolve_image(row, image_root)
            if image is None:
                raise FormatError(path, line, f"image for {row.get('id') or row.get('path')!r} not found under "
                                  f"{image_root}")
            paths.append(image)
            raw_labels.append(label)
    classes = sorted(set(raw_labels))
    index = {c: i for i, c in enumerate(classes)}
    return paths, [index[c] for c in raw_labels], classes


def _resolve_image(row: dict[str, str], root: Path) -> Path | None:
    if row.get("path"):
        candidate = root / row["path"]
        return candidate if candidate.is_file() else None
    image_id = (row.get("id") or "").strip()
    for candidate in (root / image_id[:1] / image_id[1:2] / image_id[2:3] / f"{image_id}.jpg",
                      root / f"{image_id}.jpg", root / image_id):
        if image_id and candidate.is_file():
            return candidate
    return None


def landmark_folders_gnd(roots: Sequence[str | Path]) -> tuple[list[Path], list[str], RevisitopGnd]:
    """:func:`landmark_folder_gnd` over several roots at once: ids are ``<root name>/<place>/<photo>``, the
    place is the photo's folder; every photo queries all the others (same place = positive, itself = junk)."""
    paths, labels, names = [], [], []
    for root in map(Path, roots):
        for path in list_images(root):
            paths.append(path)
            labels.append(path.parent.name)
            names.append(f"{root.name}/{path.relative_to(root).with_suffix('')}")
    if len(set(names)) != len(names):
        raise PolyrankError(f"two photos share an id under {[str(r) for r in roots]}; give the roots distinct names")
    gnd = [{"easy": np.array([j for j, other in enumerate(labels) if other == label and j != i], dtype=np.int64),
            "hard": np.zeros(0, np.int64), "junk": np.array([i], dtype=np.int64), "bbx": None}
           for i, label in enumerate(labels)]
    return paths, labels, RevisitopGnd(names, list(names), gnd)


#: Paris6k photos are Flickr downloads 1024 px on the longer side; the official ``bbx`` are in those pixels.
PARIS6K_LONG_SIDE = 1024


def read_paris_subset(folder: str | Path, original_long_side: int = PARIS6K_LONG_SIDE
                      ) -> tuple[RevisitopGnd, list[Path], list[Path]]:
    """The official Paris6k queries of ``<folder>/gnd_paris6k_subset.json`` (``landmarks_paris`` of ../shared/data).

    The file is in the revisitop layout with ``ok``/``junk`` index lists (original Paris6k labels, no
    easy/hard split): ``ok`` becomes ``easy`` and ``hard`` stays empty, so Easy = Medium and Hard has no
    positives. ``bbx`` is given in the pixels of the full-size originals; it is scaled here to the resized
    file by ``max(file width, height) / original_long_side``. A box that then falls outside its photo
    (a wrong ``original_long_side``) raises ``FormatError``. Returns the ground truth (scaled ``bbx``), the
    query photo paths and the database photo paths (``imlist`` order).
    """
    import json

    from PIL import Image

    path = Path(folder) / "gnd_paris6k_subset.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except ValueError as exc:
        raise FormatError(path, getattr(exc, "lineno", None), f"not valid JSON: {exc}") from exc
    if not isinstance(raw, dict) or not {"imlist", "qimlist", "gnd"} <= set(raw) or len(raw["gnd"]) != len(
            raw["qimlist"]):
        raise FormatError(path, None, "expected imlist, qimlist and one gnd entry per query name")
    imlist, qimlist = [str(x) for x in raw["imlist"]], [str(x) for x in raw["qimlist"]]
    db_paths, q_paths = [Path(folder) / f"{n}.jpg" for n in imlist], [Path(folder) / f"{n}.jpg" for n in qimlist]
    for name, photo in zip(imlist + qimlist, db_paths + q_paths):
        if not photo.is_file():
            raise FormatError(path, None, f"photo {name!r} listed in the ground truth is missing ({photo})")
    gnd = []
    for number, (entry, photo) in enumerate(zip(raw["gnd"], q_paths), start=1):
        if not isinstance(entry, dict) or "bbx" not in entry or "ok" not in entry:
            raise FormatError(path, None, f"query #{number}: expected a dict with bbx, ok and junk")
        item = {"easy": np.asarray(entry["ok"], dtype=np.int64).reshape(-1), "hard": np.zeros(0, np.int64),
                "junk": np.asarray(entry.get("junk", []), dtype=np.int64).reshape(-1)}
        for key in ("easy", "junk"):
            if item[key].size and (item[key].min() < 0 or item[key].max() >= len(imlist)):
                raise FormatError(path, None, f"query #{number} ({qimlist[number - 1]}): {key} index out of range "
                                  f"[0, {len(imlist)})")
        with Image.open(photo) as image:
            width, height = image.size
        factor = max(width, height) / original_long_side
        x1, y1, x2, y2 = (float(v) * factor for v in entry["bbx"])
        if not (0 <= x1 < x2 <= width + 1 and 0 <= y1 < y2 <= height + 1):
            raise FormatError(path, None, f"query #{number} ({qimlist[number - 1]}): bbx {entry['bbx']} scaled by "
                              f"{factor:.4f} is [{x1:.0f}, {y1:.0f}, {x2:.0f}, {y2:.0f}], outside the "
                              f"{width}x{height} photo; check original_long_side ({original_long_side})")
        item["bbx"] = [x1, y1, x2, y2]
        gnd.append(item)
    return RevisitopGnd(imlist, qimlist, gnd), q_paths, db_paths
