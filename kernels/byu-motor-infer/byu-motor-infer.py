# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # byu_motor: submission
# Installs `byu_motor` offline from the attached wheels dataset, predicts every test tomogram with the
# attached checkpoints (each carries its recipe; an `ensemble.json` beside them lists members, views and
# weights) under a time budget derived from Kaggle's 12 h limit, and writes `submission.csv`.
# All logic lives in the library; set `BYU_*` environment variables to run it elsewhere (e.g. locally on
# synthetic data).

# %%
import os
import subprocess
import sys
import time

NOTEBOOK_START = time.time()
WHEELS = os.environ.get("BYU_WHEELS", "/kaggle/input/byu-motor-wheels")
CHECKPOINTS = os.environ.get("BYU_CHECKPOINTS", "/kaggle/input/byu-motor-checkpoints")
DATA = os.environ.get("BYU_DATA", "/kaggle/input/byu-locating-bacterial-flagellar-motors-2025")
OUT = os.environ.get("BYU_OUT", "/kaggle/working")
LIMIT_S = float(os.environ.get("BYU_LIMIT_S", 12 * 3600))  # Kaggle kills the notebook at 12 h
MARGIN_S = float(os.environ.get("BYU_MARGIN_S", 20 * 60))  # install, final checks, writing
OVERRIDES = [s for s in os.environ.get("BYU_SET", "").split(";") if s.strip()]
N_PREVIEWS = int(os.environ.get("BYU_PREVIEWS", 6))

subprocess.check_call(
    [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--find-links", WHEELS, "byu_motor"]
)

# %%
from pathlib import Path

from byu_motor.infer.recipe import Member, read_recipe_file, resolve_infer
from byu_motor.infer.runner import run_prediction

# An ensemble recipe (ensemble.json: members, their views and weights) when the checkpoints dataset has one,
# else every *.pt in it; each checkpoint carries its own inference recipe, BYU_SET overrides it for all.
recipe_file = os.environ.get("BYU_RECIPE", os.path.join(CHECKPOINTS, "ensemble.json"))
if Path(recipe_file).is_file():
    recipe = read_recipe_file(recipe_file)
    members, overrides = recipe.members, [*recipe.sets, *OVERRIDES]
else:
    paths = sorted(Path(CHECKPOINTS).glob("*.pt")) if Path(CHECKPOINTS).is_dir() else [CHECKPOINTS]
    members, overrides = [Member(str(p)) for p in paths], OVERRIDES
ckpts = [m.checkpoint for m in members]
print("checkpoints:", ckpts)
infer = resolve_infer(members, overrides)
budget_s = LIMIT_S - MARGIN_S - (time.time() - NOTEBOOK_START)
print(f"time budget for prediction: {budget_s / 3600:.2f} h")

# %%
submission = run_prediction(
    DATA,
    ckpts,
    os.path.join(OUT, "submission.csv"),
    infer,
    time_budget_s=budget_s,
    preview_dir=os.path.join(OUT, "previews"),
)
print(submission.head())
print("rows:", len(submission), "detections:", int((submission["Motor axis 0"] >= 0).sum()))

# %% [markdown]
# The run report (summary, timings, the previews grouped by outcome; each preview shows three orthogonal
# slices through the detection, the 1000 A scoring sphere and the heatmap), written to `report/index.html`
# and shown inline here.

# %%
report = Path(OUT, "report", "index.html")
try:
    from byu_motor.report.run_report import write_run_report

    write_run_report(report.parent, submission.attrs.get("summary", {}), submission.attrs.get("candidates", {}),
                     preview_dir=os.path.join(OUT, "previews"), max_previews=N_PREVIEWS)  # fmt: skip
except ImportError as err:  # matplotlib missing: no report, the submission stands
    print("no report:", err)
if report.exists():
    try:
        import html

        from IPython.display import HTML, display

        page = html.escape(report.read_text(encoding="utf-8"))
        display(HTML(f'<iframe srcdoc="{page}" style="width: 100%; height: 900px; border: 0"></iframe>'))
    except ImportError:
        print("report:", report)
