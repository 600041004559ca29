#!/usr/bin/env bash
# One-step set-up: a virtual environment in .venv with torch, the package and its test extra (which brings
# matplotlib for previews and reports, and Playwright for the browser tests; the browser itself is the system
# Chromium, `apt-get install chromium`: never `playwright install`).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip setuptools
# torch first: plain `torch torchvision` resolves to a matching pair (see README, "Installing torch").
"$VENV/bin/python" -m pip install --quiet torch torchvision
"$VENV/bin/python" -m pip install --quiet -e ".[test]"
echo "set-up done: $VENV"
