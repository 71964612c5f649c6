"""The web UI in a real browser: headless Chromium (Debian's, driven by Playwright) opens the UI, starts a run,
sees the Throttling tab fill, stops it and follows the link to its report.

Playwright's own browser downloads are not used: `.ci/run` installs Debian's `chromium` when it is missing.
"""

from __future__ import annotations

import csv
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


def first_sends(run_dir: Path) -> dict[str, float]:
    """Scenario time of each user's first attempt, from the complete lines written so far."""
    path = run_dir / "records.csv"
    text = path.read_text() if path.exists() else ""
    lines = text[: text.rfind("\n") + 1].splitlines()
    firsts: dict[str, float] = {}
    for row in csv.DictReader(lines):
        t = float(row["t_scenario"])
        firsts[row["user"]] = min(firsts.get(row["user"], t), t)
    return firsts


@pytest.mark.serial  # all four users' first attempts within 1 scenario s: 50 wall ms at time scale 20
def test_the_ui_runs_what_the_report_says(tmp_path: Path, browser: object) -> None:
    """The form shows the scenario's own users, ramp and time scale; a changed user count is an override the
    report lists; New restores the scenario's users; the scenario's ramp (all at once) holds at time scale
    20, so every user starts within 1 scenario s; the header names the stack the users load; a PTU scenario
    draws its utilization in the Throttling tab."""
    from playwright.sync_api import Browser, Page, expect

    assert isinstance(browser, Browser)
    port = free_port()
    run_dir = tmp_path / "ui"
    proc = locust(
        "--web-port", str(port), "--run-dir", str(run_dir), "--scenario", "scenarios/token-limit-per-app.yaml",
        "--time-scale", "20", cwd=tmp_path,
    )  # fmt: skip

    def filled_form(page: Page) -> None:
        expect(page.locator("form[data-harness-filled=true]")).to_have_count(1)

    def field(page: Page, name: str) -> object:
        return page.locator(f'form input[name="{name}"]')

    def run_until(page: Page, directory: Path, users: int) -> None:
        page.get_by_role("button", name="Start").click()
        wait_for(lambda: len(first_sends(directory)) >= users, what=f"{users} users' first attempts")
        page.get_by_role("button", name="Stop").click()
        wait_for(lambda: (directory / "report.html").exists(), what=f"the report of {directory.name}")

    try:
        wait_for(lambda: (run_dir / "run.json").exists(), what="the web UI's first run to be prepared")
        page = browser.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(f"http://127.0.0.1:{port}/")
        filled_form(page)
        expect(field(page, "userCount")).to_have_value("4")  # the scenario's users, not Locust's 1
        expect(field(page, "timeScale")).to_have_value("20")  # the command line's, not Locust's default 0
        # a run with 2 users: an override the report names
        field(page, "userCount").fill("2")
        run_until(page, run_dir, 2)
        assert "workload.users=2" in run_info(run_dir)["overrides"]
        assert "workload.users=2" in (run_dir / "report.html").read_text()
        # New: the scenario's own users again; a run of them starts all four within 1 scenario s
        page.get_by_role("button", name="New").click()
        filled_form(page)
        expect(field(page, "userCount")).to_have_value("4")
        second = tmp_path / "ui-2"
        run_until(page, second, 4)
        info = run_info(second)
        assert not [o for o in info["overrides"] if o.startswith("workload.")], info["overrides"]
        firsts = {user: t - info["load_started_at"] for user, t in first_sends(second).items()}
        assert len(firsts) == 4 and max(firsts.values()) < 1.0, firsts
        expect(page.locator("body")).to_contain_text(info["host"])  # the header: this run's own stack
        expect(page.locator("body")).not_to_contain_text("quota None")
        # a PTU scenario named in the form: its users, and its utilization drawn as a chart
        page.get_by_role("button", name="New").click()
        filled_form(page)
        page.get_by_role("button", name="Custom parameters").click()
        field(page, "scenario").fill("scenarios/ptu-spillover.yaml")
        field(page, "scenario").dispatch_event("change")
        expect(field(page, "userCount")).to_have_value("6")
        page.get_by_role("button", name="Start").click()
        page.get_by_role("tab", name="Throttling").click()
        expect(page.locator("#harness-ptu-chart polyline[data-deployment]").first).to_be_visible()
        page.get_by_role("button", name="Stop").click()
        wait_for(lambda: (tmp_path / "ui-3" / "report.html").exists(), what="the PTU run's report")
        assert not [o for o in run_info(tmp_path / "ui-3")["overrides"] if o.startswith("workload.")]
    finally:
        proc.terminate()
        proc.communicate(timeout=60)
