"""Question decomposition for retrieval (Ammann, Golde & Akbik, arXiv 2507.00355).

(i) A zero-shot LLM splits a (multi-hop) question into simple fact-seeking sub-questions
(:meth:`DecomposeReranker.decompose`); (ii) the original question and each sub-question are searched in a first
stage (:class:`StoreSearcher` over a :class:`~polyrank.shared.store.CandidateStore`, or :class:`BM25Searcher`);
(iii) the pools are merged (:func:`merge_pools`: one entry per document, its best first-stage score kept);
(iv) any registered reranker (default ``text.cross_encoder``) rescores the merged pool against the *original*
question. :meth:`DecomposeReranker.retrieve_run` gives steps (i)-(iii) as a first-stage run, which the shared
:func:`~polyrank.shared.protocol.rerank_run` rescores with this reranker (step iv); ``score`` is step (iv) alone.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from polyrank.domains.text.reranker import LLMReranker
from polyrank.shared.protocol import Candidate, Reranker, Run, rerank_run

#: ``searcher(texts, k) -> one list of (doc_id, first-stage score) per text, best first``
Searcher = Callable[[list[str], int], list[list[tuple[str, float]]]]
PROMPT = ("Break the question below into at most {n} simple, self-contained, fact-seeking sub-questions that "
          "together answer it. Write one sub-question per line and nothing else. If the question is already "
          "simple, write it unchanged.\n\nQuestion: {question}\nSub-questions:\n")
INNER_DIR = "reranker"
VOCAB = ["Break", "question", "questions", "sub", "simple", "Question", "Sub"]
_NUMBERING = re.compile(r"^\s*(?:[-*\u2022]|\(?\d+[.):]|Q\d+[.):]?)\s*", re.I)


class BM25Searcher:
    """BM25 (bm25s, Lucene scoring) over ``{doc_id: text}``; English stop words removed."""

    def __init__(self, corpus: Mapping[str, str]) -> None:
        import bm25s

        self.ids = list(corpus)
        self._bm25s = bm25s
        self.retriever = bm25s.BM25()
        self.retriever.index(bm25s.tokenize([corpus[d] for d in self.ids], stopwords="en", show_progress=False),
                             show_progress=False)

    def __call__(self, texts: list[str], k: int) -> list[list[tuple[str, float]]]:
        if not texts:
            return []
        k = min(k, len(self.ids))
        hits, scores = self.retriever.retrieve(self._bm25s.tokenize(list(texts), stopwords="en", show_progress=False),
                                               k=k, show_progress=False)
        return [[(self.ids[i], float(s)) for i, s in zip(row, row_scores)] for row, row_scores in zip(hits, scores)]


class StoreSearcher:
    """Dense search in a :class:`~polyrank.shared.store.CandidateStore`; ``encode(texts) -> (n, dim)`` vectors
    (e.g. ``SentenceEncoder.encode`` or :meth:`polyrank.shared.llm.embedding.LLMEmbedder.encode_queries`)."""

    def __init__(self, store: Any, encode: Callable[[list[str]], np.ndarray]) -> None:
        self.store, self.encode = store, encode

    def __call__(self, texts: list[str], k: int) -> list[list[tuple[str, float]]]:
        if not texts:
            return []
        scores, ids = self.store.search(self.encode(list(texts)), min(k, len(self.store)))
        return [[(str(d), float(s)) for d, s in zip(row.tolist(), row_scores.tolist()) if d is not None and d != -1]
                for row, row_scores in zip(ids, scores)]


def merge_pools(pools: Sequence[Sequence[tuple[str, float]]]) -> dict[str, float]:
    """Union of candidate pools, one entry per document with its best first-stage score; best first (ties: id)."""
    best: dict[str, float] = {}
    for pool in pools:
        for doc_id, score in pool:
            if doc_id not in best or score > best[doc_id]:
                best[doc_id] = float(score)
    return dict(sorted(best.items(), key=lambda item: (-item[1], item[0])))


def parse_subquestions(text: str, limit: int) -> list[str]:
    """Sub-questions of an LLM output: one per line, numbering and bullets removed, duplicates dropped, at most
    ``limit``."""
    seen: list[str] = []
    for line in text.splitlines():
        question = _NUMBERING.sub("", line).strip().strip('"')
        if len(question.split()) >= 2 and question.lower() not in {s.lower() for s in seen}:
            seen.append(question)
    return seen[:limit]


class DecomposeReranker(LLMReranker):
    """Decompose -> search each sub-question -> merge -> rescore against the original question.

    ``reranker``: the rescoring :class:`~polyrank.shared.protocol.Reranker`, or a registered name / saved
    directory loaded through the registry.
    """

    def __init__(self, lm, registry_name: str, reranker: str | Reranker = "text.cross_encoder",
                 max_subquestions: int = 4, k: int = 20, include_original: bool = True,
                 max_new_tokens: int = 96, token_budget: int = 16384) -> None:
        from polyrank.shared.registry import load

        inner = load(reranker) if isinstance(reranker, (str, Path)) else reranker
        name = str(reranker) if isinstance(reranker, (str, Path)) else \
            getattr(reranker, "name", type(reranker).__name__)
        super().__init__(lm, registry_name, reranker=name, max_subquestions=max_subquestions, k=k,
                         include_original=include_original, max_new_tokens=max_new_tokens, token_budget=token_budget)
        self.reranker, self.max_subquestions, self.k = inner, max_subquestions, k
        self.include_original, self.max_new_tokens = include_original, max_new_tokens

    def decompose_many(self, questions: Sequence[str]) -> list[list[str]]:
        """Sub-questions of each question (one batched generation); an output with none is counted malformed
        and the question is searched alone."""
        prompts = [self.lm.chat([{"role": "user", "content": PROMPT.format(n=self.max_subquestions, question=q)}])
                   for q in questions]
        outputs = self.generator(prompts, self.max_new_tokens, ()) if prompts else []
        result = []
        for question, text in zip(questions, outputs):
            subs = parse_subquestions(text, self.max_subquestions)
            self.stats.record(bool(subs), text)
            result.append(subs)
        return result

    def decompose(self, question: str) -> list[str]:
        return self.decompose_many([question])[0]

    def search_texts(self, question: str, subquestions: Sequence[str]) -> list[str]:
        texts = ([question] if self.include_original or not subquestions else []) + list(subquestions)
        return list(dict.fromkeys(texts))

    def retrieve_run(self, queries: Mapping[str, str], searcher: Searcher, k: int | None = None) -> Run:
        """Steps (i)-(iii) for every query: ``{qid: merged pool {doc_id: best first-stage score}}``."""
        qids = list(queries)
        subs = self.decompose_many([queries[q] for q in qids])
        run: Run = {}
        for qid, sub in zip(qids, subs):
            texts = self.search_texts(queries[qid], sub)
            run[qid] = merge_pools(searcher(texts, k or self.k))
        return run

    def search(self, queries: Mapping[str, str], searcher: Searcher, corpus: Mapping[str, Any] | Callable,
               k: int | None = None) -> Run:
        """The whole pipeline: the merged pools rescored against the original questions (``rerank_run``)."""
        pools = self.retrieve_run(queries, searcher, k)
        depth = max([len(p) for p in pools.values()] + [1])
        return rerank_run(pools, self, queries, corpus, depth=depth)

    def score(self, query: Any, candidates: Sequence[Candidate]) -> np.ndarray:
        """Step (iv): the rescoring reranker's scores of ``candidates`` for the original question."""
        return np.asarray(self.reranker.score(query, candidates), dtype=np.float64)

    def score_batch(self, queries: Sequence[Any], candidate_lists: Sequence[Sequence[Candidate]]) -> list[np.ndarray]:
        return [np.asarray(s, dtype=np.float64) for s in self.reranker.score_batch(queries, candidate_lists)]

    def save(self, directory: str | Path) -> Path:
        """The LLM folder, the rescoring reranker's own saved directory (``reranker/``) and ``polyrank.json``."""
        from polyrank.shared.atomic import atomic_directory
        from polyrank.shared.registry import write_manifest

        if not hasattr(self.reranker, "save"):
            raise TypeError(f"the rescoring reranker {type(self.reranker).__name__} has no save()")
        directory = Path(directory)
        with atomic_directory(directory) as staging:
            self.lm.save(Path(staging) / "model")
            self.reranker.save(Path(staging) / INNER_DIR)
            write_manifest(staging, self.name, options=self.options, source=self.lm.source)
        return directory
