"""Reader of the Cranfield collection in its classic format (``cran.all.1400``, ``cran.qry``, ``cranqrel``).

Records start with ``.I <id>``; fields are ``.T`` title, ``.A`` authors, ``.B`` bibliography, ``.W`` text.
Two quirks of the classic files (both checked on the copy under ``datasets/cranfield``):

- ``cranqrel`` numbers the queries 1..225 in file order, while ``cran.qry`` labels them ``.I 001 .. 365``; the
  query ids returned here are the *sequential* numbers (``"1"`` .. ``"225"``), as in ``cranqrel``.
- Cleverdon's relevance codes run from 1 (complete answer) to 4 (minimum interest), plus ``-1`` (no interest).
  They are turned into graded gains ``5 - code`` (4 = complete answer ... 1 = minimum interest), and ``-1``
  into a judged 0, so nDCG rewards the most relevant references most.
"""

from __future__ import annotations

from pathlib import Path

from polyrank.shared.errors import FormatError, MissingResourceError
from polyrank.shared.protocol import Qrels

FILES = ("cran.all.1400", "cran.qry", "cranqrel")


def _records(path: Path) -> list[tuple[int, str, dict[str, str]]]:
    """``(line, id, {field: text})`` for each ``.I`` record of a Cranfield file."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise FormatError(path, None, f"not UTF-8 (byte {exc.start}); expected the classic Cranfield file") from None
    records: list[tuple[int, str, dict[str, str]]] = []
    field = None
    for number, line in enumerate(lines, 1):
        if line.startswith(".I"):
            parts = line.split()
            if len(parts) != 2:
                raise FormatError(path, number, f"expected '.I <id>', got {line!r}")
            records.append((number, parts[1], {}))
            field = None
        elif line[:2] in (".T", ".A", ".B", ".W") and line.strip() == line[:2]:
            if not records:
                raise FormatError(path, number, f"field {line[:2]} before the first '.I <id>' record")
            field = line[1]
            records[-1][2].setdefault(field, "")
        elif field is None:
            if line.strip():
                raise FormatError(path, number, f"text outside a field (expected .T/.A/.B/.W first): {line[:60]!r}")
        else:
            fields = records[-1][2]
            fields[field] = f"{fields[field]} {line.strip()}".strip()
    if not records:
        raise FormatError(path, None, "no '.I <id>' record found; expected the classic Cranfield format")
    return records


def read_cranfield(folder: str | Path) -> tuple[dict[str, dict[str, str]], dict[str, str], Qrels]:
    """``(corpus {doc_id: {"title", "text"}}, queries {qid: text}, qrels {qid: {doc_id: gain}})``."""
    folder = Path(folder)
    missing = [name for name in FILES if not (folder / name).is_file()]
    if missing:
        raise MissingResourceError(f"{folder} lacks {missing}; expected the Cranfield files {list(FILES)}")
    corpus: dict[str, dict[str, str]] = {}
    for line, doc_id, fields in _records(folder / "cran.all.1400"):
        if doc_id in corpus:
            raise FormatError(folder / "cran.all.1400", line, f"document {doc_id} appears twice")
        corpus[doc_id] = {"title": fields.get("T", ""), "text": fields.get("W", "")}
    queries = {str(n): fields.get("W", "") for n, (_, _, fields) in enumerate(_records(folder / "cran.qry"), 1)}
    qrels: Qrels = {}
    path = folder / "cranqrel"
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            qid, doc_id, code = parts[0], parts[1], int(parts[2])
        except (IndexError, ValueError):
            raise FormatError(path, number, f"expected '<query number> <doc id> <code>', got {line!r}") from None
        if qid not in queries or doc_id not in corpus:
            raise FormatError(path, number, f"query {qid} or document {doc_id} is not in the collection")
        if code not in (-1, 1, 2, 3, 4):
            raise FormatError(path, number, f"relevance code {code} is not one of -1, 1, 2, 3, 4")
        qrels.setdefault(qid, {})[doc_id] = 0 if code == -1 else 5 - code
    return corpus, queries, qrels
