"""Preview figures of detections (matplotlib, optional extra ``viz``): three orthogonal slices through each drawn
point, the heatmap's projection with a colour bar, a legend, a scale bar in nm and a caption line.

The drawing records every mark it makes (:class:`Mark`: which point, in which panel, on which slice), so tests
check what was drawn without reading pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from byu_motor.data.grid import Grid

HIT_RADIUS_A = 1000.0  # the metric's hit distance
#: Mark kind -> (colour, legend text). The legend is built from these, so its colours match the marks.
STYLES: dict[str, tuple[str, str]] = {
    "best": ("#ff2020", "best candidate, score >= threshold"),
    "below": ("#ff9900", "best candidate, score < threshold"),
    "other": ("#ffee00", "other candidates"),
    "truth": ("#22dd22", "truth (label)"),
}
#: The three views: name, normal axis (z=0, y=1, x=2), the (row, column) axes shown.
VIEWS: tuple[tuple[str, int, tuple[int, int]], ...] = (("z", 0, (1, 2)), ("y", 1, (0, 2)), ("x", 2, (0, 1)))
AXIS_NAMES = "zyx"
MAX_IMAGE_PX = 400  # slices are block-averaged to at most this many pixels a side before drawing
INSTALL_HINT = (
    "matplotlib is needed for previews and reports: pip install 'byu_motor[viz]' (or matplotlib>=3.7)"
)


def require_matplotlib() -> Any:
    """``matplotlib.pyplot`` on the Agg backend; raises ImportError with the install command when missing."""
    try:
        import matplotlib
    except ImportError as err:
        raise ImportError(INSTALL_HINT) from err
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@dataclass(frozen=True)
class Mark:
    """One drawn point: ``kind`` (a key of :data:`STYLES`), the point ``zyx`` in original voxels, the panel
    (``row``, ``view`` in ``"zyx"``) and the ``slice`` index (original voxels along the view's axis)."""

    kind: str
    zyx: tuple[float, float, float]
    row: int
    view: str
    slice: int


@dataclass
class Preview:
    """A drawn preview: the matplotlib ``figure``, its ``marks``, the ``outcome`` word and the ``caption``."""

    figure: Any
    marks: list[Mark] = field(default_factory=list)
    outcome: str = ""
    caption: str = ""
    path: Path | None = None


def outcome_of(
    best: Sequence[float] | None, truth: np.ndarray, threshold: float | None, spacing_a: float
) -> str:
    """``hit``, ``miss``, ``misplaced``, ``false positive`` or ``true negative`` (``truth`` ``(n, 3)`` voxels);
    without a threshold a best candidate counts as predicted; ``detected``/``no detection`` without truth."""
    predicted = best is not None and (threshold is None or best[3] >= threshold)
    if truth is None:
        return "detected" if predicted else "no detection"
    if not len(truth):
        return "false positive" if predicted else "true negative"
    if not predicted:
        return "miss"
    dist = np.linalg.norm(truth - np.asarray(best[:3], dtype=np.float64), axis=1).min()
    return "hit" if dist * spacing_a <= HIT_RADIUS_A else "misplaced"


def _points(
    candidates: Sequence[Sequence[float]], truth: np.ndarray, threshold: float | None
) -> list[tuple[str, np.ndarray]]:
    """``(kind, zyx)`` of everything drawn: the best candidate, the others, the truth."""
    out = []
    for i, cand in enumerate(candidates):
        kind = "other" if i else ("best" if threshold is None or cand[3] >= threshold else "below")
        out.append((kind, np.asarray(cand[:3], dtype=np.float64)))
    out += [("truth", t) for t in truth]
    return out


def _centres(candidates: Sequence[Sequence[float]], truth: np.ndarray, shape: tuple[int, ...], r_vox: float):
    """The points a row of views goes through: the best candidate, then each truth motor not near it."""
    centres: list[np.ndarray] = []
    if len(candidates):
        centres.append(np.asarray(candidates[0][:3], dtype=np.float64))
    for t in truth:
        if all(np.linalg.norm(t - c) > r_vox / 2 for c in centres):
            centres.append(t)
    if not centres:
        centres.append((np.asarray(shape, dtype=np.float64) - 1) / 2)
    return centres[:3]


def _scale_bar(ax: Any, width_vox: float, spacing_a: float) -> None:
    """A white bar of a round number of nm in the panel's lower left (about a fifth of its width)."""
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    target_nm = width_vox * spacing_a / 10 / 5
    nm = max(s for s in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000) if s <= max(target_nm, 1))
    bar = AnchoredSizeBar(ax.transData, nm * 10 / spacing_a, f"{nm} nm", "lower left", pad=0.3, color="white",
                          frameon=False, size_vertical=max(1.0, width_vox / 100))  # fmt: skip
    ax.add_artist(bar)


def _block_mean(image: np.ndarray, max_px: int = MAX_IMAGE_PX) -> np.ndarray:
    """``image`` averaged over ``f x f`` blocks, ``f`` the smallest factor that brings its longest side to at
    most ``max_px`` (a figure panel shows fewer pixels than that; matplotlib resamples big slices slowly)."""
    f = max(1, -(-max(image.shape) // max_px))
    if f == 1:
        return image
    h, w = (image.shape[0] // f) * f, (image.shape[1] // f) * f
    return image[:h, :w].reshape(h // f, f, w // f, f).mean(axis=(1, 3))


def _draw_view(ax, volume, centre, view, row, points, spacing_a, r_vox, marks) -> None:
    """One slice through ``centre`` with every point whose 1000 A sphere cuts it (circle = the cut)."""
    name, axis, (ra, ca) = view
    index = int(np.clip(round(centre[axis]), 0, volume.shape[axis] - 1))
    image = np.take(volume, index, axis=axis)
    small = _block_mean(image)
    f = image.shape[0] / small.shape[0], image.shape[1] / small.shape[1]
    extent = (-0.5, small.shape[1] * f[1] - 0.5, small.shape[0] * f[0] - 0.5, -0.5)  # voxel axes
    ax.imshow(small, cmap="gray", vmin=0, vmax=255, extent=extent, interpolation="nearest")
    ax.set_title(f"{name} = {index}  ({AXIS_NAMES[ra]}, {AXIS_NAMES[ca]})", fontsize=9)
    ax.set_xlabel(f"{AXIS_NAMES[ca]} (voxels)", fontsize=8)
    ax.set_ylabel(f"{AXIS_NAMES[ra]} (voxels)", fontsize=8)
    ax.tick_params(labelsize=7)
    for kind, p in points:
        d = abs(p[axis] - index)
        if d > r_vox:
            continue
        colour = STYLES[kind][0]
        if kind == "other":
            ax.plot(p[ca], p[ra], "+", color=colour, ms=8, mew=1.5)
        else:
            ax.add_patch(_circle((p[ca], p[ra]), float(np.sqrt(r_vox**2 - d**2)), colour))
            ax.plot(p[ca], p[ra], "x" if kind == "truth" else "+", color=colour, ms=6)
        marks.append(Mark(kind, (float(p[0]), float(p[1]), float(p[2])), row, name, index))
    _scale_bar(ax, image.shape[1], spacing_a)
    ax.set_xlim(-0.5, image.shape[1] - 0.5)
    ax.set_ylim(image.shape[0] - 0.5, -0.5)


def _circle(xy: tuple[float, float], radius: float, colour: str) -> Any:
    from matplotlib.patches import Circle

    return Circle(xy, radius, fill=False, edgecolor=colour, linewidth=1.5)


def _heatmap_panel(ax, fig, heatmap, heatmap_grid, original, points) -> None:
    """The heatmap's maximum over z, sampled on the original (y, x) voxels, with a colour bar."""
    proj = np.asarray(heatmap, dtype=np.float32).reshape(-1, *np.shape(heatmap)[-2:]).max(axis=0)
    index = []
    step = max(1, -(-max(original.shape[1:]) // MAX_IMAGE_PX))  # sample every step-th voxel
    for axis in (1, 2):
        orig = np.arange(0, original.shape[axis], step, dtype=np.float64)
        cell = (orig + 0.5) * (original.spacing_a[axis] / heatmap_grid.spacing_a[axis]) - 0.5
        index.append(np.clip(np.rint(cell).astype(np.int64), 0, proj.shape[axis - 1] - 1))
    extent = (-0.5, len(index[1]) * step - 0.5, len(index[0]) * step - 0.5, -0.5)  # voxel axes
    im = ax.imshow(
        proj[np.ix_(*index)], cmap="inferno", vmin=0, vmax=1, extent=extent, interpolation="nearest"
    )
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="probability")
    for kind, p in points:
        ax.plot(p[2], p[1], "+" if kind != "truth" else "x", color=STYLES[kind][0], ms=7, mew=1.5)
    ax.set_title("heatmap, max over z  (y, x)", fontsize=9)
    ax.set_xlabel("x (voxels)", fontsize=8)
    ax.tick_params(labelsize=7)


def draw_preview(
    volume: np.ndarray,
    candidates: Sequence[Sequence[float]],
    heatmap: np.ndarray | None = None,
    heatmap_grid: Grid | None = None,
    truth: np.ndarray | Sequence[Sequence[float]] | None = None,
    title: str = "",
    spacing_a: float | None = None,
    threshold: float | None = None,
    width_px: int = 1200,
) -> Preview:
    """Draw a preview: one row of (z, y, x) slices through each drawn centre, plus the heatmap panel.

    Centres: the best candidate, then every truth motor farther than 500 A from it (so a missed motor is drawn
    on its own slices), at most three rows; the middle of the volume when there is neither. A point is marked
    on a slice when the metric's 1000 A sphere around it cuts the slice (the circle drawn is that cut).

    Args:
        volume: uint8 ``(Z, Y, X)``.
        candidates: ``(z, y, x, score)`` in original voxels, best first.
        heatmap: probabilities ``(D, H, W)`` on ``heatmap_grid`` (same physical volume); ``None``: no panel.
        heatmap_grid: the heatmap's grid.
        truth: ``(n, 3)`` motors ``(z, y, x)`` in original voxels; ``None``: unknown.
        title: the tomogram's name (caption).
        spacing_a: the tomogram's spacing in A; ``None``: from ``heatmap_grid``'s y extent (else 10 A).
        threshold: the detection threshold (colours the best candidate, decides the outcome).
        width_px: figure width in pixels (at 100 dpi).

    Returns:
        The :class:`Preview` (figure, marks, outcome, caption).
    """
    plt = require_matplotlib()
    volume = np.asarray(volume)
    if volume.ndim != 3:
        raise ValueError(f"draw_preview expects a (Z, Y, X) volume, got shape {volume.shape}")
    if spacing_a is None:
        spacing_a = heatmap_grid.extent_a[1] / volume.shape[1] if heatmap_grid is not None else 10.0
    truth_arr = None if truth is None else np.asarray(truth, dtype=np.float64).reshape(-1, 3)
    known = truth_arr if truth_arr is not None else np.zeros((0, 3))
    r_vox = HIT_RADIUS_A / float(spacing_a)
    points = _points(candidates, known, threshold)
    centres = _centres(candidates, known, volume.shape, r_vox)
    best = list(candidates[0]) if len(candidates) else None
    outcome = outcome_of(best, truth_arr, threshold, float(spacing_a))
    score = f"{best[3]:.3f}" if best is not None else "none"
    thr = f"{threshold:.3f}" if threshold is not None else "none"
    caption = (
        f"{title}  |  spacing {spacing_a:.1f} A  |  best score {score}  |  threshold {thr}  |  {outcome}"
    )

    n_cols = 3 + (heatmap is not None)
    fig, axes = plt.subplots(len(centres), n_cols, figsize=(width_px / 100, 3.3 * len(centres) + 1.0),
                             dpi=100, squeeze=False)  # fmt: skip
    marks: list[Mark] = []
    for row, centre in enumerate(centres):
        for col, view in enumerate(VIEWS):
            _draw_view(axes[row, col], volume, centre, view, row, points, float(spacing_a), r_vox, marks)
        if heatmap is not None:
            if row == 0:
                original = Grid(volume.shape, spacing_a)
                _heatmap_panel(axes[0, 3], fig, heatmap, heatmap_grid or original, original, points)
            else:
                axes[row, 3].axis("off")
    _legend(fig, {m.kind for m in marks} | {k for k, _ in points})
    fig.suptitle(caption, fontsize=10, y=0.995)
    fig.tight_layout(rect=(0, 0.05, 1, 0.97))
    return Preview(fig, marks, outcome, caption)


def _legend(fig: Any, kinds: set[str]) -> None:
    """One legend entry per kind drawn, in the kind's colour, plus the circle's meaning."""
    from matplotlib.lines import Line2D

    handles = [
        Line2D(
            [], [], color=colour, marker="+" if kind == "other" else "o", mfc="none", ls="", ms=9, label=text
        )
        for kind, (colour, text) in STYLES.items()
        if kind in kinds
    ]
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=len(handles) + 1, fontsize=8, frameon=False,
                   title="circle: cut of the 1000 A scoring sphere", title_fontsize=8)  # fmt: skip


def save_preview(path: str | Path, volume: np.ndarray, candidates: Sequence[Sequence[float]], *args: Any,
                 **kwargs: Any) -> Preview:  # fmt: skip
    """Draw with :func:`draw_preview` (same arguments) and write the PNG to ``path`` (folders created).

    Returns:
        The :class:`Preview` with ``path`` set; its figure is closed.
    """
    plt = require_matplotlib()
    preview = draw_preview(volume, candidates, *args, **kwargs)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    preview.figure.savefig(path, format="png", dpi=100)
    plt.close(preview.figure)
    preview.path = path
    return preview
