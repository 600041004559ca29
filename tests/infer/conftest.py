"""Fixtures shared by the runner and resume tests."""

from __future__ import annotations

import json

import pytest


@pytest.fixture()
def ckpts(tmp_path) -> list[str]:
    """Two stand-in checkpoint files (JSON with a calibrated threshold, read by ``fake_inspector``)."""
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    a.write_text(json.dumps({"threshold": 0.6}))
    b.write_text(json.dumps({"threshold": 0.8}))
    return [str(a), str(b)]
