"""Benchmark: a label review page with 200 cards opens and becomes interactive in headless Chromium (goal < 2 s).

Builds the page from synthetic cases (20 tomograms of 64x128x128 voxels, 10 cases each, a third of them
misplaced, so 200 cards with 3-6 views each), then times, in one browser: ``page.goto`` until the page's script
has run (``body[data-ready]``) and until the load event (the views in sight loaded; the others load lazily),
and a first keyboard decision until the progress line shows it.

    python bench/review_page.py [--cards 200] [--repeats 3] [--chromium /usr/bin/chromium]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from byu_motor.report.cases import Case
from byu_motor.report.review_page import write_review_page

KINDS = ("fp", "missed", "misplaced")


def synthetic_cases(n: int, per_tomogram: int = 10) -> list[Case]:
    """``n`` cases over ``n / per_tomogram`` tomograms at 15.6 A, kinds in turn."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        kind = KINDS[i % 3]
        cand = tuple(float(v) for v in rng.uniform(8, 56, 3) * (1, 2, 2))
        label = tuple(float(v) for v in rng.uniform(8, 56, 3) * (1, 2, 2))
        out.append(Case(f"tomo_{i // per_tomogram:03d}", kind, 15.6,
                        None if kind == "missed" else cand, None if kind == "missed" else 0.5 + 0.5 * (i % 7) / 7,
                        None if kind == "fp" else label))  # fmt: skip
    return out


def main() -> None:
    """Build the page, open it ``--repeats`` times in fresh contexts, print the times."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cards", type=int, default=200, help="number of cases (default: 200)")
    parser.add_argument("--repeats", type=int, default=3, help="page loads to time (default: 3)")
    parser.add_argument(
        "--chromium", default="/usr/bin/chromium", help="browser path (default: /usr/bin/chromium)"
    )
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    cases = synthetic_cases(args.cards)
    rng = np.random.default_rng(1)
    volumes = {
        t: rng.integers(0, 255, size=(64, 128, 128), dtype=np.uint8) for t in {c.tomo_id for c in cases}
    }
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        page_path = write_review_page(tmp, cases, volumes.__getitem__)
        build_s = time.perf_counter() - t0
        size_mb = sum(p.stat().st_size for p in Path(tmp).rglob("*") if p.is_file()) / 1e6
        print(f"built {len(cases)} cards in {build_s:.2f} s ({size_mb:.1f} MB with the views)")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"], headless=True)
            for k in range(args.repeats):
                context = browser.new_context()
                page = context.new_page()
                t0 = time.perf_counter()
                page.goto(page_path.as_uri(), wait_until="commit")
                page.wait_for_selector("body[data-ready='1']")
                ready_s = time.perf_counter() - t0
                # the views in sight loaded (lazy ones below the fold need not be)
                page.wait_for_load_state("load")
                load_s = time.perf_counter() - t0
                t1 = time.perf_counter()
                page.keyboard.press("a")
                page.wait_for_function(
                    "document.getElementById('progress').textContent.startsWith('decided 1 /')"
                )
                key_ms = (time.perf_counter() - t1) * 1000
                print(
                    f"load {k + 1}: interactive after {ready_s:.3f} s (goal < 2 s), load event {load_s:.3f} s; "
                    f"first decision {key_ms:.0f} ms"
                )
                context.close()
            browser.close()


if __name__ == "__main__":
    main()
