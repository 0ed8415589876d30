"""A tiny separable fact-check set for MTM learning tests (shared by tests/domains/mtm)."""

from __future__ import annotations

from polyrank.domains.mtm.datamodule import MTMDataModule
from polyrank.domains.mtm.synthetic import synthetic_factcheck


class SeparableData(MTMDataModule):
    """Generated claims where every relevant article carries a marker sentence no candidate negative has."""

    def load(self):
        data = synthetic_factcheck(40, 16, seed=0)
        for did in sorted({d for rel in data.qrels.values() for d in rel}):
            data.articles[did] = data.articles[did] + ["hoax debunked fake hoax"]
        pool = [f"n{i}" for i in range(10)]
        for i, did in enumerate(pool):
            data.articles[did] = [f"the {w} report was published" for w in ("city", "farm", "river")[: 1 + i % 3]]
        data.candidates = {q: sorted([*data.qrels[q], *pool[:7]]) for q in data.claims}
        return data
