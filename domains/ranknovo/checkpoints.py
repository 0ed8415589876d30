"""RankNovo checkpoints: polyrank's own and the authors' released one (``BEAM-Labs/denovo``, ``RankNovo/``).

The authors' checkpoint (``RankNovo/README.md``: ``./ckpt/model_0.660.ckpt``, Google Drive) is a
pytorch-lightning 1.8 ``.ckpt`` of their ``Spec2Pep`` (``denovo/msa_model.py``): a ``state_dict`` without a
prefix whose modules are ``encoder`` (``components/transformers.py: SpectrumEncoder``), ``msa_decoder``
(``msa/msa_transformer.py: MSADecoder`` with ``msa/msa_embedding.py: MSAPeptideEmbedder`` and
``msa/modules.py: CrossAxialTransformerLayer`` of ``NormalizedResidualBlock``\\ s around
``msa/axial_attention.py: RowSelfAttention/ColumnSelfAttention``, ``nn.MultiheadAttention`` and
``FeedForwardNetwork``), and the heads ``global_final``/``local_final``.

:func:`convert_reference_state_dict` renames that layout into :class:`~polyrank.domains.ranknovo.model.RankNovo`'s
(module for module, see :data:`RENAMES`); the only reshaping is stacking the reference's separate
``q_proj``/``k_proj``/``v_proj`` into our fused ``qkv`` (rows q, then k, then v). The reference stores the
sinusoid wavelengths as buffers (``sin_term``/``cos_term``); we compute them, so the converter checks
that they agree and drops them. Everything else is strict: a reference key the table does not know, one it
needs but the file lacks, or a shape that does not fit is an error naming each key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from polyrank.shared.errors import PolyrankError

#: Reference name pattern -> polyrank name (``{i}`` = layer index), for the 1:1 parameters.
RENAMES: tuple[tuple[str, str], ...] = (
    (r"encoder\.zeroPeaks_intensity", "encoder.zero_intensity"),
    (r"encoder\.allPeaks_intensity", "encoder.precursor_intensity"),
    (r"encoder\.peak_encoder\.int_encoder\.weight", "encoder.peak_encoder.intensity_encoder.weight"),
    (r"encoder\.transformer_encoder\.layers\.(\d+)\.(.+)", r"encoder.transformer.layers.\1.\2"),
    (r"msa_decoder\.embed_tokens\.aa_encoder\.weight", "embed.aa_encoder.weight"),
    (r"msa_decoder\.embed_tokens\.charge_encoder\.weight", "embed.charge_encoder.weight"),
    (r"msa_decoder\.embed_positions\.weight", "embed.positions.weight"),
    (r"msa_decoder\.emb_layer_norm_before\.(weight|bias)", r"norm_before.\1"),
    (r"msa_decoder\.emb_layer_norm_after\.(weight|bias)", r"norm_after.\1"),
    (r"msa_decoder\.layers\.(\d+)\.row_self_attention\.layer\.out_proj\.(weight|bias)", r"layers.\1.row.out.\2"),
    (r"msa_decoder\.layers\.(\d+)\.row_self_attention\.layer_norm\.(weight|bias)", r"layers.\1.row_norm.\2"),
    (r"msa_decoder\.layers\.(\d+)\.column_self_attention\.layer\.out_proj\.(weight|bias)", r"layers.\1.col.out.\2"),
    (r"msa_decoder\.layers\.(\d+)\.column_self_attention\.layer_norm\.(weight|bias)", r"layers.\1.col_norm.\2"),
    (r"msa_decoder\.layers\.(\d+)\.cross_attention\.layer\.(in_proj_weight|in_proj_bias|out_proj\.weight|"
     r"out_proj\.bias)", r"layers.\1.cross.\2"),
    (r"msa_decoder\.layers\.(\d+)\.cross_attention\.layer_norm\.(weight|bias)", r"layers.\1.cross_norm.\2"),
    (r"msa_decoder\.layers\.(\d+)\.feed_forward_layer\.layer\.fc1\.(weight|bias)", r"layers.\1.ffn.0.\2"),
    (r"msa_decoder\.layers\.(\d+)\.feed_forward_layer\.layer\.fc2\.(weight|bias)", r"layers.\1.ffn.3.\2"),
    (r"msa_decoder\.layers\.(\d+)\.feed_forward_layer\.layer_norm\.(weight|bias)", r"layers.\1.ffn_norm.\2"),
    (r"global_final\.(weight|bias)", r"global_head.\1"),
    (r"local_final\.(weight|bias)", r"local_head.\1"),
)
#: Reference q/k/v projections, fused into our ``qkv`` (q rows first, then k, then v).
_QKV = re.compile(r"msa_decoder\.layers\.(\d+)\.(row|column)_self_attention\.layer\.([qkv])_proj\.(weight|bias)")
#: Reference sinusoid buffers -> our (non-persistent) buffers holding the same wavelengths.
BUFFERS: dict[str, str] = {
    "encoder.peak_encoder": "encoder.peak_encoder.mz_encoder",
    "msa_decoder.embed_tokens.mass_encoder": "embed.precursor_encoder",
    "msa_decoder.embed_tokens.prefixMassEncoder": "embed.residue_mass_encoder",
    "msa_decoder.embed_tokens.suffixMassEncoder": "embed.remaining_mass_encoder",
}
_REFERENCE_MARK = "msa_decoder.embed_tokens.aa_encoder.weight"
_POLYRANK_MARK = "embed.aa_encoder.weight"


def reference_prefix(state: Mapping[str, Any]) -> str | None:
    """The prefix before the reference's module names (``""`` for the authors' file), or None if not theirs."""
    for key in state:
        if key.endswith(_REFERENCE_MARK):
            return key[:-len(_REFERENCE_MARK)]
    return None


def convert_reference_state_dict(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor],
                                                                               dict[str, torch.Tensor]]:
    """Rename a reference ``Spec2Pep`` state dict into polyrank's ``RankNovo`` layout.

    Returns ``(weights, buffers)``: the polyrank state dict and the reference's sinusoid buffers keyed by
    our buffer names (for :func:`check_buffers`). Raises :class:`PolyrankError` listing every reference key
    that no rule knows and every q/k/v projection whose partners are missing.
    """
    prefix = reference_prefix(state)
    if prefix is None:
        raise PolyrankError(f"not a reference RankNovo state dict (no '{_REFERENCE_MARK}'); keys start "
                            f"{sorted({k.split('.')[0] for k in state})}")
    out: dict[str, torch.Tensor] = {}
    buffers: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str, str], dict[str, torch.Tensor]] = {}
    unknown: list[str] = []
    for full, value in state.items():
        if not full.startswith(prefix):
            unknown.append(full)
            continue
        key = full[len(prefix):]
        module, _, leaf = key.rpartition(".")
        if leaf in ("sin_term", "cos_term") and module in BUFFERS:
            buffers[f"{BUFFERS[module]}.{leaf}"] = value
            continue
        match = _QKV.fullmatch(key)
        if match:
            layer, kind, part, leaf = match.groups()
            qkv.setdefault((layer, "row" if kind == "row" else "col", leaf), {})[part] = value
            continue
        for pattern, target in RENAMES:
            if re.fullmatch(pattern, key):
                out[re.sub(pattern, target, key)] = value
                break
        else:
            unknown.append(full)
    incomplete = []
    for (layer, kind, leaf), parts in sorted(qkv.items()):
        if set(parts) != {"q", "k", "v"}:
            incomplete.extend(f"{prefix}msa_decoder.layers.{layer}.{'row' if kind == 'row' else 'column'}"
                              f"_self_attention.layer.{p}_proj.{leaf}" for p in "qkv" if p not in parts)
            continue
        out[f"layers.{layer}.{kind}.qkv.{leaf}"] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    if unknown or incomplete:
        raise PolyrankError("reference RankNovo state dict does not follow BEAM-Labs/denovo RankNovo's module "
                            f"tree: unknown keys {unknown}; missing q/k/v partners {incomplete}")
    return out, buffers


def reference_architecture(state: Mapping[str, torch.Tensor], hparams: Mapping[str, Any] | None = None,
                           n_head: int = 8) -> dict[str, Any]:
    """RankNovo constructor arguments read from a reference state dict's shapes (heads/dropout from hparams).

    ``n_head`` cannot be read from shapes: it comes from the checkpoint's hyper-parameters, else ``n_head``
    (the builder's value; the reference config's 8 for ``ranknovo.base``).
    """
    prefix = reference_prefix(state)
    if prefix is None:
        raise PolyrankError("not a reference RankNovo state dict")
    from polyrank.domains.ranknovo.msa import PAD

    def get(name: str) -> torch.Tensor:
        if prefix + name not in state:
            raise PolyrankError(f"reference RankNovo state dict lacks {prefix + name}")
        return state[prefix + name]

    pattern = re.compile(re.escape(prefix) + r"msa_decoder\.layers\.(\d+)\.")
    layers = {int(m.group(1)) for k in state if (m := pattern.match(k))}
    hp = dict(hparams or {})
    return {"dim_model": int(get("msa_decoder.emb_layer_norm_before.weight").shape[0]),
            "n_head": int(hp.get("n_head") or n_head),
            "dim_feedforward": int(get("msa_decoder.layers.0.feed_forward_layer.layer.fc1.weight").shape[0]),
            "n_layers": max(layers) + 1 if layers else 0,
            "dropout": float(hp.get("dropout", 0.3) or 0.0),
            "max_length": int(get("msa_decoder.embed_positions.weight").shape[0]) - PAD - 1,
            "max_charge": int(get("msa_decoder.embed_tokens.charge_encoder.weight").shape[0]),
            "use_col": any(".column_self_attention." in k for k in state),
            "mass_table": "reference"}


def check_buffers(model: nn.Module, buffers: Mapping[str, torch.Tensor], source: str) -> None:
    """The reference's stored wavelengths must equal the ones our model computes (else another encoding)."""
    ours = dict(model.named_buffers())
    wrong = [k for k, v in buffers.items()
             if k not in ours or ours[k].shape != v.shape or not torch.allclose(ours[k].float(), v.float(),
                                                                                   rtol=1e-5, atol=0.0)]
    if wrong:
        raise PolyrankError(f"{source}: the sinusoid wavelengths {wrong} differ from RankNovo's "
                            "(min 0.001, max 10000); this checkpoint uses another mass encoding")


def load_exact(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """``load_state_dict`` that names every missing, unexpected and misshapen key in one error."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshapen = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
                 for k, v in expected.items() if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or misshapen:
        raise PolyrankError(f"{source} does not fit this RankNovo: missing keys {missing}; unexpected keys "
                            f"{unexpected}; misshapen keys {misshapen}. Build the reranker with the "
                            "architecture the checkpoint was trained with (its hparams / config.json)")
    model.load_state_dict(state, strict=True)


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], str]:
    """``(state_dict, hparams, layout)`` of a ``.ckpt``/``.pt`` file; ``layout`` is ``polyrank`` or ``reference``.

    Accepts the ``last.ckpt``/``best-*.ckpt`` of ``RankNovoModule`` (weights under ``model.``), the authors'
    Lightning checkpoint of ``Spec2Pep`` (no prefix) and a raw ``torch.save(state_dict)`` of either layout;
    every file is opened with ``weights_only=True``.
    """
    from polyrank.shared.checkpoints import read_lightning_checkpoint

    path = Path(path)
    module = "RankNovoModule (or the authors' RankNovo Spec2Pep)"
    try:
        ckpt = read_lightning_checkpoint(path, prefix="", module=module)
        state, hparams = ckpt.state_dict, ckpt.hparams
    except PolyrankError as exc:
        if "not a Lightning checkpoint" not in str(exc):
            raise
        raw = torch.load(path, map_location="cpu", weights_only=True)  # a plain state dict, never arbitrary objects
        if not isinstance(raw, dict) or not raw or not all(isinstance(v, torch.Tensor) for v in raw.values()):
            raise PolyrankError(f"{path} is not a Lightning checkpoint of {module} (no 'state_dict') nor a raw "
                                "state dict of tensors; expected a .ckpt written by `polyrank fit`, the authors' "
                                "checkpoint, or a directory written by RankNovoReranker.save") from None
        state, hparams = raw, {}
    if reference_prefix(state) is not None:
        return dict(state), hparams, "reference"
    for prefix in ("model.", ""):
        if prefix + _POLYRANK_MARK in state:
            return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}, hparams, "polyrank"
    raise PolyrankError(f"{path} is not a Lightning checkpoint of {module}: it has neither polyrank's "
                        f"'model.{_POLYRANK_MARK}' nor the reference's '{_REFERENCE_MARK}' (top-level keys "
                        f"{sorted({k.split('.')[0] for k in state})[:10]})")


def load_reference_checkpoint(model: nn.Module, path: str | Path) -> nn.Module:
    """Load the authors' checkpoint (or a raw reference state dict) into ``model``, exactly and strictly."""
    state, _, layout = read_checkpoint(path)
    if layout != "reference":
        raise PolyrankError(f"{path} is a polyrank RankNovo checkpoint, not the reference layout; "
                            "load it with load('ranknovo.base', checkpoint=...)")
    weights, buffers = convert_reference_state_dict(state)
    check_buffers(model, buffers, str(path))
    load_exact(model, weights, f"reference checkpoint {path}")
    return model
