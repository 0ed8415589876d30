"""RagLLaVA / RagVL pointwise reranker (Chen et al., arXiv 2407.21439, Sec. 3.2; github IDEA-FinAI/RagLLaVA
``llava/eval/run_llava.py::llava_eval_relevance``): one yes/no relevance prompt per candidate page, score
``P(yes) = softmax([logit("Yes"), logit("No")])[0]`` at the first answer position (one forward pass, the
equivalent of the paper's first generated token's scores).

Prompts (the paper's templates): ``plain`` "Question: {q}\\nIs this image relevant to the question? Answer 'Yes'
or 'No'." and the knowledge-enhanced ``caption`` "Image Caption: {text}\\nQuestion: {q}\\nBased on the image and
its caption, is the image relevant to the question? Answer 'Yes' or 'No'." (the page text is the caption).
The page image is placed after the question line (LLaVA prepends it) so that the chat header and question are a
text-only prefix shared by all candidates: its KV cache is computed once (``reuse_prefix``).

``input="text"``: the same reranker on a text-only causal LM, the page text in place of the image:
"Question: {q}\\nPage text: {text}\\nIs this page relevant to the question? Answer 'Yes' or 'No'."
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from polyrank.domains.docimage.reranker import DocReranker, as_page, is_vision
from polyrank.shared.errors import PolyrankError
from polyrank.shared.protocol import Candidate

PROMPTS = ("plain", "caption")
INPUTS = ("image", "text")
PLAIN = "Is this image relevant to the question? Answer 'Yes' or 'No'."
CAPTION = "Based on the image and its caption, is the image relevant to the question? Answer 'Yes' or 'No'."
TEXT = "Is this page relevant to the question? Answer 'Yes' or 'No'."


def yes_probability(logits: np.ndarray) -> np.ndarray:
    """``softmax([yes, no])[yes]`` per row of ``(n, 2)`` logits ordered (yes, no), computed stably."""
    logits = np.asarray(logits, dtype=np.float64)
    return 1.0 / (1.0 + np.exp(logits[:, 1] - logits[:, 0]))


class RagLLaVAReranker(DocReranker):
    """Pointwise P(yes) page reranker on a VLM (``input="image"``) or a text causal LM (``input="text"``)."""

    def __init__(self, lm: Any, registry_name: str, input: str = "image", prompt: str = "plain",
                 max_text_tokens: int = 256, reuse_prefix: bool = True, token_budget: int = 16384,
                 max_batch_size: int = 16, yes: str = "Yes", no: str = "No") -> None:
        if input not in INPUTS or prompt not in PROMPTS:
            raise PolyrankError(f"input must be one of {INPUTS} and prompt one of {PROMPTS}; got {input!r}, "
                                f"{prompt!r}")
        if input == "image" and not is_vision(lm):
            raise PolyrankError(f"{registry_name}: input='image' needs a vision-language model; this is the text "
                                f"model {lm.source} (use input='text', or model=<a VLM folder>)")
        super().__init__(lm, registry_name, input=input, prompt=prompt, max_text_tokens=max_text_tokens,
                         reuse_prefix=reuse_prefix, token_budget=token_budget, max_batch_size=max_batch_size,
                         yes=yes, no=no)
        self.input, self.prompt, self.max_text_tokens = input, prompt, max_text_tokens
        self.reuse_prefix, self.token_budget, self.max_batch_size = reuse_prefix, token_budget, max_batch_size
        self.label_ids = [lm.single_token(yes), lm.single_token(no)]

    def _cut(self, text: str) -> str:
        ids = self.lm.encode(" ".join(text.split()))[: self.max_text_tokens]
        return self.lm.tokenizer.decode(ids)

    def _messages(self, query: str, page_text: str, sentinel: str) -> list[dict[str, Any]]:
        if self.input == "text":
            content = f"Question: {query}\n{sentinel}Page text: {page_text}\n{TEXT}"
            return [{"role": "user", "content": content}]
        if self.prompt == "caption":
            items = [{"type": "text", "text": sentinel}, {"type": "image"},
                     {"type": "text", "text": f"Image Caption: {page_text}\nQuestion: {query}\n{CAPTION}"}]
        else:
            items = [{"type": "text", "text": f"Question: {query}\n"}, {"type": "text", "text": sentinel},
                     {"type": "image"}, {"type": "text", "text": PLAIN}]
        return [{"role": "user", "content": items}]

    def label_logits(self, query: Any, candidates: Sequence[Candidate]) -> np.ndarray:
        """``(n, 2)`` logits of (Yes, No) at the answer position of each candidate's prompt."""
        from polyrank.shared.llm.vision import SENTINEL

        pages = [as_page(c) for c in candidates]
        texts = [self._cut(p.text) if (self.input == "text" or self.prompt == "caption") else "" for p in pages]
        if self.input == "text":
            from polyrank.shared.llm.scoring import next_token_logits

            empty = [c.id for c, t in zip(candidates, texts) if not t.strip()]
            if empty:
                raise PolyrankError(f"input='text' needs page text; pages {empty[:3]} have none (pass parsed text, "
                                    "OCR, or use a VLM with input='image')")
            before, _ = self.lm.chat(self._messages(str(query), "", SENTINEL)).split(SENTINEL)
            suffixes = [self.lm.chat(self._messages(str(query), t, SENTINEL)).split(SENTINEL)[1] for t in texts]
            return next_token_logits(self.lm, [self.lm.encode(s) for s in suffixes], self.label_ids,
                                     prefix=self.lm.encode(before), reuse_prefix=self.reuse_prefix,
                                     token_budget=self.token_budget, max_batch_size=self.max_batch_size)
        from polyrank.shared.llm.vision import next_token_logits

        missing = [c.id for c, p in zip(candidates, pages) if p.image is None]
        if missing:
            raise PolyrankError(f"input='image' needs page images; pages {missing[:3]} are text-only")
        before, _ = self.lm.split(self._messages(str(query), texts[0], SENTINEL))
        inputs = [self.lm.inputs(self.lm.split(self._messages(str(query), t, SENTINEL))[1], [p.image])
                  for t, p in zip(texts, pages)]
        return next_token_logits(self.lm, inputs, self.label_ids, prefix=self.lm.encode(before),
                                 reuse_prefix=self.reuse_prefix, token_budget=self.token_budget,
                                 max_batch_size=self.max_batch_size)

    def score(self, query: Any, candidates: Sequence[Candidate]) -> np.ndarray:
        if not candidates:
            return np.zeros(0)
        return yes_probability(self.label_logits(query, candidates))
