"""Document pages: images (PDF pages rendered with pypdfium2, or image files) with optional text; a page store
keyed by (document, 0-based page index) with thumbnails cached on disk.

Images are normalised to RGB once, at the door: RGBA/LA/P-with-transparency are composited on white (a
transparent background must not turn black), CMYK/YCbCr/L/I/F are converted by PIL. An unreadable file, a
corrupt PDF, a PDF without pages or a page with neither image nor text is a clear error naming the file and page.
OCR goes through ``pytesseract`` only when the ``tesseract`` binary is installed; otherwise a clear message says
how to get page text (install tesseract, or pass the parsed text).
"""

from __future__ import annotations

import hashlib
import io
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polyrank.shared.errors import MissingResourceError, PolyrankError
from polyrank.shared.protocol import Candidate

#: the id of page ``i`` of document ``doc`` in runs, qrels and candidate lists
PAGE_SEP = "#"


def page_id(doc: str, index: int) -> str:
    return f"{doc}{PAGE_SEP}{index}"


def split_page_id(pid: str) -> tuple[str, int]:
    doc, _, index = str(pid).rpartition(PAGE_SEP)
    if not doc or not index.isdigit():
        raise PolyrankError(f"{pid!r} is not a page id; expected '<document>{PAGE_SEP}<0-based page index>'")
    return doc, int(index)


def to_rgb(image: Any, where: str = "image") -> Any:
    """``image`` (a PIL image) as RGB: transparency composited on white, other modes converted by PIL."""
    from PIL import Image

    if image.width == 0 or image.height == 0:
        raise PolyrankError(f"{where}: the image is empty ({image.width}x{image.height}); pass a page with pixels")
    if image.mode == "RGB":
        return image
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode in ("I", "I;16", "F"):
        import numpy as np

        values = np.asarray(image, dtype=np.float64)
        span = values.max() - values.min()
        scaled = ((values - values.min()) / span * 255.0) if span > 0 else np.zeros_like(values)
        return Image.fromarray(scaled.astype("uint8"), "L").convert("RGB")
    return image.convert("RGB")  # CMYK, YCbCr, L, 1, P, LAB, HSV


def open_image(source: Any, where: str | None = None) -> Any:
    """A PIL RGB image from a path, bytes or a PIL image; unreadable data is a clear error naming the source."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(source, Image.Image):
        return to_rgb(source, where or "image")
    label = where or (str(source) if isinstance(source, (str, Path)) else "image bytes")
    try:
        handle = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else open(source, "rb")
        with handle, Image.open(handle) as img:
            img.load()
            return to_rgb(img.copy(), label)
    except FileNotFoundError as exc:
        raise MissingResourceError(f"page image {label} does not exist; check the path") from exc
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise PolyrankError(f"{label}: not a readable image ({exc}); pass a PNG/JPEG/TIFF/WebP file") from exc


@dataclass
class Page:
    """Page ``index`` (0-based) of document ``doc``: an RGB image (None for text-only pages) and its text."""

    doc: str
    index: int
    image: Any = None
    text: str = ""

    def __post_init__(self) -> None:
        if self.image is None and not self.text.strip():
            raise PolyrankError(f"page {self.index} of document {self.doc!r} is empty: it has neither an image nor "
                                "text; drop it or pass its image/text")

    @property
    def id(self) -> str:
        return page_id(self.doc, self.index)


def render_pdf(path: str | Path, scale: float = 1.0, max_pages: int | None = None) -> list[Any]:
    """The pages of a PDF as RGB PIL images (pypdfium2; ``scale`` 1.0 = 72 dpi)."""
    from polyrank.shared.extras import require

    pdfium = require("pypdfium2", extra="docimage")
    path = Path(path)
    if not path.is_file():
        raise MissingResourceError(f"PDF {path} does not exist; check the path")
    try:
        pdf = pdfium.PdfDocument(str(path))
    except pdfium.PdfiumError as exc:
        raise PolyrankError(f"{path}: not a readable PDF ({exc}); the file is corrupt or not a PDF "
                            "(re-download it, or pass page images instead)") from exc
    try:
        n = len(pdf)
        if n == 0:
            raise PolyrankError(f"{path}: the PDF has no pages")
        images = []
        for i in range(min(n, max_pages or n)):
            page = pdf[i]
            images.append(to_rgb(page.render(scale=scale).to_pil(), f"{path} page {i}"))
            page.close()
        return images
    finally:
        pdf.close()


def pdf_text(path: str | Path, max_pages: int | None = None) -> list[str]:
    """The embedded text layer of each PDF page ('' for scanned pages)."""
    from polyrank.shared.extras import require

    pdfium = require("pypdfium2", extra="docimage")
    pdf = pdfium.PdfDocument(str(path))
    try:
        out = []
        for i in range(min(len(pdf), max_pages or len(pdf))):
            textpage = pdf[i].get_textpage()
            out.append(textpage.get_text_range())
            textpage.close()
        return out
    finally:
        pdf.close()


def ocr(image: Any) -> str:
    """Page text by OCR (pytesseract), only when the ``tesseract`` binary is installed."""
    if shutil.which("tesseract") is None:
        raise MissingResourceError("OCR needs the tesseract binary, which is not installed (apt-get install "
                                   "tesseract-ocr, then pip install pytesseract); or pass the page text yourself "
                                   "(parsed text, or pdf_text() for PDFs with a text layer)")
    try:
        import pytesseract
    except ImportError as exc:
        raise MissingResourceError("tesseract is installed but the Python package pytesseract is not; run "
                                   "`pip install pytesseract`") from exc
    return str(pytesseract.image_to_string(image))


class PageStore:
    """Pages keyed by ``(document, page index)``; thumbnails cached under ``cache_dir`` (atomic writes)."""

    def __init__(self, cache_dir: str | Path | None = None) -> None:
        self._pages: dict[str, dict[int, Page]] = {}
        self.cache_dir = Path(cache_dir) if cache_dir else None

    def add(self, page: Page) -> None:
        self._pages.setdefault(page.doc, {})[page.index] = page

    def add_document(self, doc: str, images: Sequence[Any] | None = None, texts: Sequence[str] | None = None) -> None:
        """Pages ``0..n-1`` of ``doc`` from images (PIL, paths or bytes) and/or texts (same length)."""
        n = len(images) if images is not None else len(texts or [])
        if images is not None and texts is not None and len(texts) != len(images):
            raise PolyrankError(f"document {doc!r}: {len(images)} images but {len(texts)} texts; they pair up")
        if n == 0:
            raise PolyrankError(f"document {doc!r} has no pages")
        for i in range(n):
            image = open_image(images[i], f"{doc} page {i}") if images is not None else None
            self.add(Page(doc, i, image, texts[i] if texts is not None else ""))

    def add_pdf(self, path: str | Path, doc: str | None = None, scale: float = 1.0, text: bool = True) -> str:
        """Render every page of a PDF (and its text layer); returns the document name (default: the file name)."""
        doc = doc or Path(path).name
        images = render_pdf(path, scale)
        self.add_document(doc, images, pdf_text(path) if text else None)
        return doc

    def add_image_files(self, doc: str, paths: Iterable[str | Path], ocr_text: bool = False) -> None:
        images = [open_image(p) for p in paths]
        self.add_document(doc, images, [ocr(i) for i in images] if ocr_text else None)

    def documents(self) -> list[str]:
        return sorted(self._pages)

    def __contains__(self, doc: str) -> bool:
        return doc in self._pages

    def __len__(self) -> int:
        return sum(len(p) for p in self._pages.values())

    def pages(self, doc: str) -> list[Page]:
        if doc not in self._pages:
            close = [d for d in self._pages if d.split(".")[0] == str(doc).split(".")[0]]
            raise PolyrankError(f"document {doc!r} is not in the page store ({len(self._pages)} documents"
                                f"{'; did you mean ' + close[0] + '?' if close else ''}); add its pages first")
        return [self._pages[doc][i] for i in sorted(self._pages[doc])]

    def page(self, doc: str, index: int) -> Page:
        pages = self._pages.get(doc)
        if pages is None or index not in pages:
            self.pages(doc)  # the missing-document error
            raise PolyrankError(f"document {doc!r} has no page {index} (pages {min(pages)}..{max(pages)})")
        return pages[index]

    def candidates(self, doc: str) -> list[Candidate]:
        """The pages of ``doc`` as candidates (id ``doc#i``, content the :class:`Page`)."""
        return [Candidate(p.id, p) for p in self.pages(doc)]

    def thumbnail(self, doc: str, index: int, size: int = 160) -> Path:
        """A JPEG thumbnail of the page, cached on disk (written once, atomically)."""
        from polyrank.shared.atomic import atomic_write_bytes

        if self.cache_dir is None:
            raise PolyrankError("this PageStore has no cache_dir; pass PageStore(cache_dir=...) to cache thumbnails")
        page = self.page(doc, index)
        if page.image is None:
            raise PolyrankError(f"page {index} of {doc!r} is text-only; render it (text_page_image) to thumbnail it")
        key = hashlib.sha256(f"{doc}\0{index}\0{size}".encode()).hexdigest()[:24]
        path = self.cache_dir / "thumbnails" / f"{key}.jpg"
        if not path.is_file():
            thumb = page.image.copy()
            thumb.thumbnail((size, size))
            buffer = io.BytesIO()
            thumb.save(buffer, "JPEG", quality=85)
            atomic_write_bytes(path, buffer.getvalue())
        return path


def text_page_image(text: str, width: int = 420, height: int = 594, margin: int = 16, title: str = "") -> Any:
    """Draw ``text`` as a page image (PIL default font, wrapped, cut at the bottom): a stand-in page when only
    the parsed text of a document is available."""
    import textwrap

    from PIL import Image, ImageDraw

    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    y = margin
    if title:
        draw.text((margin, y), title[:60], fill=(150, 0, 0))
        y += 16
    chars = max(10, (width - 2 * margin) // 6)
    for line in textwrap.wrap(" ".join(text.split()), chars):
        if y > height - margin - 10:
            break
        draw.text((margin, y), line, fill="black")
        y += 11
    return image
