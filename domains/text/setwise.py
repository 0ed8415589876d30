"""Setwise reranking with heap sort; Rank-R1's reasoning prompt (Zhuang et al., arXiv 2503.06034; ielab/llm-rankers).

Each comparison shows the query and a set of up to ``num_child + 1`` documents labelled ``[1]``, ``[2]``, ... and
asks which one is most relevant (:func:`setwise_prompt`). A heap sort with fan-out ``num_child`` (Rank-R1: 19,
so sets of 20) extracts the top ``k`` (Rank-R1: 10 of the BM25 top-100); every sift-down step is one call.

- ``reasoning=True`` (Rank-R1): the DeepSeek-R1-Zero system prompt; the model writes
  ``<think>...</think><answer>[n]</answer>`` and the label inside ``<answer>`` is parsed.
- ``reasoning=False``, ``scoring="generate"``: the answer-only prompt, ``<answer>[n]</answer>``.
- ``reasoning=False``, ``scoring="likelihood"`` (the Setwise paper's likelihood scoring): the documents are
  labelled ``[A]``, ``[B]``, ... (single tokens) and the prompt is extended with ``<answer>[``; the winner is
  the label token with the highest next-token logit; one forward pass, no generation.

A malformed output (no ``<answer>``, no think block when reasoning, no valid label) keeps the heap's parent
where it is (the llm-rankers fallback) and is counted in ``stats``.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from typing import Any

import numpy as np

from polyrank.domains.text.reranker import LLMReranker, candidate_text
from polyrank.domains.text.windows import order_to_scores, setwise_heapsort_top_k
from polyrank.shared.errors import PolyrankError
from polyrank.shared.llm.parsers import parse_bracketed_label, parse_think_answer
from polyrank.shared.llm.scoring import next_token_logits
from polyrank.shared.protocol import Candidate

SCORINGS = ("generate", "likelihood")
LETTERS = list(string.ascii_uppercase)
SYSTEM_REASONING = ("A conversation between User and Assistant. The user asks a question, and the Assistant solves "
                    "it. The assistant first thinks about the reasoning process in the mind and then provides the user "
                    "with the answer. The reasoning process and answer are enclosed within <think> </think> and "
                    "<answer> </answer> tags, respectively, i.e., <think> reasoning process here </think> <answer> "
                    "answer here </answer>.")
SYSTEM_ANSWER = ("A conversation between User and Assistant. The user asks a question, and the Assistant solves it. "
                 "The assistant provides the user with the answer enclosed within <answer> </answer> tags, i.e., "
                 "<answer> answer here </answer>.")
VOCAB = ["Given", "the", "query", "which", "of", "following", "documents", "is", "most", "relevant", "answer",
         "label", "document"]


def setwise_prompt(query: str, documents: Sequence[str], reasoning: bool = True,
                   labels: Sequence[str] | None = None) -> list[dict[str, str]]:
    """Rank-R1's setwise chat messages (prompts/prompt_setwise-R1.toml, or prompt_setwise.toml without reasoning)."""
    labels = list(labels or [str(i + 1) for i in range(len(documents))])
    docs = "\n".join(f"[{label}] {doc}" for label, doc in zip(labels, documents))
    example = labels[2] if len(labels) > 2 else labels[-1]
    if reasoning:
        ask = ("After completing the reasoning process, please provide only the label of the most relevant document "
               "to the query, enclosed in square brackets, within the answer tags. For example, if the third "
               f"document is the most relevant, the answer should be: <think> reasoning process here </think> "
               f"<answer>[{example}]</answer>.")
    else:
        ask = ("Please provide only the label of the most relevant document to the query, enclosed in square "
               "brackets, within the answer tags. For example, if the third document is the most relevant, the "
               f"answer should be: <answer>[{example}]</answer>.")
    user = f'Given the query: "{query}", which of the following documents is most relevant?\n{docs}\n{ask}'
    return [{"role": "system", "content": SYSTEM_REASONING if reasoning else SYSTEM_ANSWER},
            {"role": "user", "content": user}]


def parse_setwise(text: str, n: int, reasoning: bool) -> int | None:
    """Position (0-based) of the chosen document in a set of ``n``; ``None`` for a malformed output."""
    think, answer = parse_think_answer(text)
    if answer is None or (reasoning and think is None):
        return None
    return parse_bracketed_label(answer, [str(i + 1) for i in range(n)])


class SetwiseReranker(LLMReranker):
    """Setwise heap-sort reranker (Rank-R1 with ``reasoning=True``); scores encode the final order."""

    def __init__(self, lm, registry_name: str, reasoning: bool = True, scoring: str = "generate",
                 num_child: int = 19, k: int = 10, max_words: int = 300, max_new_tokens: int | None = None,
                 token_budget: int = 16384) -> None:
        if scoring not in SCORINGS:
            raise PolyrankError(f"scoring must be one of {SCORINGS}, got {scoring!r}")
        if scoring == "likelihood" and reasoning:
            raise PolyrankError("scoring='likelihood' reads the label at the first answer position, which a "
                                "reasoning model fills with its <think> block; pass reasoning=False")
        if not 1 <= num_child < len(LETTERS):
            raise PolyrankError(f"num_child must be between 1 and {len(LETTERS) - 1} (sets of num_child + 1)")
        if k < 1:
            raise PolyrankError(f"k (documents extracted by the heap sort) must be >= 1, got {k}")
        super().__init__(lm, registry_name, reasoning=reasoning, scoring=scoring, num_child=num_child, k=k,
                         max_words=max_words, max_new_tokens=max_new_tokens, token_budget=token_budget)
        self.reasoning, self.scoring, self.num_child, self.k = reasoning, scoring, num_child, k
        self.max_words, self.token_budget = max_words, token_budget
        self.max_new_tokens = max_new_tokens or (1024 if reasoning else 16)
        self.calls = 0
        self.letter_ids = [lm.single_token(c) for c in LETTERS[: num_child + 1]] if scoring == "likelihood" else []

    def best_of(self, query: str, documents: Sequence[str]) -> int:
        """Position of the most relevant of ``documents`` (one LLM call); a malformed output gives 0."""
        self.calls += 1
        if self.scoring == "likelihood":
            prompt = self.lm.chat(setwise_prompt(query, documents, False, LETTERS[: len(documents)])) + "<answer>["
            logits = next_token_logits(self.lm, [self.lm.encode(prompt)], self.letter_ids[: len(documents)],
                                       token_budget=self.token_budget)[0]
            return int(np.argmax(logits))
        prompt = self.lm.chat(setwise_prompt(query, documents, self.reasoning))
        text = self.generator([prompt], self.max_new_tokens, ["</answer>"])[0]
        best = parse_setwise(text, len(documents), self.reasoning)
        self.stats.record(best is not None, text)
        return 0 if best is None else best

    def order(self, query: Any, candidates: Sequence[Candidate]) -> list[int]:
        texts = [candidate_text(c, self.max_words) for c in candidates]
        return setwise_heapsort_top_k(len(texts), self.k, self.num_child,
                                      lambda items: self.best_of(str(query), [texts[i] for i in items]))

    def score(self, query: Any, candidates: Sequence[Candidate]) -> np.ndarray:
        return order_to_scores(self.order(query, candidates), len(candidates))
