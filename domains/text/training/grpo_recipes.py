"""GRPO recipes of the text domain: Rank-R1 (setwise) and ProRank stage 1 (binary prompt warm-up).

Both are :class:`polyrank.shared.rl.grpo.GRPOModule` subclasses (GRPO: DeepSeekMath, arXiv 2402.03300, eq. 3)
that supply the prompt and the reward:

- **Rank-R1** (Zhuang et al., arXiv 2503.06034, Sec. 3; ielab/llm-rankers ``Rank-R1/train_grpo.py``): the
  setwise reasoning prompt of :func:`polyrank.domains.text.setwise.setwise_prompt` over a query and a set of
  documents holding exactly one judged positive (Rank-R1 trains on 1 positive + 19 random negatives of MS MARCO,
  shuffled); reward :func:`rank_r1_reward` = 1 iff the completion has the ``<think>...</think> <answer>...</answer>``
  format and the answer names the gold label, else 0. Paper settings: LoRA r=16, alpha=32, dropout 0.05,
  lr 1e-5, 8 generations per prompt (reference note A3).
- **ProRank stage 1** (arXiv 2506.03487, stage 1 "prompt warm-up"): the ProRank pointwise prompt of
  :class:`polyrank.domains.text.pointwise.PointwiseReranker` (``variant="prorank"``: query, document, the binary
  relevance task ending in "Relevance:"), answered by generation; reward :func:`prorank_stage1_reward` = 1 for a
  well-formed correct answer ("1" for a judged positive, "0" for a negative), ``format_reward`` for a
  well-formed wrong one, 0 otherwise. The paper gives no reward weights (its training code is not public,
  reference note A4), so ``format_reward`` is ours (default 0.1). Stage 2 (``prorank_stage2.py``) starts from
  these weights and learns logit("1") - logit("0").

The DataModules build their items with :mod:`polyrank.domains.text.training.data` (BEIR folder or the embedded
Cranfield collection; negatives are never judged positives) and shuffle with a permutation drawn from
``(seed, epoch)``, so a run resumed from ``last.ckpt`` at an epoch boundary sees the same batches as an
uninterrupted one.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import numpy as np
import torch

from polyrank.domains.text.training.data import RecipeDataModule, TrainingSet
from polyrank.shared.llm.parsers import parse_bracketed_label
from polyrank.shared.rl.grpo import GRPOModule

_FORMAT = re.compile(r"\s*<think>(.*?)</think>\s*<answer>(.*?)</answer>\s*", re.S)


def rank_r1_reward(text: str, gold: int, n: int) -> float:
    """1.0 iff ``text`` is exactly ``<think>..</think> <answer>..</answer>`` (whitespace around allowed, nothing
    else) and the answer's label is ``gold + 1`` (labels are 1-based, ``[3]`` or ``3``) of ``n`` documents."""
    match = _FORMAT.fullmatch(text)
    if match is None:
        return 0.0
    label = parse_bracketed_label(match.group(2), [str(i + 1) for i in range(n)])
    return 1.0 if label == gold else 0.0


def prorank_stage1_reward(text: str, label: float, format_reward: float = 0.1) -> float:
    """1.0 when ``text`` (stripped) is exactly the right binary label ("1" iff ``label >= 0.5``), ``format_reward``
    when it is the other label, 0.0 when it is neither "0" nor "1"."""
    answer = text.strip()
    if answer not in ("0", "1"):
        return 0.0
    return 1.0 if answer == ("1" if label >= 0.5 else "0") else format_reward


class SetwiseDataModule(RecipeDataModule):
    """Rank-R1 items: a query and a shuffled set of ``set_size`` documents holding one judged positive (the gold).

    Args:
        batch_size: prompts per batch (each sampled group_size times).
        set_size: documents per prompt (Rank-R1: 20).
        negatives: ``random`` (Rank-R1: uniform non-positive documents) or ``hard`` (first-stage negatives).
        positives_per_query: items per query, one per positive (best graded first).
        max_words: documents are cut to this many words.
        **kwargs: the data source and ``seed`` of :class:`~polyrank.domains.text.training.data.RecipeDataModule`.
    """

    def __init__(self, *, batch_size: int = 2, set_size: int = 20, negatives: Literal["random", "hard"] = "random",
                 positives_per_query: int = 1, max_words: int = 100, **kwargs: Any) -> None:
        super().__init__(batch_size=batch_size, **kwargs)

    def items(self, data: TrainingSet, rng: np.random.Generator) -> list[dict[str, Any]]:
        hp = self.hparams
        doc_ids = sorted(data.corpus)
        out = []
        for q in data.queries:
            for gold_id in sorted(q.positives, key=lambda d: (-q.positives[d], d))[: hp.positives_per_query]:
                if hp.negatives == "hard":
                    pool = q.negatives
                else:
                    pool = [doc_ids[i] for i in rng.permutation(len(doc_ids))[: 4 * hp.set_size]]
                negatives = [d for d in pool if d not in q.positives][: hp.set_size - 1]
                if len(negatives) < hp.set_size - 1:
                    continue
                order = rng.permutation(hp.set_size).tolist()
                docs = [gold_id, *negatives]
                out.append({"qid": q.qid, "query": q.text, "gold": order.index(0),
                            "documents": [" ".join(data.corpus[docs[i]].split()[: hp.max_words]) for i in order]})
        return out


class BinaryRelevanceDataModule(RecipeDataModule):
    """ProRank stage-1 items ``{query, document, label}``: up to ``positives_per_query`` judged positives of each
    query (label 1) and ``negatives_per_positive`` negatives per positive (label 0, never a judged positive).

    Args:
        positives_per_query: judged positives per query (best graded first; None: all).
        negatives_per_positive: negatives per positive.
        negatives: ``hard`` (first-stage order) or ``random`` (uniform non-positive documents).
        max_words: documents are cut to this many words.
        **kwargs: the data source, ``batch_size`` (prompts per batch, default 4) and ``seed`` of
            :class:`~polyrank.domains.text.training.data.RecipeDataModule`.
    """

    def __init__(self, *, positives_per_query: int | None = 1, negatives_per_positive: int = 1,
                 negatives: Literal["random", "hard"] = "hard", max_words: int = 300, **kwargs: Any) -> None:
        super().__init__(**kwargs)

    def items(self, data: TrainingSet, rng: np.random.Generator) -> list[dict[str, Any]]:
        hp = self.hparams
        doc_ids = sorted(data.corpus)
        cut = lambda d: " ".join(data.corpus[d].split()[: hp.max_words])  # noqa: E731
        out = []
        for q in data.queries:
            positives = sorted(q.positives, key=lambda d: (-q.positives[d], d))[: hp.positives_per_query]
            want = hp.negatives_per_positive * len(positives)
            pool = q.negatives if hp.negatives == "hard" else \
                [doc_ids[i] for i in rng.permutation(len(doc_ids))[: 4 * want + 8]]
            negatives = [d for d in pool if d not in q.positives][:want]
            out += [{"qid": q.qid, "query": q.text, "doc_id": d, "document": cut(d), "label": 1.0} for d in positives]
            out += [{"qid": q.qid, "query": q.text, "doc_id": d, "document": cut(d), "label": 0.0} for d in negatives]
        return out


class RankR1Module(GRPOModule):
    """Rank-R1: GRPO on the setwise reasoning prompt with the 0/1 format-and-gold reward (module docstring).
    Batches are lists of :class:`SetwiseDataModule` items ``{"query", "documents", "gold"}``.

    Args:
        model: base LM: ``"tiny:llama"``/``"tiny:qwen2"`` (tiny random test model) or a local folder/.gguf file.
        words: whole words of the tiny test tokenizer (None: the setwise reranker's test vocabulary).
        lora: LoRA settings (keys r, alpha, dropout, target_modules); Rank-R1: r=16, alpha=32, dropout=0.05.
        serve_as: registry name serving the trained weights.
        max_prompt_tokens: prompts longer than this keep their last tokens (the instruction and answer cue).
        **kwargs: GRPO settings of :class:`polyrank.shared.rl.grpo.GRPOModule` (group_size, max_new_tokens,
            temperature, top_p, num_iterations, epsilon, epsilon_high, beta, aggregation, lr, seed, ...).
    """

    def __init__(self, model: str = "tiny:llama", words: list[str] | None = None,
                 lora: dict[str, Any] | None = None, serve_as: str = "text.setwise", max_prompt_tokens: int = 4096,
                 **kwargs: Any) -> None:
        from polyrank.domains.text.setwise import VOCAB

        words = list(VOCAB) if words is None and model.startswith("tiny:") else words
        super().__init__(model=model, words=words, lora=lora, serve_as=serve_as, **kwargs)
        self.hparams["words"] = words

    def prompts(self, batch: list[dict[str, Any]]) -> list[list[int]]:
        from polyrank.domains.text.setwise import setwise_prompt

        limit = self.hparams.max_prompt_tokens
        return [self.lm.encode(self.lm.chat(setwise_prompt(item["query"], item["documents"], reasoning=True)))[-limit:]
                for item in batch]

    def rewards(self, batch: list[dict[str, Any]], completions: list[list[str]]) -> torch.Tensor:
        return torch.tensor([[rank_r1_reward(text, item["gold"], len(item["documents"])) for text in group]
                             for item, group in zip(batch, completions)])


class ProRankStage1Module(GRPOModule):
    """ProRank stage 1: GRPO prompt warm-up on the binary relevance prompt (module docstring). Batches are lists
    of :class:`BinaryRelevanceDataModule` items ``{"query", "document", "label"}``.

    Args:
        model: base LM: ``"tiny:llama"``/``"tiny:qwen2"`` (tiny random test model) or a local folder/.gguf file.
        words: whole words of the tiny test tokenizer (None: the pointwise reranker's test vocabulary).
        lora: LoRA settings (keys r, alpha, dropout, target_modules).
        serve_as: registry name serving the trained weights (stage 2 also starts from them).
        format_reward: reward of a well-formed ("0"/"1") but wrong answer.
        max_doc_tokens: documents are cut to this many tokens (as the pointwise reranker's max_length).
        max_new_tokens: the most tokens of an answer ("0"/"1" and end of turn fit in 2).
        **kwargs: GRPO settings of :class:`polyrank.shared.rl.grpo.GRPOModule` (group_size, max_new_tokens,
            temperature, top_p, num_iterations, epsilon, epsilon_high, beta, aggregation, lr, seed, ...).
    """

    def __init__(self, model: str = "tiny:qwen2", words: list[str] | None = None,
                 lora: dict[str, Any] | None = None, serve_as: str = "text.pointwise.prorank",
                 format_reward: float = 0.1, max_doc_tokens: int = 512, max_new_tokens: int = 4,
                 **kwargs: Any) -> None:
        from polyrank.domains.text.pointwise import VOCAB, PointwiseReranker

        words = list(VOCAB) if words is None and model.startswith("tiny:") else words
        super().__init__(model=model, words=words, lora=lora, serve_as=serve_as, max_new_tokens=max_new_tokens,
                         **kwargs)
        self.hparams["words"] = words
        # the serving prompt itself (the reranker is a plain object around the same LM, not a submodule)
        self._pointwise = PointwiseReranker(self.lm, serve_as, variant="prorank", max_length=max_doc_tokens)

    def prompt(self, query: str, document: str) -> list[int]:
        """Token ids of the ProRank prompt, assembled as :class:`PointwiseReranker` scores it."""
        before, after = self._pointwise.prompt_parts(query)
        return self.lm.encode(before) + self.lm.encode(document)[: self.hparams.max_doc_tokens] + self.lm.encode(after)

    def prompts(self, batch: list[dict[str, Any]]) -> list[list[int]]:
        return [self.prompt(item["query"], item["document"]) for item in batch]

    def rewards(self, batch: list[dict[str, Any]], completions: list[list[str]]) -> torch.Tensor:
        return torch.tensor([[prorank_stage1_reward(text, item["label"], self.hparams.format_reward)
                              for text in group] for item, group in zip(batch, completions)])
