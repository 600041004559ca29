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
# Installs `byu_motor` offline, trains one preset on one fold of the competition data and saves
# `best.pt` / `last.pt` (each carries its config and calibrated threshold) to the output folder: upload them
# as the checkpoints dataset of the submission notebook. Settings come from `BYU_*` environment variables.

# %%
import os
import subprocess
import sys

WHEELS = os.environ.get("BYU_WHEELS", "/kaggle/input/byu-motor-wheels")
DATA = os.environ.get("BYU_DATA", "/kaggle/input/byu-locating-bacterial-flagellar-motors-2025")
OUT = os.environ.get("BYU_OUT", "/kaggle/working/run")
PRESET = os.environ.get("BYU_PRESET", "resnext50_fpn_s16")
OVERRIDES = [s for s in os.environ.get("BYU_SET", "").split(";") if s.strip()]

subprocess.check_call(
    [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--find-links", WHEELS, "byu_motor"]
)

# %%
from byu_motor.presets import get_preset
from byu_motor.train.engine import train

cfg = get_preset(PRESET).override(OVERRIDES)
print(cfg.name, cfg.model, cfg.data, sep="\n")

# %%
result = train(cfg, DATA, OUT)
print(result)
