"""Paper rows on MMDocIR as polyrank reproductions (MM-R5, arXiv 2506.12364, main results table).

:class:`MMDocIRRerankRow` reranks a first-stage run (MM-R5 reranks ColQwen2's candidates; pass that run as a TREC
file, ids ``<doc_name>#<0-based page>``) of every MMDocIR evaluation question with a registered docimage reranker
on a local VLM, and returns page-level recall ``micro_R@k`` / ``macro_R@k`` (k = 1, 3, 5). It needs
``MMDocIR_annotations.jsonl`` and ``MMDocIR_pages.parquet`` (``datasets/mmdocir/README.md``), the model folder
and the run.
"""

from __future__ import annotations

from pathlib import Path

from polyrank.shared.reproduce import Reproduction, data_dir


class MMDocIRRerankRow(Reproduction):
    """One reranker row of the MMDocIR page-level table.

    Args:
        model: local folder of the reranker's VLM (e.g. the released i2vec/MM-R5 weights); relative paths resolve
            under ``data_root``.
        first_stage: TREC run of the first-stage retriever over all questions (``<doc>/q<k>`` query ids).
        reranker: registry name (``docimage.mmr5`` or ``docimage.ragllava``).
        depth: first-stage pages reranked per question (the paper's number is unknown; 10 by default).
        reasoning: MM-R5 writes its <think> analysis before the answer.
        max_new_tokens: the most generated tokens (the authors allow 8192).
        temperature: sampling temperature (the authors: 0.3; 0 = greedy).
        data_root: folder holding ``MMDocIR_annotations.jsonl`` and ``MMDocIR_pages.parquet`` (default
            ``data_dir()/docimage/mmdocir``).
        device: where the VLM runs (default: CUDA when available).
    """

    def __init__(self, model: str, first_stage: str, reranker: str = "docimage.mmr5", depth: int = 10,
                 reasoning: bool = True, max_new_tokens: int = 2048, temperature: float = 0.3,
                 data_root: str | None = None, device: str | None = None) -> None:
        shared = data_dir()
        self.root = Path(data_root) if data_root else (shared / "docimage" / "mmdocir" if shared else
                                                       Path("data/docimage/mmdocir"))
        self.model, self.first_stage = self._resolve(model), self._resolve(first_stage)
        self.reranker, self.depth, self.reasoning = reranker, depth, reasoning
        self.max_new_tokens, self.temperature, self.device = max_new_tokens, temperature, device

    def _resolve(self, path: str) -> Path:
        return Path(path) if Path(path).is_absolute() else self.root / path

    def missing(self) -> list[str]:
        needs = {self.root / "MMDocIR_annotations.jsonl": "the MMDocIR annotations",
                 self.root / "MMDocIR_pages.parquet":
                     "the MMDocIR pages parquet (HF MMDocIR/MMDocIR_Evaluation_Dataset)",
                 self.model / "config.json": f"the reranker's VLM folder {self.model}",
                 self.first_stage: f"the first-stage TREC run {self.first_stage}"}
        return [f"{what} ({path})" for path, what in needs.items() if not path.exists()]

    def run(self) -> dict[str, float]:
        from polyrank.domains.docimage.data import check_documents, qrels_of, read_annotations, read_pages_parquet
        from polyrank.domains.docimage.metrics import mmdocir_recall, own_document_only
        from polyrank.shared.protocol import rerank_run
        from polyrank.shared.registry import load
        from polyrank.shared.runs import read_run

        docs = read_annotations(self.root / "MMDocIR_annotations.jsonl")
        store = read_pages_parquet(self.root / "MMDocIR_pages.parquet", docs)
        check_documents(docs, store)
        queries, qrels, domains = qrels_of(docs)
        first = own_document_only(read_run(self.first_stage))
        options = {"reasoning": self.reasoning, "max_new_tokens": self.max_new_tokens,
                   "temperature": self.temperature, "max_candidates": self.depth} if "mmr5" in self.reranker else {}
        reranker = load(self.reranker, model=str(self.model), device=self.device, **options)
        corpus = {p.id: p for d in store.documents() for p in store.pages(d)}
        run = rerank_run(first, reranker, queries, corpus, depth=self.depth, batch_size=1)
        return mmdocir_recall(run, qrels, domains)
