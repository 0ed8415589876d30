"""What the cross-encoder benchmarks (``crosslingual.py``, ``text_llm.py``) share: the (query, passage) pairs, and
sentence-transformers' ``CrossEncoder`` made to compute exactly the function of our cross-encoder, so that the
pairs/s they compare are for the same work. Imported as ``from _cross_encoder import ...`` (see ``_timing.py``);
running this file does nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def msmarco_pairs(n: int, words: Sequence[str], rng: np.random.Generator) -> tuple[list[str], list[str], str]:
    """``(queries, passages, source)``: ``n`` msmarco queries x passages from ``<data_dir>/text/beir/msmarco`` when
    present (real, varied lengths), else generated passages of 10-120 ``words`` with 8-word queries."""
    from polyrank.shared.reproduce import data_dir
    from polyrank.shared.runs import load_beir

    root = data_dir()
    folder = Path(root) / "text" / "beir" / "msmarco" if root else None
    if folder is not None and folder.is_dir():
        corpus, queries, _ = load_beir(folder)
        passages = [f"{v.get('title', '')} {v['text']}".strip() for v in list(corpus.values())[:n]]
        texts = list(queries.values())
        return [texts[i % len(texts)] for i in range(len(passages))], passages, f"msmarco ({folder})"
    docs = [" ".join(rng.choice(words, int(rng.integers(10, 121)))) for _ in range(n)]
    return [" ".join(rng.choice(words, 8)) for _ in range(n)], docs, "generated passages of 10-120 words"


def sentence_transformers_twin(folder: str | Path, model, max_length: int):
    """sentence-transformers' ``CrossEncoder`` on ``folder`` (a ``BertForSequenceClassification``) with BERT's pooler
    replaced by the ``[CLS]`` state and ``model``'s ``bert`` and ``classifier`` weights copied in: ``model``'s
    function (a fresh linear head on ``[CLS]``), on the CPU, raw scores."""
    import torch
    from sentence_transformers import CrossEncoder

    class ClsState(torch.nn.Module):
        """Stands in for BERT's pooler: the ``[CLS]`` state itself (so the head sees what ours sees)."""

        def forward(self, hidden_states):
            return hidden_states[:, 0]

    st = CrossEncoder(str(folder), num_labels=1, max_length=max_length, device="cpu",
                      activation_fn=torch.nn.Identity())
    network = st[0].model
    network.bert.pooler = ClsState()
    network.bert.load_state_dict(model.bert.state_dict(), strict=True)
    network.classifier.load_state_dict(model.classifier.state_dict(), strict=True)
    return st


def checked_gap(ours: np.ndarray, theirs: np.ndarray, tolerance: float, what: str = "scores") -> float:
    """The largest score difference; above ``tolerance`` the benchmark stops (it would time different work)."""
    gap = float(np.abs(np.asarray(ours, dtype=np.float64) - np.asarray(theirs, dtype=np.float64)).max())
    if gap > tolerance:
        raise SystemExit(f"{what} differ from sentence-transformers' by {gap:.2e}; not timing")
    return gap
