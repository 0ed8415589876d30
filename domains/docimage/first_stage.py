"""First stages for page retrieval: CLIP image/text embeddings (open_clip), a sentence encoder on page text and
BM25 on page text (bm25s), each giving a run ``{question id: {page id: score}}``.

Dense vectors go into the shared :class:`~polyrank.shared.store.CandidateStore`: one store per document (MMDocIR
ranks the pages of each question's own document) and one corpus-wide (:class:`PageIndex`). CLIP follows
RagLLaVA's retriever (arXiv 2407.21439, Sec. 3.1: L2-normalised image and text embeddings, inner product);
``tiny_clip`` builds a random open_clip model from a small config dict (tests; no download), and
:meth:`ClipEncoder.from_checkpoint` loads any local open_clip checkpoint file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from polyrank.domains.docimage.pages import PageStore
from polyrank.shared.errors import PolyrankError
from polyrank.shared.protocol import Run

TINY_CLIP = {"embed_dim": 32,
             "vision_cfg": {"image_size": 64, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
             "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


class ClipEncoder:
    """An open_clip model with its eval transform and tokenizer; outputs are L2-normalised float32."""

    def __init__(self, model: Any, preprocess: Any, tokenizer: Any, device: str | None = None,
                 batch_size: int = 32) -> None:
        import torch

        self.device = torch.device(device or "cpu")
        self.model, self.preprocess, self.tokenizer = model.to(self.device).eval(), preprocess, tokenizer
        self.batch_size = batch_size

    @classmethod
    def from_checkpoint(cls, architecture: str, checkpoint: str | Path, device: str | None = None) -> ClipEncoder:
        """A local open_clip checkpoint (``architecture`` e.g. ``ViT-L-14-336``; ``checkpoint`` a file path)."""
        from polyrank.shared.extras import require

        open_clip = require("open_clip", extra="docimage")
        if not Path(checkpoint).is_file():
            raise PolyrankError(f"CLIP checkpoint {checkpoint} does not exist; pass a local open_clip weights file "
                                "(polyrank never downloads weights)")
        model, _, preprocess = open_clip.create_model_and_transforms(architecture, pretrained=str(checkpoint))
        return cls(model, preprocess, open_clip.get_tokenizer(architecture), device)

    @property
    def dim(self) -> int:
        return int(self.model.text_projection.shape[1]) if hasattr(self.model, "text_projection") else \
            int(self.model.visual.output_dim)

    def encode_images(self, images: Sequence[Any]) -> np.ndarray:
        import torch

        out = []
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                batch = torch.stack([self.preprocess(i) for i in images[start:start + self.batch_size]])
                vectors = self.model.encode_image(batch.to(self.device)).float()
                out.append(torch.nn.functional.normalize(vectors, dim=-1))
        return torch.cat(out).cpu().numpy() if out else np.zeros((0, self.dim), np.float32)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            tokens = self.tokenizer(list(texts)).to(self.device)
            return torch.nn.functional.normalize(self.model.encode_text(tokens).float(), dim=-1).cpu().numpy()


def tiny_clip(seed: int = 0, device: str | None = None) -> ClipEncoder:
    """A random open_clip ViT/Transformer CLIP from :data:`TINY_CLIP` (weights drawn in a forked RNG)."""
    import torch

    from polyrank.shared.extras import require

    open_clip = require("open_clip", extra="docimage")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = open_clip.CLIP(embed_dim=TINY_CLIP["embed_dim"], vision_cfg=TINY_CLIP["vision_cfg"],
                               text_cfg=TINY_CLIP["text_cfg"])
    preprocess = open_clip.image_transform(TINY_CLIP["vision_cfg"]["image_size"], is_train=False)
    length = TINY_CLIP["text_cfg"]["context_length"]
    return ClipEncoder(model, preprocess, lambda texts: open_clip.tokenize(texts, context_length=length), device)


class PageIndex:
    """Page vectors in one :class:`CandidateStore` per document and one corpus-wide."""

    def __init__(self, dim: int) -> None:
        from polyrank.shared.store import CandidateStore

        self.dim = dim
        self.corpus = CandidateStore(dim, factory="Flat", metric="ip")
        self.documents: dict[str, Any] = {}
        self._store = CandidateStore

    def add(self, doc: str, ids: Sequence[str], vectors: np.ndarray) -> None:
        store = self.documents.setdefault(doc, self._store(self.dim, factory="Flat", metric="ip"))
        store.add(list(ids), vectors)
        self.corpus.add(list(ids), vectors)

    def search_own_document(self, queries: Mapping[str, np.ndarray], doc_of: Mapping[str, str], k: int) -> Run:
        """Each question against the pages of its own document only (MMDocIR protocol)."""
        run: Run = {}
        for qid, vector in queries.items():
            doc = doc_of[qid]
            if doc not in self.documents:
                raise PolyrankError(f"question {qid}: its document {doc!r} has no indexed pages; index it first")
            store = self.documents[doc]
            run.update(store.search_run([qid], vector[None, :], min(k, len(store))))
        return run

    def search_corpus(self, queries: Mapping[str, np.ndarray], k: int) -> Run:
        qids = list(queries)
        return self.corpus.search_run(qids, np.stack([queries[q] for q in qids]), min(k, len(self.corpus)))


def index_pages(store: PageStore, encode: Any, kind: str = "text") -> PageIndex:
    """A :class:`PageIndex` of every page of ``store`` encoded by ``encode(list) -> (n, d)`` from its text or image."""
    index = None
    for doc in store.documents():
        pages = store.pages(doc)
        items = [p.text for p in pages] if kind == "text" else [p.image for p in pages]
        if any(i is None for i in items):
            raise PolyrankError(f"document {doc!r} has text-only pages; an image first stage needs page images")
        vectors = np.asarray(encode(items), dtype=np.float32)
        index = index or PageIndex(vectors.shape[1])
        index.add(doc, [p.id for p in pages], vectors)
    if index is None:
        raise PolyrankError("the page store is empty; add documents first")
    return index


def bm25_run(queries: Mapping[str, str], doc_of: Mapping[str, str], store: PageStore, k: int = 100) -> Run:
    """BM25 (bm25s, English stop words) over the page texts of each question's own document."""
    import bm25s

    run: Run = {}
    by_doc: dict[str, list[str]] = {}
    for qid in queries:
        by_doc.setdefault(doc_of[qid], []).append(qid)
    for doc, qids in by_doc.items():
        pages = store.pages(doc)
        retriever = bm25s.BM25()
        retriever.index(bm25s.tokenize([p.text or " " for p in pages], stopwords="en", show_progress=False),
                        show_progress=False)
        tokens = bm25s.tokenize([queries[q] for q in qids], stopwords="en", show_progress=False)
        top, scores = retriever.retrieve(tokens, k=min(k, len(pages)), show_progress=False)
        for row, qid in enumerate(qids):
            run[qid] = {pages[int(i)].id: float(s) for i, s in zip(top[row], scores[row])}
    return run


def fuse(runs: Sequence[Run], k: int = 60) -> Run:
    """Reciprocal-rank fusion (Cormack et al., SIGIR 2009): ``sum_r 1 / (k + rank_r(page))``."""
    from polyrank.shared.protocol import tie_break_order

    out: Run = {}
    for run in runs:
        for qid, docs in run.items():
            ids = list(docs)
            for rank, i in enumerate(tie_break_order(ids, [docs[d] for d in ids]), 1):
                out.setdefault(qid, {})
                out[qid][ids[i]] = out[qid].get(ids[i], 0.0) + 1.0 / (k + rank)
    return out
