"""Registered MTM rerankers: ``mtm.minilm`` (all-MiniLM-L6-v2 backbone) and ``mtm.tiny`` (random, tests).

``checkpoint`` is the ``last.ckpt``/``best-*.ckpt`` that ``polyrank fit --config configs/mtm/<row>.yaml``
writes (the architecture and backbone come from its hyper-parameters) or a directory written by
:meth:`~polyrank.domains.mtm.reranker.MTMReranker.save`. Without it a builder returns an *untrained*
matcher (no ROT, empty memory) and warns (:func:`~polyrank.shared.registry.warn_untrained`): useful only
for shapes and smoke tests.
"""

from __future__ import annotations

from typing import Any

from polyrank.shared.registry import register_reranker, warn_untrained

#: Overrides besides checkpoint/device (``polyrank.domains.mtm.reranker.OPTIONS``; kept here so importing
#: the registry stays light). n_patterns, n_mlp_layers, head and seed apply only without a checkpoint; readout
#: ("class1" reference / "logit_diff") may be changed on a trained one.
OPTIONS = ("n_key_sentences", "n_patterns", "lambda_q", "lambda_p", "n_mlp_layers", "dropout", "max_length",
           "claim_max_length", "batch_size", "seed", "head", "readout")


def _build(name: str, backbone: str, checkpoint: str | None, device: str | None, overrides: dict[str, Any],
           detail: str):
    from polyrank.domains.mtm.reranker import MTMReranker
    from polyrank.shared.checkpoints import is_lightning_checkpoint

    if is_lightning_checkpoint(checkpoint):
        return MTMReranker.from_lightning_checkpoint(checkpoint, device=device, registry_name=name, **overrides)
    if checkpoint:
        return MTMReranker.load(checkpoint, device=device, registry_name=name, **overrides)
    warn_untrained(name, detail)
    return MTMReranker.untrained(backbone, device=device, registry_name=name, **overrides)


@register_reranker("mtm.minilm", "MTM (ACL 2021) over all-MiniLM-L6-v2; pass checkpoint= a .ckpt or saved directory",
                   options=OPTIONS)
def mtm_minilm(checkpoint: str | None = None, device: str | None = None, **overrides: Any):
    return _build("mtm.minilm", "minilm", checkpoint, device, overrides,
                  "all-MiniLM-L6-v2 and a random matching head (no ROT, empty pattern memory)")


@register_reranker("mtm.tiny", "MTM with a tiny random 2-layer BERT (tests, CPU seconds)", options=OPTIONS)
def mtm_tiny(checkpoint: str | None = None, device: str | None = None, **overrides: Any):
    if not checkpoint:                          # the architecture configs/mtm/tiny.yaml trains
        overrides.setdefault("n_patterns", 4)
        overrides.setdefault("n_key_sentences", 3)
    return _build("mtm.tiny", "tiny", checkpoint, device, overrides,
                  "a random 2-layer BERT and matching head (no ROT, empty pattern memory)")
