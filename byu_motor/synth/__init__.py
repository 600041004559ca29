"""Synthetic cryo-ET tomograms with known flagellar motors, written in the competition layout.

A tomogram is rendered as a density volume (dense = positive): rod-shaped cells with a double membrane
whose pole carries the motors (bell-shaped, oriented along the membrane normal, often with a flagellum),
plus distractors (ribosome-like blobs, storage granules, vesicles, loose flagella, rare ring-only
decoys, gold fiducials with streaks). Then the missing wedge (z elongation and blur), a CTF-like
band-pass, correlated noise scaled by ``difficulty``, ice gradient and reconstruction edge bands, and a
per-tomogram percentile stretch to uint8 with dense = dark. Distributions of shapes, spacings, motor
counts and positions are those of the real train set (:mod:`byu_motor.synth.spec`).

Modules: ``spec`` (what a tomogram holds), ``cells``, ``shapes`` and ``distractors`` (what is drawn),
``imaging`` (blur, noise, grey values), ``tomogram`` (one volume), ``dataset`` (a dataset on disk),
``explain`` (which recorded look-alike a wrong prediction hit).

Example:
    >>> from byu_motor.synth import generate_dataset
    >>> generate_dataset("synth_data", n_train=8, n_test=4, scale=0.25, seed=0)
"""

from __future__ import annotations

from byu_motor._lazy import lazy_exports

_EXPORTS = {
    "ABLATABLE": "distractors",
    "ablation_kinds": "distractors",
    "CellSpec": "cells",
    "SynthSpec": "spec",
    "TEST_SPACING_A": "spec",
    "cells_for_motors": "spec",
    "draw_spec": "spec",
    "sample_tomogram_spec": "spec",
    "generate_tomogram": "tomogram",
    "generate_dataset": "dataset",
    "drop_labels": "labels",
    "KINDS": "explain",
    "error_sources": "explain",
    "explain_point": "explain",
    "format_sources": "explain",
    "lookalikes_above": "explain",
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
