"""Kaggle delivery: notebooks match their sources, and a rehearsal of the offline install, the infer notebook and a continued train notebook."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
KERNELS = REPO / "kernels"


def test_notebooks_match_their_sources():
    out = subprocess.run(
        [sys.executable, str(KERNELS / "build_notebooks.py"), "--check"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_drift_is_detected(tmp_path):
    import jupytext
    import nbformat

    spec = importlib.util.spec_from_file_location("build_notebooks", KERNELS / "build_notebooks.py")
    build_notebooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build_notebooks)
    src = KERNELS / "byu-motor-infer" / "byu-motor-infer.py"
    nb = nbformat.read(src.with_suffix(".ipynb"), as_version=4)
    assert build_notebooks.cells(nb) == build_notebooks.cells(jupytext.read(src))
    nb.cells[-1].source += "\nprint('edited in the notebook only')"
    assert build_notebooks.cells(nb) != build_notebooks.cells(jupytext.read(src))


@pytest.mark.parametrize("name", ["byu-motor-infer", "byu-motor-train"])
def test_kernel_metadata_is_offline_gpu(name):
    meta = json.loads((KERNELS / name / "kernel-metadata.json").read_text())
    assert meta["enable_internet"] is False and meta["enable_gpu"] is True
    assert meta["code_file"] == f"{name}.ipynb" and (KERNELS / name / meta["code_file"]).exists()
    assert "byu-locating-bacterial-flagellar-motors-2025" in meta["competition_sources"]
    assert any(s.endswith("/byu-motor-wheels") for s in meta["dataset_sources"])


def _base_image_venv(tmp_path: Path) -> Path:
    """A fresh venv that sees this environment's packages except byu_motor and monai (the "Kaggle image")."""
    venv = tmp_path / "kaggle-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    base = tmp_path / "base-site"
    base.mkdir()
    skip = ("byu_motor", "monai", "__editable__", "_byu_motor", "pip")
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if entry.name.lower().startswith(skip) or entry.suffix == ".pth":
            continue
        (base / entry.name).symlink_to(entry)
    site = next((venv / "lib").glob("python*/site-packages"))
    # The image's setuptools (torch requires a recent one), not the one bundled with the new venv.
    for own in site.iterdir():
        if own.name.lower().startswith(("setuptools", "_distutils_hack", "distutils-precedence")):
            shutil.rmtree(own) if own.is_dir() else own.unlink()
    (site / "_kaggle_image.pth").write_text(str(base) + "\n")
    return venv


@pytest.mark.slow
def test_offline_install_and_notebooks(tmp_path, monkeypatch):
    import nbclient
    import nbformat
    import numpy
    import torch

    from byu_motor.infer.recipe import read_recipe_file, resolve_infer
    from byu_motor.infer.runner import run_prediction
    from byu_motor.metric import score
    from byu_motor.models.checkpoint import read_checkpoint_config
    from byu_motor.presets import get_preset
    from byu_motor.synth import generate_dataset
    from byu_motor.train.engine import train

    # 1. wheels for this machine: the constraints are this environment's own versions.
    constraints = tmp_path / "constraints.txt"
    constraints.write_text(f"torch=={torch.__version__.split('+')[0]}\nnumpy=={numpy.__version__}\n")
    wheels = tmp_path / "wheels"
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    env = dict(os.environ, PYTHON=sys.executable)
    subprocess.run(
        ["bash", str(REPO / "build_wheels.sh"), "--python", py, "--constraints", str(constraints),
         "--out", str(wheels)],
        check=True, env=env, cwd=REPO,
    )  # fmt: skip
    assert sorted(p.name.split("-")[0] for p in wheels.glob("*.whl")) == ["byu_motor", "monai"]

    # 2. a fresh "Kaggle image" venv without byu_motor/monai, then the notebook's offline install.
    venv = _base_image_venv(tmp_path)
    vpy = venv / "bin" / "python"
    probe = subprocess.run([str(vpy), "-c", "import monai"], capture_output=True)
    assert probe.returncode != 0, "monai must not be visible before the offline install"

    # 3. a tiny synthetic dataset and a small checkpoint trained here.
    data = tmp_path / "data"
    generate_dataset(data, n_train=4, n_test=3, scale=0.2, seed=3)
    cfg = get_preset("tiny").override(["train.steps=4", "train.val_every=4", "train.num_workers=0"])
    train(cfg, data, tmp_path / "run")
    ckpt = tmp_path / "run" / "last.pt"
    assert ckpt.exists()

    # 4. run the infer notebook in a kernel of the fresh venv.
    kernels = tmp_path / "jupyter" / "kernels" / "kaggle"
    kernels.mkdir(parents=True)
    (kernels / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [str(vpy), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "kaggle",
                "language": "python",
            }
        )  # fmt: skip
    )
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    for key, value in {"BYU_WHEELS": wheels, "BYU_CHECKPOINTS": ckpt, "BYU_DATA": data, "BYU_OUT": out,
                       "BYU_LIMIT_S": 900, "BYU_MARGIN_S": 60, "BYU_SET": "threshold=fixed;threshold_value=0.0"}.items():  # fmt: skip
        monkeypatch.setenv(key, str(value))
    nb = nbformat.read(KERNELS / "byu-motor-infer" / "byu-motor-infer.ipynb", as_version=4)
    nbclient.NotebookClient(
        nb, kernel_name="kaggle", timeout=600, resources={"metadata": {"path": str(tmp_path)}}
    ).execute()

    # 5. the submission is complete and equals a direct library run with the same settings.
    sub = pd.read_csv(out / "submission.csv")
    sample = pd.read_csv(data / "sample_submission.csv")
    assert sub["tomo_id"].tolist() == sample["tomo_id"].tolist()
    assert sub.notna().all().all()
    # the notebook predicts with the checkpoint's own recipe (tiny's), here repeated by hand
    direct_cfg = get_preset("tiny").override(["infer.threshold=fixed", "infer.threshold_value=0.0"])
    direct = run_prediction(data, [str(ckpt)], tmp_path / "direct.csv", direct_cfg.infer)
    pd.testing.assert_frame_equal(sub, direct.reset_index(drop=True), check_dtype=False)
    solution = pd.read_csv(data / "test_labels.csv")
    assert score(solution, sub) == pytest.approx(score(solution, direct))

    # 6. the seed's 3D ensemble (kernels/recipes/seed_3d.json) end to end: tiny checkpoints under the seed
    # members' file names, the recipe beside them as ensemble.json, which the notebook picks up by itself
    seed_dir, out2 = tmp_path / "seed_checkpoints", tmp_path / "out2"
    seed_dir.mkdir()
    out2.mkdir()
    recipe = json.loads((KERNELS / "recipes" / "seed_3d.json").read_text())
    for member in recipe["members"]:
        shutil.copy(ckpt, seed_dir / member["checkpoint"])
    (seed_dir / "ensemble.json").write_text(json.dumps(recipe))
    for key, value in {"BYU_CHECKPOINTS": seed_dir, "BYU_OUT": out2, "BYU_SET": ""}.items():
        monkeypatch.setenv(key, str(value))
    nb = nbformat.read(KERNELS / "byu-motor-infer" / "byu-motor-infer.ipynb", as_version=4)
    nbclient.NotebookClient(
        nb, kernel_name="kaggle", timeout=600, resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    seed_sub = pd.read_csv(out2 / "submission.csv")
    assert seed_sub["tomo_id"].tolist() == sample["tomo_id"].tolist() and seed_sub.notna().all().all()
    members = read_recipe_file(seed_dir / "ensemble.json")
    seed_cfg = resolve_infer(members.members, members.sets)
    assert (seed_cfg.ensemble, seed_cfg.views_apart, seed_cfg.peak_decoder) == ("wbf", True, "seed")
    paths = [m.checkpoint for m in members.members]
    direct2 = run_prediction(data, paths, tmp_path / "direct2.csv", seed_cfg)
    pd.testing.assert_frame_equal(seed_sub, direct2.reset_index(drop=True), check_dtype=False)

    # 7. a mixed ensemble, the 3D checkpoint and a 2D tiny_2d one, through the same notebook: an ensemble.json
    # whose shared "set" picks the ensemble-wide settings the two recipes disagree on
    cfg2d = get_preset("tiny_2d").override(["train.steps=4", "train.val_every=4", "train.num_workers=0"])
    train(cfg2d, data, tmp_path / "run2d")
    mixed_dir, out3 = tmp_path / "mixed_checkpoints", tmp_path / "out3"
    mixed_dir.mkdir()
    out3.mkdir()
    shutil.copy(ckpt, mixed_dir / "tiny_3d.pt")
    shutil.copy(tmp_path / "run2d" / "last.pt", mixed_dir / "tiny_2d.pt")
    shared = ["infer.threshold=fixed", "infer.threshold_value=0.0", "infer.scales=1.0", "infer.scale_merge=mean",
              "infer.ensemble=fusion", "infer.steps=[]"]  # fmt: skip
    mixed = {"members": [{"checkpoint": "tiny_3d.pt"}, {"checkpoint": "tiny_2d.pt"}], "set": shared}
    (mixed_dir / "ensemble.json").write_text(json.dumps(mixed))
    for key, value in {"BYU_CHECKPOINTS": mixed_dir, "BYU_OUT": out3, "BYU_SET": ""}.items():
        monkeypatch.setenv(key, str(value))
    nbclient.NotebookClient(
        nb, kernel_name="kaggle", timeout=600, resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    mixed_sub = pd.read_csv(out3 / "submission.csv")
    assert mixed_sub["tomo_id"].tolist() == sample["tomo_id"].tolist() and mixed_sub.notna().all().all()
    recipe3 = read_recipe_file(mixed_dir / "ensemble.json")
    mixed_cfg = resolve_infer(recipe3.members, recipe3.sets)
    assert read_checkpoint_config(mixed_dir / "tiny_2d.pt").config.model.dims == 2
    direct3 = run_prediction(
        data, [m.checkpoint for m in recipe3.members], tmp_path / "direct3.csv", mixed_cfg
    )
    pd.testing.assert_frame_equal(mixed_sub, direct3.reset_index(drop=True), check_dtype=False)

    # 8. the train notebook continues a session from an earlier one's output attached as an input: it finds
    # the run folder by itself and finishes the run at the step the first session stopped at
    cache, attached = tmp_path / "nb_cache", tmp_path / "input" / "train-session1" / "run"
    session = ["train.steps=4", "train.val_every=4", "train.num_workers=0"]
    cfg_nb = get_preset("tiny").override([f"data.cache_dir={cache}", *session])
    train(cfg_nb, data, attached, stop_at_step=2, progress=False)
    assert torch.load(attached / "resume.pt", weights_only=True)["step"] == 2
    run_out = tmp_path / "working" / "run"
    for key, value in {"BYU_PRESET": "tiny", "BYU_SET": ";".join(session), "BYU_INPUT": tmp_path / "input",
                       "BYU_CACHE": cache, "BYU_OUT": run_out}.items():  # fmt: skip
        monkeypatch.setenv(key, str(value))
    nb_train = nbformat.read(KERNELS / "byu-motor-train" / "byu-motor-train.ipynb", as_version=4)
    nbclient.NotebookClient(
        nb_train, kernel_name="kaggle", timeout=600, resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    printed = "".join(o.get("text", "") for c in nb_train.cells if c.cell_type == "code" for o in c.outputs)
    assert f"continuing from: {attached}" in printed
    assert torch.load(run_out / "resume.pt", weights_only=True)["step"] == 4

    def train_steps(run: Path) -> list[int]:
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        return [r["step"] for r in rows if r["event"] == "train"]

    before, after = train_steps(attached), train_steps(run_out)  # logged every train.log_every steps
    assert after[: len(before)] == before and after[-1] == 4 and after == sorted(set(after))
    assert (run_out / "last.pt").exists()
