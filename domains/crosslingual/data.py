"""Readers of the paper's data in their official formats: CLEF-2003 (TREC/SGML topics, qrels, SGML collections),
HC4 (JSONL topics with translations, TREC qrels, document id lists), MS MARCO triples, folders of plain text for
MLM, and BEIR folders split by query. A bad record raises :class:`FormatError` with the file and line.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from polyrank.shared.errors import FormatError, PolyrankError
from polyrank.shared.runs import read_qrels


def _open(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8",
                                                                                       errors="replace")


# ------------------------------------------------------------------------------------------------------ HC4


@dataclass
class HC4Topic:
    """One HC4 topic: its id, the languages it has qrels for, and ``{(lang, source): (title, description)}``."""

    topic_id: str
    languages_with_qrels: list[str]
    texts: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)

    def text(self, lang: str = "eng", source: str = "original", fields: str = "title+description") -> str:
        """The topic in ``lang`` from ``source`` (``original``, ``human translation`` or an MT system name)."""
        if (lang, source) not in self.texts:
            raise PolyrankError(f"HC4 topic {self.topic_id} has no {lang!r} text from {source!r}; it has "
                                f"{sorted(self.texts)}")
        title, desc = self.texts[(lang, source)]
        return {"title": title, "description": desc, "title+description": f"{title} {desc}".strip()}[fields]


def read_hc4_topics(path: str | Path) -> dict[str, HC4Topic]:
    """HC4 ``*.topics.v1-0.jsonl``: ``topic_id``, ``languages_with_qrels``, ``topics[{lang, source, topic_title,
    topic_description}]``."""
    path = Path(path)
    out: dict[str, HC4Topic] = {}
    with _open(path) as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                topic = HC4Topic(str(record["topic_id"]), list(record.get("languages_with_qrels", [])))
                for t in record["topics"]:
                    topic.texts[(t["lang"], t["source"])] = (t.get("topic_title", ""), t.get("topic_description", ""))
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise FormatError(path, number, f"not an HC4 topic record ({type(exc).__name__}: {exc}); expected "
                                  "topic_id, languages_with_qrels, topics[lang, source, topic_title, "
                                  "topic_description]") from None
            out[topic.topic_id] = topic
    if not out:
        raise FormatError(path, 1, "no HC4 topics in this file")
    return out


def load_hc4(folder: str | Path, split: str = "test", language: str = "rus") -> tuple[dict[str, HC4Topic], dict]:
    """``(topics, qrels)`` of one HC4 split and document language (``fas``, ``rus``, ``zho``)."""
    folder = Path(folder)
    if language not in ("fas", "rus", "zho"):
        raise PolyrankError(f"HC4 document languages are fas, rus, zho; got {language!r}")
    topics = read_hc4_topics(folder / f"{split}.topics.v1-0.jsonl")
    qrels = read_qrels(folder / language / f"{split}.qrels.v1-0.txt")
    return topics, qrels


def read_id_list(path: str | Path) -> list[str]:
    """An HC4 document id list: JSONL with an ``id`` field per line (``ids*.jsonl[.gz]``) or one id per line."""
    path = Path(path)
    ids = []
    with _open(path) as handle:
        for number, line in enumerate(handle, 1):
            line = line.strip()
            if not line:
                continue
            if line.startswith("{"):
                try:
                    ids.append(str(json.loads(line)["id"]))
                except (json.JSONDecodeError, KeyError) as exc:
                    raise FormatError(path, number, f"id list record without an 'id' ({exc})") from None
            else:
                ids.append(line.split()[0])
    return ids


def read_hc4_documents(path: str | Path, ids: list[str] | None = None) -> dict[str, str]:
    """HC4 documents (JSONL ``id``, ``title``, ``text`` as written by its download scripts), restricted to ``ids``."""
    path = Path(path)
    wanted = set(ids) if ids is not None else None
    docs = {}
    with _open(path) as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                doc_id = str(record["id"])
            except (json.JSONDecodeError, KeyError) as exc:
                raise FormatError(path, number, f"HC4 document record needs 'id', 'title', 'text' ({exc})") from None
            if wanted is None or doc_id in wanted:
                docs[doc_id] = f"{record.get('title', '')} {record.get('text', '')}".strip()
    if wanted is not None and len(docs) < len(wanted):
        missing = sorted(wanted - set(docs))
        raise PolyrankError(f"{path} lacks {len(missing)} of the {len(wanted)} listed HC4 documents, e.g. "
                            f"{missing[:3]}; download them with HC4's scripts (see datasets/hc4/README.md)")
    return docs


# ------------------------------------------------------------------------------------------------------ CLEF


TOPIC_RE = re.compile(r"<top>(.*?)</top>", re.S | re.I)
FIELD_RE = re.compile(r"<(?:(\w\w)-)?(num|title|desc|narr)>(.*?)(?=<(?:\w\w-)?(?:num|title|desc|narr)>|</?top>|$)",
                      re.S | re.I)


def read_clef_topics(path: str | Path) -> dict[str, dict[str, str]]:
    """CLEF-2003 topics (SGML: ``<top> <num> C141 </num> <EN-title> ... <EN-desc> ... <EN-narr> ... </top>``) as
    ``{number: {"title", "desc", "narr", "lang"}}``; the number drops the ``C`` and leading zeros (``C041`` -> ``41``)
    to match the qrels."""
    path = Path(path)
    with _open(path) as handle:
        text = handle.read()
    topics = {}
    for match in TOPIC_RE.finditer(text):
        line = text[:match.start()].count("\n") + 1
        fields: dict[str, str] = {}
        for lang, name, value in FIELD_RE.findall(match.group(1)):
            value = re.sub(r"</[^>]+>", " ", value)
            fields[name.lower()] = " ".join(value.split())
            if lang:
                fields["lang"] = lang.lower()
        if "num" not in fields or "title" not in fields:
            raise FormatError(path, line, "CLEF topic without <num> or <XX-title>")
        number = re.sub(r"^\D+", "", fields.pop("num")).lstrip("0") or "0"
        topics[number] = fields
    if not topics:
        raise FormatError(path, 1, "no <top> ... </top> topics in this file (expected CLEF SGML topics)")
    return topics


DOC_RE = re.compile(r"<DOC>(.*?)</DOC>", re.S | re.I)
DOCNO_RE = re.compile(r"<DOCNO>\s*(.*?)\s*</DOCNO>", re.S | re.I)
TAG_RE = re.compile(r"<[^>]+>")


def iter_clef_documents(path: str | Path) -> Iterator[tuple[str, str]]:
    """``(docno, text)`` of a CLEF collection file (SGML ``<DOC><DOCNO>..</DOCNO> ... </DOC>``; all fields but the
    DOCNO as text, tags removed)."""
    path = Path(path)
    with _open(path) as handle:
        text = handle.read()
    for match in DOC_RE.finditer(text):
        body = match.group(1)
        docno = DOCNO_RE.search(body)
        if docno is None:
            raise FormatError(path, text[:match.start()].count("\n") + 1, "CLEF <DOC> without <DOCNO>")
        yield docno.group(1), " ".join(TAG_RE.sub(" ", DOCNO_RE.sub(" ", body)).split())


def read_clef_collection(folder: str | Path) -> dict[str, str]:
    """Every document of a CLEF collection folder (files at any depth, gzipped or not)."""
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise PolyrankError(f"CLEF collection folder {folder} has no files; see datasets/clef2003/README.md")
    return {docno: text for path in files for docno, text in iter_clef_documents(path)}


CLEF_PAIRS = ("en-fi", "en-it", "en-ru", "en-de", "de-fi", "de-it", "de-ru", "fi-it", "fi-ru")  # Litschko et al.
CLEF_MONO = ("en", "fi", "de", "it", "ru")


def clef_layout(root: str | Path, query_lang: str, doc_lang: str) -> dict[str, Path]:
    """The files of a CLEF-2003 pair in the layout of datasets/clef2003/README.md."""
    root = Path(root)
    return {"topics": root / "topics" / f"topics.{query_lang}.sgml", "qrels": root / "qrels" / f"qrels.{doc_lang}.txt",
            "collection": root / "collections" / doc_lang}


# ------------------------------------------------------------------------------------------------------ training data


def read_triples(path: str | Path, collection: dict[str, str] | None = None,
                 queries: dict[str, str] | None = None) -> list[tuple[str, str, str]]:
    """MS MARCO training triples as ``(query, positive, negative)`` text: the text file (``triples.train.small.tsv``:
    query, positive passage, negative passage) or, with ``collection``/``queries``, the id file
    (``qidpidtriples``: qid, positive pid, negative pid)."""
    path = Path(path)
    out = []
    with _open(path) as handle:
        for number, line in enumerate(handle, 1):
            parts = line.rstrip("\n").split("\t")
            if not line.strip():
                continue
            if len(parts) != 3:
                raise FormatError(path, number, f"expected 3 tab-separated fields, got {len(parts)}")
            if collection is not None and queries is not None:
                try:
                    parts = [queries[parts[0]], collection[parts[1]], collection[parts[2]]]
                except KeyError as exc:
                    raise FormatError(path, number, f"id {exc} not in the given queries/collection") from None
            out.append((parts[0], parts[1], parts[2]))
    return out


def triples_to_pairs(triples: list[tuple[str, str, str]],
                     negatives_per_positive: int = 4) -> list[tuple[str, str, int]]:
    """Pointwise pairs at 1 positive : ``negatives_per_positive`` negatives (the paper's 1:4), query by query."""
    grouped: dict[str, tuple[set, list]] = {}
    for q, pos, neg in triples:
        positives, negatives = grouped.setdefault(q, (set(), []))
        positives.add(pos)
        negatives.append(neg)
    pairs = []
    for q, (positives, negatives) in grouped.items():
        pairs += [(q, p, 1) for p in sorted(positives)]
        pairs += [(q, n, 0) for n in list(dict.fromkeys(negatives))[:negatives_per_positive * len(positives)]]
    return pairs


def read_text_folder(folder: str | Path, max_passages: int | None = None) -> list[str]:
    """Passages for MLM from a folder (or one file): ``.txt`` one passage per non-empty line, ``.jsonl`` the
    ``text`` field of each record (BEIR corpora: title + text)."""
    folder = Path(folder)
    files = [folder] if folder.is_file() else sorted(p for p in folder.rglob("*") if p.suffix in (".txt", ".jsonl",
                                                                                                  ".gz"))
    passages: list[str] = []
    for path in files:
        with _open(path) as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                if ".jsonl" in path.name:
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise FormatError(path, number, f"invalid JSON ({exc.msg})") from None
                    text = f"{record.get('title', '')} {record.get('text', '')}".strip()
                else:
                    text = line.strip()
                if text:
                    passages.append(text)
                if max_passages and len(passages) >= max_passages:
                    return passages
    if not passages:
        raise PolyrankError(f"{folder}: no text found (.txt one passage per line, or .jsonl with 'text')")
    return passages


def query_fold(qid: str, heldout_fraction: float = 0.5, seed: int = 0) -> str:
    """``"train"`` or ``"heldout"`` for a query id: a stable hash split (the demo's query split)."""
    h = int(hashlib.sha256(f"{seed}:{qid}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "heldout" if h < heldout_fraction else "train"
