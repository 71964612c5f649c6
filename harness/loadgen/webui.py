"""The harness in Locust's web UI: a live Throttling tab, every Start a run of its own, the report linked.

Locust 2.x renders extra tabs from its template args (`extendedTabs` with a table structure in
`extendedTables`, rows in the `extendedStats` of `/stats/requests`, which the UI polls every two seconds)
and lists `extendedCsvFiles` as links in its Download Data tab. The same figures are JSON at
`GET /harness/throttling`, for scripts and tests.

Start (`POST /swarm`) applies the harness's options of the form (scenario, run directory, client profile,
time scale, users) to a new run when the last one has ended or the options changed; Stop ends the run.
`/harness/report` is the report of the latest finished run; `/harness/runs/<run id>/...` serves any run's
files of this process.

The form shows what a run would be: the users, ramp (users per scenario second) and time scale of the
scenario named in it, with the command line's own options (`/harness/form-defaults`); a page script
(`static/harness-ui.js`) fills them in whenever the form is shown anew (New) or its scenario changes, and
draws the Throttling tab's PTU utilization chart. A form value that differs from those is an override of
the run, listed under the report's "settings changed"; one that does not is none.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from flask import Response, jsonify, redirect, request, send_from_directory

from harness.clock import VirtualClock
from harness.errors import HarnessError
from harness.loadgen.live import LiveThrottling, table_rows
from harness.loadgen.startup import DEFAULT_SCENARIO, SCENARIO_CLOCK_NOTE, open_run, run_key, scenario_file
from harness.loadgen.state import STATE
from harness.scenario import load_scenario
from harness.workload.shape import peak_users

TAB = "harness-throttling"
THROTTLING_PATH = "/harness/throttling"
FORM_DEFAULTS_PATH = "/harness/form-defaults"
STATIC_PATH = "/harness/static"
STATIC_DIR = Path(__file__).with_name("static")
PAGE_SCRIPT = "harness-ui.js"
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

    @app.route(FORM_DEFAULTS_PATH)
    def defaults() -> Response:
        try:
            return jsonify({"ok": True, **form_defaults(request.args.get("scenario", ""))})
        except HarnessError as exc:
            return jsonify({"ok": False, "message": str(exc)})

    @app.route(f"{STATIC_PATH}/<path:name>")
    def static_file(name: str) -> Any:
        return send_from_directory(STATIC_DIR.resolve(), name)

    _show_real_values(web_ui)

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
        if response.mimetype == "text/html" and not response.direct_passthrough:
            return _with_page_script(response)
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
    # a value the form shows unchanged is the scenario's (or the command line's): no override of the run
    shown = form_defaults(options.scenario)
    users, rate = _positive(form.get("user_count"), int), _positive(form.get("spawn_rate"), float)
    STATE.users_option = users if users is not None and users != shown["users"] else STATE.cli_options[0]
    STATE.spawn_rate_option = rate if rate is not None and rate != shown["spawn_rate"] else STATE.cli_options[1]
    if options.time_scale == shown["time_scale"]:
        options.time_scale = STATE.cli_options[2]
    if form.get("host", "").strip() in STATE.embedded_urls:
        environment.host = ""  # the embedded stack of an earlier run: this run starts its own
    if STATE.run_open:
        if STATE.test_started_at is not None:
            return  # a running run: Locust only changes its user count
        if STATE.run_key == run_key(environment, options):
            return  # prepared at start-up with these very options
        _discard_unused_run()
    open_run(environment, options)


def form_defaults(scenario: str) -> dict[str, Any]:
    """What the start form shows for `scenario`: its users, ramp and time scale with the command line's
    options (None where the form's field does not apply: stages set their own users and ramps)."""
    users, rate, scale = STATE.cli_options
    overrides = list(STATE.cli_overrides) + ([f"run.time_scale={scale}"] if scale else [])
    loaded = load_scenario(scenario_file(scenario or DEFAULT_SCENARIO), overrides)
    workload = loaded.workload
    own_users = workload.trace.users if workload.trace else workload.users
    stages = bool(workload.stages)
    return {
        "users": None if stages else users or own_users,
        "spawn_rate": None if stages else rate or workload.spawn_rate,
        "time_scale": loaded.run.time_scale,
    }


def _show_real_values(web_ui: Any) -> None:
    """Locust fills its page from the command line: the users, ramp and time scale the run will have and
    the target the users will load are shown instead (Locust's `--time-scale` default of 0 means "the
    scenario's")."""
    update = web_ui.update_template_args

    def update_with_real_values() -> None:
        update()
        args = web_ui.template_args
        try:
            shown = form_defaults(STATE.scenario_path)
        except HarnessError:
            return
        if shown["users"] is not None:
            args["num_users"], args["spawn_rate"] = shown["users"], shown["spawn_rate"]
        extra = args.get("extra_options") or {}
        if "time_scale" in extra:
            extra["time_scale"]["default_value"] = shown["time_scale"]
        if "scenario" in extra and STATE.scenario_path:
            extra["scenario"]["default_value"] = STATE.scenario_path
        if STATE.stack is not None:
            args["host"] = STATE.stack.target_url

    web_ui.update_template_args = update_with_real_values


def _with_page_script(response: Response) -> Response:
    page = response.get_data(as_text=True)
    tag = f'<script src=".{STATIC_PATH}/{PAGE_SCRIPT}" defer></script>'
    if "templateArgs" in page and "</head>" in page and tag not in page:  # Locust's own page, not a report
        response.set_data(page.replace("</head>", f"{tag}</head>", 1))
    return response


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
    """Where the run's user count comes from: the form's field does not apply to stages."""
    workload = STATE.scenario.workload if STATE.scenario is not None else None
    if workload is not None and workload.stages:
        return "from the scenario's stages (the users field does not apply)"
    if workload is not None and workload.trace is not None:
        return f"{workload.trace.users} replaying the scenario's trace (the users field)"
    return f"{workload.users if workload else ''} (the users field)"  # the scenario holds the field's value


def sending_now() -> str | None:
    """Users of the schedule sending now, of the most it ever has at once (which is how many users Locust
    shows: they hold the seats, and wait between them)."""
    seats = STATE.seats
    if not seats or STATE.test_started_at is None or STATE.clock is None:
        return None
    now = STATE.elapsed()
    live = sum(1 for seat in seats if seat.start_s <= now < seat.end_s)
    return f"{live} of at most {peak_users(seats)}"


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
        "users_sending": sending_now(),
        "clock": SCENARIO_CLOCK_NOTE % (scale, scale) if scale != 1 else "real time (time scale 1)",
        "report": f".{REPORT_PATH}" if STATE.last_finished else None,
        "report_of_run": STATE.last_finished,
    }
    return snapshot
