"""ICR: in-context reranking from attention (Chen et al., ICLR 2025, arXiv 2410.02642).

All N candidates sit in one prompt (``[1] doc``, ``[2] doc``, ... after " Here are some paragraphs:"), then a late
instruction and ``Query: <q>``. A document token t scores ``s(t) = sum_layers sum_heads mean_q A[q, t]`` over the
query positions q (everything after the documents). Calibration (default ``masked_NA_calibration``): the same
prompt with the content-free query "N/A" gives ``s_NA(t)``; within each document, tokens whose
``c(t) = s(t) - s_NA(t)`` is at most ``mean(c) - 2 std(c)`` are dropped and the document scores
``sum_kept c(t)``. The documents are encoded once (KV cache) and the real and the "N/A" query are read in one
batch of two: two forward passes for N documents, no generation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from polyrank.domains.text.reranker import LLMReranker, candidate_text
from polyrank.shared.llm.scoring import attention_mass
from polyrank.shared.protocol import Candidate

INTRO = " Here are some paragraphs:"
LATE_INSTRUCTION = {"IE": "Please find information that are relevant to the following query in the paragraphs above.",
                    "QA": "Please answer the following question based on the information in the paragraphs above."}
CALIBRATION_QUERY = "N/A"
SEPARATOR = "\n\n"
_SENTINEL = "\u2063PROMPT\u2063"
VOCAB = ["Here", "are", "some", "paragraphs", "Please", "find", "information", "relevant", "query", "Query", "N", "A"]


def calibrated_document_score(s: np.ndarray, s_na: np.ndarray, calibrate: bool = True) -> float:
    """ICR's document score from its tokens' attention with the real (``s``) and the "N/A" query (``s_na``)."""
    if not calibrate:
        return float(np.sum(s))
    c = np.asarray(s, dtype=np.float64) - np.asarray(s_na, dtype=np.float64)
    if len(c) < 2:
        return float(c.sum())
    keep = c > c.mean() - 2 * c.std(ddof=1)
    return float(c[keep].sum())


class ICRReranker(LLMReranker):
    """Attention-based zero-shot reranker (``calibrate=False`` is the paper's ``query_last`` ablation)."""

    def __init__(self, lm, registry_name: str, calibrate: bool = True, reverse: bool = True, max_words: int = 300,
                 retrieval_type: str = "IE") -> None:
        super().__init__(lm, registry_name, calibrate=calibrate, reverse=reverse, max_words=max_words,
                         retrieval_type=retrieval_type)
        self.calibrate, self.reverse, self.max_words = calibrate, reverse, max_words
        self.late = LATE_INSTRUCTION[retrieval_type]

    def build(self, query: str, texts: Sequence[str]) -> tuple[list[int], list[tuple[int, int]], list[list[int]]]:
        """Token ids of the document prefix, each document's ``(start, end)`` span in it, and the query
        suffixes (real query first, then "N/A"). ``texts`` are in prompt order."""
        chat_before, chat_after = self.lm.chat([{"role": "user", "content": _SENTINEL}]).split(_SENTINEL)
        prefix = self.lm.encode(chat_before + INTRO)
        spans = []
        for i, text in enumerate(texts):
            prefix += self.lm.encode(SEPARATOR)
            doc = self.lm.encode(f"[{i + 1}] {text}")
            spans.append((len(prefix), len(prefix) + len(doc)))
            prefix += doc
        prefix += self.lm.encode(SEPARATOR)
        head, tail = self.lm.encode(self.late + SEPARATOR + "Query:"), self.lm.encode(chat_after)
        suffixes = [head + self.lm.encode(f" {q.strip()}") + tail for q in (query, CALIBRATION_QUERY)]
        return prefix, spans, suffixes

    def score(self, query: Any, candidates: Sequence[Candidate]) -> np.ndarray:
        if not candidates:
            return np.zeros(0)
        placement = list(range(len(candidates)))[::-1] if self.reverse else list(range(len(candidates)))
        texts = [candidate_text(candidates[i], self.max_words) for i in placement]
        prefix, spans, suffixes = self.build(str(query), texts)
        mass = attention_mass(self.lm, prefix, suffixes if self.calibrate else suffixes[:1])
        scores = np.zeros(len(candidates))
        for slot, (start, end) in enumerate(spans):
            s = mass[0, start:end]
            s_na = mass[1, start:end] if self.calibrate else None
            scores[placement[slot]] = calibrated_document_score(s, s_na, self.calibrate)
        return scores
