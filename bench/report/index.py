"""index.md and index.html from one list of blocks (text, tables, figures, skipped figures).

Both pages hold the same content; links are relative so a report folder can be moved whole.
No host names, and the one date (the build time) follows SOURCE_DATE_EPOCH when set: the same
records then give byte-identical pages.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path

from bench.report.tables import Table

CSS = ("body{font-family:sans-serif;max-width:72em;margin:2em auto;padding:0 1em;line-height:1.4}"
       "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;"
       "padding:.2em .5em;text-align:right}th{background:#f3f3f3}img{max-width:100%}"
       "code{background:#f3f3f3;padding:0 .2em}")


@dataclass
class Page:
    title: str
    blocks: list[tuple[str, object]] = field(default_factory=list)

    def heading(self, text: str, level: int = 2) -> None:
        self.blocks.append(("heading", (level, text)))

    def text(self, text: str) -> None:
        self.blocks.append(("text", text))

    def bullets(self, items: list[str]) -> None:
        if items:
            self.blocks.append(("bullets", list(items)))

    def code(self, lines: list[str]) -> None:
        self.blocks.append(("code", list(lines)))

    def file(self, sentence: str, path: Path, root: Path) -> None:
        self.blocks.append(("file", (sentence, [_rel(path, root)])))

    def table(self, table: Table, files: list[Path], root: Path) -> None:
        self.blocks.append(("table", (table, [_rel(f, root) for f in files])))

    def figure(self, name: str, files: list[Path], sentence: str, root: Path) -> None:
        self.blocks.append(("figure", (name, [_rel(f, root) for f in files], sentence)))

    def write(self, folder: Path) -> list[Path]:
        md, page = folder / "index.md", folder / "index.html"
        md.write_text(self.markdown(), encoding="utf-8")
        page.write_text(self.html(), encoding="utf-8")
        return [md, page]

    def markdown(self) -> str:
        out = [f"# {self.title}", ""]
        for kind, payload in self.blocks:
            out += _MD[kind](payload) + [""]
        return "\n".join(out).rstrip() + "\n"

    def html(self) -> str:
        body = [f"<h1>{_e(self.title)}</h1>"]
        for kind, payload in self.blocks:
            body.append(_HTML[kind](payload))
        return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<title>{_e(self.title)}</title><style>{CSS}</style></head><body>\n"
                + "\n".join(body) + "\n</body></html>\n")


def _rel(path: Path, root: Path) -> str:
    return Path(path).relative_to(root).as_posix()


def _e(text: str) -> str:
    return html.escape(str(text))


def _links_md(files: list[str]) -> str:
    return " · ".join(f"[{_link_text(f)}]({f})" for f in files)


def _links_html(files: list[str]) -> str:
    return " · ".join(f'<a href="{_e(f)}">{_e(_link_text(f))}</a>' for f in files)


def _link_text(f: str) -> str:
    """'png', 'pdf', '1col.pdf' (a figure's one-column PDF): what tells the files apart."""
    return "1col.pdf" if Path(f).name.endswith("-1col.pdf") else Path(f).suffix[1:]


_MD = {
    "heading": lambda p: [f"{'#' * p[0]} {p[1]}"],
    "text": lambda p: [p],
    "bullets": lambda p: [f"- {item}" for item in p],
    "code": lambda p: ["```bash", *p, "```"],
    "file": lambda p: [f"{p[0]} Files: {_links_md(p[1])}"],
    "table": lambda p: [p[0].sentence, "", p[0].markdown()] + (
        ["", p[0].note] if p[0].note else []) + (
        ["", f"Files: {_links_md(p[1])}"] if p[1] else []),
    "figure": lambda p: [p[2], "", f"![{p[0]}]({p[1][0]})", "", f"Files: {_links_md(p[1])}"],
}

_HTML = {
    "heading": lambda p: f"<h{p[0]}>{_e(p[1])}</h{p[0]}>",
    "text": lambda p: f"<p>{_e(p)}</p>",
    "bullets": lambda p: "<ul>" + "".join(f"<li>{_e(i)}</li>" for i in p) + "</ul>",
    "code": lambda p: "<pre><code>" + _e("\n".join(p)) + "</code></pre>",
    "file": lambda p: f"<p>{_e(p[0])} Files: {_links_html(p[1])}</p>",
    "table": lambda p: (f"<p>{_e(p[0].sentence)}</p>\n{p[0].html()}"
                        + (f"\n<p>{_e(p[0].note)}</p>" if p[0].note else "")
                        + (f"\n<p>Files: {_links_html(p[1])}</p>" if p[1] else "")),
    "figure": lambda p: (f"<figure><img src=\"{_e(p[1][0])}\" alt=\"{_e(p[0])}\">"
                         f"<figcaption>{_e(p[2])} Files: {_links_html(p[1])}"
                         "</figcaption></figure>"),
}
