"""Reports as Markdown plus a self-contained HTML page (figures embedded), built from the same blocks."""

from __future__ import annotations

import base64
import csv
import html
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f3f3f3}img{max-width:100%}
figure{margin:1em 0}figcaption{color:#555;font-size:.9em}code{background:#f3f3f3;padding:0 3px}"""


@dataclass
class Report:
    title: str
    blocks: list[tuple[str, tuple]] = field(default_factory=list)

    def heading(self, text: str, level: int = 2) -> None:
        self.blocks.append(("heading", (text, level)))

    def paragraph(self, text: str) -> None:
        self.blocks.append(("paragraph", (text,)))

    def table(self, header: list[str], rows: list[list]) -> None:
        self.blocks.append(("table", (header, [[_cell(v) for v in row] for row in rows])))

    def image(self, path: str | Path, caption: str) -> None:
        self.blocks.append(("image", (Path(path), caption)))

    def markdown(self, folder: Path) -> str:
        lines = [f"# {self.title}", ""]
        for kind, args in self.blocks:
            if kind == "heading":
                lines += [f"{'#' * args[1]} {args[0]}", ""]
            elif kind == "paragraph":
                lines += [args[0], ""]
            elif kind == "table":
                lines += [markdown_table(*args), ""]
            elif kind == "image":
                lines += [f"![{args[1]}]({os.path.relpath(args[0], folder)})", "", f"*{args[1]}*", ""]
        return "\n".join(lines)

    def html(self) -> str:
        parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}</title>",
                 f"<style>{CSS}</style></head><body><h1>{html.escape(self.title)}</h1>"]
        for kind, args in self.blocks:
            if kind == "heading":
                parts.append(f"<h{args[1]}>{html.escape(args[0])}</h{args[1]}>")
            elif kind == "paragraph":
                parts.append(f"<p>{_inline(args[0])}</p>")
            elif kind == "table":
                header, rows = args
                parts.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>")
                parts += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows]
                parts.append("</table>")
            elif kind == "image":
                data = base64.b64encode(args[0].read_bytes()).decode()
                parts.append(f"<figure><img src='data:image/png;base64,{data}' alt='{html.escape(args[1])}'>"
                             f"<figcaption>{html.escape(args[1])}</figcaption></figure>")
        parts.append("</body></html>")
        return "\n".join(parts)

    def write(self, folder: str | Path, stem: str) -> tuple[Path, Path]:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        md, page = folder / f"{stem}.md", folder / f"{stem}.html"
        md.write_text(self.markdown(folder))
        page.write_text(self.html())
        return md, page


def markdown_table(header: list[str], rows: list[list]) -> str:
    """A GitHub-flavoured Markdown table; cells are formatted as Report's are."""
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(map(_cell, row)) + " |" for row in rows])


def csv_table(header: list[str], rows: list[list]) -> str:
    """The same table as CSV (values as given: numbers keep their full precision)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _inline(text: str) -> str:
    """Markdown `code` spans to <code>; everything else escaped."""
    pieces = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(pieces))
