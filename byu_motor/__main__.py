"""`python -m byu_motor` runs the command-line interface."""

from __future__ import annotations

import sys

from byu_motor.cli import main

sys.exit(main())
