"""Demo: MMDocIR page retrieval on the 10 real parsed documents, reranked by the real SmolLM2-135M-Instruct in
RagLLaVA's pointwise yes/no mode on page text; and the multimodal path end to end on a tiny random VLM.

Real: the MMDocIR annotations (questions, labelled pages, domains), the parsed page text, all-MiniLM-L6-v2 and
SmolLM2-135M-Instruct. Drawn: each page image is its parsed text rendered with PIL (the page scans are not in
the data). Random: the tiny CLIP (its recall is chance level) and the tiny VLM (listwise rerank, one SFT step and
one GRPO step run, their outputs mean nothing). Without ``ctx.data_dir`` only the tiny-random part runs.
"""

from __future__ import annotations

import time
from pathlib import Path

from polyrank.shared.demo import DemoContext
from polyrank.shared.report import Figure, ReportSection, Table

DEPTH = 3          # MiniLM top pages reranked per question (documents have 6-17 pages)
MAX_TEXT_TOKENS = 64
KS = (1, 3, 5)


def _recall_row(name: str, run, qrels, domains) -> list:
    from polyrank.domains.docimage.metrics import mmdocir_recall

    m = mmdocir_recall(run, qrels, domains, KS)
    return [name] + [m[f"micro_R@{k}"] for k in KS] + [m[f"macro_R@{k}"] for k in KS]


def _real_part(ctx: DemoContext, notes: list[str]) -> tuple[list[Table], list[Figure]]:
    from polyrank.domains.docimage.data import parsed_subset, qrels_of
    from polyrank.domains.docimage.first_stage import bm25_run, index_pages, tiny_clip
    from polyrank.domains.docimage.ragllava import RagLLaVAReranker
    from polyrank.shared.llm.loading import load_causal_lm, smollm2_gguf
    from polyrank.shared.protocol import rerank_run, tie_break_order
    from polyrank.shared.report import image_grid
    from polyrank.shared.text_encoder import SentenceEncoder

    began = time.perf_counter()
    docs, store = parsed_subset(ctx.data_dir, cache_dir=Path(ctx.out_dir) / "cache")
    queries, qrels, domains = qrels_of(docs)
    doc_of = {q.qid: q.doc for d in docs for q in d.questions}
    notes.append(f"data: {len(docs)} MMDocIR documents ({len(set(domains.values()))} domains), {len(store)} pages, "
                 f"{len(queries)} questions, read and drawn in {time.perf_counter() - began:.1f} s")
    encoder = SentenceEncoder(max_length=128, device=ctx.device)
    text_index = index_pages(store, encoder.encode, "text")
    qvec = dict(zip(queries, encoder.encode(list(queries.values()))))
    minilm = text_index.search_own_document(qvec, doc_of, 100)
    clip = tiny_clip(seed=ctx.seed)
    image_index = index_pages(store, clip.encode_images, "image")
    clip_run = image_index.search_own_document(dict(zip(queries, clip.encode_texts(list(queries.values())))),
                                               doc_of, 100)
    bm25 = bm25_run(queries, doc_of, store)
    lm = load_causal_lm(smollm2_gguf(), device=ctx.device)
    reranker = RagLLaVAReranker(lm, "docimage.ragllava.text", input="text", max_text_tokens=MAX_TEXT_TOKENS,
                                token_budget=8192)
    corpus = {p.id: p for d in store.documents() for p in store.pages(d)}
    start = time.perf_counter()
    reranked = rerank_run(minilm, reranker, queries, corpus, depth=DEPTH, batch_size=8, progress=False)
    seconds = time.perf_counter() - start
    rows = [_recall_row("BM25 on page text (bm25s)", bm25, qrels, domains),
            _recall_row("tiny random CLIP on drawn page images (chance level)", clip_run, qrels, domains),
            _recall_row("all-MiniLM-L6-v2 on page text (first stage)", minilm, qrels, domains),
            _recall_row(f"MiniLM top-{DEPTH} reranked: SmolLM2-135M P(yes) on page text", reranked, qrels, domains)]
    table = Table(f"MMDocIR page recall within each question's own document ({len(queries)} real questions)",
                  ["run"] + [f"micro R@{k}" for k in KS] + [f"macro R@{k}" for k in KS], rows,
                  note=f"SmolLM2 reranked {sum(min(DEPTH, len(v)) for v in minilm.values())} pages in {seconds:.1f} s "
                       f"({lm.device}); page text cut to {MAX_TEXT_TOKENS} tokens; macro = mean over domains")
    # one question with its top pages after reranking, as thumbnails (green = a labelled page)
    qid = max(qrels, key=lambda q: (sum(1 for p in qrels[q] if p in list(reranked[q])[:3]), q))
    ids = list(reranked[qid])
    order = [ids[i] for i in tie_break_order(ids, [reranked[qid][d] for d in ids])][:4]
    cells = []
    for pid in order:
        page = corpus[pid]
        cells.append((store.thumbnail(page.doc, page.index, 200), f"p.{page.index} {reranked[qid][pid]:.2f}",
                      "green" if pid in qrels[qid] else "red"))
    grid = image_grid([cells], Path(ctx.out_dir) / "docimage_top_pages.png", thumb=200)
    figure = Figure("Top pages after SmolLM2 reranking", grid,
                    f"Q: {queries[qid]} (document {doc_of[qid]}; labelled pages "
                    f"{sorted(int(p.rsplit('#', 1)[1]) for p in qrels[qid])}); green = labelled, red = not; caption "
                    f"= page and score (P(yes) for the reranked top {DEPTH}; lower pages keep the first-stage order "
                    "below them). Pages are the parsed text drawn as images.")
    return [table], [figure]


def _tiny_part(notes: list[str]) -> Table:
    import torch

    from polyrank.domains.docimage.mmr5 import MMR5Reranker, target_text
    from polyrank.domains.docimage.training import MMR5GRPOModule, MMR5SFTModule, synthetic_examples
    from polyrank.shared.protocol import Candidate

    examples = synthetic_examples(2, n_pages=3, seed=0)
    rows = []
    sft = MMR5SFTModule(model="tiny:qwen2_vl")
    reranker = MMR5Reranker(sft.vlm, "docimage.mmr5.tiny", max_new_tokens=16, max_candidates=3)
    ex = examples[0]
    ranked = reranker.rank(ex.query, [Candidate(p.id, p) for p in ex.pages])
    rows.append(["MM-R5 listwise rerank (generate, parse)", f"order {[r.candidate_id[-1] for r in ranked]}",
                 f"malformed outputs {reranker.stats.malformed}/{reranker.stats.parsed} (fell back to input order)"])
    optimiser = sft.configure_optimizers()
    sft.train()
    loss = sft.loss(examples)
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()
    rows.append(["MM-R5 SFT step (LoRA)", f"loss {float(loss):.3f}",
                 f"target e.g. {target_text(ex.order(), True, ex.think)}"])
    grpo = MMR5GRPOModule(model="tiny:qwen2_vl", group_size=2, max_new_tokens=12)
    before = {k: v.clone() for k, v in grpo.model.state_dict().items()}
    stats = grpo.grpo_step(examples[:1], grpo.configure_optimizers())
    changed = [k for k, v in grpo.model.state_dict().items() if not torch.equal(v, before[k])]
    rows.append(["MM-R5 GRPO step (LoRA, G=2)", f"loss {stats['loss']:.3f}",
                 f"mean reward {stats['reward']:.3f} (random model: usually 0 = no advantage, no update); "
                 f"{len(changed)} tensors changed, all LoRA: {all('lora_' in k for k in changed)}"])
    notes.append("tiny VLM: a random 2-layer Qwen2-VL built from a config with a local tokenizer/processor")
    return Table("Multimodal path on a tiny RANDOM Qwen2-VL (runs end to end; figures mean nothing)",
                 ["step", "result", "detail"], rows)


def run_demo(ctx: DemoContext) -> ReportSection:
    title = "docimage: MMDocIR page retrieval, RagLLaVA pointwise (SmolLM2 on page text) and MM-R5 listwise"
    notes: list[str] = []
    tables: list[Table] = []
    figures: list[Figure] = []
    summary = ("Real: MMDocIR questions/labels/parsed page text of 10 documents, all-MiniLM-L6-v2, SmolLM2-135M-"
               "Instruct (a weak 135M zero-shot judge; MM-R5's published figures do not apply to it). Drawn: page "
               "images are the parsed text rendered with PIL. Random: the tiny CLIP and the tiny VLM.")
    root = ctx.data_dir / "docimage" / "mmdocir" / "parsed" if ctx.data_dir else None
    if root is None or not root.is_dir():
        notes.append(f"no MMDocIR data ({'no data_dir' if ctx.data_dir is None else f'{root} absent'}): only the "
                     "tiny-random multimodal path ran")
    else:
        from polyrank.shared.errors import MissingResourceError

        try:
            tables, figures = _real_part(ctx, notes)
        except MissingResourceError as exc:
            notes.append(f"real part skipped: {exc}")
    tables.append(_tiny_part(notes))
    return ReportSection(title, summary=summary, tables=tables, figures=figures, notes=notes)
