"""Run and relevance files: TREC run/qrels, the BEIR layout, JSONL candidate lists.

Every reader reports a malformed line with its file and 1-based line number
(:class:`polyrank.shared.errors.FormatError`); every writer is atomic.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from polyrank.shared.atomic import atomic_file
from polyrank.shared.errors import FormatError, PolyrankError
from polyrank.shared.protocol import Qrels, Run, tie_break_order


def _lines(path: str | Path) -> Iterator[tuple[int, str]]:
    path = Path(path)
    if not path.is_file():
        raise PolyrankError(f"file {path} does not exist")
    with open(path, encoding="utf-8-sig", newline=None) as handle:
        for number, line in enumerate(handle, start=1):
            line = line.strip()
            if line and not line.startswith("#"):
                yield number, line


def read_run(path: str | Path) -> Run:
    """Read a TREC run: ``qid Q0 docid rank score tag`` (whitespace separated)."""
    run: Run = {}
    for number, line in _lines(path):
        parts = line.split()
        if len(parts) != 6:
            raise FormatError(path, number, f"expected 6 columns 'qid Q0 docid rank score tag', got {len(parts)}")
        qid, _, doc_id, _, score, _ = parts
        try:
            value = float(score)
        except ValueError:
            raise FormatError(path, number, f"score {score!r} is not a number") from None
        if doc_id in run.setdefault(qid, {}):
            raise FormatError(path, number, f"document {doc_id!r} appears twice for query {qid!r}")
        run[qid][doc_id] = value
    return run


def write_run(run: Run, path: str | Path, tag: str = "polyrank", depth: int | None = None) -> Path:
    """Write a TREC run, each query sorted by the shared tie-break, ranks 1-based."""
    with atomic_file(path, "w", encoding="utf-8") as handle:
        for qid in sorted(run):
            docs = run[qid]
            ids = list(docs)
            for rank, i in enumerate(tie_break_order(ids, [docs[d] for d in ids])[:depth], start=1):
                handle.write(f"{qid} Q0 {ids[i]} {rank} {float(docs[ids[i]])!r} {tag}\n")  # exact round trip
    return Path(path)


def _int(value: str, path: str | Path, number: int, what: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise FormatError(path, number, f"{what} {value!r} is not an integer") from None


def read_qrels(path: str | Path) -> Qrels:
    """Read TREC qrels: ``qid iteration docid relevance`` (3-column ``qid docid relevance`` also accepted)."""
    qrels: Qrels = {}
    for number, line in _lines(path):
        parts = line.split()
        if len(parts) == 4:
            qid, _, doc_id, rel = parts
        elif len(parts) == 3:
            qid, doc_id, rel = parts
        else:
            raise FormatError(path, number, f"expected 'qid 0 docid relevance', got {len(parts)} columns")
        qrels.setdefault(qid, {})[doc_id] = _int(rel, path, number, "relevance")
    return qrels


def write_qrels(qrels: Qrels, path: str | Path) -> Path:
    with atomic_file(path, "w", encoding="utf-8") as handle:
        for qid in sorted(qrels):
            for doc_id in sorted(qrels[qid]):
                handle.write(f"{qid} 0 {doc_id} {qrels[qid][doc_id]}\n")
    return Path(path)


def read_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    """Yield the JSON objects of a JSONL file; a bad line raises with its line number."""
    for number, line in _lines(path):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise FormatError(path, number, f"invalid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(record, dict):
            raise FormatError(path, number, f"expected a JSON object, got {type(record).__name__}")
        record["__line__"] = number
        yield record


def write_jsonl(records: list[dict[str, Any]], path: str | Path) -> Path:
    with atomic_file(path, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return Path(path)


def _require(record: dict[str, Any], key: str, path: str | Path) -> Any:
    if key not in record:
        keys = sorted(k for k in record if k != "__line__")
        raise FormatError(path, record["__line__"], f"missing key {key!r} (has {keys})")
    return record[key]


def read_beir_corpus(path: str | Path) -> dict[str, dict[str, str]]:
    """``corpus.jsonl``: ``{_id, title?, text}`` -> ``{doc_id: {"title", "text"}}``."""
    corpus = {}
    for record in read_jsonl(path):
        doc_id = str(_require(record, "_id", path))
        corpus[doc_id] = {"title": record.get("title") or "", "text": _require(record, "text", path)}
    return corpus


def read_beir_queries(path: str | Path) -> dict[str, str]:
    """``queries.jsonl``: ``{_id, text}`` -> ``{qid: text}``."""
    return {str(_require(r, "_id", path)): _require(r, "text", path) for r in read_jsonl(path)}


def read_beir_qrels(path: str | Path) -> Qrels:
    """``qrels/<split>.tsv``: ``query-id corpus-id score`` with or without a header row.

    Some copies omit the header; the first row is treated as a header only if its score column is not
    a number, so no judgment is silently dropped.
    """
    qrels: Qrels = {}
    for number, line in _lines(path):
        parts = line.split("\t") if "\t" in line else line.split()
        if len(parts) != 3:
            raise FormatError(path, number, f"expected 3 columns 'query-id corpus-id score', got {len(parts)}")
        if number == 1 and not parts[2].lstrip("-").isdigit():
            continue
        qrels.setdefault(parts[0], {})[parts[1]] = _int(parts[2], path, number, "score")
    return qrels


def load_beir(folder: str | Path, split: str = "test") -> tuple[dict[str, dict[str, str]], dict[str, str], Qrels]:
    """Load a BEIR folder: ``(corpus, queries, qrels)``; qrels restricted to queries that exist."""
    folder = Path(folder)
    for part in ("corpus.jsonl", "queries.jsonl", f"qrels/{split}.tsv"):
        if not (folder / part).is_file():
            raise PolyrankError(f"{folder} is not a BEIR folder: {part} is missing "
                                "(expected corpus.jsonl, queries.jsonl, qrels/<split>.tsv)")
    corpus = read_beir_corpus(folder / "corpus.jsonl")
    queries = read_beir_queries(folder / "queries.jsonl")
    qrels = {q: d for q, d in read_beir_qrels(folder / "qrels" / f"{split}.tsv").items() if q in queries}
    return corpus, queries, qrels


def read_candidates(path: str | Path) -> Run:
    """JSONL candidate lists: ``{"qid": ..., "candidates": [{"id": ..., "score": ...}, ...]}`` per line."""
    run: Run = {}
    for record in read_jsonl(path):
        qid = str(_require(record, "qid", path))
        items = _require(record, "candidates", path)
        if not isinstance(items, list):
            raise FormatError(path, record["__line__"], "'candidates' must be a list of {id, score} objects")
        docs = run.setdefault(qid, {})
        for position, item in enumerate(items):
            if not isinstance(item, dict) or "id" not in item:
                raise FormatError(path, record["__line__"], f"candidate {position} has no 'id'")
            docs[str(item["id"])] = float(item.get("score", -position))
    return run


def write_candidates(run: Run, path: str | Path) -> Path:
    records = []
    for qid in sorted(run):
        ids = list(run[qid])
        order = tie_break_order(ids, [run[qid][d] for d in ids])
        records.append({"qid": qid, "candidates": [{"id": ids[i], "score": run[qid][ids[i]]} for i in order]})
    return write_jsonl(records, path)
