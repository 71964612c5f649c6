"""A shipped scenario run headless by Locust: the report measures the run the scenario planned, splits it
by app, client profile and backend, and opens with an answer that records.csv bears out."""

from __future__ import annotations

import csv
import json
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from loadgen_helpers import LOCUST, LOCUSTFILE, ROOT

# one worker runs every test of the module (conftest.ONE_RUN_MODULES), so its one run (token_limit_run) is made once
pytestmark = pytest.mark.e2e

THROTTLED = {"gateway_token_limit", "gateway_quota", "backend_429", "breaker_open"}


@pytest.fixture(scope="module")
def token_limit_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """token-limit-per-app (its duration, users and apps) at time scale 60, 3 wall seconds; the polite app
    streams half its requests, so TTFT has streams and non-streams to tell apart."""
    run_dir = tmp_path_factory.mktemp("e2e") / "token-limit-per-app"
    command = [
        LOCUST, "-f", str(LOCUSTFILE), "--headless", "--only-summary",
        "--scenario", str(ROOT / "scenarios" / "token-limit-per-app.yaml"), "--set", "run.time_scale=60",
        "--set", "workload.mixes[1].stream_share=0.5", "--run-dir", str(run_dir),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=90, cwd=run_dir.parent)
    assert result.returncode == 0, result.stderr[-2000:]
    return run_dir


def read_rows(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "records.csv").open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_duration_is_the_planned_run_and_splits_add_up(token_limit_run: Path) -> None:
    summary = json.loads((token_limit_run / "summary.json").read_text(encoding="utf-8"))
    assert summary["run"]["duration_s"] == pytest.approx(180.0, abs=1.0)
    assert summary["run"]["cut_short_s"] == 0.0
    total = summary["requests"]["attempts"]
    assert total == len(read_rows(token_limit_run))
    for split in ("by_app", "by_client_profile", "by_backend", "by_replica"):
        assert sum(v["attempts"] for v in summary[split].values()) == total, split
    assert set(summary["by_app"]) == {"noisy", "polite"}


def test_opening_states_each_apps_throttled_share_as_records_show_it(token_limit_run: Path) -> None:
    rows = read_rows(token_limit_run)
    attempts = Counter(r["app_id"] for r in rows)
    throttled = Counter(r["app_id"] for r in rows if r["error_kind"] in THROTTLED)
    assert throttled["noisy"] > 0 and throttled["polite"] == 0  # the scenario's point: only the noisy app
    page = (token_limit_run / "report.html").read_text(encoding="utf-8").replace("&#x27;", "'")
    opening = page[page.index('<p class="verdict">') : page.index("</p>", page.index('<p class="verdict">'))]
    for app in ("noisy", "polite"):
        share = throttled[app] / attempts[app] * 100
        assert f"{app} was throttled on {share:.1f} % of its {attempts[app]} attempts" in opening
    assert "backends never returned 429" in opening


def test_ttft_counts_streamed_requests_only(token_limit_run: Path) -> None:
    rows = read_rows(token_limit_run)
    ok = [r for r in rows if not r["error_kind"] and r["ttft_s"]]
    streamed_ok = [r for r in ok if r["stream"] == "true"]
    assert streamed_ok and len(streamed_ok) < len(ok)  # non-streamed answers carry a ttft_s too
    summary = json.loads((token_limit_run / "summary.json").read_text(encoding="utf-8"))
    assert summary["ttft"]["stream"]["count"] == len(streamed_ok)
    assert "all" not in summary["ttft"] and "non_stream" not in summary["ttft"]
