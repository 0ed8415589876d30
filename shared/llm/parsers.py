"""Parsers of LLM reranker outputs; malformed text falls back to the first-stage order and is counted.

- :func:`parse_think_answer`: the ``<think>...</think><answer>...</answer>`` format of Rank-R1
  (arXiv 2503.06034, Sec. 3; ielab/llm-rankers prompt_setwise-R1).
- :func:`parse_permutation`: RankGPT/RankZephyr/FIRST permutations ``[C] > [A] > [B]``; duplicates and unknown
  identifiers are dropped and missing ones appended in first-stage order (as rank_llm's fill step does).
- :func:`parse_rebel`: REBEL's ``Doc: n, Relevance: x`` lines (arXiv 2504.07104, one-turn prompt);
  :func:`parse_rebel_criteria` reads every ``Name: value`` pair of such a line (per-criterion scores).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

_THINK = re.compile(r"<think>(.*?)</think>", re.S)
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.S)
_BRACKETED = re.compile(r"\[\s*([^\[\]\s]+)\s*\]")
_DOC = re.compile(r"Doc\s*:\s*\[?(\d+)\]?", re.I)
_NAMED_VALUE = re.compile(r"([A-Za-z][A-Za-z ]*?)\s*:\s*([-+]?\d+(?:\.\d+)?)")
_REBEL = re.compile(r"Doc\s*:\s*\[?(\d+)\]?\s*,\s*Relevance\s*:\s*([-+]?\d+(?:\.\d+)?)", re.I)


@dataclass
class ParseStats:
    """How many outputs were parsed and how many were malformed (fell back to the first-stage order)."""

    parsed: int = 0
    malformed: int = 0
    examples: list[str] = field(default_factory=list)  # the first few malformed outputs, for the report

    def record(self, ok: bool, text: str = "") -> None:
        self.parsed += 1
        if not ok:
            self.malformed += 1
            if len(self.examples) < 3:
                self.examples.append(text[:200])


def parse_think_answer(text: str) -> tuple[str | None, str | None]:
    """``(think, answer)`` of a ``<think>..</think><answer>..</answer>`` output; ``None`` for a missing part."""
    think, answer = _THINK.search(text), _ANSWER.search(text)
    return (think.group(1).strip() if think else None, answer.group(1).strip() if answer else None)


@dataclass(frozen=True)
class Permutation:
    """A parsed ranking: ``order`` holds indices into the window (best first), always a full permutation."""

    order: list[int]
    malformed: bool      # no valid identifier at all: ``order`` is the first-stage order
    n_missing: int       # identifiers absent from the output, appended in first-stage order
    n_dropped: int       # duplicate or unknown identifiers removed


def parse_permutation(text: str, identifiers: Sequence[str]) -> Permutation:
    """Parse ``[C] > [A] > [B]`` against the window's ``identifiers`` (``["A", "B", "C"]``, or ``["1", ...]``)."""
    index = {ident: i for i, ident in enumerate(identifiers)}
    seen: list[int] = []
    dropped = 0
    for token in _BRACKETED.findall(text):
        i = index.get(token)
        if i is None or i in seen:
            dropped += 1
            continue
        seen.append(i)
    missing = [i for i in range(len(identifiers)) if i not in seen]
    return Permutation(seen + missing, malformed=not seen, n_missing=len(missing), n_dropped=dropped)


def parse_bracketed_label(text: str, identifiers: Sequence[str]) -> int | None:
    """Index of the first valid ``[label]`` (or bare label) in ``text``; ``None`` when there is none."""
    index = {ident: i for i, ident in enumerate(identifiers)}
    for token in _BRACKETED.findall(text) or text.split():
        if token.strip("[]().,") in index:
            return index[token.strip("[]().,")]
    return None


def parse_rebel(text: str, n_docs: int) -> dict[int, float]:
    """``{doc index (0-based): final score}`` from ``Doc: n, Relevance: x`` lines (``n`` is 1-based).

    Out-of-range documents are ignored; a document listed twice keeps its first score.
    """
    scores: dict[int, float] = {}
    for number, value in _REBEL.findall(text):
        i = int(number) - 1
        if 0 <= i < n_docs and i not in scores:
            scores[i] = float(value)
    return scores


def parse_rebel_criteria(text: str, n_docs: int) -> dict[int, dict[str, float]]:
    """``{doc index (0-based): {criterion (lower case): value}}`` from lines such as
    ``Doc: 2, Relevance: 7, Depth: 3, Authority: 4`` (``n`` is 1-based; the ``Doc`` pair itself is not a criterion).

    Out-of-range documents are ignored; a document listed twice keeps its first line.
    """
    found: dict[int, dict[str, float]] = {}
    for line in text.splitlines():
        doc = _DOC.search(line)
        if doc is None:
            continue
        i = int(doc.group(1)) - 1
        if not 0 <= i < n_docs or i in found:
            continue
        rest = line[doc.end():]
        found[i] = {name.strip().lower(): float(value) for name, value in _NAMED_VALUE.findall(rest)}
    return found
