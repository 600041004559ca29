"""Each package's public names resolve, and importing the light packages pulls in no torch."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

PACKAGES = [
    "byu_motor.data",
    "byu_motor.synth",
    "byu_motor.postprocess",
    "byu_motor.models",
    "byu_motor.metric",
]


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_resolves(package):
    module = importlib.import_module(package)
    assert len(set(module.__all__)) == len(module.__all__)
    for name in module.__all__:
        assert getattr(module, name) is not None, f"{package}.{name}"
        assert name in dir(module)


def test_the_main_entry_points_are_exported():
    from byu_motor.data import Grid, read_labels, read_tomogram
    from byu_motor.data.grid import Grid as GridFromModule
    from byu_motor.models import create_model, load_checkpoint, save_checkpoint
    from byu_motor.postprocess import best_threshold, decode_peaks
    from byu_motor.synth import (
        TEST_SPACING_A,
        error_sources,
        format_sources,
        generate_dataset,
        generate_tomogram,
    )

    assert Grid is GridFromModule
    assert all(
        callable(f)
        for f in (read_labels, read_tomogram, create_model, load_checkpoint, save_checkpoint, decode_peaks)
    )
    assert all(callable(f) for f in (best_threshold, error_sources, format_sources, generate_dataset))
    assert callable(generate_tomogram) and TEST_SPACING_A == 13.1


@pytest.mark.parametrize("package", ["byu_motor.data", "byu_motor.synth", "byu_motor.postprocess"])
def test_an_unknown_name_raises_attribute_error(package):
    module = importlib.import_module(package)
    with pytest.raises(AttributeError, match="no_such_name"):
        module.no_such_name  # noqa: B018


def test_importing_the_light_packages_imports_no_torch():
    code = (
        "import sys, byu_motor.data, byu_motor.synth, byu_motor.postprocess, byu_motor.metric; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
