"""The validation report as plain data, and its two renderings: Markdown and one self-contained HTML page.

A report is a list of `Section`s; a section holds blocks of four kinds (a paragraph, a table, an
image file, a preformatted text). The sections are built from the stage outputs (sections.py) and
know nothing about either format; the renderers know nothing about stages. The HTML page embeds
every image as a data URI and carries its own few lines of CSS, so it can be mailed or archived
as one file.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import mimetypes
from pathlib import Path
from typing import Union


@dataclasses.dataclass
class Text:
    text: str


@dataclasses.dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    caption: str = ""


@dataclasses.dataclass
class Image:
    path: Path
    alt: str


@dataclasses.dataclass
class Pre:
    text: str
    title: str = ""


Block = Union[Text, Table, Image, Pre]


@dataclasses.dataclass
class Section:
    title: str
    anchor: str
    blocks: list[Block] = dataclasses.field(default_factory=list)


NOT_RUN = "not run"


def _md_cell(value: str) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def render_markdown(title: str, sections: list[Section], image_base: Path) -> str:
    """Markdown; images are linked by their path relative to `image_base` (the report's folder)."""
    lines = [f"# {title}", ""]
    for section in sections:
        lines += [f"## {section.title}", ""]
        for block in section.blocks:
            if isinstance(block, Text):
                lines += [block.text, ""]
            elif isinstance(block, Table):
                if block.caption:
                    lines += [f"**{block.caption}**", ""]
                lines.append("| " + " | ".join(_md_cell(h) for h in block.header) + " |")
                lines.append("|" + "---|" * len(block.header))
                lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
                lines.append("")
            elif isinstance(block, Image):
                try:
                    where = block.path.relative_to(image_base)
                except ValueError:
                    where = block.path
                lines += [f"![{block.alt}]({where.as_posix()})", ""]
            elif isinstance(block, Pre):
                if block.title:
                    lines += [f"**{block.title}**", ""]
                lines += ["```", block.text.rstrip("\n"), "```", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def data_uri(path: Path) -> str:
    mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


STYLE = ("body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}"
         "h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}"
         "table{border-collapse:collapse;margin:.6em 0 1.2em}caption{text-align:left;font-weight:600;padding:.2em 0}"
         "td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}"
         "td:first-child,th:first-child{text-align:left}"
         "th{background:#f4f4f4}pre{background:#f7f7f7;padding:.6em;overflow-x:auto;font-size:.85em}"
         "img{max-width:100%;border:1px solid #eee}nav a{margin-right:1em}.notrun{color:#888;font-style:italic}")


def render_html(title: str, sections: list[Section]) -> str:
    e = html.escape
    nav = "".join(f"<a href='#{e(s.anchor)}'>{e(s.title)}</a>" for s in sections)
    parts = [f"<h1>{e(title)}</h1><nav>{nav}</nav>"]
    for section in sections:
        parts.append(f"<section id='{e(section.anchor)}'><h2>{e(section.title)}</h2>")
        for block in section.blocks:
            if isinstance(block, Text):
                css = " class=notrun" if block.text.strip().lower().startswith(NOT_RUN) else ""
                parts.append(f"<p{css}>{e(block.text)}</p>")
            elif isinstance(block, Table):
                caption = f"<caption>{e(block.caption)}</caption>" if block.caption else ""
                head = "".join(f"<th>{e(h)}</th>" for h in block.header)
                body = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>" for row in block.rows)
                parts.append(f"<table>{caption}<tr>{head}</tr>{body}</table>")
            elif isinstance(block, Image):
                parts.append(f"<figure><img src='{data_uri(block.path)}' alt='{e(block.alt)}'>"
                             f"<figcaption>{e(block.alt)}</figcaption></figure>")
            elif isinstance(block, Pre):
                heading = f"<h3>{e(block.title)}</h3>" if block.title else ""
                parts.append(f"{heading}<pre>{e(block.text)}</pre>")
        parts.append("</section>")
    return (f"<!doctype html><html><head><meta charset=utf-8><title>{e(title)}</title>"
            f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>\n")
