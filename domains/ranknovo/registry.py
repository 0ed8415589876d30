"""Registered RankNovo rerankers (light module: heavy imports happen inside the builders).

- ``ranknovo.base``: the paper/reference size (``RankNovo/config.yaml``): d=512, 8 heads, FFN 1024,
  8 encoder and 8 axial layers, dropout 0.3, 100 positions, charges up to 5.
- ``ranknovo.tiny``: d=32, 2 heads, FFN 64, 1 layer: for tests, the demo and CPU smoke runs.

Both take ``checkpoint=`` (a directory written by ``RankNovoReranker.save`` or a Lightning ``.ckpt`` of
``RankNovoModule``); without it the weights are random.
"""

from __future__ import annotations

from typing import Any

from polyrank.shared.registry import register_reranker

BASE = {"dim_model": 512, "n_head": 8, "dim_feedforward": 1024, "n_layers": 8, "dropout": 0.3,
        "max_length": 100, "max_charge": 5, "use_col": True, "mass_table": "reference"}
TINY = {**BASE, "dim_model": 32, "n_head": 2, "dim_feedforward": 64, "n_layers": 1, "dropout": 0.0}


def _build(name: str, defaults: dict[str, Any], checkpoint: str | None, device: str, **overrides: Any) -> Any:
    from polyrank.domains.ranknovo.reranker import ARCH_KEYS, build_reranker

    arch = {**defaults, **{k: v for k, v in overrides.items() if k in ARCH_KEYS}}
    rest = {k: v for k, v in overrides.items() if k not in ARCH_KEYS}
    return build_reranker(arch, name, checkpoint=checkpoint, device=device, **rest)


@register_reranker("ranknovo.base", "RankNovo (ICML 2025) at the reference size: d=512, 8+8 layers")
def ranknovo_base(checkpoint: str | None = None, device: str = "cpu", **overrides: Any) -> Any:
    """RankNovo at the reference size (random weights unless ``checkpoint``)."""
    return _build("ranknovo.base", BASE, checkpoint, device, **overrides)


@register_reranker("ranknovo.tiny", "RankNovo, tiny (d=32, 1 layer) for tests and the demo")
def ranknovo_tiny(checkpoint: str | None = None, device: str = "cpu", **overrides: Any) -> Any:
    """A tiny RankNovo (random weights unless ``checkpoint``)."""
    return _build("ranknovo.tiny", TINY, checkpoint, device, **overrides)
