"""Post-processing: peak decoding, candidate steps, point fusion, envelope context, thresholds, submission rows.

Candidates are ``(z, y, x, score)`` in original voxels, best first. The names below are imported from their
modules on first use.
"""

from __future__ import annotations

from byu_motor._lazy import lazy_exports

_EXPORTS = {
    "decode_peaks": "peaks",
    "drop_border": "peaks",
    "find_peaks": "peaks",
    "nms_kernel_cells": "peaks",
    "fuse_points": "fusion",
    "lift_points": "fusion",
    "ContextGateSettings": "context",
    "apply_context_gate": "context",
    "envelope_contrast": "context",
    "envelope_dipole": "context",
    "gate_scores": "context",
    "Step": "steps",
    "build_steps": "steps",
    "list_steps": "steps",
    "register_step": "steps",
    "run_steps": "steps",
    "best_threshold": "threshold",
    "f2_at": "threshold",
    "max_off_motor_score": "threshold",
    "quantile_sweep": "threshold",
    "quantile_threshold": "threshold",
    "resampled_fixed_sweep": "threshold",
    "resampled_quantile_sweep": "threshold",
    "submission_from_candidates": "threshold",
    "top_scores": "threshold",
    "SubmissionError": "submission",
    "check_submission": "submission",
    "row_for": "submission",
    "rows_from_candidates": "submission",
    "write_submission": "submission",
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
