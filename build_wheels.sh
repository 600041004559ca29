#!/usr/bin/env bash
# Build the byu_motor wheel and download the dependency wheels the Kaggle image lacks, into wheels/.
#
#   bash build_wheels.sh [--python 3.11] [--platform manylinux2014_x86_64] \
#                        [--constraints kernels/kaggle_constraints.txt] [--out wheels] [--missing "monai"]
#
# Packages listed in the constraints file are already in the image and are never downloaded; for each
# missing package the newest release whose torch/numpy requirements admit the constrained versions is chosen.
set -euo pipefail
cd "$(dirname "$0")"

PY_VERSION="3.11"
PLATFORM="manylinux2014_x86_64"
CONSTRAINTS="kernels/kaggle_constraints.txt"
OUT="wheels"
MISSING="monai"
PYTHON="${PYTHON:-python3}"

while [ $# -gt 0 ]; do
  case "$1" in
    --python) PY_VERSION="$2"; shift 2 ;;
    --platform) PLATFORM="$2"; shift 2 ;;
    --constraints) CONSTRAINTS="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --missing) MISSING="$2"; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "build_wheels.sh: unknown option $1" >&2; exit 2 ;;
  esac
done

[ -f "$CONSTRAINTS" ] || { echo "build_wheels.sh: constraints file not found: $CONSTRAINTS" >&2; exit 2; }
mkdir -p "$OUT"

echo "== byu_motor wheel (pure Python)"
rm -f "$OUT"/byu_motor-*.whl
# without build isolation first (offline-friendly); where the interpreter lacks setuptools' bdist_wheel, the
# isolated build (which fetches its build backend) decides, and only its errors are shown
"$PYTHON" -m pip wheel --quiet --no-deps --no-build-isolation -w "$OUT" . 2>/dev/null \
  || "$PYTHON" -m pip wheel --quiet --no-deps -w "$OUT" .

for pkg in $MISSING; do
  echo "== $pkg: newest release compatible with $CONSTRAINTS (python $PY_VERSION, $PLATFORM)"
  "$PYTHON" - "$pkg" "$PY_VERSION" "$PLATFORM" "$CONSTRAINTS" "$OUT" <<'PYEOF'
import email.parser
import glob
import os
import re
import subprocess
import sys
import tempfile
import zipfile

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

pkg, py, plat, constraints_file, out = sys.argv[1:]
pins = {}
for line in open(constraints_file):
    line = line.split("#", 1)[0].strip()
    if "==" in line:
        name, ver = line.split("==", 1)
        pins[name.strip().lower()] = ver.strip()


def download(spec, dest):
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
           "--python-version", py, "--platform", plat, "--implementation", "cp", "-d", dest, spec]
    return subprocess.run(cmd, capture_output=True, text=True)


def requirements(wheel):
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        msg = email.parser.Parser().parsestr(z.read(meta).decode())
    return [Requirement(r) for r in msg.get_all("Requires-Dist") or []]


def admits(wheel):
    env = {"python_version": py, "extra": "", "platform_system": "Linux", "sys_platform": "linux"}
    for req in requirements(wheel):
        if req.marker is not None and not req.marker.evaluate(env):
            continue
        pinned = pins.get(req.name.lower())
        if pinned and not req.specifier.contains(Version(pinned), prereleases=True):
            return f"{req.name}{req.specifier} excludes the image's {req.name}=={pinned}"
    return None


# Already downloaded and still compatible: nothing to do (idempotent).
for existing in sorted(glob.glob(os.path.join(out, f"{pkg}-*.whl"))):
    if admits(existing) is None:
        print(f"   kept {os.path.basename(existing)}")
        sys.exit(0)
    os.remove(existing)

idx = subprocess.run([sys.executable, "-m", "pip", "index", "versions", pkg], capture_output=True, text=True)
found = re.search(r"Available versions: (.*)", idx.stdout)
if not found:
    sys.exit(f"build_wheels.sh: cannot list releases of {pkg}: {idx.stderr.strip() or idx.stdout.strip()}")
versions = sorted((Version(v.strip()) for v in found.group(1).split(",")), reverse=True)
versions = [v for v in versions if not v.is_prerelease][:12]
reasons = []
with tempfile.TemporaryDirectory() as tmp:
    for v in versions:
        d = os.path.join(tmp, str(v))
        r = download(f"{pkg}=={v}", d)
        wheels = glob.glob(os.path.join(d, "*.whl"))
        if r.returncode or not wheels:
            reasons.append(f"{v}: no wheel for python {py} / {plat}")
            continue
        why = admits(wheels[0])
        if why:
            reasons.append(f"{v}: {why}")
            continue
        target = os.path.join(out, os.path.basename(wheels[0]))
        os.replace(wheels[0], target)
        print(f"   chose {os.path.basename(target)}")
        for line in reasons:
            print(f"   skipped {line}")
        sys.exit(0)
sys.exit(f"build_wheels.sh: no wheel of {pkg} fits python {py} / {plat} and {constraints_file}:\n  "
         + "\n  ".join(reasons))
PYEOF
done

echo "== wheels in $OUT:"
ls -1 "$OUT"/*.whl
echo
echo "Install line for the notebook (attach the wheels dataset first):"
echo "  pip install --no-index --find-links /kaggle/input/byu-motor-wheels byu_motor"
