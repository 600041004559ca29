"""Two-process (gloo) training under torchrun matches the single-process run and saves one set of checkpoints."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from byu_motor.cli import main as cli_main
from tests.train.test_engine import write_tiny_dataset

REPO = Path(__file__).resolve().parents[2]
SETS = [
    "data.spacing_a=64",
    "data.patch_size=16,32,32",
    "train.batch_size=2",
    "train.num_workers=0",
    "train.steps=4",
    "train.val_every=2",
    "train.warmup_steps=1",
    "train.log_every=1",
    "train.fold=0",
    "train.n_folds=4",
    "infer.patch_size=16,32,32",
    "infer.overlap=0",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _args(data: Path, out: Path) -> list[str]:
    args = ["train", "--data", str(data), "--preset", "tiny", "--out", str(out), "--no-progress"]
    for item in SETS:
        args += ["--set", item]
    return args


def _run_files(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir())


@pytest.mark.slow
def test_two_process_gloo_matches_single_process(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = write_tiny_dataset(tmp_path / "data")
    single, multi = tmp_path / "single", tmp_path / "multi"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert cli_main(_args(data, single)) == 0
    finally:
        torch.set_num_threads(threads)
    printed = capsys.readouterr().out
    assert "best F2:" in printed and str(single / "best.pt") in printed

    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        "-m",
        "byu_motor",
        *_args(data, multi),
    ]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=80)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("best F2:") == 1  # only rank 0 reports

    expected = ["best.pt", "config.json", "folds.csv", "last.pt", "metrics.jsonl", "resume.pt"]
    assert _run_files(single) == expected
    assert _run_files(multi) == expected  # exactly one set, no per-rank or temporary files
    a = torch.load(single / "resume.pt", weights_only=True)
    b = torch.load(multi / "resume.pt", weights_only=True)
    assert a["step"] == b["step"] == 4
    assert a["model"].keys() == b["model"].keys()
    rows = [json.loads(x) for x in (multi / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["event"] == "train"] == [1, 2, 3, 4]  # logged once, not per rank
    assert [r["step"] for r in rows if r["event"] == "val"] == [2, 4]
    assert (multi / "folds.csv").read_text() == (single / "folds.csv").read_text()
