"""Qwen3-Embedding-style dense first stage from any causal LM (Qwen3 Embedding report, arXiv 2506.05176, Sec. 2).

An input's embedding is the final hidden state of its last token (the end-of-text token appended to every input,
as the Qwen3-Embedding model card does), L2-normalised. Queries carry an instruction prefix,
``Instruct: {task}\\nQuery: {query}``; documents are encoded as they are. Inputs are left padded, so the last
column is every row's last real token; explicit position ids make a padded row equal its unpadded forward.
Batches are token-budgeted and back off on out-of-memory (:mod:`polyrank.shared.llm.scoring`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from polyrank.shared.llm.loading import CausalLM
from polyrank.shared.llm.scoring import DEFAULT_MAX_BATCH, DEFAULT_TOKEN_BUDGET, _left_padded, _scheduled

DEFAULT_TASK = "Given a web search query, retrieve relevant passages that answer the query"


def is_causal_lm(source: str | Path | None) -> bool:
    """True for a ``.gguf`` file or a Hugging Face folder whose ``config.json`` names a ``*ForCausalLM``
    architecture (what ``polyrank index/search --encoder`` would route to :class:`LLMEmbedder`)."""
    if source is None:
        return False
    path = Path(source)
    if path.is_file():
        return path.suffix == ".gguf"
    config = path / "config.json"
    if not config.is_file():
        return False
    try:
        architectures = json.loads(config.read_text()).get("architectures") or []
    except (json.JSONDecodeError, OSError):
        return False
    return any(str(a).endswith("ForCausalLM") for a in architectures)


def query_text(query: str, task: str = DEFAULT_TASK) -> str:
    """The instructed query of Qwen3-Embedding: ``Instruct: {task}\\nQuery: {query}``."""
    return f"Instruct: {task}\nQuery: {query}"


def last_token_embeddings(lm: CausalLM, sequences: Sequence[Sequence[int]], normalize: bool = True,
                          token_budget: int = DEFAULT_TOKEN_BUDGET, max_batch_size: int = DEFAULT_MAX_BATCH
                          ) -> np.ndarray:
    """Final-layer hidden state at the last token of each sequence (left padded batches), ``(n, hidden)``."""
    if not sequences:
        return np.zeros((0, lm.model.config.hidden_size), dtype=np.float32)
    if any(len(s) == 0 for s in sequences):
        raise ValueError("last_token_embeddings got an empty input; every text needs at least one token")
    backbone = lm.model.get_decoder() if hasattr(lm.model, "get_decoder") else lm.model.base_model

    def run(batch: list[int]) -> list[np.ndarray]:
        ids, mask = _left_padded([sequences[i] for i in batch], lm.tokenizer.pad_token_id, lm.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            states = backbone(input_ids=ids, attention_mask=mask, position_ids=positions,
                              use_cache=False).last_hidden_state[:, -1].float()
        if normalize:
            states = torch.nn.functional.normalize(states, p=2, dim=-1)
        return list(states.cpu().numpy())

    return np.stack(_scheduled([len(s) for s in sequences], token_budget, max_batch_size, run)).astype(np.float32)


class LLMEmbedder:
    """Encodes queries (instructed) and documents (plain) into L2-normalised last-token embeddings.

    ``encode_queries`` / ``encode_documents`` return float32 ``(n, dim)`` arrays ready for a
    :class:`~polyrank.shared.store.CandidateStore` with ``metric="ip"`` (cosine similarity).
    """

    def __init__(self, lm: CausalLM, task: str = DEFAULT_TASK, max_length: int = 512, append_eos: bool = True,
                 token_budget: int = DEFAULT_TOKEN_BUDGET, max_batch_size: int = DEFAULT_MAX_BATCH) -> None:
        self.lm, self.task, self.max_length, self.append_eos = lm, task, max_length, append_eos
        self.token_budget, self.max_batch_size = token_budget, max_batch_size

    @property
    def dim(self) -> int:
        return int(self.lm.model.config.hidden_size)

    def tokens(self, text: str) -> list[int]:
        """Token ids of ``text`` cut to ``max_length`` (keeping room for the end-of-text token)."""
        eos = [self.lm.tokenizer.eos_token_id] if self.append_eos and self.lm.tokenizer.eos_token_id is not None else []
        return self.lm.encode(text)[: self.max_length - len(eos)] + eos

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return last_token_embeddings(self.lm, [self.tokens(t) for t in texts], token_budget=self.token_budget,
                                     max_batch_size=self.max_batch_size)

    def encode_queries(self, queries: Sequence[str]) -> np.ndarray:
        return self.encode([query_text(q, self.task) for q in queries])

    def encode_documents(self, documents: Sequence[str]) -> np.ndarray:
        return self.encode(list(documents))
