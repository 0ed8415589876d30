"""REBEL: multi-criteria LLM reranking beyond relevance (LeVine et al., arXiv 2504.07104; microsoft/REBEL).

Candidates are scored in batches of ``batch_size`` (REBEL's ``choice_batch_size=10``), numbered ``1..10`` in
each batch; every output line ``Doc: n, ...`` is parsed.

- ``one-turn``: a fixed prompt asks, per document, for Relevance (0-10) and five secondary criteria (0-5):
  depth of content, diversity of perspectives, clarity and specificity, authoritativeness, recency. The scoring
  rule (:func:`rebel_final`): a document with Relevance < 3 is discarded; the others score
  ``Final = Relevance + 0.5 x (sum of the five secondary scores)``; ties are broken by authoritativeness.
- ``two-turn`` (REBEL's default): a meta-prompt shown only the query makes the LLM write a query-specific
  reranking prompt (which secondary criteria matter, and their weights); that prompt then scores the batches,
  each line ``Doc: n, Relevance: <final score>``; documents the LLM leaves out count as discarded.

Kept documents are ordered by final score (then authoritativeness, then first-stage order); discarded and
unlisted ones follow in first-stage order. A batch with no parsable line is counted malformed in ``stats``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from polyrank.domains.text.reranker import LLMReranker, candidate_text
from polyrank.domains.text.windows import order_to_scores
from polyrank.shared.errors import PolyrankError
from polyrank.shared.llm.parsers import parse_rebel_criteria
from polyrank.shared.protocol import Candidate

MODES = ("one-turn", "two-turn")
SECONDARY = ("depth", "diversity", "clarity", "authority", "recency")
MIN_RELEVANCE = 3.0
SECONDARY_WEIGHT = 0.5
VOCAB = ["Doc", "Relevance", "Depth", "Diversity", "Clarity", "Authority", "Recency", "Question", "Document"]

ONE_TURN = (
    "Below are numbered documents and a question. Rate every document on these criteria:\n"
    "- Relevance (0-10): how directly the document answers the question.\n"
    "- Depth (0-5): how detailed and substantive its content is.\n"
    "- Diversity (0-5): how many distinct perspectives it offers.\n"
    "- Clarity (0-5): how clear and specific it is.\n"
    "- Authority (0-5): how authoritative its source appears.\n"
    "- Recency (0-5): how up to date its information is.\n"
    "Write one line per document and nothing else, in this format:\n"
    "Doc: <number>, Relevance: <0-10>, Depth: <0-5>, Diversity: <0-5>, Clarity: <0-5>, Authority: <0-5>, "
    "Recency: <0-5>\n\n{documents}\nQuestion: {query}\nAnswer:\n")
META = (
    "You write instructions for a model that reranks search results. Read the user query below and write a "
    "reranking prompt for it: say which properties matter for this query besides relevance (for example depth "
    "of content, diversity of perspectives, clarity, authoritativeness, recency), how much each weighs, and that "
    "documents scoring low on relevance must be left out. The prompt must ask for one line per kept document in "
    "the format \"Doc: <number>, Relevance: <score>\", where the score combines relevance with the weighted "
    "properties. Write only the prompt.\n\nQuery: {query}\nPrompt:\n")
TWO_TURN = ("{prompt}\n\n{documents}\nQuestion: {query}\n"
            "Write one line per kept document and nothing else: Doc: <number>, Relevance: <score>\nAnswer:\n")


def rebel_final(criteria: Mapping[str, float], one_turn: bool = True) -> float | None:
    """REBEL's final score of one document, or ``None`` when it is discarded.

    One-turn: ``None`` if Relevance < 3 (or missing), else ``Relevance + 0.5 x sum(secondary)`` (a secondary
    criterion the model left out counts 0). Two-turn: the score the query-specific prompt produced.
    """
    relevance = criteria.get("relevance")
    if relevance is None:
        return None
    if not one_turn:
        return float(relevance)
    if relevance < MIN_RELEVANCE:
        return None
    return float(relevance + SECONDARY_WEIGHT * sum(criteria.get(c, 0.0) for c in SECONDARY))


def rebel_order(parsed: Mapping[int, Mapping[str, float]], n: int, one_turn: bool = True) -> list[int]:
    """Positions best first: kept documents by (final desc, authority desc, position), then the rest in order."""
    kept = []
    for i in range(n):
        final = rebel_final(parsed[i], one_turn) if i in parsed else None
        if final is not None:
            kept.append((-final, -parsed[i].get("authority", 0.0), i))
    chosen = [i for _, _, i in sorted(kept)]
    taken = set(chosen)
    return chosen + [i for i in range(n) if i not in taken]


def _numbered(texts: Sequence[str]) -> str:
    return "".join(f"Document {i + 1}:\n{t}\n\n" for i, t in enumerate(texts))


class RebelReranker(LLMReranker):
    """REBEL one-turn / two-turn multi-criteria reranker; scores encode the final order."""

    def __init__(self, lm, registry_name: str, mode: str = "two-turn", batch_size: int = 10, max_words: int = 300,
                 max_new_tokens: int | None = None, prompt_tokens: int = 256, token_budget: int = 16384) -> None:
        if mode not in MODES:
            raise PolyrankError(f"mode must be one of {MODES}, got {mode!r}")
        if batch_size < 1:
            raise PolyrankError(f"batch_size must be >= 1, got {batch_size}")
        super().__init__(lm, registry_name, mode=mode, batch_size=batch_size, max_words=max_words,
                         max_new_tokens=max_new_tokens, prompt_tokens=prompt_tokens, token_budget=token_budget)
        self.mode, self.batch_size, self.max_words = mode, batch_size, max_words
        self.max_new_tokens = max_new_tokens or 40 * batch_size
        self.prompt_tokens, self.token_budget = prompt_tokens, token_budget
        self.query_prompts: dict[str, str] = {}  # two-turn: the generated prompt of each query (inspectable)

    def query_prompt(self, query: str) -> str:
        """Two-turn, first turn: the query-specific reranking prompt the LLM writes from the meta-prompt."""
        if query not in self.query_prompts:
            meta = self.lm.chat([{"role": "user", "content": META.format(query=query)}])
            self.query_prompts[query] = self.generator([meta], self.prompt_tokens, ())[0].strip()
        return self.query_prompts[query]

    def prompts(self, query: str, texts: Sequence[str]) -> list[str]:
        """One rendered prompt per batch of ``batch_size`` documents."""
        batches = [texts[s:s + self.batch_size] for s in range(0, len(texts), self.batch_size)]
        if self.mode == "one-turn":
            users = [ONE_TURN.format(documents=_numbered(b), query=query) for b in batches]
        else:
            prompt = self.query_prompt(query)
            users = [TWO_TURN.format(prompt=prompt, documents=_numbered(b), query=query) for b in batches]
        return [self.lm.chat([{"role": "user", "content": u}]) for u in users]

    def order(self, query: Any, candidates: Sequence[Candidate]) -> list[int]:
        texts = [candidate_text(c, self.max_words) for c in candidates]
        outputs = self.generator(self.prompts(str(query), texts), self.max_new_tokens, ()) if texts else []
        parsed: dict[int, dict[str, float]] = {}
        for b, text in enumerate(outputs):
            start = b * self.batch_size
            found = parse_rebel_criteria(text, min(self.batch_size, len(texts) - start))
            self.stats.record(bool(found), text)
            parsed.update({start + i: c for i, c in found.items()})
        return rebel_order(parsed, len(texts), one_turn=self.mode == "one-turn")

    def score(self, query: Any, candidates: Sequence[Candidate]) -> np.ndarray:
        return order_to_scores(self.order(query, candidates), len(candidates))
