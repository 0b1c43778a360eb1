"""The explorer page: one self-contained HTML file (its data, styles and script inline).

It opens from the file system with no server and no network: the data is a JSON block the
script parses, the images are PNG data URIs, and nothing is fetched (no fonts, no libraries,
not even a favicon). The markup, styles and script are ``page.html``, ``page.css`` and
``page.js`` beside this module; ``page.html`` marks where each goes as ``@@NAME@@``.
"""

from __future__ import annotations

import html
import json
import os
import re
from importlib import resources
from typing import Any

from stepattr.core.io import atomic_path

PLACEHOLDER = re.compile(r"@@([A-Z]+)@@")


def _asset(name: str) -> str:
    return resources.files("stepattr.explorer").joinpath(name).read_text(encoding="utf-8")


def embed_json(data: Any) -> str:
    """JSON safe inside a <script> element: every ``<`` (only ever inside strings) escaped as
    ``\\u003c``, so no ``</script>`` or ``<!--`` in a caption can end or bend the element."""
    return json.dumps(data, separators=(",", ":"), allow_nan=False).replace("<", "\\u003c")


def render_page(data: dict[str, Any]) -> str:
    """The page's HTML for the data of :func:`stepattr.explorer.data.page_data`."""
    values = {
        "TITLE": html.escape(data["title"]),
        "HEADING": html.escape(data["heading"]),
        "CSS": _asset("page.css"),
        "JS": _asset("page.js"),
        "DATA": embed_json(data),
    }
    # one pass: what is put in is not searched for placeholders again
    return PLACEHOLDER.sub(lambda match: values[match[1]], _asset("page.html"))


def save_page(path: str | os.PathLike, text: str) -> None:
    """Write the page, atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
