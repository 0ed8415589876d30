"""Readers of the MMDocIR formats (Dong et al., arXiv 2501.08828; github MMDocRAG/MMDocIR ``dataset/README.md``).

- ``MMDocIR_annotations.jsonl``: one document a line, ``doc_name``, ``domain``, ``page_indices`` (inclusive
  [start, end] rows of the pages parquet), ``layout_indices`` and ``questions`` (``Q``, ``A``, ``type``,
  ``page_id`` = 0-based pages of the document, ``layout_mapping``).
- ``MMDocIR_pages.parquet``: ``doc_name``, ``domain``, ``passage_id``, ``image_path``, ``image_binary`` (JPEG),
  ``ocr_text``, ``vlm_text``; rows ``page_indices[0]..page_indices[1]`` are the document's pages in order.
- MinerU-parsed ``document.md`` files with ``<span id="page-N-0"></span>`` markers (N 0-based; pages without
  content have no marker).

Page ids are ``<doc_name>#<page>`` (:func:`polyrank.domains.docimage.pages.page_id`); question ids
``<doc_name>/q<k>``. A bad record is a :class:`FormatError` with the file and line.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polyrank.domains.docimage.pages import PageStore, page_id
from polyrank.shared.errors import FormatError, MissingResourceError, PolyrankError

NO_TEXT = "(no text was extracted from this page)"
_MARKER = re.compile(r'<span id="page-(\d+)-\d+"></span>')


@dataclass(frozen=True)
class Question:
    qid: str
    doc: str
    domain: str
    text: str
    answer: str
    type: str
    pages: tuple[int, ...]


@dataclass
class Document:
    name: str
    domain: str
    page_range: tuple[int, int] | None
    questions: list[Question] = field(default_factory=list)

    @property
    def n_pages(self) -> int | None:
        return None if self.page_range is None else self.page_range[1] - self.page_range[0] + 1


def read_annotations(path: str | Path) -> list[Document]:
    """The documents and questions of ``MMDocIR_annotations.jsonl``; bad lines raise FormatError(path, line)."""
    path = Path(path)
    if not path.is_file():
        raise MissingResourceError(f"MMDocIR annotations {path} do not exist; see datasets/mmdocir/README.md")
    docs = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise FormatError(path, number, f"not valid JSON ({exc.msg}); one document object per line") from exc
            docs.append(_document(record, path, number))
    if not docs:
        raise FormatError(path, None, "no documents; expected one JSON object per line")
    return docs


def _document(record: Any, path: Path, number: int) -> Document:
    if not isinstance(record, dict):
        raise FormatError(path, number, "expected a JSON object with doc_name, domain and questions")
    for key in ("doc_name", "domain", "questions"):
        if key not in record:
            raise FormatError(path, number, f"missing field {key!r} (fields: {sorted(record)})")
    rng = record.get("page_indices")
    if rng is not None and not (isinstance(rng, list) and len(rng) == 2 and all(isinstance(x, int) for x in rng)
                                and rng[0] <= rng[1]):
        raise FormatError(path, number, f"page_indices must be [start, end] with start <= end, got {rng!r}")
    doc = Document(str(record["doc_name"]), str(record["domain"]), tuple(rng) if rng else None)
    n_pages = doc.n_pages
    for k, q in enumerate(record["questions"]):
        pages = q.get("page_id") if isinstance(q, dict) else None
        if not isinstance(q, dict) or "Q" not in q or not isinstance(pages, list) or not pages \
                or not all(isinstance(p, int) and p >= 0 for p in pages):
            raise FormatError(path, number, f"question {k} of {doc.name}: expected Q and a non-empty page_id list "
                                            "of 0-based page numbers")
        if n_pages is not None and max(pages) >= n_pages:
            raise FormatError(path, number, f"question {k} of {doc.name}: page_id {max(pages)} is past the "
                                            f"document's {n_pages} pages (page_id is 0-based)")
        doc.questions.append(Question(f"{doc.name}/q{k}", doc.name, doc.domain, str(q["Q"]), str(q.get("A", "")),
                                      str(q.get("type", "")), tuple(pages)))
    return doc


def qrels_of(docs: list[Document]) -> tuple[dict[str, str], dict[str, dict[str, int]], dict[str, str]]:
    """``(queries {qid: text}, qrels {qid: {page id: 1}}, domain_of {qid: domain})``."""
    queries, qrels, domains = {}, {}, {}
    for doc in docs:
        for q in doc.questions:
            queries[q.qid] = q.text
            qrels[q.qid] = {page_id(doc.name, p): 1 for p in q.pages}
            domains[q.qid] = q.domain
    return queries, qrels, domains


def check_documents(docs: list[Document], store: PageStore) -> None:
    """Every question's document must be in ``store`` with its labelled pages (else a clear error)."""
    for doc in docs:
        if doc.name not in store:
            raise PolyrankError(f"question {doc.questions[0].qid if doc.questions else doc.name!r}: its document "
                                f"{doc.name!r} is not in the page store; add the document's pages (pages parquet, "
                                "PDF or images) or drop its questions")
        have = {p.index for p in store.pages(doc.name)}
        for q in doc.questions:
            absent = sorted(set(q.pages) - have)
            if absent:
                raise PolyrankError(f"question {q.qid}: labelled page(s) {absent} of {doc.name!r} are not in the "
                                    "page store; the document's pages are incomplete")


def read_parsed_markdown(path: str | Path) -> dict[int, str]:
    """``{0-based page: text}`` of a MinerU ``document.md`` split at its ``page-N-0`` markers."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    marks = list(_MARKER.finditer(text))
    if not marks:
        raise FormatError(path, None, 'no <span id="page-N-0"></span> page markers; expected a MinerU document.md')
    pages: dict[int, str] = {}
    for i, mark in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        chunk = re.sub(r"<[^>]+>", " ", text[mark.end():end])
        page = int(mark.group(1))
        pages[page] = (pages.get(page, "") + " " + " ".join(chunk.split())).strip()
    return pages


def read_pages_parquet(path: str | Path, docs: list[Document], text_field: str = "ocr_text",
                       images: bool = True, only: set[str] | None = None) -> PageStore:
    """A :class:`PageStore` of the documents' pages from ``MMDocIR_pages.parquet`` (rows by ``page_indices``)."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise MissingResourceError(f"{path} does not exist; download MMDocIR_pages.parquet (datasets/mmdocir)")
    columns = ["doc_name", "passage_id", text_field] + (["image_binary"] if images else [])
    table = pq.read_table(path, columns=columns)
    names = table.column("doc_name").to_pylist()
    store = PageStore()
    for doc in docs:
        if only is not None and doc.name not in only:
            continue
        if doc.page_range is None:
            raise PolyrankError(f"{doc.name}: no page_indices in the annotations; cannot locate its parquet rows")
        start, end = doc.page_range
        if end >= len(names):
            raise FormatError(path, None, f"{doc.name}: page_indices {start}..{end} past the {len(names)} rows")
        if any(n != doc.name for n in names[start:end + 1]):
            raise FormatError(path, start + 1, f"rows {start}..{end} are not all doc_name {doc.name!r}; the parquet "
                                               "and the annotations are from different releases")
        texts = [t or "" for t in table.column(text_field).slice(start, end - start + 1).to_pylist()]
        blobs = table.column("image_binary").slice(start, end - start + 1).to_pylist() if images else None
        store.add_document(doc.name, blobs, texts)
    return store


def parsed_subset(data_dir: str | Path, draw: bool = True, cache_dir: str | Path | None = None
                  ) -> tuple[list[Document], PageStore]:
    """The annotated documents that have a parsed ``document.md`` under ``<data_dir>/docimage/mmdocir/parsed``,
    and a page store of their pages: the page's parsed text, drawn as a page image when ``draw`` (pages the
    parser left without a marker get the text :data:`NO_TEXT`)."""
    from polyrank.domains.docimage.pages import text_page_image

    root = Path(data_dir) / "docimage" / "mmdocir"
    docs = read_annotations(root / "MMDocIR_annotations.jsonl")
    store = PageStore(cache_dir)
    kept = []
    for doc in docs:
        md = root / "parsed" / f"parsed_docs_{Path(doc.name).stem}" / "document.md"
        if not md.is_file() or doc.n_pages is None:
            continue
        texts = read_parsed_markdown(md)
        n = doc.n_pages
        page_texts = [texts.get(i, "").strip() or NO_TEXT for i in range(n)]
        images = [text_page_image(t, title=f"{doc.name} p.{i}") for i, t in enumerate(page_texts)] if draw else None
        store.add_document(doc.name, images, page_texts)
        kept.append(doc)
    if not kept:
        raise MissingResourceError(f"no parsed MMDocIR document under {root / 'parsed'}; see datasets/mmdocir")
    return kept, store


def validate(root: str | Path) -> dict[str, int]:
    """Check an MMDocIR folder against the published counts (313 documents, 1,658 questions, 2,107 page labels,
    20,395 pages by ``page_indices``); parsed ``document.md`` markers and PDFs (``pdfs/``) must fit their document's
    page count. Returns the counts; a mismatch is a :class:`PolyrankError` saying which."""
    root = Path(root)
    docs = read_annotations(root / "MMDocIR_annotations.jsonl")
    counts = {"documents": len(docs), "questions": sum(len(d.questions) for d in docs),
              "page_labels": sum(len(q.pages) for d in docs for q in d.questions),
              "pages": sum(d.n_pages or 0 for d in docs)}
    expected = {"documents": 313, "questions": 1658, "page_labels": 2107, "pages": 20395}
    wrong = {k: (counts[k], v) for k, v in expected.items() if counts[k] != v}
    if wrong:
        raise PolyrankError(f"{root}: counts differ from the MMDocIR release (got, expected): {wrong}")
    by_name = {d.name: d for d in docs}
    for md in sorted((root / "parsed").glob("parsed_docs_*/document.md")):
        doc = by_name.get(md.parent.name.removeprefix("parsed_docs_") + ".pdf")
        if doc is None:
            raise PolyrankError(f"{md}: no annotated document of that name")
        if max(read_parsed_markdown(md)) >= (doc.n_pages or 0):
            raise FormatError(md, None, f"a page marker is past the document's {doc.n_pages} pages")
        counts["parsed"] = counts.get("parsed", 0) + 1
    pdfs = sorted((root / "pdfs").glob("*.pdf"))
    if pdfs:
        from polyrank.shared.extras import require

        pdfium = require("pypdfium2", extra="docimage")
        for pdf in pdfs:
            doc = by_name.get(pdf.name)
            if doc is None:
                continue
            document = pdfium.PdfDocument(str(pdf))
            try:
                if len(document) != doc.n_pages:
                    raise PolyrankError(f"{pdf}: {len(document)} pages, the annotations say {doc.n_pages}")
            finally:
                document.close()
            counts["pdfs"] = counts.get("pdfs", 0) + 1
    return counts
