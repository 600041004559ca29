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
# of this preset holding `resume.pt` under `/kaggle/input` (the one saved at the highest step when several
# sessions' outputs are attached; or `BYU_RESUME_FROM`) is copied to the writable output and training
# continues at its step, with the same weights, optimiser, schedule, EMA and random state.
# The seed members need a 48 GB card; on a 16 GB card use their `_16gb` presets (e.g. `seed_resnext50_16gb`:
# gradient checkpointing, batch 1 x accumulation 4, 192 x 384 x 384 training patches; python bench/memory.py).

# %%
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
INPUT = os.environ.get("BYU_INPUT", "/kaggle/input")  # where an earlier session's output is attached
CACHE = os.environ.get("BYU_CACHE", "/tmp/byu_cache")  # outside the read-only input, same path every session

subprocess.check_call(
    [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--find-links", WHEELS, "byu_motor"]
)

# %%
from byu_motor.presets import get_preset
from byu_motor.train.continuation import find_previous_run
from byu_motor.train.engine import train

cfg = get_preset(PRESET).override([f"data.cache_dir={CACHE}", *OVERRIDES])
# the previous session's run folder (read-only input): BYU_RESUME_FROM, else the furthest run of this preset
RESUME_FROM = os.environ.get("BYU_RESUME_FROM") or str(find_previous_run(INPUT, cfg.name) or "")
cfg.train.resume_from = RESUME_FROM
cfg.train.stop_after_s = max(600.0, HOURS * 3600 - (time.time() - T0))
print(cfg.name, cfg.model, cfg.data, cfg.train, sep="\n")
print("continuing from:", RESUME_FROM or "(new run)")

# %%
result = train(cfg, DATA, OUT)
print(result)
if result["step"] < cfg.train.steps:
    print(f"session ended at step {result['step']} of {cfg.train.steps}: attach this output and run again")
