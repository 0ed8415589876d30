"""Pages, page store, MMDocIR readers and page-level recall: oracles and bad input."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from polyrank.domains.docimage.data import (check_documents, qrels_of, read_annotations, read_pages_parquet,
                                            read_parsed_markdown)
from polyrank.domains.docimage.metrics import mmdocir_recall
from polyrank.domains.docimage.pages import Page, PageStore, ocr, open_image, render_pdf, text_page_image
from polyrank.shared.errors import FormatError, MissingResourceError, PolyrankError


def test_corrupt_pdf_is_a_clear_error(tmp_path):
    bad = tmp_path / "broken.pdf"
    bad.write_bytes(b"%PDF-1.4\n this is not really a pdf")
    with pytest.raises(PolyrankError, match="broken.pdf: not a readable PDF"):
        render_pdf(bad)
    with pytest.raises(MissingResourceError, match="does not exist"):
        render_pdf(tmp_path / "absent.pdf")


def test_pdf_pages_render_to_rgb_images(tmp_path):
    pdf = tmp_path / "two.pdf"
    pages = [Image.new("RGB", (80, 100), "white"), Image.new("RGB", (80, 100), "black")]
    pages[0].save(pdf, save_all=True, append_images=pages[1:])
    store = PageStore(tmp_path / "cache")
    doc = store.add_pdf(pdf)
    assert [p.index for p in store.pages(doc)] == [0, 1]
    assert store.page(doc, 1).image.mode == "RGB"
    assert np.asarray(store.page(doc, 1).image).mean() < 20 < np.asarray(store.page(doc, 0).image).mean()


def test_empty_page_and_empty_image_are_clear_errors():
    with pytest.raises(PolyrankError, match="page 3 of document 'd' is empty"):
        Page("d", 3, None, "   ")
    with pytest.raises(PolyrankError, match="the image is empty"):
        open_image(Image.new("RGB", (0, 5)))


def test_rgba_is_composited_on_white_and_cmyk_converted(tmp_path):
    # guards: a plain .convert("RGB") of a transparent page turns its background black
    rgba = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    assert open_image(rgba).getpixel((0, 0)) == (255, 255, 255)
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(path)  # pure red in CMYK
    red = open_image(path).getpixel((4, 4))
    assert open_image(path).mode == "RGB" and red[0] > 200 and red[1] < 60 and red[2] < 60
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(PolyrankError, match="junk.png: not a readable image"):
        open_image(tmp_path / "junk.png")


def test_ocr_without_tesseract_says_how_to_get_text():
    import shutil

    if shutil.which("tesseract"):
        pytest.skip("tesseract is installed here")
    with pytest.raises(MissingResourceError, match="tesseract"):
        ocr(Image.new("RGB", (10, 10)))


def test_thumbnails_are_cached_on_disk_once(tmp_path):
    store = PageStore(tmp_path)
    store.add_document("d.pdf", [text_page_image("hello world")], ["hello world"])
    first = store.thumbnail("d.pdf", 0, 64)
    stamp = first.stat().st_mtime_ns
    assert store.thumbnail("d.pdf", 0, 64) == first and first.stat().st_mtime_ns == stamp
    assert max(Image.open(first).size) == 64
    assert not list(first.parent.glob("*.tmp*"))  # atomic write left no staging file


def _annotations(tmp_path, records):
    path = tmp_path / "ann.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return path


def _doc(name, domain, start, end, questions):
    return {"doc_name": name, "domain": domain, "page_indices": [start, end], "layout_indices": [0, 0],
            "questions": [{"Q": q, "A": "", "type": "text-only", "page_id": p, "layout_mapping": []}
                          for q, p in questions]}


def test_annotations_reader_and_bad_lines(tmp_path):
    path = _annotations(tmp_path, [_doc("a.pdf", "News", 0, 2, [("q a", [1])]), _doc("b.pdf", "Laws", 3, 4,
                                                                                    [("q b", [0, 1])])])
    docs = read_annotations(path)
    queries, qrels, domains = qrels_of(docs)
    assert qrels == {"a.pdf/q0": {"a.pdf#1": 1}, "b.pdf/q0": {"b.pdf#0": 1, "b.pdf#1": 1}}
    assert domains == {"a.pdf/q0": "News", "b.pdf/q0": "Laws"} and docs[0].n_pages == 3
    bad = _annotations(tmp_path, [_doc("a.pdf", "News", 0, 2, [("q", [1])]), _doc("b.pdf", "Laws", 3, 4, [("q", [2])])])
    with pytest.raises(FormatError, match=r"ann.jsonl:2: .*page_id 2 is past the document's 2 pages"):
        read_annotations(bad)
    (tmp_path / "ann.jsonl").write_text('{"doc_name": "x"\n')
    with pytest.raises(FormatError, match="ann.jsonl:1: not valid JSON"):
        read_annotations(tmp_path / "ann.jsonl")


def test_question_whose_document_is_missing_is_a_clear_error(tmp_path):
    docs = read_annotations(_annotations(tmp_path, [_doc("gone.pdf", "News", 0, 1, [("q", [0])])]))
    store = PageStore()
    store.add_document("other.pdf", None, ["text"])
    with pytest.raises(PolyrankError, match="question 'gone.pdf/q0': its document 'gone.pdf' is not in the page store"):
        check_documents(docs, store)


def test_pages_parquet_layout(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    def jpeg(colour):
        buffer = io.BytesIO()
        Image.new("RGB", (16, 16), colour).save(buffer, "JPEG")
        return buffer.getvalue()

    rows = {"doc_name": ["a.pdf", "a.pdf", "b.pdf"], "domain": ["News"] * 3, "passage_id": ["0", "1", "0"],
            "image_path": ["x"] * 3, "image_binary": [jpeg("red"), jpeg("blue"), jpeg("green")],
            "ocr_text": ["first", "second", "third"], "vlm_text": ["", "", ""]}
    pq.write_table(pa.table(rows), tmp_path / "pages.parquet")
    docs = read_annotations(_annotations(tmp_path, [_doc("a.pdf", "News", 0, 1, [("q", [1])]),
                                                    _doc("b.pdf", "News", 2, 2, [("q", [0])])]))
    store = read_pages_parquet(tmp_path / "pages.parquet", docs)
    assert store.page("a.pdf", 1).text == "second" and store.page("b.pdf", 0).image.getpixel((8, 8))[1] > 100
    check_documents(docs, store)
    shifted = read_annotations(_annotations(tmp_path, [_doc("a.pdf", "News", 1, 2, [("q", [0])])]))
    with pytest.raises(FormatError, match="not all doc_name 'a.pdf'"):
        read_pages_parquet(tmp_path / "pages.parquet", shifted)


def test_parsed_markdown_uses_the_marker_number(tmp_path):
    md = tmp_path / "document.md"
    md.write_text('<span id="page-0-0"></span>\n# Title\nintro\n<span id="page-2-0"></span>\nlater <b>bold</b>\n')
    assert read_parsed_markdown(md) == {0: "# Title intro", 2: "later bold"}


def test_recall_micro_and_macro_on_hand_cases():
    # q1 (News): 1 of 2 labelled pages in the top 1, both in the top 3; q2 (News): none in the top 3;
    # q3 (Laws): its page first. micro R@1 = (0.5 + 0 + 1) / 3; macro R@1 = ((0.5 + 0) / 2 + 1) / 2
    run = {"a/q0": {"a#0": 0.9, "a#1": 0.8, "a#2": 0.7, "a#3": 0.1},
           "a/q1": {"a#0": 0.9, "a#1": 0.8, "a#2": 0.7, "a#3": 0.1},
           "b/q0": {"b#0": 0.2, "b#1": 0.1}}
    qrels = {"a/q0": {"a#0": 1, "a#2": 1}, "a/q1": {"a#3": 1}, "b/q0": {"b#0": 1}}
    domains = {"a/q0": "News", "a/q1": "News", "b/q0": "Laws"}
    m = mmdocir_recall(run, qrels, domains, ks=(1, 3))
    assert m["micro_R@1"] == pytest.approx(1.5 / 3) and m["macro_R@1"] == pytest.approx(0.625)
    assert m["micro_R@3"] == pytest.approx(2 / 3) and m["macro_R@3"] == pytest.approx(0.75)
    with pytest.raises(PolyrankError, match="no domain"):
        mmdocir_recall(run, qrels, {"a/q0": "News"})


def test_real_parsed_subset(shared_data):
    from polyrank.domains.docimage.data import parsed_subset

    if not (shared_data / "docimage" / "mmdocir" / "parsed").is_dir():
        pytest.skip("MMDocIR parsed subset absent")
    docs, store = parsed_subset(shared_data, draw=False)
    assert len(docs) == 10 and sum(len(d.questions) for d in docs) == 39
    check_documents(docs, store)
    q = next(q for d in docs for q in d.questions if d.name == "D18-1334.pdf")
    assert "20 language pairs" in store.page(q.doc, 0).text  # the README's alignment check, page 0


def test_real_mmdocir_folder_validates(shared_data):
    from polyrank.domains.docimage.data import validate

    root = shared_data / "docimage" / "mmdocir"
    if not (root / "MMDocIR_annotations.jsonl").is_file():
        pytest.skip("MMDocIR annotations absent")
    counts = validate(root)
    assert counts["questions"] == 1658 and counts.get("parsed", 0) == 10


def test_real_pdf_renders(shared_data):
    pdfs = sorted((shared_data / "docimage" / "mmdocir" / "pdfs").glob("*.pdf"))
    if not pdfs:
        pytest.skip("MMDocIR PDFs absent")
    images = render_pdf(pdfs[0], scale=0.2, max_pages=1)
    assert images[0].mode == "RGB" and min(images[0].size) > 50
