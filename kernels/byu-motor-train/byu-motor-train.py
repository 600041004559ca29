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
# # byu_motor: training
# Installs `byu_motor` offline, trains one preset on the competition data and saves `best.pt` / `last.pt`
# (each carries its config and threshold rule) to the output folder: upload them as the checkpoints dataset
# of the submission notebook. Settings come from `BYU_*` environment variables.
#
# **Runs longer than Kaggle's 12 hours** (the seed presets: 30-32k steps) go in sessions. Each session stops
# itself after `BYU_HOURS` hours (setup and volume caching included) with `resume.pt` saved in the output.
# For the next session, add this notebook's output as an input dataset and run it again: the run folder
# holding `resume.pt` under `/kaggle/input` (or `BYU_RESUME_FROM`) is copied to the writable output and
# training continues at its step, with the same weights, optimiser, schedule, EMA and random state.
# The seed members need a 48 GB card; on a 16 GB card use their `_16gb` presets (e.g. `seed_resnext50_16gb`:
# gradient checkpointing, batch 1 x accumulation 4, 192 x 384 x 384 training patches; python bench/memory.py).

# %%
import glob
import os
import subprocess
import sys
import time

T0 = time.time()
WHEELS = os.environ.get("BYU_WHEELS", "/kaggle/input/byu-motor-wheels")
DATA = os.environ.get("BYU_DATA", "/kaggle/input/byu-locating-bacterial-flagellar-motors-2025")
OUT = os.environ.get("BYU_OUT", "/kaggle/working/run")
PRESET = os.environ.get("BYU_PRESET", "resnext50_fpn_s16")
OVERRIDES = [s for s in os.environ.get("BYU_SET", "").split(";") if s.strip()]
HOURS = float(os.environ.get("BYU_HOURS", "11.25"))  # this session's length, under Kaggle's 12-hour limit
# the previous session's run folder (read-only input); default: the one attached input holding resume.pt
found = sorted(glob.glob("/kaggle/input/*/run/resume.pt") + glob.glob("/kaggle/input/*/resume.pt"))
RESUME_FROM = os.environ.get("BYU_RESUME_FROM", os.path.dirname(found[0]) if found else "")

subprocess.check_call(
    [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--find-links", WHEELS, "byu_motor"]
)

# %%
from byu_motor.presets import get_preset
from byu_motor.train.engine import train

# the volume cache lives outside the read-only input, at the same path in every session
cfg = get_preset(PRESET).override(["data.cache_dir=/tmp/byu_cache", *OVERRIDES])
cfg.train.resume_from = RESUME_FROM
cfg.train.stop_after_s = max(600.0, HOURS * 3600 - (time.time() - T0))
print(cfg.name, cfg.model, cfg.data, cfg.train, sep="\n")
print("continuing from:", RESUME_FROM or "(new run)")

# %%
result = train(cfg, DATA, OUT)
print(result)
if result["step"] < cfg.train.steps:
    print(f"session ended at step {result['step']} of {cfg.train.steps}: attach this output and run again")
