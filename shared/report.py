"""Report pieces: tables, figures and image grids, written as one self-contained HTML page.

A domain demo returns a :class:`ReportSection`; ``polyrank demo`` collects the sections, prints their
tables in the terminal (rich) and writes ``runs/demo/report.html`` with every image embedded.
"""

from __future__ import annotations

import base64
import html
import mimetypes
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polyrank.shared.atomic import atomic_write_text


@dataclass
class Table:
    """A table of figures; numbers are shown with ``digits`` decimals."""

    title: str
    columns: list[str]
    rows: list[list[Any]]
    note: str = ""
    digits: int = 4

    def formatted_rows(self) -> list[list[str]]:
        return [[f"{v:.{self.digits}f}" if isinstance(v, float) else str(v) for v in row] for row in self.rows]


@dataclass
class Figure:
    """An image file (PNG/JPEG) produced by a demo, with a caption."""

    title: str
    path: Path
    caption: str = ""


@dataclass
class ReportSection:
    """One domain's (or the core's) part of a report."""

    title: str
    summary: str = ""
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def print_tables(sections: Sequence[ReportSection], console: Any = None) -> None:
    """Print every section's tables in the terminal."""
    from rich.console import Console
    from rich.table import Table as RichTable

    console = console or Console()
    for section in sections:
        console.rule(f"[bold]{section.title}")
        if section.summary:
            console.print(section.summary)
        for table in section.tables:
            rich_table = RichTable(title=table.title, caption=table.note or None)
            for column in table.columns:
                rich_table.add_column(column)
            for row in table.formatted_rows():
                rich_table.add_row(*row)
            console.print(rich_table)
        for note in section.notes:
            console.print(f"[dim]{note}")


def _image_uri(path: Path) -> str:
    mime = mimetypes.guess_type(path.name)[0] or "image/png"
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def _table_html(table: Table) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>"
                   for row in table.formatted_rows())
    note = f"<p class='note'>{html.escape(table.note)}</p>" if table.note else ""
    return f"<h3>{html.escape(table.title)}</h3><table><tr>{head}</tr>{body}</table>{note}"


def _section_html(section: ReportSection) -> str:
    parts = [f"<section><h2>{html.escape(section.title)}</h2>"]
    if section.summary:
        parts.append(f"<p>{html.escape(section.summary)}</p>")
    parts.extend(_table_html(t) for t in section.tables)
    for fig in section.figures:
        parts.append(f"<figure><figcaption><b>{html.escape(fig.title)}</b> {html.escape(fig.caption)}"
                     f"</figcaption><img src='{_image_uri(Path(fig.path))}' alt='{html.escape(fig.title)}'>"
                     "</figure>")
    parts.extend(f"<p class='note'>{html.escape(n)}</p>" for n in section.notes)
    parts.append("</section>")
    return "".join(parts)


_STYLE = ("body{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em}"
          "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:4px 8px;"
          "text-align:right}th{background:#eee}img{max-width:100%}.note{color:#555;font-size:90%}")


def write_html_report(sections: Sequence[ReportSection], path: str | Path, title: str = "polyrank report") -> Path:
    """Write one self-contained HTML page (images embedded), atomically."""
    body = "".join(_section_html(s) for s in sections)
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>")
    return atomic_write_text(path, page)


def save_figure(figure: Any, path: str | Path, dpi: int = 110) -> Path:
    """Save a matplotlib figure to ``path`` and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(figure)
    return path


def image_grid(rows: Sequence[Sequence[tuple[str | Path, str, str | None]]], path: str | Path,
               thumb: int = 128, row_labels: Sequence[str] | None = None) -> Path:
    """A grid of thumbnails; each cell is ``(image_path, caption, border_colour or None)``.

    Used to show a query followed by its top results, with green/red borders for relevant/irrelevant.
    """
    from PIL import Image, ImageDraw, ImageOps

    label_w = 160 if row_labels else 0
    n_cols = max((len(r) for r in rows), default=0)
    cell_h = thumb + 18
    canvas = Image.new("RGB", (label_w + n_cols * (thumb + 6), max(1, len(rows)) * (cell_h + 6)), "white")
    draw = ImageDraw.Draw(canvas)
    for r, row in enumerate(rows):
        y = r * (cell_h + 6)
        if row_labels:
            draw.text((4, y + thumb // 2), row_labels[r][:24], fill="black")
        for c, (image_path, caption, colour) in enumerate(row):
            x = label_w + c * (thumb + 6)
            with Image.open(image_path) as img:
                tile = ImageOps.fit(img.convert("RGB"), (thumb, thumb))
            if colour:
                tile = ImageOps.expand(tile.crop((4, 4, thumb - 4, thumb - 4)), border=4, fill=colour)
            canvas.paste(tile, (x, y))
            draw.text((x + 2, y + thumb + 2), caption[:22], fill="black")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path
