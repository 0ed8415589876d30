"""First stage of MTM: BM25 over fact-checking articles, top-50 candidates per claim.

The reference (``preprocess/BM25``) used gensim's removed ``summarization.bm25`` over the raw article
text, which for Chinese amounts to character-level BM25; here ``bm25s`` (Lucene BM25, k1=1.5, b=0.75,
gensim's defaults) indexes word tokens (``language="en"``) or characters (``language="zh"``).

Training-time rule (``dataset/Weibo/splits/data_splits.ipynb``): when none of the top 50 is relevant, the
50th candidate is replaced by a relevant article from deeper in the ranking. The reference loop has no
``break``, so the *deepest*-ranked relevant article ends in slot 50 (``swap="deepest"``); ``swap="first"``
takes the highest-ranked one instead.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np

from polyrank.shared.errors import PolyrankError
from polyrank.shared.protocol import Run

logger = logging.getLogger(__name__)

_WORD = re.compile(r"\w+", re.UNICODE)


def bm25_tokens(text: str, language: Literal["en", "zh"] = "en") -> list[str]:
    """Lower-cased word tokens (``en``) or non-space characters (``zh``, character-level BM25)."""
    if language == "zh":
        return [c for c in text if not c.isspace()]
    return _WORD.findall(text.lower())


class BM25Index:
    """BM25 (``bm25s``) over whole articles (sentences joined); ``search`` returns all scores or the top k."""

    def __init__(self, articles: Mapping[str, Sequence[str]], language: Literal["en", "zh"] = "en",
                 k1: float = 1.5, b: float = 0.75) -> None:
        import bm25s

        if not articles:
            raise PolyrankError("BM25 needs at least one article to index")
        self.ids = list(articles)
        self.language = language
        corpus = [bm25_tokens(" ".join(articles[i]), language) for i in self.ids]
        self.model = bm25s.BM25(k1=k1, b=b, method="lucene")
        self.model.index(corpus, show_progress=False)

    def scores(self, claim: str) -> np.ndarray:
        """BM25 score of every indexed article for one claim, shape ``(n_articles,)``."""
        tokens = bm25_tokens(claim, self.language)
        return np.asarray(self.model.get_scores(tokens), dtype=np.float64)

    def search(self, claims: Mapping[str, str], k: int = 50) -> Run:
        """Top-``k`` articles per claim as a run ``{qid: {did: score}}`` (ties: score desc, id asc)."""
        return {qid: dict(self.ranking(text)[:k]) for qid, text in claims.items()}

    def ranking(self, claim: str) -> list[tuple[str, float]]:
        """Every article ranked by BM25 score (descending; ties broken by article id)."""
        from polyrank.shared.protocol import tie_break_order

        scores = self.scores(claim)
        order = tie_break_order(self.ids, scores)
        return [(self.ids[i], float(scores[i])) for i in order]


def swap_in_relevant(ranking: Sequence[tuple[str, float]], relevant: Mapping[str, int], k: int = 50,
                     swap: Literal["deepest", "first", "none"] = "deepest") -> list[tuple[str, float]]:
    """Top ``k`` of a full ranking; if none is relevant, slot ``k`` becomes a relevant article from below."""
    head = list(ranking[:k])
    if swap == "none" or not head or any(relevant.get(d, 0) > 0 for d, _ in head):
        return head
    deeper = [(d, s) for d, s in ranking[k:] if relevant.get(d, 0) > 0]
    if deeper:
        head[-1] = deeper[-1] if swap == "deepest" else deeper[0]
    return head


def first_stage(index: BM25Index, claims: Mapping[str, str], qrels: Mapping[str, Mapping[str, int]],
                k: int = 50, swap_qids: set[str] | None = None,
                swap: Literal["deepest", "first", "none"] = "deepest") -> dict[str, list[str]]:
    """Candidate lists (BM25 order) per claim; the swap rule applies to ``swap_qids`` (the training claims)."""
    out = {}
    for qid, text in claims.items():
        rule = swap if swap_qids is not None and qid in swap_qids else "none"
        out[qid] = [d for d, _ in swap_in_relevant(index.ranking(text), qrels.get(qid, {}), k, rule)]
    return out
