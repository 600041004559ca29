"""Short training run for bench/gpu_check.sh: steps/s, patches/s and peak memory of a preset on one device.

    python bench/gpu_train_check.py PRESET DATA_DIR RUN_DIR DEVICE STEPS

Writes four synthetic tomograms at scale 0.5 to DATA_DIR (3 train, 1 validation) and trains PRESET for STEPS
steps through ``byu_motor.train.engine.train``. A file, not a heredoc: spawned worker processes re-import it.
"""

import json
import os
import sys
import time

import torch

from byu_motor.presets import get_preset
from byu_motor.synth import generate_dataset
from byu_motor.train.engine import train


def main() -> None:

    preset, data, out, device, steps = sys.argv[1:6]
    t0 = time.perf_counter()
    generate_dataset(data, n_train=4, n_test=0, scale=0.5, seed=1, workers=min(4, os.cpu_count() or 1))
    print(f"synth: {time.perf_counter() - t0:.1f} s")
    log_every = max(1, int(steps) // 6)
    cfg = get_preset(preset).override(
        [
            f"train.steps={steps}",
            f"train.val_every={steps}",
            f"train.log_every={log_every}",
            "train.n_folds=4",
            f"train.num_workers={min(8, os.cpu_count() or 1)}",
        ]
    )
    t0 = time.perf_counter()
    res = train(cfg, data, out, device=device, progress=False)
    wall = time.perf_counter() - t0
    rows = [json.loads(line) for line in open(f"{out}/metrics.jsonl")]
    tr = [r for r in rows if r["event"] == "train"]
    val = [r for r in rows if r["event"] == "val"]
    # the first log window holds loader start-up and cuDNN autotuning: steady state is measured after it
    (s0, e0), (s1, e1) = (tr[0]["step"], tr[0]["elapsed_s"]), (tr[-1]["step"], tr[-1]["elapsed_s"])
    sps = (s1 - s0) / (e1 - e0)
    print(f"train wall {wall:.1f} s (cache, loader, {res['step']} steps, validation, checkpoints)")
    print(f"losses: {[round(r['loss'], 4) for r in tr]}")
    print(
        f"steady state: {sps:.2f} steps/s = {sps * cfg.train.batch_size:.1f} patches/s of {cfg.data.patch_size}, "
        f"batch {cfg.train.batch_size}, amp {cfg.train.amp}"
    )
    full = get_preset(preset).train.steps
    print(f"projected for the preset's {full} steps: {full / sps / 3600:.2f} h on this GPU")
    if val:
        print(f"validation: {val[0]['val_s']} s for 1 tomogram, F2 {val[0]['f2']}")
    if device == "cuda":
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")


if __name__ == "__main__":
    main()
