"""What the docimage rerankers share: the engine (a VLM or a text causal LM), page inputs, save/load."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from polyrank.domains.docimage.pages import Page, open_image
from polyrank.shared.errors import PolyrankError
from polyrank.shared.llm.parsers import ParseStats
from polyrank.shared.protocol import Candidate, Reranker
from polyrank.shared.registry import MANIFEST, write_manifest

MODEL_DIR = "model"
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp", ".gif")


def as_page(candidate: Candidate) -> Page:
    """A candidate's page: a :class:`Page`, a dict with ``image``/``text``, an image (PIL or file path) or text."""
    content = candidate.content
    if isinstance(content, Page):
        return content
    if isinstance(content, dict):
        image = content.get("image")
        return Page(candidate.id, 0, open_image(image, f"candidate {candidate.id}") if image is not None else None,
                    str(content.get("text") or ""))
    if isinstance(content, (str, Path)) and str(content).lower().endswith(_IMAGE_SUFFIXES):
        return Page(candidate.id, 0, open_image(content), "")
    if hasattr(content, "mode") and hasattr(content, "size"):
        return Page(candidate.id, 0, open_image(content, f"candidate {candidate.id}"), "")
    if isinstance(content, str):
        return Page(candidate.id, 0, None, content)
    raise PolyrankError(f"candidate {candidate.id!r}: content of type {type(content).__name__} is not a page; pass "
                        "a Page, {'image': ..., 'text': ...}, an image path/PIL image or the page text")


def is_vision(lm: Any) -> bool:
    from polyrank.shared.llm.vision import VisionLM

    return isinstance(lm, VisionLM)


class DocReranker(Reranker):
    """Base: ``lm`` (VisionLM or CausalLM) plus JSON-serialisable ``options`` recorded by :meth:`save`."""

    def __init__(self, lm: Any, registry_name: str, **options: Any) -> None:
        self.lm = lm
        self.name = registry_name
        self.options = options
        self.stats = ParseStats()

    def save(self, directory: str | Path) -> Path:
        """Write the model folder and ``polyrank.json`` (registry name, options, engine kind) atomically."""
        from polyrank.shared.atomic import atomic_directory

        directory = Path(directory)
        with atomic_directory(directory) as staging:
            self.lm.save(staging / MODEL_DIR)
            write_manifest(staging, self.name, options=self.options, source=self.lm.source,
                           engine="vision" if is_vision(self.lm) else "text")
        return directory


def read_saved(directory: str | Path) -> tuple[Path, dict[str, Any], str]:
    """The model folder, recorded options and engine kind (``vision``/``text``) of a saved reranker."""
    directory = Path(directory)
    manifest = json.loads((directory / MANIFEST).read_text())
    return directory / MODEL_DIR, dict(manifest.get("options", {})), str(manifest.get("engine", "vision"))
