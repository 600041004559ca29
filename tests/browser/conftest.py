"""Real-browser harness: headless Chromium from the system's packages, driven by Playwright.

Nothing downloads a browser: Chromium comes from ``apt-get install chromium`` (``.ci/run`` does it) and is
launched by path. A missing browser or Playwright fails these tests; it never skips them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

CANDIDATE_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser")


def chromium_path() -> str:
    """``$BYU_CHROMIUM``, else the system Chromium; fails the test when there is none."""
    for path in (os.environ.get("BYU_CHROMIUM"), *CANDIDATE_PATHS, shutil.which("chromium")):
        if path and Path(path).exists():
            return path
    pytest.fail("Chromium is missing: apt-get install -y chromium (or set BYU_CHROMIUM to its path)")


@pytest.fixture(scope="module")
def browser() -> Iterator:
    """A headless Chromium (``--no-sandbox``: CI runs as root)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is missing: pip install -e '.[test]'")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"], headless=True)
        yield chromium
        chromium.close()


@pytest.fixture()
def page(browser) -> Iterator:
    """A fresh page (own context: no localStorage shared between tests) recording console errors in
    ``page.errors``."""
    context = browser.new_context(accept_downloads=True)
    pg = context.new_page()
    pg.errors = []
    pg.on("console", lambda msg: pg.errors.append(msg.text) if msg.type == "error" else None)
    pg.on("pageerror", lambda err: pg.errors.append(str(err)))
    yield pg
    context.close()
