"""The web UI as a user drives it over HTTP: Start (`POST /swarm`), the Throttling figures, Stop, Start again.

One Locust process on loopback, time scale 20, a few wall seconds per run.
"""

from __future__ import annotations

import json
import signal
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.clock import VirtualClock
from harness.loadgen.live import RETRIED_SUFFIX, BreakerLog, LiveThrottling, table_rows
from harness.records import ENDED_BY, OFFERED_LOAD, TIME_MISSING, breaker_row, read_records, record_cells
from harness.records.outcomes import CAUSE_NAMES
from tests.loadgen_helpers import free_port, locust, run_info, wait_for

UI_SCALE = 20


class WebUI:
    def __init__(self, url: str, proc: subprocess.Popen[str], run_dir: Path) -> None:
        self.url, self.proc, self.run_dir = url, proc, run_dir

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=30) as response:
            return json.loads(response.read())

    def post(self, path: str, form: dict[str, str] | None = None) -> Any:
        data = urllib.parse.urlencode(form or {}).encode()
        with urllib.request.urlopen(urllib.request.Request(self.url + path, data=data), timeout=60) as response:
            return json.loads(response.read())

    def start(self, scenario: str, users: int) -> Any:
        # the fields Locust's form sends: its own and the harness's options (the run directory as shown)
        form = {"user_count": str(users), "spawn_rate": str(users), "host": "", "scenario": scenario}
        return self.post("/swarm", {**form, "time_scale": str(UI_SCALE), "run_dir": str(self.run_dir)})


def listening_address(port: int) -> str:
    """The local address a TCP socket listens on for `port` (from /proc/net/tcp, IPv4)."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if int(hex_port, 16) == port and state == "0A":  # LISTEN
            return ".".join(str(int(address[i : i + 2], 16)) for i in (6, 4, 2, 0))
    return ""


@pytest.fixture
def web_ui(tmp_path: Path) -> Iterator[WebUI]:
    port = free_port()
    run_dir = tmp_path / "ui"
    # no --web-host: the default must be loopback only
    proc = locust("--web-port", str(port), "--run-dir", str(run_dir), cwd=tmp_path)
    ui = WebUI(f"http://127.0.0.1:{port}", proc, run_dir)
    try:
        wait_for(lambda: listening_address(port), what="the web UI to listen")
        yield ui
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)


def backends_in(run_dir: Path) -> set[str]:
    return {json.loads(line)["backend"] for line in (run_dir / "backend.jsonl").read_text().splitlines()}


@pytest.mark.e2e
def test_runs_from_the_ui_throttling_tab_and_reports(web_ui: WebUI) -> None:
    port = int(web_ui.url.rsplit(":", 1)[1])
    assert listening_address(port) == "127.0.0.1"
    # 1. quickstart as prepared at start-up: Start, then Stop half-way
    started = web_ui.start("scenarios/quickstart.yaml", users=3)
    assert started["success"] and started["host"] == run_info(web_ui.run_dir)["host"]
    wait_for(lambda: web_ui.get("/harness/throttling")["attempts"]["total"]["success"] > 5, what="quickstart load")
    web_ui.post("/stop")
    first = web_ui.run_dir
    assert (first / "report.html").exists(), "Stop did not write the report"
    info = run_info(first)
    assert info[ENDED_BY] == "stopped" and info[TIME_MISSING] > 0 and info["summary"]
    with urllib.request.urlopen(web_ui.url + "/harness/report", timeout=30) as response:  # follows the redirect
        assert response.url.endswith(f"/harness/runs/{first.name}/report.html") and b"<html" in response.read()
    # 2. another scenario: a new run directory, a new stack with that scenario's backends
    assert web_ui.start("ptu-spillover.yaml", users=6)["success"]
    second = first.with_name(f"{first.name}-2")

    def throttled() -> dict[str, Any] | None:
        data = web_ui.get("/harness/throttling")
        return data if data["attempts"]["total"]["backend_429"] > 0 else None

    data = wait_for(throttled, timeout_s=30, what="backend 429s in the Throttling figures")
    assert data["run"]["run_dir"] == str(second) and "scenario milliseconds" in data["run"]["clock"]
    assert data["primary"] == "ptu" and data["run"]["users"] == "6 (the users field)"
    assert data["run"]["target"] == run_info(second)["host"]  # this run's own stack, whatever the form said
    assert {b["backend"] for b in data["breakers"]} == {"ptu", "payg"}
    assert all(b["state"] in ("open", "closed") for b in data["breakers"])
    assert data["retry_after"]["count"] > 0 and data["retry_after"]["max_s"] > 0
    # Locust's own statistics count the throttled attempts the clients retried
    stats = web_ui.get("/stats/requests")
    assert stats["fail_ratio"] > 0
    retried = CAUSE_NAMES["backend_429"] + RETRIED_SUFFIX
    assert any(entry["name"].endswith(retried) and entry["num_failures"] for entry in stats["stats"])
    # ... and the Throttling tab's rows come with them
    rows = next(e["data"] for e in stats["extended_stats"] if e["key"] == "harness-throttling")
    assert any(r["panel"] == "breaker state" and r["item"] == "ptu (primary)" for r in rows)
    web_ui.post("/stop")
    assert (second / "report.html").exists()
    assert backends_in(first) == {"aoai-eastus"} and backends_in(second) == {"ptu", "payg"}
    assert run_info(second)["scenario"].endswith("ptu-spillover.yaml")
    assert web_ui.get("/harness/throttling")["run"]["report_of_run"] == second.name


def test_live_figures_from_records_and_cells_agree() -> None:
    clock = VirtualClock(start=1000.0)
    records = [
        {"error_kind": "", "backend": "ptu", "deployment": "gpt-4o", "usage_total": 300,
         "ratelimit_remaining_tokens": 900, "ratelimit_remaining_requests": 9, "decision": "success"},
        {"error_kind": "backend_429", "backend": "ptu", "retry_after_ms": 1500.0, "decision": "retry",
         "retry_wait_s": 1.5, "retry_wait_source": "retry-after-ms"},
        {"error_kind": "gateway_token_limit", "app_id": "noisy", "retry_after_s": 40.0, "gateway_remaining_tokens": 0,
         "decision": "give_up"},
        {"error_kind": "", "backend": "payg", "usage_total": 100, "decision": "success"},
    ]  # fmt: skip
    direct, shipped = LiveThrottling(clock), LiveThrottling(clock)
    for record in records:
        direct.add(record)
    shipped.add_cells([record_cells(r) for r in records])  # as a worker ships them
    assert direct.snapshot() == shipped.snapshot()
    snapshot = direct.snapshot()
    assert snapshot["attempts"]["total"] == {
        "success": 2, "gateway_token_limit": 1, "backend_429": 1, "gateway_quota": 0, "breaker_open": 0,
        "other_error": 0,
    }  # fmt: skip
    assert snapshot["attempts"]["per_wall_s"]["success"] == 0.2  # 2 in the last 10 wall seconds
    clock.advance(11.0)
    assert direct.snapshot()["attempts"]["per_wall_s"]["success"] == 0.0
    assert snapshot["token_share_by_backend"] == {"payg": 0.25, "ptu": 0.75}
    assert snapshot["ratelimit_remaining"] == [{"backend": "ptu", "deployment": "gpt-4o", "tokens": 900, "requests": 9}]
    assert snapshot["gateway_remaining_by_app"] == {"noisy": {"tokens": 0, "quota_tokens": None}}
    assert snapshot["retry_after"] == {"count": 2, "p50_s": 20.75, "max_s": 40.0}
    assert snapshot["reactions"]["waited_retry_after"] == 1 and snapshot["reactions"]["gave_up"] == 1


def test_without_backend_headers_the_backend_panels_say_not_available() -> None:
    view = LiveThrottling(VirtualClock())
    view.add({"error_kind": "connection", "decision": "fail"})
    snapshot = view.snapshot()
    assert snapshot["breakers"] is None and snapshot["token_share_by_backend"] is None
    assert snapshot["attempts"]["total"]["other_error"] == 1
    rows = table_rows(snapshot)
    assert {r["panel"] for r in rows if r["value"] == "not available"} == {
        "breaker state", "token share", "gateway remaining tokens"
    }  # fmt: skip


def test_breaker_states_follow_the_gateway_log(tmp_path: Path) -> None:
    log = tmp_path / "gateway.jsonl"
    clock = VirtualClock(start=100.0)
    breakers = BreakerLog(log, ["ptu", "payg"])
    row = breaker_row(t=100.0, t_wall=1.0, backend="ptu", reason="429", until=130.0, **{"from": "closed", "to": "open"})
    line = json.dumps(row, separators=(",", ":"))
    log.write_text('{"kind":"request","backend":"ptu"}\n' + line[:20])  # half a line: not read yet
    view = LiveThrottling(clock, breakers, primary="ptu")
    assert view.snapshot()["breakers"][0] == {"backend": "ptu", "state": "closed", "closes_in_s": None}
    log.write_text('{"kind":"request","backend":"ptu"}\n' + line + "\n")
    clock.advance(10.0)
    assert view.snapshot()["breakers"] == [
        {"backend": "ptu", "state": "open", "closes_in_s": 20.0},
        {"backend": "payg", "state": "closed", "closes_in_s": None},
    ]
    clock.advance(25.0)  # past `until`: closed even before the closing row is flushed
    assert view.snapshot()["breakers"][0]["state"] == "closed"


@pytest.mark.e2e
def test_the_form_shows_the_scenario_and_a_changed_ramp_is_an_override_run_in_scenario_time(web_ui: WebUI) -> None:
    """Locust's page would show its own defaults (time scale 0, ramp 1 user per wall second); the form shows
    the run's. A changed ramp is users per scenario second at any time scale, and the report lists it."""
    with urllib.request.urlopen(web_ui.url + "/", timeout=30) as response:
        page = response.read().decode()
    args = json.loads(page.split("window.templateArgs = ", 1)[1].split("</script>", 1)[0].strip().rstrip(";"))
    # quickstart: 4 users, 4 a second, time scale 1 (no --time-scale on the command line)
    assert (args["num_users"], args["spawn_rate"]) == (4, 4.0)
    assert args["extra_options"]["time_scale"]["default_value"] == 1.0
    assert "harness-ui.js" in page
    shown = web_ui.get("/harness/form-defaults?scenario=scenarios/ptu-spillover.yaml")
    assert (shown["users"], shown["spawn_rate"], shown["time_scale"]) == (6, 10.0, 10.0)
    # ptu-spillover with its own users and time scale, a ramp of 2 users per scenario second
    form = {"user_count": "6", "spawn_rate": "2", "host": "", "scenario": "scenarios/ptu-spillover.yaml"}
    assert web_ui.post("/swarm", {**form, "time_scale": "10", "run_dir": str(web_ui.run_dir)})["success"]
    run_dir = web_ui.run_dir  # the quickstart run prepared at start-up never ran: its directory is this one's
    wait_for(lambda: web_ui.get("/harness/throttling")["attempts"]["all"] > 12, what="the ramped users' load")
    web_ui.post("/stop")
    info = run_info(run_dir)
    assert info["overrides"] == ["workload.spawn_rate=2"]  # users and time scale as the scenario's: none
    assert "workload.spawn_rate=2" in (run_dir / "report.html").read_text()
    started = info["load_started_at"]
    firsts: dict[str, float] = {}
    for row in read_records(run_dir / "records.csv"):
        firsts[row["user"]] = min(firsts.get(row["user"], row["t_scenario"]), row["t_scenario"])
    offsets = sorted(t - started for t in firsts.values())
    assert offsets == pytest.approx([0.0, 0.0, 1.0, 1.0, 2.0, 2.0], abs=0.3)  # batches of 2 a scenario second


def test_ptu_utilization_per_deployment_from_the_answers_bounded_in_points() -> None:
    """The Throttling tab's PTU chart: the utilization header of each answer, the latest per wall second and
    deployment, the same from a worker's shipped cells, and never more than PTU_POINTS_KEPT points."""
    from harness.loadgen.live import PTU_POINTS_KEPT

    clock = VirtualClock(start=1000.0)
    direct, shipped = LiveThrottling(clock), LiveThrottling(clock)
    for second in range(PTU_POINTS_KEPT + 50):
        for level in (40.0, 60.0 + second % 30):  # two answers a second: the later one is the point
            record = {"backend": "ptu", "deployment": "gpt-4o", "ptu_utilization": level, "error_kind": ""}
            direct.add(record)
            shipped.add_cells([record_cells(record)])
        direct.add({"backend": "payg", "deployment": "gpt-4o", "error_kind": ""})  # standard: no utilization
        clock.advance(1.0)
    snapshot = direct.snapshot()
    assert snapshot["ptu_utilization"] == shipped.snapshot()["ptu_utilization"]
    (ptu,) = snapshot["ptu_utilization"]
    assert (ptu["backend"], ptu["deployment"], ptu["latest"]) == ("ptu", "gpt-4o", 60.0 + (PTU_POINTS_KEPT + 49) % 30)
    assert len(ptu["series"]) == PTU_POINTS_KEPT
    assert ptu["series"][-1] == [float(PTU_POINTS_KEPT + 49), ptu["latest"]]
    rows = table_rows(snapshot)
    assert {
        "panel": "PTU utilization (latest)",
        "item": "ptu / gpt-4o",
        "value": f"{ptu['latest']:g} %",
        "detail": "",
    } in rows


def test_the_gateway_remaining_row_says_no_quota_rather_than_none() -> None:
    view = LiveThrottling(VirtualClock())
    view.add({"app_id": "noisy", "gateway_remaining_tokens": 1200, "error_kind": ""})
    rows = [r for r in table_rows(view.snapshot()) if r["panel"] == "gateway remaining tokens"]
    assert rows == [{"panel": "gateway remaining tokens", "item": "noisy", "value": "1200", "detail": "no quota"}]


def test_the_client_reads_a_ptu_deployments_utilization_header() -> None:
    from harness.client.headers import capture

    assert capture({"azure-openai-deployment-utilization": "37.5%"})["ptu_utilization"] == 37.5
    assert "ptu_utilization" not in capture({"x-ratelimit-remaining-tokens": "120"})


FRESH_TRACE_ROWS = 16
FRESH_SCALE = 6
FRESH_DURATION_S = 30


def fresh_state_scenario(directory: Path) -> Path:
    """A trace of requests every half scenario second against a roomy deployment: no 429, no retries."""
    rows = [f"{i * 0.5},chat-app,chat,60,20,false,gpt-4o" for i in range(FRESH_TRACE_ROWS)]
    (directory / "trace.csv").write_text(
        "offset_s,app,operation,prompt_tokens,max_tokens,stream,deployment\n" + "\n".join(rows) + "\n"
    )
    path = directory / "trace-replay.yaml"
    path.write_text(
        f"run: {{duration: {FRESH_DURATION_S}, seed: 1}}\n"
        "backends:\n  - name: aoai-eastus\n    deployments:\n      gpt-4o: {tpm: 10000000}\n"
        "workload:\n  apps: [{id: chat-app}]\n  trace: {file: trace.csv, users: 2}\n"
    )
    return path


@pytest.mark.e2e
def test_a_second_run_in_the_process_starts_from_fresh_state(web_ui: WebUI, tmp_path: Path) -> None:
    """Run 1 replays part of a trace with 2 users and is stopped; run 2 (Start again, other users) must
    replay the whole trace from its first row, plan its own seats, count only its own attempts and end
    on its own terms: nothing of run 1 (trace position, seats, tally, live figures, end cause) carries over."""
    scenario = str(fresh_state_scenario(tmp_path))

    def start(users: int) -> Any:
        form = {"user_count": str(users), "spawn_rate": str(users), "host": "", "scenario": scenario}
        return web_ui.post("/swarm", {**form, "time_scale": str(FRESH_SCALE), "run_dir": str(web_ui.run_dir)})

    assert start(users=2)["success"]
    wait_for(lambda: web_ui.get("/harness/throttling")["attempts"]["total"]["success"] >= 3, what="run 1's load")
    web_ui.post("/stop")
    first = web_ui.run_dir
    assert run_info(first)[ENDED_BY] == "stopped"
    first_id = first.name

    assert start(users=3)["success"]
    second = first.with_name(f"{first.name}-2")
    wait_for(lambda: (second / "report.html").exists(), timeout_s=60, what="run 2 to run its plan")
    info = run_info(second)
    # the end cause is run 2's own: it ran its plan, whereas run 1 was stopped
    assert info[ENDED_BY] == "completed" and info[TIME_MISSING] == 0
    records = read_records(second / "records.csv")
    assert {r["run_id"] for r in records} == {second.name} != {first_id}
    # the trace from its first row: every row once (run 1 had used some of them)
    assert sum(1 for r in records if r["attempt"] == 1) == FRESH_TRACE_ROWS
    assert all(r["status"] == 200 for r in records)
    # run 2's own schedule of 3 users (run 1 had 2), and only run 2's offered load against it
    offered = info[OFFERED_LOAD]
    assert offered["planned_user_s"] > 2 * FRESH_DURATION_S
    assert offered["offered_user_s"] <= offered["planned_user_s"] + 0.5
    # the live figures count run 2's attempts only
    totals = web_ui.get("/harness/throttling")["attempts"]["total"]
    assert sum(totals.values()) == len(records)
