"""The web UI in a real browser: headless Chromium (Debian's, driven by Playwright) opens the UI, starts a run,
sees the Throttling tab fill, stops it and follows the link to its report.

Playwright's own browser downloads are not used: `.ci/run` installs Debian's `chromium` when it is missing.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.loadgen_helpers import free_port, locust, run_info, wait_for

pytestmark = pytest.mark.e2e

CHROMIUM = os.environ.get("HARNESS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
TIMEOUT_MS = 30_000


@pytest.fixture
def browser() -> Iterator[object]:
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')"
    )
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install -y chromium (or set HARNESS_CHROMIUM)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def test_start_watch_throttling_stop_and_open_the_report(tmp_path: Path, browser: object) -> None:
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    port = free_port()
    run_dir = tmp_path / "ui"
    proc = locust(
        "--web-port", str(port), "--run-dir", str(run_dir), "--scenario", "scenarios/token-limit-per-app.yaml",
        "--time-scale", "20", cwd=tmp_path,
    )  # fmt: skip
    try:
        wait_for(lambda: (run_dir / "run.json").exists(), what="the web UI's first run to be prepared")
        page = browser.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(f"http://127.0.0.1:{port}/")
        page.get_by_role("button", name="Start").click()
        page.get_by_role("tab", name="Throttling").click()
        # the noisy app meets the gateway's token limit: its row fills in within a few refreshes
        limited = page.get_by_role("row").filter(has_text="429 gateway token limit").filter(has_text="in the run")
        expect(limited).to_contain_text(re.compile(r"\b[1-9][0-9]* in the run"), timeout=TIMEOUT_MS)
        expect(page.get_by_role("row").filter(has_text="scenario milliseconds")).to_have_count(1)
        page.get_by_role("button", name="Stop").click()
        wait_for(lambda: (run_dir / "report.html").exists(), what="the report written at Stop")
        page.get_by_role("tab", name="Download Data").click()
        page.get_by_role("link", name="Harness report of the latest finished run (report.html)").click()
        page.wait_for_url(f"**/harness/runs/{run_dir.name}/report.html")
        expect(page.locator("body")).to_contain_text("noisy")
        assert run_info(run_dir)["ended_by"] == "stopped"
    finally:
        proc.terminate()
        proc.communicate(timeout=60)
