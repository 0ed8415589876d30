"""Run and relevance files: TREC run/qrels, the BEIR layout, JSONL candidate lists.

Every reader reports a malformed line with its file and 1-based line number
(:class:`polyrank.shared.errors.FormatError`); every writer is atomic.

Rules every reader applies:

- files are UTF-8 text (a UTF-8 byte-order mark is allowed); another encoding, a NUL byte (UTF-16,
  binary) or an undecodable byte is a ``FormatError`` with the line and the byte offset;
- blank lines and lines starting with ``#`` are skipped; a file with no record at all is a ``FormatError``
  (an empty run or qrels file is almost always the wrong file or a failed write);
- scores are finite numbers (``nan``/``inf`` would rank arbitrarily) and relevance grades integers;
- **duplicates**: the same key twice (a ``(query, document)`` pair of a run, qrels or candidate file, an
  ``_id`` of a BEIR corpus or queries file) with *different* values is a ``FormatError`` naming both
  lines; an *identical* repeat is tolerated, kept once, and reported by one :class:`DuplicateRecordWarning`
  per file.

Writers refuse what their reader could not read back: ids that are empty or contain whitespace (TREC
files are whitespace-separated; refusing is the trec_eval-compatible choice), query ids starting with
``#``, non-finite scores and non-integer grades, each with a :class:`PolyrankError` naming query and id.
"""

from __future__ import annotations

import json
import math
import operator
import re
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from polyrank.shared.atomic import atomic_file
from polyrank.shared.errors import FormatError, PolyrankError
from polyrank.shared.protocol import Qrels, Run, tie_break_order


class DuplicateRecordWarning(UserWarning):
    """A file repeats a record with the same value; the repeat was ignored."""


def _not_text(path: Path) -> FormatError:
    """The located error for the first byte of ``path`` that is not UTF-8 text (found by a binary rescan)."""
    data = path.read_bytes()
    start = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    nul = data.find(b"\x00")
    try:
        data[start:].decode("utf-8")
        bad = nul
    except UnicodeDecodeError as exc:
        bad = start + exc.start if nul < 0 else min(nul, start + exc.start)
    if bad < 0:  # the file changed since it was read
        return FormatError(path, None, "not UTF-8 text; re-encode the file as UTF-8")
    line = data.count(b"\n", 0, bad) + 1
    if data[bad] == 0:
        return FormatError(path, line, f"NUL byte at byte offset {bad}: the file is binary or UTF-16, not UTF-8 text")
    return FormatError(path, line, f"not UTF-8 text: byte 0x{data[bad]:02x} at byte offset {bad}; re-encode the "
                       "file as UTF-8 (e.g. iconv -f latin1 -t utf-8)")


def _lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """``(1-based line number, stripped text)`` of each non-blank, non-comment line of a UTF-8 file."""
    path = Path(path)
    if not path.is_file():
        raise PolyrankError(f"file {path} does not exist")
    try:
        with open(path, encoding="utf-8-sig", newline=None) as handle:
            for number, line in enumerate(handle, start=1):
                if "\x00" in line:
                    raise _not_text(path)
                line = line.strip()
                if line and not line.startswith("#"):
                    yield number, line
    except UnicodeDecodeError:
        raise _not_text(path) from None


def _empty(path: str | Path, expected: str) -> FormatError:
    return FormatError(path, None, f"no record found (the file is empty or holds only blank/comment lines); "
                       f"expected {expected}")


def _first_line(path: str | Path, matches: Callable[[str], bool]) -> int | None:
    """Line number of the first line for which ``matches(line)`` holds (rescan; only used on duplicates)."""
    return next((number for number, line in _lines(path) if matches(line)), None)


class _Repeats:
    """Identical repeats seen in one file, reported by a single warning at the end."""

    def __init__(self, path: str | Path) -> None:
        self.path, self.count, self.example = path, 0, ""

    def add(self, number: int, what: str, first: int | None) -> None:
        if not self.count:
            self.example = f"line {number} repeats line {first}: {what}"
        self.count += 1

    def warn(self) -> None:
        if self.count:
            warnings.warn(f"{self.path}: {self.count} identical duplicate record(s) ignored (first: {self.example})",
                          DuplicateRecordWarning, stacklevel=3)


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _store(table: dict, key: str, value: Any, path: str | Path, number: int, kind: str, qid: str | None,
           locate: Callable[[str | None, str], int | None], repeats: _Repeats) -> None:
    """``table[key] = value`` unless ``key`` is there already: a differing value raises, an equal one is noted.

    ``kind`` names the key in messages ("document", "_id"...), ``qid`` its query (None: none), and
    ``locate(qid, key)`` rescans the file for the key's first line (only called for a duplicate).
    """
    if key not in table:  # the common case, kept first and cheap: readers call this once per record
        table[key] = value
        return
    scope = f" for query {qid!r}" if qid is not None else ""
    if table[key] != value:
        raise FormatError(path, number, f"{kind} {key!r} appears twice{scope} (lines {locate(qid, key)} and "
                          f"{number}) with different values {_short(table[key])} and {_short(value)}; remove one")
    repeats.add(number, f"{kind} {key!r}{scope}", locate(qid, key))


def read_run(path: str | Path) -> Run:
    """Read a TREC run: ``qid Q0 docid rank score tag`` (whitespace separated; rank and tag are not used)."""
    run: Run = {}
    repeats = _Repeats(path)

    def locate(qid: str | None, doc_id: str) -> int | None:
        return _first_line(path, lambda line: line.split()[:3:2] == [qid, doc_id])

    for number, line in _lines(path):
        parts = line.split()
        if len(parts) != 6:
            raise FormatError(path, number, f"expected 6 columns 'qid Q0 docid rank score tag', got {len(parts)}")
        qid, _, doc_id, _, score, _ = parts
        try:
            value = float(score)
        except ValueError:
            raise FormatError(path, number, f"score {score!r} is not a number") from None
        if not math.isfinite(value):
            raise FormatError(path, number, f"score {score!r} is not a finite number; write a real score "
                              "(nan/inf would rank arbitrarily)")
        _store(run.setdefault(qid, {}), doc_id, value, path, number, "document", qid, locate, repeats)
    if not run:
        raise _empty(path, "TREC run lines 'qid Q0 docid rank score tag'")
    repeats.warn()
    return run


_WHITESPACE = re.compile(r"\s")


def _check_id(value: Any, what: str, qid: str | None = None, first_column: bool = False) -> str:
    """``str(value)`` if a whitespace-separated file can hold it and read it back, else a clear error."""
    text = str(value)
    if not text:
        problem = "is empty"
    elif _WHITESPACE.search(text):
        problem = "contains whitespace"
    elif first_column and text[0] == "#":
        problem = "starts with '#' (it would be read back as a comment)"
    else:
        return text
    where = f" of query {qid!r}" if qid is not None else ""
    raise PolyrankError(f"{what} {text!r}{where} {problem}: TREC files are whitespace-separated, so it could not "
                        "be read back; rename it (e.g. replace spaces by '_')")


def _check_score(value: Any, key: str, qid: str, kind: str = "document") -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise PolyrankError(f"score {value!r} of {kind} {key!r} for query {qid!r} is not a number") from None
    if not math.isfinite(out):
        raise PolyrankError(f"score {value!r} of {kind} {key!r} for query {qid!r} is not finite; nan/inf cannot "
                            "be ranked")
    return out


def write_run(run: Run, path: str | Path, tag: str = "polyrank", depth: int | None = None) -> Path:
    """Write a TREC run, each query sorted by the shared tie-break, ranks 1-based.

    Ids with whitespace and non-finite scores raise :class:`PolyrankError`; ``path`` is then left untouched.
    """
    _check_id(tag, "run tag")
    with atomic_file(path, "w", encoding="utf-8") as handle:
        for qid in sorted(run):
            docs = run[qid]
            ids = list(docs)
            _check_id(qid, "query id", first_column=True)
            scores = [_check_score(docs[d], d, qid) for d in ids]
            for rank, i in enumerate(tie_break_order(ids, scores)[:depth], start=1):
                doc_id = _check_id(ids[i], "document id", qid)
                handle.write(f"{qid} Q0 {doc_id} {rank} {scores[i]!r} {tag}\n")  # repr: exact round trip
    return Path(path)


def _int(value: str, path: str | Path, number: int, what: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise FormatError(path, number, f"{what} {value!r} is not an integer") from None


def read_qrels(path: str | Path) -> Qrels:
    """Read TREC qrels: ``qid iteration docid relevance`` (3-column ``qid docid relevance`` also accepted)."""
    qrels: Qrels = {}
    repeats = _Repeats(path)

    def locate(qid: str | None, doc_id: str) -> int | None:
        def same(line: str) -> bool:
            parts = line.split()
            return len(parts) in (3, 4) and [parts[0], parts[-2]] == [qid, doc_id]
        return _first_line(path, same)

    for number, line in _lines(path):
        parts = line.split()
        if len(parts) == 4:
            qid, _, doc_id, rel = parts
        elif len(parts) == 3:
            qid, doc_id, rel = parts
        else:
            raise FormatError(path, number, f"expected 'qid 0 docid relevance', got {len(parts)} columns")
        _store(qrels.setdefault(qid, {}), doc_id, _int(rel, path, number, "relevance"), path, number,
               "judgment of document", qid, locate, repeats)
    if not qrels:
        raise _empty(path, "qrels lines 'qid 0 docid relevance'")
    repeats.warn()
    return qrels


def write_qrels(qrels: Qrels, path: str | Path) -> Path:
    """Write TREC qrels (``qid 0 docid relevance``); ids with whitespace and non-integer grades are refused."""
    with atomic_file(path, "w", encoding="utf-8") as handle:
        for qid in sorted(qrels):
            _check_id(qid, "query id", first_column=True)
            for doc_id in sorted(qrels[qid]):
                rel = qrels[qid][doc_id]
                _check_id(doc_id, "document id", qid)
                try:
                    grade = operator.index(int(rel) if isinstance(rel, float) and rel.is_integer() else rel)
                except TypeError:
                    raise PolyrankError(f"relevance {rel!r} of document {doc_id!r} for query {qid!r} is not an "
                                        "integer grade") from None
                handle.write(f"{qid} 0 {doc_id} {grade}\n")
    return Path(path)


def read_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    """Yield the JSON objects of a JSONL file; a bad line raises with its line number.

    Each record carries its line as ``record["__line__"]``. An empty file yields nothing (the format
    readers built on this one refuse it).
    """
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
    """Write one JSON object per line (strict JSON: nan/inf and non-serialisable values are refused)."""
    with atomic_file(path, "w", encoding="utf-8") as handle:
        for index, record in enumerate(records):
            try:
                line = json.dumps(record, ensure_ascii=False, allow_nan=False)
            except (TypeError, ValueError) as exc:
                raise PolyrankError(f"record {index} cannot be written as JSON ({exc}); use strings, finite "
                                    "numbers, lists and dicts") from None
            handle.write(line + "\n")
    return Path(path)


def _require(record: dict[str, Any], key: str, path: str | Path) -> Any:
    if key not in record:
        keys = sorted(k for k in record if k != "__line__")
        raise FormatError(path, record["__line__"], f"missing key {key!r} (has {keys})")
    return record[key]


def _id_value(value: Any, key: str, path: str | Path, number: int) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
        raise FormatError(path, number, f"{key!r} must be a non-empty string or integer, got {value!r}")
    return str(value)


def _json_id(record: dict[str, Any], key: str, path: str | Path) -> str:
    return _id_value(_require(record, key, path), key, path, record["__line__"])


def _json_text(record: dict[str, Any], key: str, path: str | Path, optional: bool = False) -> str:
    value = record.get(key) if optional else _require(record, key, path)
    if value is None and optional:
        return ""
    if not isinstance(value, str):
        raise FormatError(path, record["__line__"], f"{key!r} must be a string, got {type(value).__name__}")
    return value


def _first_record(path: str | Path, key: str, value: str) -> int | None:
    return next((r["__line__"] for r in read_jsonl(path) if str(r.get(key)) == value), None)


def _locate_id(path: str | Path) -> Callable[[str | None, str], int | None]:
    return lambda _, key: _first_record(path, "_id", key)


def read_beir_corpus(path: str | Path) -> dict[str, dict[str, str]]:
    """``corpus.jsonl``: ``{_id, title?, text}`` -> ``{doc_id: {"title", "text"}}``."""
    corpus: dict[str, dict[str, str]] = {}
    repeats = _Repeats(path)
    for record in read_jsonl(path):
        doc_id = _json_id(record, "_id", path)
        doc = {"title": _json_text(record, "title", path, optional=True), "text": _json_text(record, "text", path)}
        _store(corpus, doc_id, doc, path, record["__line__"], "_id", None, _locate_id(path), repeats)
    if not corpus:
        raise _empty(path, 'one JSON object per line: {"_id": ..., "title": ..., "text": ...}')
    repeats.warn()
    return corpus


def read_beir_queries(path: str | Path) -> dict[str, str]:
    """``queries.jsonl``: ``{_id, text}`` -> ``{qid: text}``."""
    queries: dict[str, str] = {}
    repeats = _Repeats(path)
    for record in read_jsonl(path):
        qid = _json_id(record, "_id", path)
        _store(queries, qid, _json_text(record, "text", path), path, record["__line__"], "_id", None,
               _locate_id(path), repeats)
    if not queries:
        raise _empty(path, 'one JSON object per line: {"_id": ..., "text": ...}')
    repeats.warn()
    return queries


_HEADER = ({"queryid", "qid", "query"}, {"corpusid", "docid", "documentid", "doc", "pid", "passageid", "corpus"},
           {"score", "relevance", "rel", "label", "grade", "judgment"})


def _is_beir_header(parts: list[str]) -> bool:
    """A ``query-id corpus-id score``-like row (any case, ``-``/``_``/space ignored)."""
    names = [p.lower().replace("-", "").replace("_", "").replace(" ", "") for p in parts]
    return all(name in allowed for name, allowed in zip(names, _HEADER))


def _beir_parts(line: str) -> list[str]:
    return line.split("\t") if "\t" in line else line.split()


def read_beir_qrels(path: str | Path) -> Qrels:
    """``qrels/<split>.tsv``: ``query-id corpus-id score`` with or without a header row.

    Only a first row that names the columns (``query-id corpus-id score`` or a close spelling such as
    ``qid docid relevance``) is a header; any other row whose score is not an integer is a ``FormatError``,
    so no judgment is silently dropped.
    """
    qrels: Qrels = {}
    repeats = _Repeats(path)

    def locate(qid: str | None, doc_id: str) -> int | None:
        return _first_line(path, lambda line: [p.strip() for p in _beir_parts(line)[:2]] == [qid, doc_id])

    for position, (number, line) in enumerate(_lines(path)):
        parts = _beir_parts(line)
        if len(parts) != 3:
            raise FormatError(path, number, f"expected 3 columns 'query-id corpus-id score', got {len(parts)}")
        if position == 0 and _is_beir_header(parts):
            continue
        qid, doc_id = parts[0].strip(), parts[1].strip()
        _store(qrels.setdefault(qid, {}), doc_id, _int(parts[2].strip(), path, number, "score"), path, number,
               "judgment of document", qid, locate, repeats)
    if not qrels:
        raise _empty(path, "tab-separated rows 'query-id corpus-id score'")
    repeats.warn()
    return qrels


def load_beir(folder: str | Path, split: str = "test") -> tuple[dict[str, dict[str, str]], dict[str, str], Qrels]:
    """Load a BEIR folder: ``(corpus, queries, qrels)``; qrels restricted to queries that exist.

    Judged queries absent from ``queries.jsonl`` (BEIR subsets often ship the full qrels) are dropped with a
    warning that gives the counts, so a figure is never silently averaged over fewer queries than expected.
    """
    folder = Path(folder)
    for part in ("corpus.jsonl", "queries.jsonl", f"qrels/{split}.tsv"):
        if not (folder / part).is_file():
            raise PolyrankError(f"{folder} is not a BEIR folder: {part} is missing "
                                "(expected corpus.jsonl, queries.jsonl, qrels/<split>.tsv)")
    corpus = read_beir_corpus(folder / "corpus.jsonl")
    queries = read_beir_queries(folder / "queries.jsonl")
    all_qrels = read_beir_qrels(folder / "qrels" / f"{split}.tsv")
    qrels = {q: d for q, d in all_qrels.items() if q in queries}
    if len(qrels) < len(all_qrels):
        dropped = sorted(set(all_qrels) - set(qrels))
        warnings.warn(f"{folder}: {len(dropped)} of {len(all_qrels)} judged queries in qrels/{split}.tsv are not in "
                      f"queries.jsonl and were dropped (e.g. {dropped[:3]}); {len(qrels)} remain", stacklevel=2)
    return corpus, queries, qrels


def _json_score(value: Any, path: str | Path, number: int, position: int) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FormatError(path, number, f"candidate {position} has score {value!r}; expected a JSON number")
    if not math.isfinite(value):
        raise FormatError(path, number, f"candidate {position} has score {value!r}; expected a finite number")
    return float(value)


def read_candidates(path: str | Path) -> Run:
    """JSONL candidate lists: ``{"qid": ..., "candidates": [{"id": ..., "score": ...}, ...]}`` per line.

    A candidate without ``score`` gets ``-position`` (list order); a score must be a finite JSON number.
    """
    run: Run = {}
    repeats = _Repeats(path)

    def locate(qid: str | None, doc_id: str) -> int | None:
        return next((r["__line__"] for r in read_jsonl(path) if str(r.get("qid")) == qid
                     and any(isinstance(c, dict) and str(c.get("id")) == doc_id for c in r.get("candidates", []))),
                    None)

    for record in read_jsonl(path):
        number = record["__line__"]
        qid = _json_id(record, "qid", path)
        items = _require(record, "candidates", path)
        if not isinstance(items, list):
            raise FormatError(path, number, "'candidates' must be a list of {id, score} objects")
        docs = run.setdefault(qid, {})
        for position, item in enumerate(items):
            if not isinstance(item, dict) or "id" not in item:
                raise FormatError(path, number, f"candidate {position} has no 'id'")
            doc_id = _id_value(item["id"], "id", path, number)
            score = _json_score(item["score"], path, number, position) if "score" in item else float(-position)
            _store(docs, doc_id, score, path, number, "candidate", qid, locate, repeats)
    if not run:
        raise _empty(path, '{"qid": ..., "candidates": [{"id": ..., "score": ...}]} per line')
    repeats.warn()
    return run


def write_candidates(run: Run, path: str | Path) -> Path:
    """JSONL candidate lists, each sorted by the shared tie-break (non-finite scores are refused)."""
    records = []
    for qid in sorted(run):
        ids = list(run[qid])
        scores = [_check_score(run[qid][d], d, qid, "candidate") for d in ids]
        order = tie_break_order(ids, scores)
        records.append({"qid": qid, "candidates": [{"id": ids[i], "score": run[qid][ids[i]]} for i in order]})
    return write_jsonl(records, path)
