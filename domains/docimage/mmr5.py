"""MM-R5 listwise reasoning reranker (Xu et al., arXiv 2506.12364, Sec. 3.1; github i2vec/MM-R5
``examples/reranker.py``): the question and all candidate pages in one prompt (``Image i:`` tags, ids 1..n),
the model writes ``<think>...</think><answer>[ids]</answer>``; the parsed order becomes scores ``n - rank``.

Parsing (:func:`polyrank.domains.docimage.rewards.parse_ranking`): out-of-range and repeated ids are dropped,
missing ids appended in first-stage order; an unparsable output falls back to the first-stage order and is
counted in ``stats`` (:class:`polyrank.shared.llm.parsers.ParseStats`).

``reasoning=False`` asks for ``<answer>[...]</answer>`` only. ``mode="first_token"`` is a single forward pass
(no generation): the prompt ends with ``<answer>[`` and candidates are ordered by the logit of their id as the
first listed id (FIRST-style single-token listwise ranking; ids must be single tokens, so at most 9 candidates
with digit-splitting tokenizers such as Qwen's).
Generation is greedy (``temperature=0``) or sampled at ``temperature`` (the authors sample at 0.3).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from polyrank.domains.docimage.reranker import DocReranker, as_page
from polyrank.domains.docimage.rewards import parse_ranking
from polyrank.shared.errors import PolyrankError
from polyrank.shared.protocol import Candidate

SYSTEM = ("A conversation between User and Assistant. The user asks a question, and the Assistant solves it. The "
          "assistant first thinks about the reasoning process in the mind and then provides the user with the "
          "answer. The reasoning process and answer are enclosed within <think> </think> and <answer> </answer> "
          "tags, respectively, i.e., <think> reasoning process here </think><answer> answer here </answer>.")
SYSTEM_NO_THINK = ("A conversation between User and Assistant. The assistant answers within <answer> </answer> "
                   "tags, i.e., <answer> answer here </answer>.")
MODES = ("generate", "first_token")


def prompt_words() -> list[str]:
    """Every word of the docimage prompt templates (the tiny test tokenizer keeps them whole: short prompts)."""
    import re

    from polyrank.domains.docimage import ragllava

    text = " ".join([SYSTEM, SYSTEM_NO_THINK, ragllava.PLAIN, ragllava.CAPTION, ragllava.TEXT,
                     user_items_text(), "Page text Image Caption Question"])
    return sorted(set(re.findall(r"[A-Za-z]+", text)))


def user_items_text() -> str:
    return " ".join(i["text"] for i in user_items("", [], True) + user_items("", [], False))


def user_items(query: str, pages: Sequence[Any], reasoning: bool = True) -> list[dict[str, Any]]:
    """The user turn: instruction, question, then ``Image i:`` and the page (image, or its text) for each."""
    fmt = "<think>...</think><answer>[image_id_1, image_id_2, ...]</answer>" if reasoning else \
        "<answer>[image_id_1, image_id_2, ...]</answer>"
    example = "<think>Image 1: ... Image 2: ... Image 3: ...</think><answer>[3, 1, 2]</answer>" if reasoning else \
        "<answer>[3, 1, 2]</answer>"
    analyse = " Analyse each image before answering." if reasoning else ""
    n = len(pages)
    items: list[dict[str, Any]] = [{"type": "text", "text": (
        "Please rank the following images according to their relevance to the question. Provide your response in "
        f"the format: {fmt}, where the image ids are ordered from most to least relevant.{analyse} For example: "
        f"{example}\nThe question is: {query}\nThere are {n} images, id from 1 to {n}, Image ID to image mapping:")}]
    for i, page in enumerate(pages, 1):
        items.append({"type": "text", "text": f"\nImage {i}: "})
        items.append({"type": "image"} if page.image is not None else {"type": "text", "text": page.text})
    return items


def messages(query: str, pages: Sequence[Any], reasoning: bool = True) -> list[dict[str, Any]]:
    return [{"role": "system", "content": [{"type": "text", "text": SYSTEM if reasoning else SYSTEM_NO_THINK}]},
            {"role": "user", "content": user_items(query, pages, reasoning)}]


def prompt_input(vlm: Any, query: str, pages: Sequence[Any], reasoning: bool = True, answer_prefix: str = ""):
    """The whole prompt as a :class:`~polyrank.shared.llm.vision.VisionInput` (images through the processor)."""
    text = vlm.render(messages(query, pages, reasoning)) + answer_prefix
    return vlm.inputs(text, [p.image for p in pages if p.image is not None])


def target_text(order: Sequence[int], reasoning: bool = True, think: str = "") -> str:
    """The assistant target for SFT: ``<think>{think}</think><answer>[order (1-based)]</answer>``."""
    answer = "<answer>[" + ", ".join(str(i) for i in order) + "]</answer>"
    return f"<think>{think}</think>{answer}" if reasoning else answer


class MMR5Reranker(DocReranker):
    """Listwise reasoning reranker on a VLM; ``max_candidates`` pages (first-stage order) are reranked, the rest
    keep their first-stage order below them."""

    def __init__(self, lm: Any, registry_name: str, reasoning: bool = True, mode: str = "generate",
                 max_candidates: int = 10, max_new_tokens: int = 1024, temperature: float = 0.0,
                 sample_seed: int = 0, token_budget: int = 65536) -> None:
        if mode not in MODES:
            raise PolyrankError(f"mode must be one of {MODES}, got {mode!r}")
        super().__init__(lm, registry_name, reasoning=reasoning, mode=mode, max_candidates=max_candidates,
                         max_new_tokens=max_new_tokens, temperature=temperature, sample_seed=sample_seed,
                         token_budget=token_budget)
        self.reasoning, self.mode, self.max_candidates = reasoning, mode, max_candidates
        self.max_new_tokens, self.temperature, self.token_budget = max_new_tokens, temperature, token_budget
        self.sample_seed = sample_seed
        #: ``(query, pages) -> output text``; tests inject a fake to feed hand-written outputs
        self.generator = self._generate

    def _generate(self, query: str, pages: Sequence[Any]) -> str:
        from polyrank.shared.llm.vision import generate

        prompt = prompt_input(self.lm, query, pages, self.reasoning)
        out = generate(self.lm, [prompt], self.max_new_tokens, do_sample=self.temperature > 0,
                       temperature=self.temperature or 1.0, seed=self.sample_seed, token_budget=self.token_budget)
        return self.lm.tokenizer.decode(out[0], skip_special_tokens=False)

    def _first_token_scores(self, query: str, pages: Sequence[Any]) -> np.ndarray:
        from polyrank.shared.llm.vision import next_token_logits

        ids = [self.lm.single_token(str(i)) for i in range(1, len(pages) + 1)]
        prefix = "<think></think><answer>[" if self.reasoning else "<answer>["
        prompt = prompt_input(self.lm, query, pages, self.reasoning, answer_prefix=prefix)
        return next_token_logits(self.lm, [prompt], ids, token_budget=self.token_budget)[0].astype(np.float64)

    def order(self, query: Any, candidates: Sequence[Candidate]) -> list[int]:
        """0-based candidate indices, best first."""
        window = list(candidates[: self.max_candidates])
        pages = [as_page(c) for c in window]
        if self.mode == "first_token":
            scores = self._first_token_scores(str(query), pages)
            head = sorted(range(len(window)), key=lambda i: (-scores[i], i))
        else:
            text = self.generator(str(query), pages)
            parsed = parse_ranking(text, len(window))
            self.stats.record(not parsed.malformed, text)
            head = parsed.order
        return head + list(range(len(window), len(candidates)))

    def score(self, query: Any, candidates: Sequence[Candidate]) -> np.ndarray:
        if not candidates:
            return np.zeros(0)
        scores = np.zeros(len(candidates))
        for rank, i in enumerate(self.order(query, candidates)):
            scores[i] = float(len(candidates) - rank)
        return scores
