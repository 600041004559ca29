#!/usr/bin/env bash
# GPU check, offline. By default the inference THROUGHPUT check, at most 280 s (GPU_CHECK_BUDGET_S): one synthetic
# full-size (800, 928, 960) JPEG tomogram, a checkpoint of the seed's ResNeXt50 member with random weights, and
# `bench/gpu_throughput.py` twice, first with all host cores, then `taskset` to 4 cores (Kaggle's host): stage
# seconds per tomogram (read, upload, resample, forward, peaks, fusion), end-to-end / pure forward time of the
# same windows (goal <= 1.25), and the seed ensemble's hours for 900 tomograms of the average test shape (each
# of its five members, kernels/recipes/seed_full.json with random weights, timed on that shape); then
# whether the seed's training loaders (4 workers, then all cores) keep ahead of the members' training steps
# (bench/seed_loader_vs_model.py: the ResNeXt50 member's 3D windows, then the MaxViT member's slice triplets).
# GPU_CHECK_FULL=1 then also runs the older checks, about 7 minutes more: `byu-motor demo` on the GPU (its
# `tiny_fine_gpu` preset, then `tiny_gpu` for comparison), `byu-motor predict` end to end on a full-size
# synthetic tomogram, the NDHWC / NCDHW memory-layout ratios of every preset (bench/layout.py), then a short
# training run of PRESET (steps/s, patches/s, peak GPU memory).
#
#   bash bench/gpu_check.sh                 # throughput only (the member: GPU_CHECK_THROUGHPUT_PRESET)
#   GPU_CHECK_FULL=1 bash bench/gpu_check.sh [PRESET]   # then demos, predict, layout, training of PRESET
#                                                     (default resnext50_fpn_s16)
#   GPU_CHECK_THROUGHPUT_PRESET=resnext50_fpn_s16 bash bench/gpu_check.sh   # another member (default seed_resnext50)
#   GPU_CHECK_DEVICE=cpu GPU_CHECK_SCALE=0.1 GPU_CHECK_THROUGHPUT_PRESET=tiny GPU_CHECK_LOADER_PRESET=tiny \
#     GPU_CHECK_LOADER_ARGS="--patch 32 64 64 --volume 40 96 96 --workers 1 2" GPU_CHECK_ENSEMBLE_TINY=1 \
#     GPU_CHECK_LOADER_PRESET_2D=tiny_2d GPU_CHECK_LOADER_ARGS_2D="--patch 3 64 64 --volume 40 96 96 --workers 1" \
#     GPU_CHECK_SHAPE="80 280 210" bash bench/gpu_check.sh   # dry run (tests/test_gpu_check_script.py)
#   GPU_CHECK_FULL=1 GPU_CHECK_DEVICE=cpu GPU_CHECK_SCALE=0.25 GPU_CHECK_TRAIN_STEPS=20 GPU_CHECK_LAYOUT_PATCH="16 32 32" \
#     GPU_CHECK_LAYOUT_STEPS=1 GPU_CHECK_DEMO_ARGS="--n-train 6 --n-test 4 --steps 6" \
#     GPU_CHECK_THROUGHPUT_PRESET=tiny GPU_CHECK_ENSEMBLE_TINY=1 GPU_CHECK_SHAPE="80 280 210" \
#     GPU_CHECK_LOADER_PRESET=tiny GPU_CHECK_LOADER_ARGS="--patch 32 64 64 --volume 40 96 96 --workers 1 2" \
#     GPU_CHECK_LOADER_PRESET_2D=tiny_2d GPU_CHECK_LOADER_ARGS_2D="--patch 3 64 64 --volume 40 96 96 --workers 1" \
#     bash bench/gpu_check.sh tiny   # dry run of everything (about 4 min on 2 cores)
#   GPU_CHECK_FULL=1 GPU_CHECK_DEMO_ARGS=skip bash bench/gpu_check.sh   # without the demos
#   GPU_CHECK_FULL=1 GPU_CHECK_SECOND_DEMO=0 bash bench/gpu_check.sh     # without the second (tiny_gpu) demo
#   GPU_CHECK_FULL=1 GPU_CHECK_DEMO_SEEDS="1 2 3 4" GPU_CHECK_ONLY_DEMOS=1 bash bench/gpu_check.sh   # both demos
#                                                     per seed, then stop (about 1 min per demo on an H200)
#
# On a lent device, from this machine: `bash build_wheels.sh`, then the device tool's run with
# command "bash bench/gpu_check.sh", carry ["wheels"] (byu_motor and monai, a few MB) and timeout_s 400.
# Installs byu_motor (and monai) from wheels/ (GPU_CHECK_WHEELS) without the internet. The full run writes one
# synthetic test tomogram (twice, so the second shows the steady state without CUDA warm-up), saves a checkpoint of PRESET
# with random weights, and times `byu-motor predict` (reading, resampling, model, decoding): seconds per
# tomogram and projected hours for 900 tomograms on this one GPU. Then trains the preset for a few steps on
# four synthetic tomograms at scale 0.5 through `byu_motor.train.engine.train` (fold split, cache, loader,
# AMP, EMA, validation through the Predictor, checkpoints).
set -euo pipefail
cd "$(dirname "$0")/.."

PRESET="${1:-resnext50_fpn_s16}"
DEVICE="${GPU_CHECK_DEVICE:-cuda}"
SCALE="${GPU_CHECK_SCALE:-1.0}"
TRAIN_STEPS="${GPU_CHECK_TRAIN_STEPS:-60}"
DEMO_ARGS="${GPU_CHECK_DEMO_ARGS-}"
WORK="${GPU_CHECK_DIR:-$(mktemp -d /tmp/byu_gpu_check.XXXXXX)}"
DATA="$WORK/data"
T_START=$(date +%s)
export PYTHONUNBUFFERED=1

step() { echo "== [$(($(date +%s) - T_START)) s] $*"; }

# The whole check keeps to GPU_CHECK_BUDGET_S seconds (default 280, or 590 with GPU_CHECK_FULL=1: a device
# call runs at most 600 s): each step runs under `timeout` of its own limit or the budget left, whichever is
# smaller, a step with under 10 s left is skipped, and a failed or cut step does not stop the steps after it.
BUDGET_S="${GPU_CHECK_BUDGET_S:-280}"
[ "${GPU_CHECK_FULL:-0}" != 1 ] || BUDGET_S="${GPU_CHECK_BUDGET_S:-590}"
SKIPPED=()
FAILED=()
# budget_left LIMIT: min(LIMIT, seconds of the budget left), at least 1 (`timeout 0` would mean no limit)
budget_left() {
  local left=$((BUDGET_S - ($(date +%s) - T_START)))
  [ "$left" -lt "$1" ] || left=$1
  [ "$left" -ge 1 ] || left=1
  echo "$left"
}
# budgeted LIMIT NAME CMD...: CMD under timeout min(LIMIT, budget left); records NAME when skipped or failed
budgeted() {
  local limit name=$2 rc=0
  limit=$(budget_left "$1")
  shift 2
  if [ "$limit" -lt 10 ]; then
    echo "   skipped: $name (budget of $BUDGET_S s spent)"
    SKIPPED+=("$name")
    return 0
  fi
  timeout "$limit" "$@" || rc=$?
  if [ "$rc" -ne 0 ]; then
    [ "$rc" -eq 124 ] && echo "   cut: $name ran past its $limit s" || echo "   failed: $name (rc=$rc)"
    FAILED+=("$name")
  fi
  return 0
}
# finish MESSAGE: the closing line (elapsed, budget, what was skipped or failed); exit 1 when a step failed
finish() {
  step "done in $(($(date +%s) - T_START)) s of a $BUDGET_S s budget: $*"
  [ ${#SKIPPED[@]} -eq 0 ] || echo "   skipped for lack of budget: $(printf '%s; ' "${SKIPPED[@]}")"
  [ ${#FAILED[@]} -eq 0 ] || { echo "   failed or cut: $(printf '%s; ' "${FAILED[@]}")"; exit 1; }
  exit 0
}

command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true

# The GPU image's python3 may itself live in a venv (a nested --system-site-packages venv would hide its
# torch), so byu_motor and monai go into a --target folder on PYTHONPATH; the rest (torch, timm, numpy,
# pandas, scipy, tqdm) must already be installed, as on Kaggle.
mkdir -p "$WORK/site"
WHEELS="${GPU_CHECK_WHEELS:-wheels}"
if compgen -G "$WHEELS/byu_motor-*.whl" >/dev/null; then
  step "offline install from $WHEELS/: $(cd "$WHEELS" && ls -- *.whl | tr '\n' ' ')"
  # shellcheck disable=SC2046
  timeout "$(budget_left 120)" python3 -m pip install --quiet --no-index --no-deps --no-compile \
    --target "$WORK/site" "$WHEELS"/byu_motor-*.whl $(compgen -G "$WHEELS/monai-*.whl" || true)
  export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
  export PYTHONSAFEPATH=1  # `python3 -` and `-m` would otherwise import the source tree in the working directory
else
  step "no byu_motor wheel in $WHEELS/ (run build_wheels.sh): using the source tree"
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
python3 - "$DEVICE" <<'EOF'
import sys

import byu_motor, monai, pandas, scipy, timm, torch, tqdm  # noqa: F401,E401

print("torch", torch.__version__, "timm", timm.__version__, "monai", monai.__version__, "from", byu_motor.__file__)
if sys.argv[1] == "cuda":
    assert torch.cuda.is_available(), "no CUDA device"
    print("device", torch.cuda.get_device_name(0))
EOF

step "throughput: one (800, 928, 960) x $SCALE noise JPEG tomogram, preset ${GPU_CHECK_THROUGHPUT_PRESET:-seed_resnext50}"
TDATA="$WORK/throughput"
budgeted 120 "throughput tomogram" python3 - "$TDATA" "$SCALE" "${GPU_CHECK_THROUGHPUT_PRESET:-seed_resnext50}" "$WORK/member.pt" <<'EOF'
import sys

import numpy as np

from byu_motor.data.io import write_tomogram
from byu_motor.models.checkpoint import save_checkpoint
from byu_motor.models.detector import create_model
from byu_motor.presets import get_preset

scale = float(sys.argv[2])
shape = tuple(max(16, round(n * scale)) for n in (800, 928, 960))
rng = np.random.default_rng(0)
plane = rng.normal(118, 50, shape[1:]).clip(0, 255).astype(np.uint8)
vol = np.stack([np.roll(plane, 7 * z, axis=1) for z in range(shape[0])])  # cheap, every slice different
write_tomogram(vol, f"{sys.argv[1]}/tomo")
cfg = get_preset(sys.argv[3])
save_checkpoint(sys.argv[4], create_model(cfg.model), cfg, extra={"threshold": 0.5})
print("tomogram", shape, "preset", sys.argv[3], "spacing", cfg.data.spacing_a, "patch", cfg.data.patch_size)
EOF
RECIPE="${GPU_CHECK_RECIPE:-kernels/recipes/seed_full.json}"
step "ensemble: checkpoints of $RECIPE's members with random weights (GPU_CHECK_ENSEMBLE_TINY=1: tiny networks)"
mkdir -p "$WORK/ensemble"
cp "$RECIPE" "$WORK/ensemble/recipe.json"
budgeted 90 "ensemble checkpoints" python3 - "$WORK/ensemble" "${GPU_CHECK_ENSEMBLE_TINY:-0}" <<'EOF'
import json
import sys
from pathlib import Path

from byu_motor.models.checkpoint import save_checkpoint
from byu_motor.models.detector import create_model
from byu_motor.presets import get_preset

folder, tiny = Path(sys.argv[1]), sys.argv[2] == "1"
for member in json.loads((folder / "recipe.json").read_text())["members"]:
    name = Path(member if isinstance(member, str) else member["checkpoint"]).name
    cfg = get_preset(Path(name).stem)  # the recipe names each checkpoint after its preset
    if tiny:  # dry run: the recipe's mechanics with tiny networks on a coarse grid
        two_d = cfg.model.dims == 2
        cfg.model = get_preset("tiny_2d" if two_d else "tiny").model
        cfg.data.spacing_a = (128.0, 64.0, 64.0) if two_d else (64.0, 64.0, 64.0)
        cfg.infer.patch_size = (12, 32, 32) if two_d else (16, 32, 32)
    save_checkpoint(folder / name, create_model(cfg.model).eval(), cfg)
    print("   ", name, "spacing", cfg.data.spacing_a, "window", cfg.infer.patch_size or cfg.data.patch_size)
(folder / "ready").touch()
EOF
ENSEMBLE=()
[ -f "$WORK/ensemble/ready" ] && ENSEMBLE=(--recipe "$WORK/ensemble/recipe.json")
# the projected test tomogram (default the seed's average test shape; the dry run takes a small one)
# shellcheck disable=SC2206
SHAPE=(${GPU_CHECK_SHAPE:+--shape $GPU_CHECK_SHAPE})

# the 4-core run first: it is the figure that matters (Kaggle's host), should the budget run short; it also
# times the ensemble's members
if command -v taskset >/dev/null && [ "$(nproc)" -gt 4 ]; then
  step "throughput with 4 host cores (taskset -c 0-3, Kaggle's host), then the ensemble"
  budgeted 200 "throughput on 4 cores" taskset -c 0-3 python3 bench/gpu_throughput.py "$TDATA/tomo" \
    "$WORK/member.pt" --device "$DEVICE" --label "taskset 4 cores:" "${SHAPE[@]}" "${ENSEMBLE[@]}"
  ENSEMBLE=()
else
  step "no taskset, or 4 host cores or fewer: the run below is the 4-core run"
fi
step "throughput with all $(nproc) host cores"
budgeted 200 "throughput on all cores" python3 bench/gpu_throughput.py "$TDATA/tomo" "$WORK/member.pt" \
  --device "$DEVICE" --label "all cores:" "${SHAPE[@]}" "${ENSEMBLE[@]}"
step "seed loader (full seed augmentation, resample_once) vs ${GPU_CHECK_LOADER_PRESET:-seed_resnext50} training"
# shellcheck disable=SC2086
budgeted 150 "seed loader" python3 bench/seed_loader_vs_model.py \
  --preset "${GPU_CHECK_LOADER_PRESET:-seed_resnext50}" --device "$DEVICE" ${GPU_CHECK_LOADER_ARGS-}
step "seed 2D loader (original slices, full 2D augmentation) vs ${GPU_CHECK_LOADER_PRESET_2D:-seed_maxvit_tiny_2d} training"
# shellcheck disable=SC2086
budgeted 120 "seed 2D loader" python3 bench/seed_loader_vs_model.py \
  --preset "${GPU_CHECK_LOADER_PRESET_2D:-seed_maxvit_tiny_2d}" --device "$DEVICE" ${GPU_CHECK_LOADER_ARGS_2D-}
if [ "${GPU_CHECK_FULL:-0}" != 1 ]; then
  finish "throughput only (GPU_CHECK_FULL=1 for the demos, predict, layout and training; work folder $WORK)"
fi

if [ "$DEMO_ARGS" != skip ]; then
  OTHER=tiny_gpu  # the comparison: the coarser GPU preset
  [ "$DEVICE" = cpu ] && OTHER=tiny_fine  # on a CPU the default is tiny: compare with the finer one
  for seed in ${GPU_CHECK_DEMO_SEEDS:-0}; do  # one after another: concurrent demos starve each other's loaders
    step "byu-motor demo --seed $seed $DEMO_ARGS (defaults: 40 + 20 tomograms, 2 folds, the preset the demo picks)"
    # shellcheck disable=SC2086
    budgeted 420 "demo seed $seed" python3 -m byu_motor demo --out "$WORK/demo_s$seed" --seed "$seed" $DEMO_ARGS
    sed -n '3,20p' "$WORK/demo_s$seed/report.md" 2>/dev/null || true
    if [ "${GPU_CHECK_SECOND_DEMO:-1}" != 0 ]; then
      step "byu-motor demo --seed $seed --preset $OTHER $DEMO_ARGS (the comparison)"
      # shellcheck disable=SC2086
      budgeted 300 "demo $OTHER seed $seed" python3 -m byu_motor demo --out "$WORK/demo_other_s$seed" --seed "$seed" --preset "$OTHER" \
        $DEMO_ARGS
    fi
  done
  step "demo summary"
  python3 - "$WORK" <<'EOF'
import json
import sys
from pathlib import Path

for p in sorted(Path(sys.argv[1]).glob("demo*_s*/result.json")):
    r = json.loads(p.read_text())
    t = r["timings_s"]
    train = sum(v for k, v in t.items() if k.startswith("train"))
    print(f"{p.parent.name:18s} {r['preset']:14s} F2 {r['f2']:.3f}  TP {r['tp']} FP {r['fp']} FN {r['fn']} "
          f"(misplaced {r['misplaced']})  train {train:.0f} s  total {sum(t.values()):.0f} s")
EOF
  [ "${GPU_CHECK_ONLY_DEMOS:-0}" = 1 ] && finish "demos only (work folder $WORK)"
fi

step "one synthetic test tomogram at scale $SCALE"
if ! timeout "$(budget_left 120)" python3 - "$DATA" "$SCALE" <<'EOF'
import sys

from byu_motor.synth import generate_dataset

generate_dataset(sys.argv[1], n_train=0, n_test=1, scale=float(sys.argv[2]), seed=0)
EOF
then
  # The timing does not depend on the content: fall back to noise of the most common test shape.
  step "synth failed or too slow: writing a (300, 960, 928) noise tomogram instead"
  rm -rf "$DATA"
  budgeted 90 "noise test tomogram" python3 - "$DATA" <<'EOF'
import sys

import numpy as np

from byu_motor.data.io import write_tomogram

vol = np.random.default_rng(0).normal(118, 50, (300, 960, 928)).clip(0, 255).astype(np.uint8)
write_tomogram(vol, f"{sys.argv[1]}/test/tomo_noise0")
EOF
fi
[ -d "$DATA/test" ] || { FAILED+=("test tomogram"); finish "no test tomogram for predict (work folder $WORK)"; }
rm -f "$DATA/sample_submission.csv"  # predict every folder of test/, including the copy below
first=$(find "$DATA/test" -mindepth 1 -maxdepth 1 -type d | sort | head -n 1)
cp -r "$first" "$DATA/test/zz_copy"  # same tomogram again: steady-state time without warm-up
python3 -c "import sys; from byu_motor.data.io import read_tomogram; print('tomogram shape', read_tomogram(sys.argv[1]).shape)" "$first"

step "checkpoint: preset $PRESET with random weights"
budgeted 90 "checkpoint" python3 - "$PRESET" "$WORK/model.pt" <<'EOF'
import sys

from byu_motor.models.checkpoint import save_checkpoint
from byu_motor.models.detector import create_model
from byu_motor.presets import get_preset

cfg = get_preset(sys.argv[1])
save_checkpoint(sys.argv[2], create_model(cfg.model), cfg, extra={"threshold": 0.5})
print("spacing", cfg.data.spacing_a, "patch", cfg.data.patch_size, "stride", cfg.model.stride)
EOF

step "byu-motor predict (end to end)"
t0=$(date +%s.%N)
budgeted 180 "predict" python3 -m byu_motor predict "$DATA" --checkpoints "$WORK/model.pt" --out "$WORK/submission.csv" \
  --devices "$DEVICE" --set infer.threshold=fixed --keep-partial  # the summary below reads the partial file
t1=$(date +%s.%N)
if ! python3 - "$WORK/submission.csv.partial.jsonl" "$t0" "$t1" <<'EOF'
import json
import sys

records = [json.loads(line) for line in open(sys.argv[1])][1:]
wall = float(sys.argv[3]) - float(sys.argv[2])
for r in records:
    print(f"{r['tomo_id']}: {r['status']} shape {r.get('shape')} {r.get('seconds', float('nan')):.2f} s")
steady = records[-1]["seconds"]
print(f"end-to-end wall (incl. start-up, model load, warm-up): {wall:.1f} s for {len(records)} tomograms")
print(f"steady state: {steady:.2f} s per tomogram -> {steady * 900 / 3600:.2f} h for 900 tomograms on this GPU")
EOF
then
  FAILED+=("predict summary")
fi

step "memory layout: NDHWC vs NCDHW per preset (training step, forward; bf16 on a GPU)"
LAYOUT_AMP=bf16
[ "$DEVICE" = cpu ] && LAYOUT_AMP=none
# shellcheck disable=SC2086
budgeted 240 "layout" python3 bench/layout.py --device "$DEVICE" --amp "$LAYOUT_AMP" --threads "$(nproc)" \
  --patch ${GPU_CHECK_LAYOUT_PATCH:-64 128 128} --steps "${GPU_CHECK_LAYOUT_STEPS:-8}" \
  ${GPU_CHECK_LAYOUT_PRESETS:+--presets "$GPU_CHECK_LAYOUT_PRESETS"}

step "training: preset $PRESET, $TRAIN_STEPS steps on 4 synthetic tomograms at scale 0.5 (3 train, 1 val)"
budgeted 300 "training" python3 bench/gpu_train_check.py "$PRESET" "$WORK/train_data" "$WORK/run" "$DEVICE" "$TRAIN_STEPS"
finish "everything (work folder $WORK)"
