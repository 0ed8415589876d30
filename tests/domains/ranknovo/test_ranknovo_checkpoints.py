"""The authors' checkpoint layout (BEAM-Labs/denovo ``RankNovo/``) converts exactly; strict errors name keys.

The "reference-layout" state dict is built here by an independent table written from the reference module
tree (``denovo/msa_model.py: Spec2Pep`` -> ``encoder`` = ``components/transformers.py: SpectrumEncoder``,
``msa_decoder`` = ``msa/msa_transformer.py: MSADecoder``, heads ``global_final``/``local_final``), not from
``checkpoints.RENAMES``, so a wrong rule in the converter fails here.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from polyrank.domains.ranknovo.checkpoints import convert_reference_state_dict, load_reference_checkpoint
from polyrank.domains.ranknovo.dataset import collate, simulated_examples
from polyrank.domains.ranknovo.model import RankNovo
from polyrank.shared.errors import PolyrankError
from polyrank.shared.registry import UntrainedWeightsWarning, load

ARCH = {"dim_model": 32, "n_head": 2, "dim_feedforward": 48, "n_layers": 2, "dropout": 0.0, "max_length": 40,
        "max_charge": 10}


def _reference_wavelengths(dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``components/encoders.py: MassEncoder`` buffers (min 0.001, max 10000), as the reference computes them."""
    n_sin, n_cos = int(dim / 2), dim - int(dim / 2)
    base, scale = 0.001 / (2 * np.pi), 10000 / 0.001
    return (base * scale ** (torch.arange(0, n_sin).float() / (n_sin - 1)),
            base * scale ** (torch.arange(0, n_cos).float() / (n_cos - 1)))


def to_reference_layout(ours: dict[str, torch.Tensor], n_layers: int, dim: int, use_col: bool = True
                        ) -> dict[str, torch.Tensor]:
    """polyrank RankNovo state dict -> the key names/shapes of the reference ``Spec2Pep.state_dict()``."""
    ref: dict[str, torch.Tensor] = {
        "encoder.zeroPeaks_intensity": ours["encoder.zero_intensity"],
        "encoder.allPeaks_intensity": ours["encoder.precursor_intensity"],
        "encoder.peak_encoder.int_encoder.weight": ours["encoder.peak_encoder.intensity_encoder.weight"],
        "msa_decoder.embed_tokens.aa_encoder.weight": ours["embed.aa_encoder.weight"],
        "msa_decoder.embed_tokens.charge_encoder.weight": ours["embed.charge_encoder.weight"],
        "msa_decoder.embed_positions.weight": ours["embed.positions.weight"],
        "global_final.weight": ours["global_head.weight"], "global_final.bias": ours["global_head.bias"],
        "local_final.weight": ours["local_head.weight"], "local_final.bias": ours["local_head.bias"],
    }
    for name, size in (("encoder.peak_encoder", dim), ("msa_decoder.embed_tokens.mass_encoder", dim // 2),
                       ("msa_decoder.embed_tokens.prefixMassEncoder", dim // 4),
                       ("msa_decoder.embed_tokens.suffixMassEncoder", dim // 4)):
        ref[f"{name}.sin_term"], ref[f"{name}.cos_term"] = _reference_wavelengths(size)
    for side in ("before", "after"):
        for leaf in ("weight", "bias"):
            ref[f"msa_decoder.emb_layer_norm_{side}.{leaf}"] = ours[f"norm_{side}.{leaf}"]
    encoder_leaves = ("self_attn.in_proj_weight", "self_attn.in_proj_bias", "self_attn.out_proj.weight",
                      "self_attn.out_proj.bias", "linear1.weight", "linear1.bias", "linear2.weight",
                      "linear2.bias", "norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias")
    for i in range(n_layers):
        for leaf in encoder_leaves:
            ref[f"encoder.transformer_encoder.layers.{i}.{leaf}"] = ours[f"encoder.transformer.layers.{i}.{leaf}"]
        block = f"msa_decoder.layers.{i}"
        axial = [("row_self_attention", "row", "row_norm")] + ([("column_self_attention", "col", "col_norm")]
                                                               if use_col else [])
        for theirs, mine, norm in axial:
            for leaf in ("weight", "bias"):
                q, k, v = ours[f"layers.{i}.{mine}.qkv.{leaf}"].chunk(3, dim=0)  # fused rows: q, k, v
                ref[f"{block}.{theirs}.layer.q_proj.{leaf}"] = q.clone()
                ref[f"{block}.{theirs}.layer.k_proj.{leaf}"] = k.clone()
                ref[f"{block}.{theirs}.layer.v_proj.{leaf}"] = v.clone()
                ref[f"{block}.{theirs}.layer.out_proj.{leaf}"] = ours[f"layers.{i}.{mine}.out.{leaf}"]
                ref[f"{block}.{theirs}.layer_norm.{leaf}"] = ours[f"layers.{i}.{norm}.{leaf}"]
        for leaf in ("in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"):
            ref[f"{block}.cross_attention.layer.{leaf}"] = ours[f"layers.{i}.cross.{leaf}"]
        for leaf in ("weight", "bias"):
            ref[f"{block}.cross_attention.layer_norm.{leaf}"] = ours[f"layers.{i}.cross_norm.{leaf}"]
            ref[f"{block}.feed_forward_layer.layer.fc1.{leaf}"] = ours[f"layers.{i}.ffn.0.{leaf}"]
            ref[f"{block}.feed_forward_layer.layer.fc2.{leaf}"] = ours[f"layers.{i}.ffn.3.{leaf}"]
            ref[f"{block}.feed_forward_layer.layer_norm.{leaf}"] = ours[f"layers.{i}.ffn_norm.{leaf}"]
    return ref


def _model(seed: int = 3, **kw) -> RankNovo:
    torch.manual_seed(seed)
    model = RankNovo(**{**ARCH, **kw}).eval()
    with torch.no_grad():  # non-trivial heads/intensities so a mis-mapped tensor changes the output
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


@pytest.fixture(scope="module")
def batch():
    return collate(simulated_examples(["PEPTIDEK", "LGEYGFQNALIVR", "AEFVEVTK", "SLHTLFGDELCK"], 3, seed=2),
                   max_length=ARCH["max_length"])


def _predict(model, batch):
    with torch.no_grad():
        return model(batch.spectra, batch.precursors, batch.msa.tokens)["pmd"]


def test_reference_layout_matches_the_reference_module_tree_shapes():
    d = ARCH["dim_model"]
    ref = to_reference_layout(_model().state_dict(), ARCH["n_layers"], d)
    # shapes the reference modules give (msa_model.py, encoders.py, msa_embedding.py, modules.py, tokenizer.py)
    assert ref["encoder.peak_encoder.int_encoder.weight"].shape == (d, 1)  # Linear(1, d, bias=False)
    assert "encoder.peak_encoder.int_encoder.bias" not in ref
    assert ref["msa_decoder.embed_tokens.aa_encoder.weight"].shape == (41, d - d // 2)  # 41 Alphabet tokens
    assert ref["msa_decoder.embed_tokens.charge_encoder.weight"].shape == (10, d // 2)  # config max_charge 10
    assert ref["msa_decoder.embed_positions.weight"].shape == (ARCH["max_length"] + 1 + 1, d)  # + padding_idx + 1
    assert ref["msa_decoder.layers.1.row_self_attention.layer.q_proj.weight"].shape == (d, d)
    assert ref["msa_decoder.layers.0.cross_attention.layer.in_proj_weight"].shape == (3 * d, d)
    assert ref["encoder.transformer_encoder.layers.1.linear1.weight"].shape == (ARCH["dim_feedforward"], d)


def test_positions_follow_the_reference_learned_positional_embedding(batch):
    # LearnedPositionalEmbedding (padding_idx = <pad> = 1): real token i -> row 2 + i, <pad> -> row 1
    model = _model()
    tokens, prec = batch.msa.tokens, batch.precursors
    with torch.no_grad():
        full = model.embed(tokens, prec[:, 0], prec[:, 1])
        rows = model.embed.positions.weight.clone()
        model.embed.positions.weight.zero_()
        base = model.embed(tokens, prec[:, 0], prec[:, 1])
    added, real = full - base, tokens != 1
    expected = rows[2:2 + tokens.shape[-1]].expand(*tokens.shape, ARCH["dim_model"])
    torch.testing.assert_close(added[real], expected[real])
    assert (~real).any()
    torch.testing.assert_close(added[~real], rows[1].expand(int((~real).sum()), -1))  # the padding row


@pytest.mark.parametrize("use_col", [True, False])
def test_reference_checkpoint_loads_exactly_through_the_registry(tmp_path, batch, use_col):
    model = _model(use_col=use_col)
    ref = to_reference_layout(model.state_dict(), ARCH["n_layers"], ARCH["dim_model"], use_col)
    ckpt = tmp_path / "model_0.660.ckpt"  # pytorch-lightning 1.8 checkpoint of Spec2Pep: no prefix
    torch.save({"state_dict": ref, "hyper_parameters": {"n_head": ARCH["n_head"], "dropout": 0.3},
                "epoch": 4, "global_step": 100, "pytorch-lightning_version": "1.8.6"}, ckpt)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UntrainedWeightsWarning)
        reranker = load("ranknovo.base", checkpoint=ckpt)  # architecture read from the shapes
    assert reranker.config["n_layers"] == ARCH["n_layers"] and reranker.config["use_col"] is use_col
    assert reranker.config["max_charge"] == 10 and reranker.config["max_length"] == ARCH["max_length"]
    torch.testing.assert_close(_predict(reranker.model, batch), _predict(model, batch), rtol=0, atol=0)

    raw = tmp_path / "weights.pt"  # a raw torch.save(state_dict()) of the reference layout
    torch.save(ref, raw)
    direct = load_reference_checkpoint(RankNovo(**{**ARCH, "use_col": use_col}).eval(), raw)
    torch.testing.assert_close(_predict(direct, batch), _predict(model, batch), rtol=0, atol=0)


def test_reference_keys_under_a_prefix_are_found(tmp_path, batch):
    model = _model()
    ref = to_reference_layout(model.state_dict(), ARCH["n_layers"], ARCH["dim_model"])
    torch.save({"state_dict": {f"net.{k}": v for k, v in ref.items()}}, tmp_path / "p.ckpt")
    reranker = load("ranknovo.tiny", checkpoint=tmp_path / "p.ckpt", n_head=ARCH["n_head"])
    torch.testing.assert_close(_predict(reranker.model, batch), _predict(model, batch), rtol=0, atol=0)


def test_missing_unexpected_and_misshapen_reference_keys_are_each_named(tmp_path):
    ref = to_reference_layout(_model().state_dict(), ARCH["n_layers"], ARCH["dim_model"])
    broken = dict(ref)
    del broken["msa_decoder.layers.1.cross_attention.layer_norm.bias"]
    del broken["msa_decoder.layers.0.row_self_attention.layer.k_proj.weight"]
    broken["msa_decoder.contact_head.regression.weight"] = torch.zeros(1, 4)
    broken["msa_decoder.layers.1.feed_forward_layer.layer.fc1.weight"] = torch.zeros(7, ARCH["dim_model"])
    with pytest.raises(PolyrankError) as info:
        convert_reference_state_dict(broken)
    message = str(info.value)
    assert "msa_decoder.contact_head.regression.weight" in message
    assert "msa_decoder.layers.0.row_self_attention.layer.k_proj.weight" in message

    del broken["msa_decoder.contact_head.regression.weight"]
    broken["msa_decoder.layers.0.row_self_attention.layer.k_proj.weight"] = ref[
        "msa_decoder.layers.0.row_self_attention.layer.k_proj.weight"]
    torch.save({"state_dict": broken, "hyper_parameters": {"n_head": 2}}, tmp_path / "b.ckpt")
    with pytest.raises(PolyrankError) as info:
        load("ranknovo.base", checkpoint=tmp_path / "b.ckpt")
    message = str(info.value)
    assert "layers.1.cross_norm.bias" in message  # missing
    assert "layers.1.ffn.0.weight: checkpoint (7, 32) vs model (48, 32)" in message  # misshapen


def test_other_wavelengths_are_refused(tmp_path):
    ref = to_reference_layout(_model().state_dict(), ARCH["n_layers"], ARCH["dim_model"])
    ref["msa_decoder.embed_tokens.mass_encoder.sin_term"] = ref["msa_decoder.embed_tokens.mass_encoder.sin_term"] * 2
    torch.save(ref, tmp_path / "w.pt")
    with pytest.raises(PolyrankError, match="embed.precursor_encoder.sin_term"):
        load_reference_checkpoint(RankNovo(**ARCH), tmp_path / "w.pt")


def test_polyrank_checkpoint_keys_are_strict_too(tmp_path):
    model = RankNovo(**ARCH)
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    state["model.embed.positions.weight"] = torch.zeros(ARCH["max_length"], ARCH["dim_model"])  # old layout
    state["model.extra.weight"] = torch.zeros(1)
    torch.save({"state_dict": state, "hyper_parameters": ARCH}, tmp_path / "last.ckpt")
    with pytest.raises(PolyrankError) as info:
        load("ranknovo.tiny", checkpoint=tmp_path / "last.ckpt")
    assert "extra.weight" in str(info.value) and "embed.positions.weight: checkpoint (40, 32)" in str(info.value)


def test_bacillus_style_row_runs_on_a_reference_checkpoint(tmp_path):
    """The paper row's path: reproduce.RankNovoBenchmark with a reference-layout .ckpt (converted on load)."""
    import pickle

    from polyrank.domains.ranknovo.reproduce import RankNovoBenchmark
    from polyrank.domains.ranknovo.simulate import simulate_spectrum

    rng = np.random.default_rng(0)
    truths = ["PEPTIDEK", "AEFVEVTK", "LGEYGFQNALIVR"]
    blocks = []
    for i, t in enumerate(truths):
        s = simulate_spectrum(t, 2, rng)
        peaks = "\n".join(f"{m:.5f} {x:.4f}" for m, x in zip(s.mz, s.intensity))
        blocks.append(f"BEGIN IONS\nTITLE={i}\nPEPMASS={s.precursor_mz:.6f}\nCHARGE=2+\nSEQ={t}\n{peaks}\nEND IONS\n")
    (tmp_path / "b.mgf").write_text("\n".join(blocks))
    (tmp_path / "b.pkl").write_bytes(pickle.dumps([[t, t, t[::-1], t, t, t[1:], t] for t in truths]))
    ref = to_reference_layout(_model().state_dict(), ARCH["n_layers"], ARCH["dim_model"])
    torch.save({"state_dict": ref, "hyper_parameters": {"n_head": ARCH["n_head"]}}, tmp_path / "model_0.660.ckpt")
    row = RankNovoBenchmark(str(tmp_path / "b.mgf"), str(tmp_path / "b.pkl"), str(tmp_path / "model_0.660.ckpt"),
                            precision_denominator="true")
    assert row.missing() == []
    out = row.run()
    assert out["Casanovo-V1/peptide_recall"] == 1.0 and out["oracle/peptide_recall"] == 1.0
    assert 0.0 <= out["peptide_recall"] <= 1.0 and "P@1" in out
