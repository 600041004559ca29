"""The run report: one self-contained HTML page per prediction run (``predict --report DIR``, the demo).

Summary, per-stage timings, and with labels: precision / recall / F2, the per-tomogram table, a precision-recall
curve over thresholds with the chosen one marked, and the previews grouped as hits, misses and false positives.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from byu_motor.metric import fbeta
from byu_motor.report.page import data_uri, esc, figure_png, image, png_uri, table, write_page
from byu_motor.viz import HIT_RADIUS_A, outcome_of, require_matplotlib

Candidates = Mapping[str, Sequence[Sequence[float]]]
#: Preview groups, in page order: title and the outcomes in it.
GROUPS = (("Hits", ("hit",)), ("Misses", ("miss", "misplaced")), ("False positives", ("false positive",)),
          ("Others", ("true negative", "detected", "no detection")))  # fmt: skip


def counts_at(
    candidates: Candidates, truth: Mapping[str, np.ndarray], spacing: Mapping[str, float], threshold: float
) -> dict[str, Any]:
    """The competition's counts when each labelled tomogram predicts its best candidate if it scores >= threshold.

    A hit is a predicted point within 1000 A of any labelled motor; a misplaced prediction counts as a false
    negative only (the metric's rule). Returns ``tp, fp, fn, tn, misplaced, precision, recall, f2``.
    """
    tally = dict.fromkeys(("tp", "fp", "fn", "tn", "misplaced"), 0)
    for tomo_id, motors in truth.items():
        cands = candidates.get(tomo_id) or []
        outcome = outcome_of(list(cands[0]) if cands else None, motors, threshold, spacing[tomo_id])
        key = {"hit": "tp", "false positive": "fp", "true negative": "tn", "miss": "fn"}.get(outcome)
        if outcome == "misplaced":
            tally["misplaced"] += 1
            key = "fn"
        tally[key] += 1
    tp, fp, fn = tally["tp"], tally["fp"], tally["fn"]
    return {**tally, "precision": tp / (tp + fp) if tp + fp else 0.0, "recall": tp / (tp + fn) if tp + fn else 0.0,
            "f2": fbeta(tp, fp, fn)}  # fmt: skip


def pr_curve_png(candidates: Candidates, truth, spacing, threshold: float) -> bytes:
    """PNG: precision-recall over thresholds (every best score) and F2 against the threshold, chosen one marked."""
    plt = require_matplotlib()
    scores = sorted({float(c[0][3]) for t, c in candidates.items() if c and t in truth} | {float(threshold)})
    rows = [counts_at(candidates, truth, spacing, t) for t in scores]
    chosen = counts_at(candidates, truth, spacing, threshold)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    ax1.plot([r["recall"] for r in rows], [r["precision"] for r in rows], "-o", ms=3, label="thresholds")
    ax1.plot(
        [chosen["recall"]], [chosen["precision"]], "o", color="red", ms=9, label=f"chosen {threshold:.3f}"
    )
    ax1.set(xlabel="recall", ylabel="precision", xlim=(-0.02, 1.02), ylim=(-0.02, 1.02),
            title="precision-recall over thresholds")  # fmt: skip
    ax1.legend(loc="lower left", fontsize=8)
    for key in ("f2", "precision", "recall"):
        ax2.plot(scores, [r[key] for r in rows], label=key, drawstyle="steps-post")
    ax2.axvline(threshold, color="red", ls="--", label=f"chosen threshold {threshold:.3f}")
    ax2.set(xlabel="threshold (best score per tomogram)", ylabel="value", ylim=(-0.02, 1.02),
            title="F2, precision and recall against the threshold")  # fmt: skip
    ax2.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    return figure_png(fig)


def _key_values(summary: Mapping[str, Any]) -> tuple[list[list[Any]], list[tuple[str, Mapping[str, Any]]]]:
    """Scalar/list fields as ``[key, value]`` rows, and the dict fields (timings, levels, ...) apart."""
    rows, nested = [], []
    for key, value in summary.items():
        if isinstance(value, Mapping):
            nested.append((key, value))
        elif isinstance(value, (list, tuple)):
            rows.append([key, ", ".join(str(v) for v in value)])
        else:
            rows.append([key, value])
    return rows, nested


def _per_tomogram(candidates: Candidates, truth, spacing, threshold: float) -> list[list[Any]]:
    rows = []
    for tomo_id, motors in truth.items():
        cands = candidates.get(tomo_id) or []
        best = list(cands[0]) if cands else None
        dist = (
            float(np.linalg.norm(motors - np.asarray(best[:3]), axis=1).min() * spacing[tomo_id])
            if best is not None and len(motors)
            else None
        )
        rows.append([tomo_id, len(motors), ", ".join(f"({z:.0f}, {y:.0f}, {x:.0f})" for z, y, x in motors[:3]),
                     f"({best[0]:.0f}, {best[1]:.0f}, {best[2]:.0f})" if best else "", best[3] if best else None,
                     None if dist is None else round(dist), outcome_of(best, motors, threshold, spacing[tomo_id])])  # fmt: skip
    return rows


def _previews(
    preview_dir: Path, outcomes: Mapping[str, str], candidates: Candidates, limit: int | None
) -> str:
    """The preview PNGs of ``preview_dir`` embedded, grouped by outcome (:data:`GROUPS`); with ``limit``, only
    that many, the best-scoring tomograms first."""

    def best(path: Path) -> float:
        cands = candidates.get(path.stem) or []
        return -float(cands[0][3]) if cands else 0.0

    found = sorted(preview_dir.glob("*.png"), key=lambda p: (best(p), p.stem))[:limit]
    pngs = {p.stem: p for p in sorted(found)}
    parts = []
    for title, kinds in GROUPS:
        members = [t for t in pngs if outcomes.get(t, "no detection") in kinds]
        if not members:
            continue
        parts.append(f"<h3>{esc(title)} ({len(members)})</h3>")
        parts += [image(data_uri(pngs[t]), f"preview of {t}", f"{t}: {outcomes.get(t, '')}") for t in members]
    return "\n".join(parts) or '<p class="muted">no previews were written</p>'


def write_run_report(
    out_dir: str | Path,
    summary: Mapping[str, Any],
    candidates: Candidates | None = None,
    labels_csv: str | Path | None = None,
    preview_dir: str | Path | None = None,
    title: str = "byu_motor prediction report",
    max_previews: int | None = None,
) -> Path:
    """Write ``out_dir/index.html``: the run report (no network; images embedded as data URIs).

    Args:
        out_dir: the report folder (created).
        summary: the run summary (``df.attrs["summary"]`` of :func:`byu_motor.infer.run_prediction`, or a
            result.json): scalars in one table, each dict field (per-stage timings, levels) in its own.
        candidates: ``{tomo_id: [(z, y, x, score), ...]}`` in original voxels, best first.
        labels_csv: labels (``train_labels.csv`` or a solution CSV with ``Voxel spacing``) of the predicted
            tomograms: adds the scores, the per-tomogram table and the precision-recall curve.
        preview_dir: folder of ``<tomo_id>.png`` previews to embed, grouped by outcome.
        title: the page title.
        max_previews: embed at most this many previews, the best-scoring tomograms first (``None``: all).

    Returns:
        The path of ``index.html``.
    """
    from byu_motor.report.candidates import read_truth

    candidates = candidates or {}
    threshold = float(summary.get("threshold", 0.5) or 0.5)
    rows, nested = _key_values(summary)
    body = ["<h2>Run summary</h2>", table(["field", "value"], rows, "summary")]
    for key, value in nested:
        body += [f"<h2>{esc(key)}</h2>", table([key, "value"], [[k, v] for k, v in value.items()])]
    outcomes: dict[str, str] = {}
    for tomo_id, cands in candidates.items():
        outcomes[tomo_id] = outcome_of(list(cands[0]) if cands else None, None, threshold, 1.0)
    if labels_csv is not None:
        truth, spacing = read_truth(labels_csv)
        truth = {t: m for t, m in truth.items() if t in candidates}
        c = counts_at(candidates, truth, spacing, threshold)
        body += [f"<h2>Scores at threshold {threshold:.4f} ({len(truth)} labelled tomograms)</h2>",
                 table(["F2", "precision", "recall", "TP", "FP", "FN", "TN", "misplaced"],
                       [[c["f2"], c["precision"], c["recall"], c["tp"], c["fp"], c["fn"], c["tn"], c["misplaced"]]],
                       "scores"),
                 image(png_uri(pr_curve_png(candidates, truth, spacing, threshold)), "precision-recall curve"),
                 "<h2>Per tomogram</h2>",
                 table(["tomo_id", "motors", "labelled (z, y, x)", "best (z, y, x)", "best score",
                        f"distance A (hit <= {HIT_RADIUS_A:.0f})", "outcome"],
                       _per_tomogram(candidates, truth, spacing, threshold), "tomograms")]  # fmt: skip
        for tomo_id, motors in truth.items():
            cands = candidates.get(tomo_id) or []
            outcomes[tomo_id] = outcome_of(
                list(cands[0]) if cands else None, motors, threshold, spacing[tomo_id]
            )
    if preview_dir is not None:
        body += ["<h2>Previews</h2>", _previews(Path(preview_dir), outcomes, candidates, max_previews)]
    return write_page(Path(out_dir) / "index.html", title, "\n".join(body))
