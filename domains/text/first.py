"""FIRST: single-token listwise reranking (Reddy et al., EMNLP 2024, arXiv 2406.15657; rank_llm reproduction
arXiv 2411.05508).

A RankZephyr-style prompt lists the window's passages under alphabetic identifiers ``[A]``, ``[B]``, ... (each
one token); the prompt is extended with ``[`` and a single decoding step is taken: the window is ordered by the
logits of the identifier tokens at that position. Windows of 20 move by 10 from the bottom of the first-stage
list to the top (RankGPT). ``mode="generate"`` instead generates the whole permutation ``[B] > [A] > ...`` and
parses it (malformed output: that window keeps its first-stage order, counted in ``stats``);
``force_length=True`` makes every generation exactly the token length of a full permutation of the window
(``min_new_tokens = max_new_tokens``), so a speed comparison with one decoding step compares like with like.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from typing import Any

import numpy as np

from polyrank.domains.text.reranker import LLMReranker, candidate_text
from polyrank.domains.text.windows import order_to_scores, sliding_window_order
from polyrank.shared.errors import PolyrankError
from polyrank.shared.llm.parsers import parse_permutation
from polyrank.shared.llm.scoring import generate, next_token_logits
from polyrank.shared.protocol import Candidate

IDENTIFIERS = list(string.ascii_uppercase)
MODES = ("logits", "generate")
SYSTEM = "You are RankLLM, an intelligent assistant that can rank passages based on their relevancy to the query."
VOCAB = ["Rank", "passages", "passage", "query", "Search", "Query", "relevance", "identifier", "the", "to", "of"]


def first_prompt(query: str, passages: Sequence[str]) -> list[dict[str, str]]:
    """The RankZephyr/FIRST listwise prompt with alphabetic identifiers (chat messages)."""
    n = len(passages)
    body = "".join(f"[{IDENTIFIERS[i]}] {p}\n" for i, p in enumerate(passages))
    user = (f"I will provide you with {n} passages, each indicated by a alphabetical identifier []. Rank the passages "
            f"based on their relevance to the search query: {query}.\n\n{body}\nSearch Query: {query}.\nRank the {n} "
            "passages above based on their relevance to the search query. All the passages should be included and "
            "listed using identifiers, in descending order of relevance. The output format should be [] > [], e.g., "
            "[B] > [A]. Only respond with the ranking results, do not say any word or explain.")
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


class FirstReranker(LLMReranker):
    """FIRST listwise reranker with RankGPT sliding windows; scores encode the final order (higher is better)."""

    def __init__(self, lm, registry_name: str, mode: str = "logits", window: int = 20, stride: int = 10,
                 max_words: int = 300, max_new_tokens: int | None = None, token_budget: int = 16384,
                 force_length: bool = False) -> None:
        if mode not in MODES:
            raise PolyrankError(f"mode must be one of {MODES}, got {mode!r}")
        if not 1 <= window <= len(IDENTIFIERS):
            raise PolyrankError(f"window must be between 1 and {len(IDENTIFIERS)} (alphabetic identifiers)")
        super().__init__(lm, registry_name, mode=mode, window=window, stride=stride, max_words=max_words,
                         max_new_tokens=max_new_tokens, token_budget=token_budget, force_length=force_length)
        self.force_length = force_length
        self.mode, self.window, self.stride, self.max_words = mode, window, stride, max_words
        self.max_new_tokens, self.token_budget = max_new_tokens, token_budget
        self.identifier_ids = [lm.single_token(i) for i in IDENTIFIERS[:window]]

    def _prompt_ids(self, query: str, passages: Sequence[str], open_bracket: bool) -> list[int]:
        return self.lm.encode(self.lm.chat(first_prompt(query, passages)) + ("[" if open_bracket else ""))

    def permutation_tokens(self, n: int) -> int:
        """Tokens of a full permutation of ``n`` identifiers, ``[A] > [B] > ...`` (what generation must write)."""
        return len(self.lm.encode(" > ".join(f"[{i}]" for i in IDENTIFIERS[:n])))

    def identifier_logits(self, query: str, passages: Sequence[str]) -> np.ndarray:
        """Logits of ``[A]``.. identifiers at the first generated position (after ``[``), one per passage."""
        ids = self._prompt_ids(query, passages, open_bracket=True)
        labels = self.identifier_ids[: len(passages)]
        return next_token_logits(self.lm, [ids], labels, token_budget=self.token_budget)[0]

    def judge(self, query: str, passages: Sequence[str]) -> list[int]:
        """Positions of ``passages`` best first, by one decoding step (``logits``) or a parsed generation."""
        if self.mode == "logits":
            logits = self.identifier_logits(query, passages)
            return list(np.argsort(-logits, kind="stable"))
        budget = self.max_new_tokens or 5 * len(passages) + 4
        if self.force_length:
            budget = self.permutation_tokens(len(passages))
        text = generate(self.lm, [self._prompt_ids(query, passages, open_bracket=False)], budget,
                        token_budget=self.token_budget, min_new_tokens=budget if self.force_length else 0)[0]
        parsed = parse_permutation(text, IDENTIFIERS[: len(passages)])
        self.stats.record(not parsed.malformed, text)
        return parsed.order

    def order(self, query: Any, candidates: Sequence[Candidate]) -> list[int]:
        texts = [candidate_text(c, self.max_words) for c in candidates]
        return sliding_window_order(len(texts), self.window, self.stride,
                                    lambda items: self.judge(str(query), [texts[i] for i in items]))

    def score(self, query: Any, candidates: Sequence[Candidate]) -> np.ndarray:
        return order_to_scores(self.order(query, candidates), len(candidates))
