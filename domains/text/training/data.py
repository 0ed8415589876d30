"""Training data of the text LLM recipes: readers of the usual formats and the recipes' DataModules.

Readers (each returns a :class:`TrainingSet`: queries with graded positives and ordered hard negatives over a
corpus; a malformed record is a :class:`~polyrank.shared.errors.FormatError` naming the file and line):

- :func:`read_text_triples`: MS MARCO ``triples.train.small.tsv`` style, ``query \\t positive \\t negative`` texts;
- :func:`read_id_triples`: MS MARCO ``qidpidtriples.train.full.tsv`` style, ``qid \\t pos_pid \\t neg_pid`` with
  ``collection.tsv`` (``pid \\t text``), ``queries.train.tsv`` (``qid \\t text``) and optionally the qrels;
- :func:`read_beir_with_run`: a BEIR folder (``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``) with
  hard negatives from a first-stage TREC run (top ``depth`` by score, ties by id) or, without a run, BM25.

Hard negatives never include a judged positive: a document is a negative of a query only if no qrels line and
no triple judges it relevant to that query (a triple's negative that another triple of the same query names as
positive is dropped). Judged non-relevant documents (grade 0) are valid negatives.

DataModules: :class:`FirstDataModule` (listwise windows with a target ranking, for FIRST) and
:class:`PointwiseDataModule` ((query, document, graded label) pairs, for ProRank stage 2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np

from polyrank.shared.errors import FormatError, PolyrankError
from polyrank.shared.protocol import tie_break_order

FORMATS = ("beir", "triples", "id_triples")


@dataclass
class TrainingQuery:
    """One training query: its judged positives (doc id -> grade > 0) and hard negatives, best first."""

    qid: str
    text: str
    positives: dict[str, int]
    negatives: list[str] = field(default_factory=list)


@dataclass
class TrainingSet:
    """Training queries over a corpus ``{doc id: text}``."""

    queries: list[TrainingQuery]
    corpus: dict[str, str]


def _records(path: str | Path, columns: int, what: str):
    """``(line number, fields)`` of a tab-separated UTF-8 file with exactly ``columns`` non-empty fields."""
    path = Path(path)
    if not path.is_file():
        raise PolyrankError(f"{what} file {path} does not exist")
    found = False
    with open(path, encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) != columns or any(not p.strip() for p in parts):
                raise FormatError(path, number, f"expected {columns} non-empty tab-separated fields ({what}), got "
                                  f"{len(parts)}: {line[:80]!r}")
            found = True
            yield number, [p.strip() for p in parts]
    if not found:
        raise FormatError(path, None, f"no record found; expected {what}")


def read_id_texts(path: str | Path, what: str = "id \\t text") -> dict[str, str]:
    """``{id: text}`` of an MS MARCO ``collection.tsv`` / ``queries.tsv`` (``id \\t text``); a repeated id with
    another text is an error."""
    table: dict[str, str] = {}
    for number, (key, text) in _records(path, 2, what):
        if table.get(key, text) != text:
            raise FormatError(path, number, f"id {key!r} appears twice with different texts")
        table[key] = text
    return table


def _grouped(rows: list[tuple[str, str, str]], judged: dict[str, dict[str, int]], texts: dict[str, str],
             corpus: dict[str, str]) -> TrainingSet:
    """Triples ``(qid, pos, neg)`` grouped by query; positives also from ``judged``; negatives never positive."""
    order: dict[str, TrainingQuery] = {}
    for qid, pos, neg in rows:
        graded = {d: g for d, g in judged.get(qid, {}).items() if g > 0 and d in corpus}
        entry = order.setdefault(qid, TrainingQuery(qid, texts[qid], graded))
        entry.positives.setdefault(pos, 1)
        if neg not in entry.negatives:
            entry.negatives.append(neg)
    for entry in order.values():
        entry.negatives = [d for d in entry.negatives if d not in entry.positives]
    return TrainingSet([q for q in order.values() if q.positives], corpus)


def read_text_triples(path: str | Path) -> TrainingSet:
    """MS MARCO text triples ``query \\t positive passage \\t negative passage``; ids are assigned by first
    appearance (``q0``, ``d0``...), identical texts share an id."""
    query_ids: dict[str, str] = {}
    doc_ids: dict[str, str] = {}
    rows = []
    for _, (query, pos, neg) in _records(path, 3, "query \\t positive \\t negative"):
        qid = query_ids.setdefault(query, f"q{len(query_ids)}")
        p = doc_ids.setdefault(pos, f"d{len(doc_ids)}")
        n = doc_ids.setdefault(neg, f"d{len(doc_ids)}")
        rows.append((qid, p, n))
    return _grouped(rows, {}, {q: t for t, q in query_ids.items()}, {d: t for t, d in doc_ids.items()})


def read_id_triples(path: str | Path, collection: str | Path, queries: str | Path,
                    qrels: str | Path | None = None) -> TrainingSet:
    """MS MARCO id triples ``qid \\t positive pid \\t negative pid`` over ``collection`` and ``queries`` (tsv);
    ``qrels`` (TREC qrels) adds judged positives and removes them from the negatives."""
    from polyrank.shared.runs import read_qrels

    corpus = read_id_texts(collection, "pid \\t passage")
    texts = read_id_texts(queries, "qid \\t query")
    judged = read_qrels(qrels) if qrels is not None else {}
    rows = []
    for number, (qid, pos, neg) in _records(path, 3, "qid \\t positive pid \\t negative pid"):
        if qid not in texts:
            raise FormatError(path, number, f"query id {qid!r} is not in {queries}")
        for pid in (pos, neg):
            if pid not in corpus:
                raise FormatError(path, number, f"passage id {pid!r} is not in {collection}")
        rows.append((qid, pos, neg))
    return _grouped(rows, judged, texts, corpus)


def _beir_collection(folder: str | Path | None, split: str) -> tuple[dict[str, str], dict[str, str], dict]:
    if folder is None:  # the embedded Cranfield collection (graded qrels 1-4), always present in a clone
        from polyrank.shared.cranfield import read_cranfield
        from polyrank.shared.embedded import locate
        from polyrank.shared.reproduce import data_dir

        corpus, queries, qrels = read_cranfield(locate("cranfield", data_dir()).path)
    else:
        from polyrank.shared.runs import load_beir

        corpus, queries, qrels = load_beir(folder, split=split)
    texts = {d: f"{v.get('title', '')} {v.get('text', '')}".strip() for d, v in corpus.items()}
    return texts, queries, qrels


def read_beir_with_run(folder: str | Path | None, run: str | Path | None = None, split: str = "train",
                       depth: int = 100, max_queries: int | None = None) -> TrainingSet:
    """Judged queries of a BEIR folder (None: the embedded Cranfield collection) with hard negatives: the
    first ``depth`` documents of ``run`` (a TREC run, score order, ties by id) that are not judged positive, or
    BM25's (bm25s) when ``run`` is None. Queries sorted by id; at most ``max_queries``."""
    corpus, queries, qrels = _beir_collection(folder, split)
    where = folder or "Cranfield"
    judged = sorted(q for q in qrels if q in queries and any(g > 0 and d in corpus for d, g in qrels[q].items()))
    judged = judged[:max_queries] if max_queries else judged
    if not judged:
        raise PolyrankError(f"{where}: no query of qrels split {split!r} has a relevant document in the corpus")
    if run is not None:
        from polyrank.shared.runs import read_run

        ranked = read_run(run)
        pools = {}
        for q in judged:
            docs = ranked.get(q, {})
            unknown = sorted(d for d in docs if d not in corpus)
            if unknown:
                raise PolyrankError(f"run {run} ranks document(s) {unknown[:3]} for query {q!r} that are not in the "
                                    f"corpus of {where}; the run belongs to another collection")
            ids = list(docs)
            pools[q] = [ids[i] for i in tie_break_order(ids, [docs[d] for d in ids])[:depth]]
    else:
        from polyrank.domains.text.decompose import BM25Searcher

        found = BM25Searcher(corpus)([queries[q] for q in judged], depth)
        pools = {q: [d for d, _ in pool] for q, pool in zip(judged, found)}
    out = []
    for q in judged:
        positives = {d: g for d, g in qrels[q].items() if g > 0 and d in corpus}
        out.append(TrainingQuery(q, queries[q], positives, [d for d in pools.get(q, []) if d not in positives]))
    return TrainingSet(out, corpus)


class RecipeDataModule(L.LightningDataModule):
    """Reads a :class:`TrainingSet` in ``setup`` (base of the recipes' DataModules).

    Args:
        format: ``beir`` (folder + run), ``triples`` (text triples tsv) or ``id_triples`` (id triples tsv).
        path: the BEIR folder (None: the embedded Cranfield collection) or the triples file.
        run: ``beir``: first-stage TREC run giving the hard negatives (None: BM25 over the corpus).
        split: ``beir``: the qrels split (``qrels/<split>.tsv``).
        collection: ``id_triples``: the ``pid \\t passage`` file.
        queries: ``id_triples``: the ``qid \\t query`` file.
        qrels: ``id_triples``: optional TREC qrels (more judged positives, never negatives).
        depth: hard negatives come from the first this many documents of the run (or BM25).
        max_queries: use at most this many training queries (None: all).
        val_queries: hold out this many queries (the last ones) for validation (0: no validation).
        batch_size: items (windows, pairs, prompts) per batch.
        seed: seed of the item sampling (windows, sets, negatives) and of the per-epoch shuffling (own generators;
            global RNG untouched).

    A recipe's DataModule subclasses it, implements :meth:`items` and takes its own settings keyword-only, passing
    these on as ``**kwargs`` (so they are documented here once; ``polyrank fit --help`` follows them).
    """

    def __init__(self, format: Literal["beir", "triples", "id_triples"] = "beir", path: str | None = None,
                 run: str | None = None, split: str = "train", collection: str | None = None,
                 queries: str | None = None, qrels: str | None = None, depth: int = 100,
                 max_queries: int | None = None, val_queries: int = 0, batch_size: int = 4, seed: int = 0) -> None:
        super().__init__()
        if format not in FORMATS:
            raise PolyrankError(f"format must be one of {FORMATS}, got {format!r}")
        self.save_hyperparameters()
        self.train_items: list[dict[str, Any]] = []
        self.val_items: list[dict[str, Any]] = []

    def training_set(self) -> TrainingSet:
        hp = self.hparams
        if hp.format == "beir":
            return read_beir_with_run(hp.path, hp.run, hp.split, hp.depth, hp.max_queries)
        if hp.path is None:
            raise PolyrankError(f"format {hp.format!r} needs path=<the triples file>")
        if hp.format == "triples":
            data = read_text_triples(hp.path)
        else:
            if hp.collection is None or hp.queries is None:
                raise PolyrankError("format 'id_triples' needs collection=<collection.tsv> and queries=<queries.tsv>")
            data = read_id_triples(hp.path, hp.collection, hp.queries, hp.qrels)
        for q in data.queries:
            q.negatives = q.negatives[: hp.depth]
        data.queries = data.queries[: hp.max_queries] if hp.max_queries else data.queries
        return data

    def items(self, data: TrainingSet, rng: np.random.Generator) -> list[dict[str, Any]]:
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self.train_items:
            return
        data = self.training_set()
        held = self.hparams.val_queries
        if held >= len(data.queries):
            raise PolyrankError(f"val_queries={held} leaves no training query (only {len(data.queries)})")
        rng = np.random.default_rng(self.hparams.seed)
        train = TrainingSet(data.queries[: len(data.queries) - held], data.corpus)
        self.train_items = self.items(train, rng)
        if held:
            self.val_items = self.items(TrainingSet(data.queries[-held:], data.corpus), rng)
        if not self.train_items:
            raise PolyrankError("no training item could be built (no query has both a positive and a negative)")

    def train_dataloader(self):
        from polyrank.shared.trainer import shuffled_loader

        return shuffled_loader(self.train_items, self.hparams.batch_size, self.hparams.seed)

    def val_dataloader(self):
        from torch.utils.data import DataLoader

        return DataLoader(self.val_items, batch_size=self.hparams.batch_size, collate_fn=list) if self.val_items \
            else []


class FirstDataModule(RecipeDataModule):
    """Listwise windows for FIRST: per query, up to ``max_positives`` positives and hard negatives up to
    ``window`` passages, shown in a random order; the target ranks the positives by grade (ties by id) and then
    the negatives in first-stage order (graded qrels + the first stage stand in for the RankGPT-4 teacher
    orderings of FIRST's training set).

    Args:
        window: passages per window (FIRST: 20; at most 26 identifiers).
        max_positives: at most this many positives per window.
        **kwargs: the data source, ``batch_size`` (windows per batch, default 4) and ``seed`` of
            :class:`RecipeDataModule`.
    """

    def __init__(self, *, window: int = 20, max_positives: int = 3, **kwargs: Any) -> None:
        if not 2 <= window <= 26:
            raise PolyrankError(f"window must be between 2 and 26 (alphabetic identifiers), got {window}")
        super().__init__(**kwargs)

    def items(self, data: TrainingSet, rng: np.random.Generator) -> list[dict[str, Any]]:
        out = []
        for q in data.queries:
            positives = sorted(q.positives, key=lambda d: (-q.positives[d], d))[: self.hparams.max_positives]
            chosen = positives + q.negatives[: self.hparams.window - len(positives)]
            if len(chosen) < 2 or len(positives) == len(chosen):
                continue
            shown = rng.permutation(len(chosen))  # passage slot -> index into chosen (target rank order)
            out.append({"qid": q.qid, "query": q.text, "doc_ids": [chosen[i] for i in shown],
                        "passages": [data.corpus[chosen[i]] for i in shown], "ranks": [int(i) + 1 for i in shown]})
        return out


class PointwiseDataModule(RecipeDataModule):
    """(query, document, graded label) pairs for ProRank stage 2: each positive with label grade / max_grade
    and ``negatives_per_positive`` hard negatives with label 0.

    Args:
        batch_size: pairs per batch.
        negatives_per_positive: hard negatives (first-stage order) per positive.
        max_grade: the grade that maps to label 1 (None: the highest grade in the training data).
        max_positives: at most this many positives per query, highest grades first (None: all).
        **kwargs: the data source and ``seed`` of :class:`RecipeDataModule`.
    """

    def __init__(self, *, batch_size: int = 8, negatives_per_positive: int = 1, max_grade: int | None = None,
                 max_positives: int | None = None, **kwargs: Any) -> None:
        super().__init__(batch_size=batch_size, **kwargs)

    def items(self, data: TrainingSet, rng: np.random.Generator) -> list[dict[str, Any]]:
        top = self.hparams.max_grade or max((g for q in data.queries for g in q.positives.values()), default=1)
        out = []
        for q in data.queries:
            positives = sorted(q.positives, key=lambda d: (-q.positives[d], d))[: self.hparams.max_positives]
            negatives = q.negatives[: self.hparams.negatives_per_positive * len(positives)]
            out += [{"qid": q.qid, "query": q.text, "doc_id": d, "document": data.corpus[d],
                     "label": min(1.0, q.positives[d] / top)} for d in positives]
            out += [{"qid": q.qid, "query": q.text, "doc_id": d, "document": data.corpus[d], "label": 0.0}
                    for d in negatives]
        return out
