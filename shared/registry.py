"""Registry of named rerankers (timm-style builders, open_clip-style error messages).

Domains register builders in a light module (no heavy imports at module level) named by an entry point
in the ``polyrank.domains`` group of ``pyproject.toml``; the core never names a domain. Names are
``domain.method[.variant]``, e.g. ``superglobal.r50``, ``mtm.tiny``.

>>> from polyrank.shared.registry import list_rerankers, load
>>> list_rerankers("mtm.*")          # doctest: +SKIP
['mtm.minilm', 'mtm.tiny']
>>> reranker = load("mtm.tiny")      # doctest: +SKIP
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import json
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from polyrank.shared.errors import PolyrankError

logger = logging.getLogger(__name__)

PLUGIN_GROUP = "polyrank.domains"
DEMO_GROUP = "polyrank.demos"
MANIFEST = "polyrank.json"


@dataclass(frozen=True)
class RegisteredReranker:
    name: str
    builder: Callable[..., Any]
    description: str


_REGISTRY: dict[str, RegisteredReranker] = {}
_PLUGIN_ERRORS: dict[str, str] = {}
_plugins_loaded = False


def register_reranker(name: str, description: str = "") -> Callable:
    """Decorator registering ``builder(**overrides) -> Reranker`` under ``name``.

    A builder that can load saved weights takes a ``checkpoint`` keyword (a directory written by the
    domain's ``save``), which :func:`load` passes when given a path.
    """

    def decorator(builder: Callable[..., Any]) -> Callable[..., Any]:
        if name in _REGISTRY and _REGISTRY[name].builder is not builder:
            warnings.warn(f"reranker {name!r} registered twice; the later builder wins", stacklevel=2)
        doc = description or (builder.__doc__ or "").strip().splitlines()[0:1]
        _REGISTRY[name] = RegisteredReranker(name, builder, doc if isinstance(doc, str) else "".join(doc))
        return builder

    return decorator


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for ep in entry_points(group=PLUGIN_GROUP):
        try:
            importlib.import_module(ep.value)
        except Exception as exc:  # a broken or extra-less domain must not hide the others
            _PLUGIN_ERRORS[ep.name] = f"{type(exc).__name__}: {exc}"
            logger.warning("domain %s could not be registered: %s", ep.name, exc)


def list_rerankers(pattern: str = "*") -> list[str]:
    """Registered reranker names matching a glob ``pattern`` (``"superglobal.*"``), sorted."""
    _load_plugins()
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def describe(name: str) -> str:
    """One-line description of a registered reranker."""
    return _entry(name).description


def _entry(name: str) -> RegisteredReranker:
    _load_plugins()
    if name in _REGISTRY:
        return _REGISTRY[name]
    close = difflib.get_close_matches(name, list(_REGISTRY), n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    broken = "".join(f" Domain {d} failed to register ({e})." for d, e in _PLUGIN_ERRORS.items())
    raise PolyrankError(f"unknown reranker {name!r}.{hint} Available: {sorted(_REGISTRY)}.{broken}")


def load(name_or_path: str | Path, **overrides: Any) -> Any:
    """Build a registered reranker by name, or load a saved one from a directory holding ``polyrank.json``.

    Keyword ``overrides`` win over the builder's defaults (e.g. ``device="cuda"``).
    """
    path = Path(name_or_path)
    if path.is_dir():
        manifest = path / MANIFEST
        if not manifest.is_file():
            raise PolyrankError(f"{path} is a directory but has no {MANIFEST}; expected a directory written "
                                "by a reranker's save(), or a registered name (see `polyrank list`)")
        try:
            name = json.loads(manifest.read_text())["reranker"]
        except (json.JSONDecodeError, KeyError) as exc:
            raise PolyrankError(f"{manifest} is not a valid manifest ({exc}); expected {{\"reranker\": name}}") from exc
        return _entry(name).builder(checkpoint=str(path), **overrides)
    return _entry(str(name_or_path)).builder(**overrides)


def write_manifest(directory: str | Path, name: str, **extra: Any) -> Path:
    """Write the ``polyrank.json`` that lets :func:`load` rebuild a saved reranker from its directory."""
    path = Path(directory) / MANIFEST
    path.write_text(json.dumps({"reranker": name, **extra}, indent=2, sort_keys=True))
    return path


def demo_entry_points() -> dict[str, Callable]:
    """Each installed domain's demo function, by domain name (group ``polyrank.demos``)."""
    demos = {}
    for ep in entry_points(group=DEMO_GROUP):
        try:
            demos[ep.name] = ep.load()
        except Exception as exc:
            _PLUGIN_ERRORS[ep.name] = f"{type(exc).__name__}: {exc}"
            logger.warning("demo %s could not be loaded: %s", ep.name, exc)
    return dict(sorted(demos.items()))
