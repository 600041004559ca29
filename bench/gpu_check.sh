#!/usr/bin/env bash
# End-to-end GPU timing of `byu-motor predict` on one full-size synthetic tomogram (offline, < 5 minutes).
#
#   bash bench/gpu_check.sh [PRESET]        # default PRESET: resnext50_fpn_s16
#
# Creates a venv with --system-site-packages (torch, numpy... come from the machine), installs byu_motor
# from wheels/ without the internet (monai travels as a wheel there), writes one full-size synthetic test
# tomogram (twice, so the second time shows the steady state without CUDA warm-up), saves a checkpoint of the
# preset with random weights, and times `byu-motor predict` end to end (reading, resampling, model, decoding).
# Prints seconds per tomogram and the projected hours for 900 tomograms on this one GPU.
set -euo pipefail
cd "$(dirname "$0")/.."

PRESET="${1:-resnext50_fpn_s16}"
WORK="${GPU_CHECK_DIR:-$(mktemp -d /tmp/byu_gpu_check.XXXXXX)}"
VENV="$WORK/venv"
DATA="$WORK/data"
T_START=$(date +%s)

step() { echo "== [$(($(date +%s) - T_START)) s] $*"; }

command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true

step "venv in $VENV"
timeout 60 python3 -m venv --system-site-packages "$VENV"
# shellcheck disable=SC1091
. "$VENV/bin/activate"
if compgen -G "wheels/byu_motor-*.whl" >/dev/null; then
  step "pip install --no-index --find-links wheels byu_motor"
  timeout 120 pip install --quiet --no-index --find-links wheels byu_motor
else
  step "no byu_motor wheel in wheels/ (run build_wheels.sh): installing the source tree offline"
  timeout 120 pip install --quiet --no-index --no-build-isolation --find-links wheels .
fi
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print('torch', torch.__version__, torch.cuda.get_device_name(0))"

step "one full-size synthetic test tomogram"
if ! timeout 120 python - "$DATA" <<'EOF'
import sys
from byu_motor.data.synth import generate_dataset

generate_dataset(sys.argv[1], n_train=0, n_test=1, scale=1.0, seed=0)
EOF
then
  # The timing does not depend on the content: fall back to noise of the most common test shape.
  step "synth failed or too slow: writing a (300, 960, 928) noise tomogram instead"
  rm -rf "$DATA"
  timeout 90 python - "$DATA" <<'EOF'
import sys
import numpy as np
from byu_motor.data.io import write_tomogram

vol = np.random.default_rng(0).normal(118, 50, (300, 960, 928)).clip(0, 255).astype(np.uint8)
write_tomogram(vol, f"{sys.argv[1]}/test/tomo_noise0")
EOF
fi
rm -f "$DATA/sample_submission.csv"  # predict every folder of test/, including the copy below
first=$(find "$DATA/test" -mindepth 1 -maxdepth 1 -type d | sort | head -n 1)
cp -r "$first" "$DATA/test/zz_copy"  # same tomogram again: steady-state time without warm-up
python -c "import sys; from byu_motor.data.io import read_tomogram; print('tomogram shape', read_tomogram(sys.argv[1]).shape)" "$first"

step "checkpoint: preset $PRESET with random weights"
timeout 90 python - "$PRESET" "$WORK/model.pt" <<'EOF'
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
timeout 180 byu-motor predict "$DATA" --checkpoints "$WORK/model.pt" --out "$WORK/submission.csv" \
  --devices cuda --set infer.threshold=fixed
t1=$(date +%s.%N)
python - "$WORK/submission.csv.partial.jsonl" "$t0" "$t1" <<'EOF'
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
step "done (work folder $WORK)"
