"""The crosslingual demo's pipeline end to end on the real msmarco/arcd files, with a tiny random base: every system
row is there, and each figure is averaged over the queries it evaluates (the old demo divided by all judged ones)."""

from __future__ import annotations

import warnings

import pytest

pytest.importorskip("adapters")


def test_the_demo_pipeline_reports_every_system_on_the_evaluated_queries_only(shared_data, tmp_path):
    beir = shared_data / "text" / "beir"
    if not (beir / "msmarco").is_dir() or not (beir / "arcd").is_dir():
        pytest.skip("BEIR msmarco/arcd subsets not in the shared data folder")
    from polyrank.domains.crosslingual import demo
    from polyrank.domains.crosslingual import model as M
    from polyrank.domains.crosslingual.data import query_fold
    from polyrank.domains.crosslingual.first_stage import bm25_run
    from polyrank.domains.crosslingual.module import LanguageModule, RankingModule, beir_pairs
    from polyrank.shared.demo import DemoContext
    from polyrank.shared.evaluation import MissingQueriesWarning, evaluate
    from polyrank.shared.runs import load_beir

    cfg = {**demo.DEFAULT, "base": "tiny", "bi_encoder": False, "mlm_steps": 2, "rank_steps": 3, "batch": 4,
           "mlm_batch": 4, "mlm_len": 32, "rank_len": 48, "depth": 5, "max_positives": 2, "arcd_queries": 5,
           "per_positive": 4, "sft": True, "sft_full": 2, "mlm_head_warmup": 1, "hc4": False}
    ctx = DemoContext(tmp_path, shared_data)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tables, figures, notes = demo._pipeline(ctx, beir, tmp_path, cfg, M, LanguageModule, RankingModule,
                                                beir_pairs)
    assert not [w for w in caught if issubclass(w.category, MissingQueriesWarning)]
    rows = {row[0]: row for row in tables[0].rows}
    assert set(rows) == {demo.BM25, "ranking adapter: Stack(LA_en, RA)", demo.RA_ALONE, "Stack(LA_ar, RA)",
                         "SFTM theta0 + phi_rank", "SFTM theta0 + phi_rank + phi_ar", demo.FFT}
    corpus, queries, qrels = load_beir(beir / "msmarco")
    held = {q: queries[q] for q in sorted(qrels) if q in queries and query_fold(q) == "heldout"}
    texts = {d: f"{v.get('title', '')} {v.get('text', '')}".strip() for d, v in corpus.items()}
    bm25 = evaluate(bm25_run(texts, held, k=100), {q: qrels[q] for q in held}, ["nDCG@10"]).mean["nDCG@10"]
    assert rows[demo.BM25][1] == pytest.approx(bm25) and bm25 > 0.6  # 0.729: not diluted by the 25 training queries
    assert rows["Stack(LA_ar, RA)"][1] == "-" and isinstance(rows["Stack(LA_ar, RA)"][4], float)
    assert figures and figures[0].path.is_file()
    assert any(n.startswith("msmarco: the best trained reranker") for n in notes)
