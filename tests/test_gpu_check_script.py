"""``bench/gpu_check.sh`` works before a GPU is ever lent: its CPU dry run prints every figure the device check
is for, and the whole check keeps to its time budget (a lent machine's time is short)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: the dry run of the README / the script's header: tiny member, a 0.1-scale tomogram, a small loader check
DRY_RUN = {
    "GPU_CHECK_DEVICE": "cpu",
    "GPU_CHECK_SCALE": "0.1",
    "GPU_CHECK_THROUGHPUT_PRESET": "tiny",
    "GPU_CHECK_LOADER_PRESET": "tiny",
    "GPU_CHECK_LOADER_ARGS": "--patch 32 64 64 --volume 40 96 96 --workers 1 2",
    "GPU_CHECK_ENSEMBLE_TINY": "1",  # the seed recipe's five members as tiny networks
    "GPU_CHECK_LOADER_PRESET_2D": "tiny_2d",
    "GPU_CHECK_LOADER_ARGS_2D": "--patch 3 64 64 --volume 40 96 96 --workers 1",
    "GPU_CHECK_SHAPE": "80 280 210",
}


def run_check(tmp_path: Path, *args: str, **env: str) -> tuple[subprocess.CompletedProcess, float]:
    """Run the script as a user would (``bash bench/gpu_check.sh``) with this interpreter's tools on PATH."""
    # no wheels unless a test builds them: a stale wheel left in the checkout's wheels/ must not be tested
    full_env = {**os.environ, **DRY_RUN, "GPU_CHECK_WHEELS": str(tmp_path / "no-wheels"), **env}
    full_env["GPU_CHECK_DIR"] = str(tmp_path / "work")
    full_env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{full_env.get('PATH', '')}"
    t0 = time.monotonic()
    proc = subprocess.run(
        ["bash", "bench/gpu_check.sh", *args],
        cwd=REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return proc, time.monotonic() - t0


def test_dry_run_from_the_wheel_prints_every_figure(tmp_path: Path) -> None:
    # as on a lent device: byu_motor installed offline from its wheel, not imported from the source tree
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            wheels,
            REPO,
        ],
        check=True,
        timeout=300,
    )
    proc, _ = run_check(tmp_path, GPU_CHECK_WHEELS=str(wheels))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert f"offline install from {wheels}/" in out
    assert str(tmp_path / "work" / "site" / "byu_motor") in out  # the installed copy was imported
    assert "stage seconds per tomogram" in out
    assert "end-to-end / forward" in out
    assert "projection: seed ensemble" in out and " h on one such device" in out
    # each of the seed recipe's members timed on the projected shape, then the ensemble's hours
    members = [
        "seed_resnext50",
        "seed_densenet121",
        "seed_x3d_m",
        "seed_maxvit_tiny_2d",
        "seed_coat_lite_medium_2d",
    ]
    timed = re.findall(r"^\s+(\S+)\s+\d+ window x view passes\s+forward", out, flags=re.M)
    assert timed == members
    assert "projection: this ensemble on 900 tomograms of (80, 280, 210)" in out
    # the seed loaders' checks against the members' training steps: 3D windows, then 2D slice triplets
    assert re.findall(r"^(tiny|tiny_2d) at \S+, CPU", out, flags=re.M) == ["tiny", "tiny_2d"]
    assert out.count("loader / model") == 3  # 2 worker counts for the 3D loader, 1 for the 2D one
    assert "of a 280 s budget" in out and "skipped" not in out and "failed" not in out


def test_budget_cuts_the_check_short_and_says_what_was_left_out(tmp_path: Path) -> None:
    proc, seconds = run_check(tmp_path, GPU_CHECK_BUDGET_S="12")
    out = proc.stdout + proc.stderr
    # the first step (writing the tomogram) is cut or the ones after it are skipped; either way the run says so
    assert "of a 12 s budget" in out, out[-3000:]
    assert "skipped for lack of budget:" in out
    assert "seed loader" in out.split("skipped for lack of budget:")[1]
    assert seconds < 12 + 60  # the budget, plus the imports and start-up that are not budgeted


@pytest.mark.slow
def test_the_full_check_without_the_demos_runs_every_step(tmp_path: Path) -> None:
    proc, _ = run_check(
        tmp_path,
        "tiny",  # the preset predicted end to end and trained
        GPU_CHECK_FULL="1",
        GPU_CHECK_DEMO_ARGS="skip",
        GPU_CHECK_SCALE="0.25",
        GPU_CHECK_TRAIN_STEPS="10",
        GPU_CHECK_LAYOUT_PATCH="16 32 32",
        GPU_CHECK_LAYOUT_STEPS="1",
        GPU_CHECK_LAYOUT_PRESETS="tiny,x3d_m_fpn_s16",
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "of a 590 s budget: everything" in out and "failed" not in out
    assert "steady state:" in out and "h for 900 tomograms on this GPU" in out  # byu-motor predict
    assert re.search(r"^x3d_m_fpn_s16 .* \d+\.\d+\s*$", out, flags=re.M)  # the layout table
    assert "projected for the preset's" in out  # the short training run
