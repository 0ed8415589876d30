"""polyrank.shared: the domain-agnostic core (candidate store, trainer, evaluation, run I/O, protocol,
registry, reports, CLI). Nothing here imports a domain, timm, open_clip or adapters."""

from polyrank.shared.errors import PolyrankError, FormatError

__all__ = ["PolyrankError", "FormatError"]
