"""Pointwise LLM rerankers: one label read-out at the last position of each (query, document) prompt.

- ``yesno`` (Qwen3-Reranker; Qwen3 Embedding report arXiv 2506.05176 and the model card): the exact ChatML
  template (system judge instruction; ``<Instruct>: .. <Query>: .. <Document>: ..``; empty think block), score
  ``P(yes) = softmax([logit(no), logit(yes)])[yes]``.
- ``prorank`` (ProRank arXiv 2506.03487 / mxbai-rerank-v2): the model's chat template around
  ``query: .. document: ..`` and the binary relevance task prompt, score ``logit("1") - logit("0")``.

The query part of the prompt is the same for all candidates of a query, so its KV cache is computed once
(``reuse_prefix``); the candidates are scored in token-budgeted batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from polyrank.domains.text.reranker import LLMReranker, candidate_text
from polyrank.shared.errors import PolyrankError
from polyrank.shared.llm.scoring import next_token_logits
from polyrank.shared.protocol import Candidate

DEFAULT_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"
QWEN3_PREFIX = ("<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the "
                "Instruct provided. Note that the answer can only be \"yes\" or \"no\".<|im_end|>\n<|im_start|>user\n")
QWEN3_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
PRORANK_TASK = ("You are a search relevance expert who evaluates how well documents match search queries. For each "
                "query-document pair, carefully analyze the semantic relationship between them, then provide your "
                "binary relevance judgment (0 for not relevant, 1 for relevant).\nRelevance:")
VARIANTS = ("yesno", "prorank")
_SENTINEL = "\u2063DOCUMENT\u2063"
#: words the tiny test tokenizer keeps whole (labels must be single tokens)
VOCAB = ["yes", "no", "Instruct", "Query", "Document", "Judge", "query", "document", "Relevance", "system", "user",
         "assistant"]


class PointwiseReranker(LLMReranker):
    """Label-logit pointwise reranker (``variant``: ``yesno`` = Qwen3-Reranker, ``prorank`` = ProRank/mxbai v2)."""

    def __init__(self, lm, registry_name: str, variant: str = "yesno", instruction: str = DEFAULT_INSTRUCTION,
                 max_length: int = 512, reuse_prefix: bool = True, token_budget: int = 16384,
                 max_batch_size: int = 32) -> None:
        if variant not in VARIANTS:
            raise PolyrankError(f"variant must be one of {VARIANTS}, got {variant!r}")
        super().__init__(lm, registry_name, variant=variant, instruction=instruction, max_length=max_length,
                         reuse_prefix=reuse_prefix, token_budget=token_budget, max_batch_size=max_batch_size)
        self.variant, self.instruction, self.max_length = variant, instruction, max_length
        self.reuse_prefix, self.token_budget, self.max_batch_size = reuse_prefix, token_budget, max_batch_size
        negative, positive = ("no", "yes") if variant == "yesno" else ("0", "1")
        self.label_ids = [lm.single_token(negative), lm.single_token(positive)]

    def prompt_parts(self, query: str) -> tuple[str, str]:
        """The text before and after the document: the part before is shared by all candidates of ``query``."""
        if self.variant == "yesno":
            return (f"{QWEN3_PREFIX}<Instruct>: {self.instruction}\n<Query>: {query}\n<Document>: ", QWEN3_SUFFIX)
        user = f"query: {query} \ndocument: {_SENTINEL} \n{PRORANK_TASK}"
        rendered = self.lm.chat([{"role": "user", "content": user}])
        before, after = rendered.split(_SENTINEL)
        return before, after

    def label_logits(self, query: str, candidates: Sequence[Candidate]) -> np.ndarray:
        """``(n, 2)`` logits of the negative and positive label at the last position."""
        before, after = self.prompt_parts(str(query))
        prefix, suffix = self.lm.encode(before), self.lm.encode(after)
        docs = [self.lm.encode(candidate_text(c))[: self.max_length] + suffix for c in candidates]
        return next_token_logits(self.lm, docs, self.label_ids, prefix=prefix, reuse_prefix=self.reuse_prefix,
                                 token_budget=self.token_budget, max_batch_size=self.max_batch_size)

    def score(self, query: Any, candidates: Sequence[Candidate]) -> np.ndarray:
        if not candidates:
            return np.zeros(0)
        logits = self.label_logits(query, candidates).astype(np.float64)
        if self.variant == "prorank":
            return logits[:, 1] - logits[:, 0]
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        return shifted[:, 1] / shifted.sum(axis=1)
