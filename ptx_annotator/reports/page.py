"""HTML pages from template files (:class:`string.Template`), every value escaped unless marked as markup.

A report's page lives in ``reports/templates/<name>.html`` with ``$name`` placeholders;
:func:`render` fills it. Values are HTML-escaped, except :class:`Markup` (markup this code made:
a table, an embedded image), so a reader's name or a file path can never break the page.
:func:`table` and :func:`image` build the repeated parts from escaped cells.
"""

from __future__ import annotations

import html
from functools import lru_cache
from importlib import resources
from string import Template


class Markup(str):
    """Text that is already HTML: :func:`render` inserts it as it is."""


def escape(value) -> Markup:
    """``value`` as HTML text (Markup passes through unchanged)."""
    return value if isinstance(value, Markup) else Markup(html.escape(str(value)))


@lru_cache(maxsize=None)
def _template(name: str) -> Template:
    text = resources.files("ptx_annotator.reports").joinpath("templates", f"{name}.html").read_text(encoding="utf-8")
    return Template(text)


def render(name: str, **values) -> str:
    """The page ``templates/<name>.html`` with every ``$placeholder`` filled (a missing one is a KeyError)."""
    return _template(name).substitute({key: escape(value) for key, value in values.items()})


def join(parts) -> Markup:
    """Several pieces of markup (or escaped text) as one."""
    return Markup("".join(escape(part) for part in parts))


def table(header, rows, row_headers: bool = False) -> Markup:
    """A ``<table>``: an optional header row, then one ``<tr>`` per row; cells escaped.

    With ``row_headers`` the first cell of each row is a ``<th>``.
    """
    head = join(Markup(f"<th>{escape(cell)}</th>") for cell in header) if header else ""
    lines = [Markup(f"<tr>{head}</tr>")] if header else []
    for row in rows:
        cells = [Markup(f"<{'th' if row_headers and i == 0 else 'td'}>{escape(cell)}"
                        f"</{'th' if row_headers and i == 0 else 'td'}>") for i, cell in enumerate(row)]
        lines.append(Markup(f"<tr>{join(cells)}</tr>"))
    return Markup(f"<table>{join(lines)}</table>")


def image(png_base64: str, alt: str) -> Markup:
    """An ``<img>`` embedding a base64 PNG (the page stays one self-contained file)."""
    return Markup(f'<img alt="{escape(alt)}" src="data:image/png;base64,{escape(png_base64)}">')
