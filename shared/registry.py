"""Registry of named rerankers (timm-style builders, open_clip-style error messages).

Domains register builders in a light module (no heavy imports at module level) named by an entry point
in the ``polyrank.domains`` group of ``pyproject.toml``; the core never names a domain. Names are
``domain.method[.variant]``, e.g. ``superglobal.r50``, ``mtm.tiny``.

>>> from polyrank.shared.registry import list_rerankers, load
>>> list_rerankers("mtm.*")          # doctest: +SKIP
['mtm.minilm', 'mtm.tiny']
>>> reranker = load("mtm.tiny")      # doctest: +SKIP

The contract every builder keeps (CONTRIBUTING.md, enforced by ``tests/test_contract.py``):

- ``checkpoint=`` accepts the ``last.ckpt`` / ``best-*.ckpt`` that ``polyrank fit`` writes for that domain and a
  directory written by the reranker's ``save``; without one, the builder calls :func:`warn_untrained`;
- an override the builder does not know is a :class:`~polyrank.shared.errors.PolyrankError` listing the valid
  ones (declared with ``register_reranker(..., options=...)``), raised before anything is built;
- building never changes global state: torch/NumPy/Python RNGs and thread counts are as they were.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import json
import logging
import inspect
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from polyrank.shared.errors import PolyrankError

logger = logging.getLogger(__name__)

PLUGIN_GROUP = "polyrank.domains"
DEMO_GROUP = "polyrank.demos"
MANIFEST = "polyrank.json"


ALWAYS_ACCEPTED = ("checkpoint", "device")


class UntrainedWeightsWarning(UserWarning):
    """A reranker was built with random or untrained weights (no ``checkpoint=``)."""


def warn_untrained(name: str, detail: str = "random weights") -> None:
    """Warn that ``name`` was built without trained weights, naming the argument that loads them."""
    warnings.warn(UntrainedWeightsWarning(
        f"{name} was built with {detail}: its scores are not meaningful. Pass checkpoint=<the last.ckpt or "
        "best-*.ckpt that `polyrank fit` wrote, or a directory written by the reranker's save()> to load trained "
        "weights"), stacklevel=3)


@dataclass(frozen=True)
class RegisteredReranker:
    name: str
    builder: Callable[..., Any]
    description: str
    options: tuple[str, ...] | None = None  # accepted overrides besides checkpoint/device; None: not checked

    def check_overrides(self, overrides: dict[str, Any]) -> None:
        if self.options is None:
            return
        unknown = sorted(set(overrides) - set(self.options) - set(ALWAYS_ACCEPTED))
        if unknown:
            hints = "".join(f" ({u!r}: did you mean {', '.join(difflib.get_close_matches(u, self.options, n=2))}?)"
                            for u in unknown if difflib.get_close_matches(u, self.options, n=2))
            raise PolyrankError(f"{self.name} does not accept the override(s) {unknown}.{hints} Valid overrides: "
                                f"{sorted(set(self.options) | set(ALWAYS_ACCEPTED))}")


def _signature_options(builder: Callable[..., Any]) -> tuple[str, ...] | None:
    """Named keyword parameters of ``builder``; None when it takes ``**kwargs`` (then nothing can be checked)."""
    params = inspect.signature(builder).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return tuple(p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD))


_REGISTRY: dict[str, RegisteredReranker] = {}
_PLUGIN_ERRORS: dict[str, str] = {}
_plugins_loaded = False


def register_reranker(name: str, description: str = "", options: Iterable[str] | None = None) -> Callable:
    """Decorator registering ``builder(checkpoint=None, device=None, **overrides) -> Reranker`` under ``name``.

    ``checkpoint`` is a Lightning ``.ckpt`` written by ``polyrank fit`` or a directory written by the domain's
    ``save``. ``options`` names the overrides the builder accepts (besides ``checkpoint`` and ``device``);
    :func:`load` rejects any other with a clear error. Without ``options`` they are read from the builder's
    signature, unless it takes ``**kwargs``.
    """

    def decorator(builder: Callable[..., Any]) -> Callable[..., Any]:
        if name in _REGISTRY and _REGISTRY[name].builder is not builder:
            warnings.warn(f"reranker {name!r} registered twice; the later builder wins", stacklevel=2)
        doc = description or (builder.__doc__ or "").strip().splitlines()[0:1]
        accepted = tuple(options) if options is not None else _signature_options(builder)
        _REGISTRY[name] = RegisteredReranker(name, builder, doc if isinstance(doc, str) else "".join(doc), accepted)
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


def options(name: str) -> tuple[str, ...] | None:
    """The overrides a registered reranker accepts besides ``checkpoint`` and ``device`` (None: not declared)."""
    return _entry(name).options


def load(name_or_path: str | Path, checkpoint: str | Path | None = None, device: str | None = None,
         **overrides: Any) -> Any:
    """Build a registered reranker by name, or load a saved one from a directory holding ``polyrank.json``.

    ``checkpoint``: the ``last.ckpt``/``best-*.ckpt`` that ``polyrank fit`` wrote for this reranker's domain, or a
    directory written by its ``save``. ``device``: ``"cpu"``, ``"cuda"``... (the builder's default when None).
    Keyword ``overrides`` win over the builder's defaults; unknown ones are an error listing the valid ones.
    """
    path = Path(name_or_path)
    if path.is_file():
        raise PolyrankError(f"{path} is a file; a Lightning checkpoint needs the reranker it belongs to: "
                            f"load('<domain>.<variant>', checkpoint={str(path)!r}) (see `polyrank list`)")
    if path.is_dir():
        if checkpoint is not None:
            raise PolyrankError(f"{path} is a saved reranker directory and already holds its weights; "
                                f"do not pass checkpoint={checkpoint!r} as well")
        manifest = path / MANIFEST
        if not manifest.is_file():
            raise PolyrankError(f"{path} is a directory but has no {MANIFEST}; expected a directory written "
                                "by a reranker's save(), or a registered name (see `polyrank list`)")
        try:
            name = json.loads(manifest.read_text())["reranker"]
        except (json.JSONDecodeError, KeyError) as exc:
            raise PolyrankError(f"{manifest} is not a valid manifest ({exc}); expected {{\"reranker\": name}}") from exc
        name, checkpoint = str(name), path
    else:
        name = str(name_or_path)
    entry = _entry(name)
    entry.check_overrides(overrides)
    if checkpoint is not None:
        if not Path(checkpoint).exists():
            raise PolyrankError(f"checkpoint {checkpoint} does not exist; pass the last.ckpt/best-*.ckpt written by "
                                "`polyrank fit` (under <default_root_dir>/checkpoints/) or a saved directory")
        overrides["checkpoint"] = str(checkpoint)
    if device is not None:
        overrides["device"] = device
    return entry.builder(**overrides)


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
