"""A real headless Chromium for page tests: Debian's ``/usr/bin/chromium`` driven by
Playwright (which cannot download its own browsers here). ``.ci/run`` installs Chromium and a
CJK font when they are missing; elsewhere the tests that need them skip, saying why.

Screenshots go to ``test-screenshots/`` at the repository root (ignored by git), or to the
directory in ``OUTAGE_SENTINEL_SCREENSHOTS``, so a person can look at what a page shows.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("OUTAGE_SENTINEL_CHROMIUM") or shutil.which("chromium") or \
    "/usr/bin/chromium"
#: Chromium flags for a root user on a machine without a display or outside network.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-dev-shm-usage"]


def screenshot_dir() -> Path:
    path = Path(os.environ.get("OUTAGE_SENTINEL_SCREENSHOTS") or REPO / "test-screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """A headless Chromium for the session (skips when Chromium or Playwright is missing)."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium not found at {CHROMIUM} (.ci/run installs Debian's chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()
