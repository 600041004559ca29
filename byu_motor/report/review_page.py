"""The label review page: one card per disagreement (:mod:`.cases`) with three orthogonal slices through the
point at one fixed physical scale, label and candidate marked, and keyboard/click decisions exported as CSV."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
from PIL import Image

from byu_motor.report.cases import Case
from byu_motor.report.page import esc, json_script, write_page
from byu_motor.report.review_script import KEYS, SCRIPT, STYLE
from byu_motor.viz import HIT_RADIUS_A, VIEWS

VIEW_PX = 160  # side of each view in pixels
A_PER_PX = 25.0  # the fixed physical scale: every view spans VIEW_PX * A_PER_PX = 4000 A
BAR_A = 1000.0  # scale bar length (the metric's radius)
COLOURS = {"candidate": "#e0245e", "label": "#17bf63"}


def view_crop(volume: np.ndarray, centre: Sequence[float], axis: int, spacing_a: float) -> np.ndarray:
    """The slice through ``centre`` normal to ``axis``, resampled (nearest) to ``VIEW_PX`` square pixels of
    ``A_PER_PX``, centred on the point; outside the volume is black. Returns uint8 ``(VIEW_PX, VIEW_PX)``."""
    rows, cols = [a for a in range(3) if a != axis]
    index = int(np.clip(round(centre[axis]), 0, volume.shape[axis] - 1))
    plane = np.take(volume, index, axis=axis)
    offsets = (np.arange(VIEW_PX) + 0.5 - VIEW_PX / 2) * A_PER_PX / spacing_a
    r = np.rint(centre[rows] + offsets).astype(np.int64)
    c = np.rint(centre[cols] + offsets).astype(np.int64)
    ok_r, ok_c = (r >= 0) & (r < plane.shape[0]), (c >= 0) & (c < plane.shape[1])
    out = plane[np.ix_(np.clip(r, 0, plane.shape[0] - 1), np.clip(c, 0, plane.shape[1] - 1))].astype(np.uint8)
    out[~ok_r, :] = 0
    out[:, ~ok_c] = 0
    return out


def centres(case: Case) -> list[tuple[float, float, float]]:
    """The points a card's rows of views go through: the candidate and the label of a misplaced case (each on
    its own slices), else the one point."""
    if case.kind == "misplaced" and case.candidate is not None and case.label is not None:
        return [case.candidate, case.label]
    return [case.centre]


def _marks_svg(case: Case, centre: np.ndarray, axis: int) -> str:
    """SVG circles (the 1000 A sphere's cut of this slice) and centre dots for the candidate and the label."""
    rows, cols = [a for a in range(3) if a != axis]
    parts = []
    for name, point in (("candidate", case.candidate), ("label", case.label)):
        if point is None:
            continue
        p = np.asarray(point, dtype=np.float64)
        d_a = abs(p[axis] - round(centre[axis])) * case.spacing_a
        if d_a > HIT_RADIUS_A:
            continue
        x = VIEW_PX / 2 + (p[cols] - centre[cols]) * case.spacing_a / A_PER_PX
        y = VIEW_PX / 2 + (p[rows] - centre[rows]) * case.spacing_a / A_PER_PX
        r = float(np.sqrt(HIT_RADIUS_A**2 - d_a**2)) / A_PER_PX
        colour = COLOURS[name]
        parts.append(f'<circle class="{name}" cx="{x:.1f}" cy="{y:.1f}" r="{r:.1f}" fill="none" '
                     f'stroke="{colour}" stroke-width="1.5"/><circle cx="{x:.1f}" cy="{y:.1f}" r="1.5" '
                     f'fill="{colour}"/>')  # fmt: skip
    return "".join(parts)


def _view_svg(src: str, case: Case, centre: np.ndarray, view: tuple) -> str:
    name, axis, (ra, ca) = view
    bar = BAR_A / A_PER_PX
    index = int(round(centre[axis]))
    # an <img loading="lazy"> under an SVG overlay: views far below the fold are not fetched on opening
    return (
        f'<figure><div class="view" style="width: {VIEW_PX}px; height: {VIEW_PX}px"><img loading="lazy" src="{esc(src)}" width="{VIEW_PX}" height="{VIEW_PX}" '
        f'alt="{name} view"><svg width="{VIEW_PX}" height="{VIEW_PX}" viewBox="0 0 {VIEW_PX} {VIEW_PX}">'
        f"{_marks_svg(case, centre, axis)}"
        f'<rect x="6" y="{VIEW_PX - 10}" width="{bar:.1f}" height="3" fill="#fff"/>'
        f'<text x="6" y="{VIEW_PX - 13}" fill="#fff" font-size="10">{BAR_A / 10:.0f} nm</text></svg></div>'
        f"<figcaption>{name} = {index} ({'zyx'[ra]}, {'zyx'[ca]})</figcaption></figure>"
    )


def _fmt(point: Sequence[float] | None) -> str:
    return "none" if point is None else "(" + ", ".join(f"{v:.0f}" for v in point) + ")"


def _card(i: int, case: Case, srcs: list[str]) -> str:
    buttons = "".join(
        f'<button type="button" data-decision="{d}">{d} ({k})</button>' for k, d in KEYS.items()
    )
    score = "none" if case.score is None else f"{case.score:.3f}"
    return (
        f'<section class="card" id="case-{i}" data-index="{i}"><div class="head">#{i + 1} '
        f"<b>{esc(case.tomo_id)}</b> - {esc(case.kind)} - score {score} - spacing {case.spacing_a:.2f} A - "
        f'<span class="cand">candidate {_fmt(case.candidate)}</span> - '
        f'<span class="label">label {_fmt(case.label)}</span></div>'
        + "".join(_views_row(srcs[3 * k : 3 * k + 3], case, c) for k, c in enumerate(centres(case)))
        + f"<div>{buttons}</div></section>"
    )


def _views_row(srcs: list[str], case: Case, centre: Sequence[float]) -> str:
    point = np.asarray(centre, dtype=np.float64)
    return f'<div class="views">{"".join(_view_svg(s, case, point, v) for s, v in zip(srcs, VIEWS))}</div>'


def write_review_page(
    out_dir: str | Path,
    cases: Sequence[Case],
    read_volume: Callable[[str], np.ndarray],
    title: str = "Label review",
) -> Path:
    """Write ``out_dir/index.html`` and the views beside it (``out_dir/views/<case>_<row><z|y|x>.png``).

    Args:
        out_dir: the page's folder (created).
        cases: the disagreements, in card order.
        read_volume: ``tomo_id -> uint8 (Z, Y, X)`` (each tomogram is read once, cases grouped by it).
        title: page title.

    Returns:
        The path of ``index.html``.
    """
    out = Path(out_dir)
    (out / "views").mkdir(parents=True, exist_ok=True)
    srcs: list[list[str]] = [[] for _ in cases]
    for tomo_id in dict.fromkeys(c.tomo_id for c in cases):
        volume = np.asarray(read_volume(tomo_id))
        for i, case in enumerate(cases):
            if case.tomo_id != tomo_id:
                continue
            for k, centre in enumerate(centres(case)):
                for name, axis, _ in VIEWS:
                    crop = view_crop(volume, np.asarray(centre, dtype=np.float64), axis, case.spacing_a)
                    Image.fromarray(crop, mode="L").save(out / "views" / f"{i}_{k}{name}.png")
                    srcs[i].append(f"views/{i}_{k}{name}.png")
    data = [asdict(c) for c in cases]
    page_id = hashlib.sha1(json.dumps(data).encode()).hexdigest()[:12]
    keys = ", ".join(f"<kbd>{k}</kbd> {d}" for k, d in KEYS.items())
    bar = (f'<div id="bar"><span id="progress"></span> | <button id="export" type="button">export CSV (e)'
           f'</button> | {keys}, <kbd>&larr;</kbd>/<kbd>&rarr;</kbd> previous/next | <span class="legend">'
           f'<span class="cand">&#9711; candidate</span><span class="label">&#9711; label</span> '
           f"circle: 1000 A sphere's cut; every view {VIEW_PX * A_PER_PX / 10:.0f} nm wide</span></div>")  # fmt: skip
    body = bar + json_script("cases", data) + "".join(_card(i, c, srcs[i]) for i, c in enumerate(cases))
    page = write_page(out / "index.html", f"{title} ({len(cases)} cases)", body, STYLE, SCRIPT)
    text = page.read_text(encoding="utf-8").replace("<body>", f'<body data-page-id="{page_id}">', 1)
    page.write_text(text, encoding="utf-8")
    return page
