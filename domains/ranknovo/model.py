"""RankNovo's network (Qiu et al., ICML 2025, method section; reference ``components/`` and ``msa/``).

- :class:`SpectrumEncoder`: two virtual peaks, (m/z 0, learnable intensity) and (precursor mass,
  learnable intensity), are prepended; each peak is a sinusoidal m/z encoding plus ``Linear(1->d)`` of its
  intensity (:class:`PeakEncoder`); then a ``TransformerEncoder`` with a key-padding mask on zero peaks.
- :class:`MSAEmbedding`: per token, [residue embedding (d/2); sinusoid of the residue mass (d/4);
  sinusoid of the remaining mass = precursor - cumulative mass (d/4)]; at ``<cls>`` the precursor
  [mass sinusoid + charge embedding (d/2); enc(0); enc(0)] is added; learned positions, no row embedding.
- :class:`AxialLayer` (``CrossAxialTransformerLayer``): pre-LN residual blocks of tied row attention
  (logits summed over rows, scaled by ``head_dim^-0.5 / sqrt(rows)``), column attention across candidates,
  cross-attention to the spectrum, FFN.
- Heads: ``global_head`` on ``<cls>`` -> predicted PMD per candidate; ``local_head`` per position ->
  predicted RMD per residue. Selection is ``argmin`` PMD over real rows.

The parameters mirror the reference module for module, so the authors' checkpoint loads exactly
(``checkpoints.convert_reference_state_dict``): ``Linear(1->d)`` of the intensity has no bias; the learned
positions use the reference's ``LearnedPositionalEmbedding`` layout (``max_length + <pad> + 1`` rows, real
token ``i`` at row ``<pad> + 1 + i``); the row/column attentions' fused ``qkv`` is the reference's
``q_proj``/``k_proj``/``v_proj`` stacked; each axial sub-block has its own LayerNorm (none for columns when
``use_col=False``). The sinusoid wavelengths are not stored (the reference keeps them as buffers; the
converter checks that they agree).

Difference from the reference, as a note: the row-attention scale uses the number of *real* rows of each
MSA (the reference divides by all rows of the batch tensor; identical without padded rows).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from polyrank.domains.ranknovo.msa import PAD, TOKENS, token_masses


class MassEncoder(nn.Module):
    """Sinusoidal encoding of a mass / m/z: ``sin(m/l_i)`` then ``cos(m/l_i)``, geometric ``l_i``."""

    def __init__(self, dim: int, min_wavelength: float = 0.001, max_wavelength: float = 10000.0) -> None:
        super().__init__()
        n_sin, n_cos = dim // 2, dim - dim // 2
        base, scale = min_wavelength / (2 * math.pi), max_wavelength / min_wavelength
        sin_term = base * scale ** (torch.arange(n_sin) / max(n_sin - 1, 1))
        cos_term = base * scale ** (torch.arange(n_cos) / max(n_cos - 1, 1))
        self.register_buffer("sin_term", sin_term, persistent=False)
        self.register_buffer("cos_term", cos_term, persistent=False)

    def forward(self, mass: torch.Tensor) -> torch.Tensor:  # (...,) -> (..., dim)
        mass = mass.float()[..., None]
        return torch.cat([torch.sin(mass / self.sin_term), torch.cos(mass / self.cos_term)], dim=-1)


class PeakEncoder(nn.Module):
    """Peak = MassEncoder(m/z) + Linear(1 -> d)(intensity)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.mz_encoder = MassEncoder(dim)
        self.intensity_encoder = nn.Linear(1, dim, bias=False)  # reference PeakEncoder.int_encoder: no bias

    def forward(self, peaks: torch.Tensor) -> torch.Tensor:  # (B, P, 2) -> (B, P, D)
        return self.mz_encoder(peaks[..., 0]) + self.intensity_encoder(peaks[..., 1:2].float())


class SpectrumEncoder(nn.Module):
    """Transformer encoder over peaks with two prepended virtual peaks (0 and the precursor mass)."""

    def __init__(self, dim: int, n_head: int, dim_feedforward: int, n_layers: int, dropout: float) -> None:
        super().__init__()
        self.zero_intensity = nn.Parameter(torch.randn(1, 1, 1))
        self.precursor_intensity = nn.Parameter(torch.randn(1, 1, 1))
        self.peak_encoder = PeakEncoder(dim)
        layer = nn.TransformerEncoderLayer(dim, n_head, dim_feedforward, dropout, batch_first=True)
        self.transformer = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)

    def forward(self, spectra: torch.Tensor,
                precursor_mass: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = spectra.shape[0]
        zero = torch.cat([spectra.new_zeros(b, 1, 1), self.zero_intensity.expand(b, 1, 1)], dim=2)
        prec_mass = precursor_mass.view(b, 1, 1).to(spectra)
        prec = torch.cat([prec_mass, self.precursor_intensity.expand(b, 1, 1)], dim=2)
        peaks = torch.cat([zero, prec, spectra], dim=1)  # (B, P+2, 2)
        mask = peaks.sum(dim=2) == 0  # zero-padded peaks
        return self.transformer(self.peak_encoder(peaks), src_key_padding_mask=mask), mask


class MSAEmbedding(nn.Module):
    """Token + residue-mass + remaining-mass embedding, precursor added at ``<cls>``, learned positions."""

    def __init__(self, dim: int, max_charge: int, max_positions: int, mass_table: str = "reference") -> None:
        super().__init__()
        self.max_charge = max_charge
        self.aa_encoder = nn.Embedding(len(TOKENS), dim - dim // 2, padding_idx=PAD)
        self.residue_mass_encoder = MassEncoder(dim // 4)
        self.remaining_mass_encoder = MassEncoder(dim - dim // 2 - dim // 4)
        self.precursor_encoder = MassEncoder(dim // 2)
        self.charge_encoder = nn.Embedding(max_charge, dim // 2)
        self.max_positions = max_positions
        # reference LearnedPositionalEmbedding: rows 0..<pad> unused/padding, real token i -> row <pad> + 1 + i
        self.positions = nn.Embedding(max_positions + PAD + 1, dim, padding_idx=PAD)
        self.register_buffer("token_mass", token_masses(mass_table).float(), persistent=False)

    def forward(self, tokens: torch.Tensor, precursor_mass: torch.Tensor,
                charge: torch.Tensor) -> torch.Tensor:
        residue = self.token_mass[tokens]  # (B, N, L)
        remaining = precursor_mass.float()[:, None, None] - torch.cumsum(residue, dim=-1)
        x = torch.cat([self.aa_encoder(tokens), self.residue_mass_encoder(residue),
                       self.remaining_mass_encoder(remaining)], dim=-1)  # (B, N, L, D)
        z = (charge.long().clamp(1, self.max_charge) - 1)
        prec = self.precursor_encoder(precursor_mass) + self.charge_encoder(z)  # (B, D/2)
        zero = torch.zeros_like(precursor_mass, dtype=torch.float)
        prec = torch.cat([prec, self.residue_mass_encoder(zero), self.remaining_mass_encoder(zero)], dim=-1)
        x = torch.cat([x[:, :, :1] + prec[:, None, None, :], x[:, :, 1:]], dim=2)
        if tokens.shape[-1] > self.max_positions:
            raise ValueError(f"MSA width {tokens.shape[-1]} exceeds max_length {self.max_positions}")
        real = (tokens != PAD).long()
        return x + self.positions(torch.cumsum(real, dim=-1) * real + PAD)


def _masked_softmax(logits: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis with ``key_mask`` True = ignore (finite fill: all-masked stays finite)."""
    return logits.masked_fill(key_mask, torch.finfo(logits.dtype).min).softmax(dim=-1)


class _AxialAttention(nn.Module):
    """Shared projections of the two axial attentions (fused q/k/v, output, attention dropout)."""

    def __init__(self, dim: int, n_head: int, dropout: float) -> None:
        super().__init__()
        self.n_head, self.head_dim = n_head, dim // n_head
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)


class RowSelfAttention(_AxialAttention):
    """Tied row attention (MSA Transformer): one attention map per MSA, logits summed over its rows."""

    def forward(self, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:  # x (B, R, C, D), pad (B, R, C)
        b, r, c, _ = x.shape
        q, k, v = self.qkv(x).view(b, r, c, 3, self.n_head, self.head_dim).unbind(dim=3)
        rows = (~pad[:, :, 0]).sum(dim=1).clamp(min=1).to(q.dtype)  # real rows per MSA
        q = q * (~pad)[..., None, None].to(q.dtype)  # padded positions add nothing to the tied logits
        scale = (self.head_dim ** -0.5) / rows.sqrt()[:, None, None, None]
        logits = torch.einsum("brihd,brjhd->bhij", q, k) * scale
        column_pad = pad.all(dim=1)  # (B, C)
        attn = self.dropout(_masked_softmax(logits, column_pad[:, None, None, :]))
        out = torch.einsum("bhij,brjhd->brihd", attn, v).reshape(b, r, c, -1)
        return self.out(out)


class ColumnSelfAttention(_AxialAttention):
    """Attention across candidates at each MSA column (padded rows are never attended to)."""

    def forward(self, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        b, r, c, _ = x.shape
        q, k, v = self.qkv(x).view(b, r, c, 3, self.n_head, self.head_dim).unbind(dim=3)
        logits = torch.einsum("bichd,bjchd->bhcij", q, k) * (self.head_dim ** -0.5)
        key_pad = pad.permute(0, 2, 1)[:, None, :, None, :]  # (B, 1, C, 1, R)
        attn = self.dropout(_masked_softmax(logits, key_pad))
        out = torch.einsum("bhcij,bjchd->bichd", attn, v).reshape(b, r, c, -1)
        return self.out(out)


class AxialLayer(nn.Module):
    """Row attention, column attention, cross-attention to the spectrum and FFN, each pre-LN + residual."""

    def __init__(self, dim: int, n_head: int, dim_feedforward: int, dropout: float,
                 use_col: bool = True) -> None:
        super().__init__()
        self.row = RowSelfAttention(dim, n_head, dropout)
        self.col = ColumnSelfAttention(dim, n_head, dropout) if use_col else None
        self.cross = nn.MultiheadAttention(dim, n_head, dropout=dropout, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(dim, dim_feedforward), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(dim_feedforward, dim))
        self.row_norm, self.cross_norm, self.ffn_norm = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.col_norm = nn.LayerNorm(dim) if use_col else None
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, pad: torch.Tensor, memory: torch.Tensor,
                memory_pad: torch.Tensor) -> torch.Tensor:
        b, r, c, d = x.shape
        x = x + self.dropout(self.row(self.row_norm(x), pad))
        if self.col is not None:
            x = x + self.dropout(self.col(self.col_norm(x), pad))
        h = self.cross_norm(x).reshape(b, r * c, d)
        h, _ = self.cross(h, memory, memory, key_padding_mask=memory_pad, need_weights=False)
        x = x + self.dropout(h.view(b, r, c, d))
        x = x + self.dropout(self.ffn(self.ffn_norm(x)))
        return x * (~pad)[..., None].to(x.dtype)


class RankNovo(nn.Module):
    """Spectrum encoder + MSA axial decoder + PMD/RMD heads (reference ``Spec2Pep`` + ``MSADecoder``)."""

    def __init__(self, dim_model: int = 512, n_head: int = 8, dim_feedforward: int = 1024, n_layers: int = 8,
                 dropout: float = 0.3, max_length: int = 100, max_charge: int = 10, use_col: bool = True,
                 mass_table: str = "reference") -> None:
        super().__init__()
        self.max_length = max_length
        self.encoder = SpectrumEncoder(dim_model, n_head, dim_feedforward, n_layers, dropout)
        self.embed = MSAEmbedding(dim_model, max_charge, max_length, mass_table)
        self.norm_before, self.norm_after = nn.LayerNorm(dim_model), nn.LayerNorm(dim_model)
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(AxialLayer(dim_model, n_head, dim_feedforward, dropout, use_col)
                                    for _ in range(n_layers))
        self.global_head = nn.Linear(dim_model, 1)
        self.local_head = nn.Linear(dim_model, 1)
        for head in (self.global_head, self.local_head):
            nn.init.xavier_uniform_(head.weight)
            nn.init.zeros_(head.bias)

    def forward(self, spectra: torch.Tensor, precursors: torch.Tensor,
                tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        """``spectra`` (B, P, 2), ``precursors`` (B, 3) = [neutral mass, charge, m/z], ``tokens`` (B, N, L).

        Returns ``pmd`` (B, N) (+inf at padded rows), ``rmd`` (B, N, L) and ``row_mask`` (B, N).
        """
        memory, memory_pad = self.encoder(spectra, precursors[:, 0])
        pad = tokens == PAD  # (B, N, L)
        x = self.embed(tokens, precursors[:, 0], precursors[:, 1])
        x = self.dropout(self.norm_before(x)) * (~pad)[..., None].to(x.dtype)
        for layer in self.layers:
            x = layer(x, pad, memory, memory_pad)
        x = self.norm_after(x)
        row_mask = ~pad[:, :, 0]
        pmd = self.global_head(x[:, :, 0]).squeeze(-1).float()
        rmd = self.local_head(x).squeeze(-1).float()
        return {"pmd": pmd.masked_fill(~row_mask, float("inf")), "rmd": rmd, "row_mask": row_mask}
