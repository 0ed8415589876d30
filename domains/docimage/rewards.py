"""MM-R5's output format, its parser and its two GRPO rewards (arXiv 2506.12364, Sec. 3 and Fig. 2; github
i2vec/MM-R5 ``src/rl/.../qwen_module.py``).

Output: ``<think>...</think><answer>[i_1, i_2, ...]</answer>`` with 1-based image ids, most relevant first
(``<answer>[...]</answer>`` alone when reasoning is off).

- ranking reward: ``R_rank = sum_{p in P, p in pred} 1 / rank(p)^3  /  sum_{i=1..|P|} 1 / i^3`` (rank 1-based in the
  predicted list; 0 when the answer is missing or unparsable; 1 exactly when the positives are on top);
- format reward: the template must match (else 0); ``len_r = max(0, (N - |len(pred) - N|) / N)``,
  ``range_r`` = the fraction of predicted ids in ``[1, N]``; ``R_fmt = len_r * range_r``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from polyrank.shared.llm.parsers import parse_think_answer

_IDS = r"\[\s*-?\d+(?:\s*,\s*-?\d+)*\s*\]"
TEMPLATE = re.compile(rf"\s*<think>.*?</think>\s*<answer>\s*{_IDS}\s*</answer>\s*", re.S)
TEMPLATE_NO_THINK = re.compile(rf"\s*<answer>\s*{_IDS}\s*</answer>\s*", re.S)
_LIST = re.compile(r"\[([^\[\]]*)\]")


def answer_ids(text: str) -> list[int] | None:
    """The 1-based ids of the ``<answer>[...]</answer>`` list as written (duplicates and out-of-range kept);
    ``None`` when there is no answer block or its list is not comma-separated integers."""
    _, answer = parse_think_answer(text)
    if answer is None:
        return None
    found = _LIST.search(answer)
    if found is None:
        return None
    items = [x.strip() for x in found.group(1).split(",") if x.strip()]
    if not items or not all(re.fullmatch(r"-?\d+", x) for x in items):
        return None
    return [int(x) for x in items]


@dataclass(frozen=True)
class ParsedRanking:
    """``order``: 0-based candidate indices, best first, always a full permutation."""

    order: list[int]
    malformed: bool     # no usable answer: ``order`` is the first-stage order
    n_dropped: int      # duplicate or out-of-range ids removed
    n_missing: int      # ids absent from the answer, appended in first-stage order


def parse_ranking(text: str, n: int) -> ParsedRanking:
    """MM-R5 inference parsing: answer ids to 0-based, out-of-range and repeated ids dropped, missing ones
    appended in ascending (first-stage) order; an unparsable output falls back to the first-stage order."""
    ids = answer_ids(text)
    if ids is None:
        return ParsedRanking(list(range(n)), True, 0, n)
    seen: list[int] = []
    for i in ids:
        if 1 <= i <= n and i - 1 not in seen:
            seen.append(i - 1)
    missing = [i for i in range(n) if i not in seen]
    return ParsedRanking(seen + missing, not seen, len(ids) - len(seen), len(missing))


def ranking_reward(text: str, positives: Sequence[int]) -> float:
    """R_rank of an output given the 1-based positive ids (module docstring)."""
    ids = answer_ids(text)
    if ids is None or not positives:
        return 0.0
    first_rank: dict[int, int] = {}
    for rank, i in enumerate(ids, 1):
        first_rank.setdefault(i, rank)
    got = sum(1.0 / first_rank[p] ** 3 for p in set(positives) if p in first_rank)
    ideal = sum(1.0 / i ** 3 for i in range(1, len(set(positives)) + 1))
    return got / ideal


def format_reward(text: str, n: int, reasoning: bool = True) -> float:
    """R_fmt = structure validity x length accuracy x range validity (module docstring)."""
    if not (TEMPLATE if reasoning else TEMPLATE_NO_THINK).fullmatch(text):
        return 0.0
    ids = answer_ids(text) or []
    length = max(0.0, (n - abs(len(ids) - n)) / n)
    in_range = sum(1 for i in ids if 1 <= i <= n) / len(ids) if ids else 0.0
    return length * in_range


def total_reward(text: str, positives: Sequence[int], n: int, reasoning: bool = True) -> float:
    """MM-R5's training reward: the two rewards summed with equal weights."""
    return ranking_reward(text, positives) + format_reward(text, n, reasoning)
