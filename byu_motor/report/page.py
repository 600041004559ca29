"""The page machinery: escaping, embedded images, tables, and one self-contained HTML file (no network)."""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; background: #fafafa; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 2px 8px; text-align: left; }
th { background: #eee; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 0.8em 0; } figcaption { font-size: 0.85em; color: #444; }
img.wide { max-width: 100%; height: auto; border: 1px solid #ddd; }
.muted { color: #777; }
"""


def esc(value: Any) -> str:
    """``value`` as HTML text (``&``, ``<``, ``>``, quotes escaped)."""
    return html.escape(str(value), quote=True)


def data_uri(path: str | Path, mime: str = "image/png") -> str:
    """A ``data:`` URI holding the bytes of ``path`` (base64)."""
    return f"data:{mime};base64,{base64.b64encode(Path(path).read_bytes()).decode('ascii')}"


def png_uri(png: bytes) -> str:
    """A ``data:image/png`` URI holding ``png``."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def figure_png(fig: Any, dpi: int = 100) -> bytes:
    """A matplotlib figure as PNG bytes (the figure is closed)."""
    import io

    from byu_motor.viz import require_matplotlib

    plt = require_matplotlib()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()


def image(src: str, alt: str, caption: str = "", css_class: str = "wide") -> str:
    """A ``<figure>`` with one image (``src`` a data URI or a relative path) and an escaped caption."""
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f'<figure><img class="{esc(css_class)}" src="{esc(src)}" alt="{esc(alt)}">{cap}</figure>'


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f'<td class="num">{value:.4g}</td>'
    if isinstance(value, int) and not isinstance(value, bool):
        return f'<td class="num">{value}</td>'
    return f"<td>{esc('' if value is None else value)}</td>"


def table(header: Sequence[str], rows: Iterable[Sequence[Any]], css_id: str = "") -> str:
    """An HTML table: escaped header and cells (floats to 4 significant digits, numbers right-aligned)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
    ident = f' id="{esc(css_id)}"' if css_id else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def json_script(element_id: str, data: Any) -> str:
    """Data for the page's script: ``<script type="application/json">`` (``</`` escaped so it cannot end it)."""
    text = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    return f'<script type="application/json" id="{esc(element_id)}">{text}</script>'


def render_page(title: str, body: str, style: str = "", script: str = "") -> str:
    """A whole HTML document: escaped ``title``, the given ``body`` HTML, extra CSS and an inline script."""
    js = f"<script>\n{script}\n</script>" if script else ""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{STYLE}{style}</style></head>\n"
        f"<body>\n<h1>{esc(title)}</h1>\n{body}\n{js}\n</body></html>\n"
    )


def write_page(path: str | Path, title: str, body: str, style: str = "", script: str = "") -> Path:
    """Write :func:`render_page` to ``path`` (UTF-8, folders created); returns ``Path(path)``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_page(title, body, style, script), encoding="utf-8")
    return path
