"""The harness in Locust's web UI: a live Throttling tab, every Start a run of its own, the report linked.

Locust 2.x renders extra tabs from its template args (`extendedTabs` with a table structure in
`extendedTables`, rows in the `extendedStats` of `/stats/requests`, which the UI polls every two seconds)
and lists `extendedCsvFiles` as links in its Download Data tab. The same figures are JSON at
`GET /harness/throttling`, for scripts and tests.

Start (`POST /swarm`) applies the harness's options of the form (scenario, run directory, client profile,
time scale, users) to a new run when the last one has ended or the options changed; Stop ends the run.
`/harness/report` is the report of the latest finished run; `/harness/runs/<run id>/...` serves any run's
files of this process.
"""

from __future__ import annotations

import shutil
from typing import Any

from flask import Response, jsonify, redirect, request, send_from_directory

from harness.clock import VirtualClock
from harness.errors import HarnessError
from harness.loadgen.live import LiveThrottling, table_rows
from harness.loadgen.startup import SCENARIO_CLOCK_NOTE, open_run, run_key
from harness.loadgen.state import STATE

TAB = "harness-throttling"
THROTTLING_PATH = "/harness/throttling"
REPORT_PATH = "/harness/report"
RUN_FILES_PATH = "/harness/runs"
# the harness's options of Locust's form, with the type each has in the parsed options
FORM_OPTIONS = {"scenario": str, "run_dir": str, "client_profile": str, "time_scale": float}
COLUMNS = (("panel", "Panel"), ("item", "Item"), ("value", "Value"), ("detail", "Detail"))


def install_web_ui(environment: Any) -> None:
    """Add the tab, its JSON route, the report links and the run-per-Start behaviour to Locust's web UI."""
    web_ui = environment.web_ui
    web_ui.template_args["extendedTabs"] = [{"title": "Throttling", "key": TAB}]
    web_ui.template_args["extendedTables"] = [
        {"key": TAB, "structure": [{"key": key, "title": title} for key, title in COLUMNS]}
    ]
    web_ui.template_args["extendedCsvFiles"] = [
        {"href": f".{REPORT_PATH}", "title": "Harness report of the latest finished run (report.html)"},
        {"href": f".{THROTTLING_PATH}", "title": "Throttling figures of the current run (JSON)"},
    ]
    app = web_ui.app

    @app.route(THROTTLING_PATH)
    def throttling() -> Response:
        return jsonify(throttling_snapshot(environment))

    @app.route(REPORT_PATH)
    def latest_report() -> Any:
        if STATE.last_finished is None:
            return Response("no run has finished yet: its report appears here when it stops\n", 404)
        # relative, so it holds under --web-base-path too: /harness/report -> /harness/runs/<id>/report.html
        return redirect(f"runs/{STATE.last_finished}/report.html")

    @app.route(f"{RUN_FILES_PATH}/<run_id>/<path:name>")
    def run_file(run_id: str, name: str) -> Any:
        if run_id not in STATE.runs:
            return Response(f"no run {run_id} in this Locust process\n", 404)
        return send_from_directory(STATE.runs[run_id].resolve(), name)

    @app.before_request
    def start_of_a_run() -> Any:
        if request.method != "POST" or not request.path.endswith("/swarm"):
            return None
        try:
            next_run(environment, request.form)
        except HarnessError as exc:
            return jsonify({"success": False, "message": str(exc), "host": environment.host})
        return None

    @app.after_request
    def extended_stats(response: Response) -> Response:
        if not response.is_json:
            return response
        if request.path.endswith("/stats/requests"):
            data = response.get_json()
            rows = table_rows(throttling_snapshot(environment))
            data["extended_stats"] = [{"key": TAB, "data": rows}]
            response.set_data(jsonify(data).get_data())
        elif request.path.endswith("/swarm") and STATE.stack is not None:
            # Locust took the form's host field (empty, or an earlier run's stack): users load this run's stack
            environment.host = STATE.stack.target_url
            data = response.get_json()
            data["host"] = environment.host
            response.set_data(jsonify(data).get_data())
        return response


def next_run(environment: Any, form: Any) -> None:
    """On Start: the form's harness options into the parsed options, then a new run unless one is ready."""
    options = environment.parsed_options
    for name, kind in FORM_OPTIONS.items():
        if name in form:
            text = form[name].strip()
            setattr(options, name, kind(text) if text else kind())
    STATE.users_option = _positive(form.get("user_count"), int) or STATE.users_option
    STATE.spawn_rate_option = _positive(form.get("spawn_rate"), float) or STATE.spawn_rate_option
    if form.get("host", "").strip() in STATE.embedded_urls:
        environment.host = ""  # the embedded stack of an earlier run: this run starts its own
    if STATE.run_open:
        if STATE.test_started_at is not None:
            return  # a running run: Locust only changes its user count
        if STATE.run_key == run_key(environment, options):
            return  # prepared at start-up with these very options
        _discard_unused_run()
    open_run(environment, options)


def _discard_unused_run() -> None:
    """A run prepared but never started, whose options changed before Start: stop its stack, drop it."""
    STATE.run_open = False
    if STATE.stack is not None:
        STATE.stack.stop()
        STATE.stack = None
    if STATE.writer is not None:
        STATE.writer.close()
    STATE.sink = None
    if STATE.run_dir is not None:
        STATE.runs.pop(STATE.run_dir.name, None)
        if STATE.created_run_dir:
            shutil.rmtree(STATE.run_dir, ignore_errors=True)


def _positive(text: str | None, kind: type) -> Any:
    try:
        value = kind(text) if text else None
    except ValueError:
        return None
    return value if value and value > 0 else None


def users_note() -> str:
    """Where the run's user count comes from: the form's field does not apply to stages or a trace."""
    workload = STATE.scenario.workload if STATE.scenario is not None else None
    if workload is not None and workload.stages:
        return "from the scenario's stages (the users field does not apply)"
    if workload is not None and workload.trace is not None:
        return f"{workload.trace.users}, from the scenario's trace (the users field does not apply)"
    return f"{STATE.users_option or (workload.users if workload else '')} (the users field)"


def throttling_snapshot(environment: Any) -> dict[str, Any]:
    """The Throttling tab's figures for the current (or last) run, with what run they belong to."""
    live = STATE.live
    snapshot = live.snapshot() if live is not None else LiveThrottling(VirtualClock()).snapshot()
    scale = STATE.clock.scale if STATE.clock is not None else 1.0
    snapshot["run"] = {
        "run_id": STATE.run_dir.name if STATE.run_dir else None,
        "run_dir": str(STATE.run_dir) if STATE.run_dir else None,
        "scenario": STATE.scenario_path or None,
        "state": "running" if STATE.run_open and STATE.test_started_at is not None else "not running",
        "target": environment.host,
        "users": users_note(),
        "clock": SCENARIO_CLOCK_NOTE % (scale, scale) if scale != 1 else "real time (time scale 1)",
        "report": f".{REPORT_PATH}" if STATE.last_finished else None,
        "report_of_run": STATE.last_finished,
    }
    return snapshot
