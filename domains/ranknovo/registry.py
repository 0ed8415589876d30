"""Registered RankNovo rerankers (light module: heavy imports happen inside the builders).

- ``ranknovo.base``: the paper/reference size (``RankNovo/config.yaml`` of BEAM-Labs/denovo): d=512,
  8 heads, FFN 1024, 8 encoder and 8 axial layers, dropout 0.3, 100 positions, charges up to 10.
- ``ranknovo.tiny``: d=32, 2 heads, FFN 64, 1 layer, the architecture ``configs/ranknovo/tiny.yaml`` trains:
  for tests, the demo and CPU smoke runs.

Both take ``checkpoint=``: a directory written by ``RankNovoReranker.save``, the ``last.ckpt``/``best-*.ckpt``
of ``RankNovoModule`` that ``polyrank fit`` writes, or the authors' released checkpoint (reference layout,
converted by ``checkpoints.py``); the architecture then comes from the checkpoint. Without one the weights
are random and the builder warns (``UntrainedWeightsWarning``).
"""

from __future__ import annotations

from typing import Any

from polyrank.shared.registry import register_reranker, warn_untrained

BASE = {"dim_model": 512, "n_head": 8, "dim_feedforward": 1024, "n_layers": 8, "dropout": 0.3,
        "max_length": 100, "max_charge": 10, "use_col": True, "mass_table": "reference"}
TINY = {**BASE, "dim_model": 32, "n_head": 2, "dim_feedforward": 64, "n_layers": 1, "dropout": 0.0}
#: Overrides both builders accept: the architecture (ignored where a checkpoint records it) and the
#: reranker's inference settings. Kept in sync with ``reranker.ARCH_KEYS``/``RERANKER_KEYS`` (tested).
OPTIONS = ("dim_model", "n_head", "dim_feedforward", "n_layers", "dropout", "max_length", "max_charge",
           "use_col", "mass_table", "batch_size", "n_peaks", "bf16", "seed")


def _build(name: str, defaults: dict[str, Any], checkpoint: str | None, device: str, **overrides: Any) -> Any:
    from polyrank.domains.ranknovo.reranker import ARCH_KEYS, build_reranker

    if checkpoint is None:
        warn_untrained(name)
    arch = {**defaults, **{k: v for k, v in overrides.items() if k in ARCH_KEYS}}
    rest = {k: v for k, v in overrides.items() if k not in ARCH_KEYS}
    return build_reranker(arch, name, checkpoint=checkpoint, device=device, **rest)


@register_reranker("ranknovo.base", "RankNovo (ICML 2025) at the reference size: d=512, 8+8 layers",
                   options=OPTIONS)
def ranknovo_base(checkpoint: str | None = None, device: str = "cpu", **overrides: Any) -> Any:
    """RankNovo at the reference size (random weights, with a warning, unless ``checkpoint``)."""
    return _build("ranknovo.base", BASE, checkpoint, device, **overrides)


@register_reranker("ranknovo.tiny", "RankNovo, tiny (d=32, 1 layer) for tests and the demo", options=OPTIONS)
def ranknovo_tiny(checkpoint: str | None = None, device: str = "cpu", **overrides: Any) -> Any:
    """A tiny RankNovo (random weights, with a warning, unless ``checkpoint``)."""
    return _build("ranknovo.tiny", TINY, checkpoint, device, **overrides)
