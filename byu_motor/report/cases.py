"""Disagreements between candidates and labels, by the competition's 1000 A rule: the cases a reviewer decides."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from byu_motor.viz import HIT_RADIUS_A

KINDS = ("fp", "missed", "misplaced")


@dataclass(frozen=True)
class Case:
    """One disagreement. Points are ``(z, y, x)`` in original voxels (``None`` when absent).

    Candidates above the floor are matched one to one, best first, each to its nearest label within 1000 A
    not yet matched (so a second motor next to a labelled one is found). ``kind``: ``fp`` (a candidate above
    the floor left unmatched while every label is matched), ``missed`` (a label
    with no candidate above the floor within 1000 A) or ``misplaced`` (a labelled tomogram whose best unmatched
    candidate is farther than 1000 A from its unmatched label: both are shown).
    """

    tomo_id: str
    kind: str
    spacing_a: float
    candidate: tuple[float, float, float] | None = None
    score: float | None = None
    label: tuple[float, float, float] | None = None

    @property
    def centre(self) -> tuple[float, float, float]:
        """The point the card's views go through: the candidate, else the label."""
        return self.candidate or self.label  # type: ignore[return-value]


def _point(values: Sequence[float]) -> tuple[float, float, float]:
    return (float(values[0]), float(values[1]), float(values[2]))


def tomogram_cases(
    tomo_id: str, cands: Sequence[Sequence[float]], motors: np.ndarray, spacing_a: float, floor: float
) -> list[Case]:
    """The cases of one tomogram: ``cands`` ``(z, y, x, score)`` best first, ``motors`` ``(n, 3)`` voxels."""
    r_vox = HIT_RADIUS_A / spacing_a
    above = [c for c in cands if c[3] >= floor]
    open_labels = [np.asarray(m, dtype=np.float64) for m in motors]
    unmatched = []
    matched: set[int] = set()
    for cand in above:  # one candidate per label, best first: a second peak near a matched label is a case
        dist = [float(np.linalg.norm(m - np.asarray(cand[:3]))) for m in open_labels]
        near = [i for i, d in enumerate(dist) if d <= r_vox and i not in matched]
        if near:
            matched.add(min(near, key=dist.__getitem__))
        else:
            unmatched.append(cand)
    left = [m for i, m in enumerate(open_labels) if i not in matched]
    out = []
    for cand in unmatched:
        if left:  # the competition's misplaced prediction: paired with the nearest label still unmatched
            j = int(np.argmin([np.linalg.norm(m - np.asarray(cand[:3])) for m in left]))
            out.append(
                Case(tomo_id, "misplaced", spacing_a, _point(cand), float(cand[3]), _point(left.pop(j)))
            )
        else:
            out.append(Case(tomo_id, "fp", spacing_a, _point(cand), float(cand[3])))
    out += [Case(tomo_id, "missed", spacing_a, label=_point(m)) for m in left]
    return out


def find_cases(
    candidates: Mapping[str, Sequence[Sequence[float]]],
    truth: Mapping[str, np.ndarray],
    spacing: Mapping[str, float],
    floor: float = 0.5,
) -> list[Case]:
    """Every disagreement of the labelled tomograms that have candidates (a tomogram with no entry in
    ``candidates`` was not predicted and gives none), in ``truth``'s order.

    Args:
        candidates: ``{tomo_id: [(z, y, x, score), ...]}`` original voxels, best first.
        truth: ``{tomo_id: (n, 3) motors}`` original voxels.
        spacing: ``{tomo_id: spacing in A}``.
        floor: candidates scoring below it are ignored (a label with none above it is ``missed``).
    """
    out: list[Case] = []
    for tomo_id, motors in truth.items():
        if tomo_id in candidates:
            out += tomogram_cases(tomo_id, candidates[tomo_id], motors, float(spacing[tomo_id]), floor)
    return out
