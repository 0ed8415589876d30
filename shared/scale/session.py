"""What a Ray job needs from the driver: how to rebuild the reranker in each actor, and a cluster to run on.

A reranker is never pickled into the actors: each actor rebuilds it from a :class:`RerankerSpec` (a registry
name or a saved directory plus the same ``checkpoint``/``device``/overrides that
:func:`polyrank.shared.registry.load` takes), so every actor holds its own model and a model's weights travel as
files (a checkpoint or a saved directory the workers can read: a local path on one machine, a shared file
system on a cluster).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polyrank.shared.errors import PolyrankError

logger = logging.getLogger(__name__)

#: Attempts for a batch whose actor died (process crash, node loss, OOM kill) before its job fails.
DEFAULT_MAX_RETRIES = 3


@dataclass(frozen=True)
class RerankerSpec:
    """How to build a reranker inside a Ray actor (``polyrank.shared.registry.load`` arguments).

    Args:
        name_or_path: a registered name (``polyrank list``) or a directory written by a reranker's ``save``.
        checkpoint: the ``last.ckpt``/``best-*.ckpt`` that ``polyrank fit`` wrote (a path the workers can read).
        device: ``cpu``, ``cuda``...; None lets the builder choose (an actor given ``num_gpus`` sees its GPU).
        overrides: other builder options, checked by the registry in each actor.
        builder: instead of the registry, a module-level function ``builder(**overrides) -> Reranker`` (for
            rerankers outside the registry); Ray ships the function by reference, so its module must be
            importable on the workers.
    """

    name_or_path: str | None = None
    checkpoint: str | None = None
    device: str | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)
    builder: Callable[..., Any] | None = None

    def __post_init__(self) -> None:
        if (self.name_or_path is None) == (self.builder is None):
            raise PolyrankError("RerankerSpec: give exactly one of name_or_path (a registry name or saved "
                                "directory) or builder (an importable function returning a Reranker)")

    def build(self) -> Any:
        """The reranker, built here (in the actor's process)."""
        if self.builder is not None:
            return self.builder(**dict(self.overrides))
        from polyrank.shared.registry import load

        return load(self.name_or_path, checkpoint=self.checkpoint, device=self.device, **dict(self.overrides))

    def check(self) -> None:
        """Fail in the driver, before any actor starts, on an unknown name, an unknown override or a missing
        checkpoint (the checks :func:`~polyrank.shared.registry.load` makes in each actor)."""
        if self.builder is not None:
            return
        from polyrank.shared.registry import ALWAYS_ACCEPTED, options

        if self.checkpoint is not None and not Path(self.checkpoint).exists():
            raise PolyrankError(f"checkpoint {self.checkpoint} does not exist; pass the last.ckpt/best-*.ckpt written "
                                "by `polyrank fit` (a path the Ray workers can read)")
        if Path(str(self.name_or_path)).is_dir():
            return
        accepted = options(str(self.name_or_path))  # an unknown name raises, with suggestions
        unknown = sorted(set(self.overrides) - set(accepted or self.overrides) - set(ALWAYS_ACCEPTED))
        if unknown:
            raise PolyrankError(f"{self.name_or_path} does not accept the override(s) {unknown}. Valid overrides: "
                                f"{sorted(set(accepted or ()) | set(ALWAYS_ACCEPTED))}")

    @classmethod
    def of(cls, reranker: Any) -> RerankerSpec:
        """``reranker`` as a spec: a spec, a registry name, or a saved directory; a built model is refused."""
        if isinstance(reranker, RerankerSpec):
            return reranker
        if isinstance(reranker, (str, Path)):
            return cls(str(reranker))
        raise PolyrankError(f"the Ray path rebuilds the reranker in every actor and does not pickle a built model "
                            f"({type(reranker).__name__}); pass its registry name, a directory written by its "
                            "save(dir) (readable by the workers), or a RerankerSpec(name, checkpoint=...)")


@contextlib.contextmanager
def ray_session(address: str | None, num_cpus: int | None = None) -> Iterator[Any]:
    """A connected ``ray`` module: an already initialised session is reused (and left running); ``"local"``
    starts a local cluster (``num_cpus`` CPUs, no dashboard) and shuts it down afterwards; anything else is a
    cluster address (``"auto"``, ``"ray://head:10001"``, ``"10.0.0.1:6379"``) joined and left afterwards."""
    from polyrank.shared.extras import require

    ray = require("ray", extra="scale")
    if ray.is_initialized():
        yield ray
        return
    try:
        if address in (None, "local"):
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    except ConnectionError as exc:
        raise PolyrankError(f"cannot reach a Ray cluster at {address!r} ({exc}); start one (`ray start --head`) "
                            "and pass its address, or use --ray local") from exc
    try:
        yield ray
    finally:
        ray.shutdown()
