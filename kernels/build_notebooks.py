"""Generate each kernel's .ipynb from its reviewable jupytext percent-format .py source.

python kernels/build_notebooks.py          # write the notebooks
python kernels/build_notebooks.py --check  # exit 1 when a notebook has drifted from its source
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

KERNELS = Path(__file__).resolve().parent


def sources() -> list[Path]:
    """The notebook sources: ``kernels/<name>/<name>.py``."""
    return sorted(p for p in KERNELS.glob("*/*.py") if p.stem == p.parent.name)


def cells(nb) -> list[tuple[str, str]]:
    """(cell type, source) pairs: what a reviewer compares."""
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


def main(argv: list[str] | None = None) -> int:
    """Write or check the notebooks; returns the exit code."""
    import jupytext
    import nbformat

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    drifted = []
    for src in sources():
        nb = jupytext.read(src)
        target = src.with_suffix(".ipynb")
        if args.check:
            if not target.exists() or cells(nbformat.read(target, as_version=4)) != cells(nb):
                drifted.append(str(target))
        else:
            jupytext.write(nb, target, fmt="ipynb")
            print(f"wrote {target}")
    if drifted:
        print("out of date (run python kernels/build_notebooks.py):", *drifted, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
