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
from harness.loadgen.state import LoadProcess, LoadRun, process_of
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
    process = process_of(environment)

    @app.route(THROTTLING_PATH)
    def throttling() -> Response:
        return jsonify(throttling_snapshot(environment))

    @app.route(FORM_DEFAULTS_PATH)
    def defaults() -> Response:
        try:
            return jsonify({"ok": True, **form_defaults(process, request.args.get("scenario", ""))})
        except HarnessError as exc:
            return jsonify({"ok": False, "message": str(exc)})

    @app.route(f"{STATIC_PATH}/<path:name>")
    def static_file(name: str) -> Any:
        return send_from_directory(STATIC_DIR.resolve(), name)

    _show_real_values(web_ui, process)

    @app.route(REPORT_PATH)
    def latest_report() -> Any:
        if process.last_finished is None:
            return Response("no run has finished yet: its report appears here when it stops\n", 404)
        # relative, so it holds under --web-base-path too: /harness/report -> /harness/runs/<id>/report.html
        return redirect(f"runs/{process.last_finished}/report.html")

    @app.route(f"{RUN_FILES_PATH}/<run_id>/<path:name>")
    def run_file(run_id: str, name: str) -> Any:
        if run_id not in process.runs:
            return Response(f"no run {run_id} in this Locust process\n", 404)
        return send_from_directory(process.runs[run_id].resolve(), name)

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
        elif request.path.endswith("/swarm") and process.run is not None and process.run.stack is not None:
            # Locust took the form's host field (empty, or an earlier run's stack): users load this run's stack
            environment.host = process.run.stack.target_url
            data = response.get_json()
            data["host"] = environment.host
            response.set_data(jsonify(data).get_data())
        return response


def next_run(environment: Any, form: Any) -> None:
    """On Start: the form's harness options into the parsed options, then a new run unless one is ready."""
    options = environment.parsed_options
    process = process_of(environment)
    command_line = process.command_line
    for name, kind in FORM_OPTIONS.items():
        if name in form:
            text = form[name].strip()
            setattr(options, name, kind(text) if text else kind())
    # a value the form shows unchanged is the scenario's (or the command line's): no override of the run
    shown = form_defaults(process, options.scenario)
    users, rate = _positive(form.get("user_count"), int), _positive(form.get("spawn_rate"), float)
    process.users_option = users if users is not None and users != shown["users"] else command_line.users
    process.spawn_rate_option = rate if rate is not None and rate != shown["spawn_rate"] else command_line.spawn_rate
    if options.time_scale == shown["time_scale"]:
        options.time_scale = command_line.time_scale
    if form.get("host", "").strip() in process.embedded_urls:
        environment.host = ""  # the embedded stack of an earlier run: this run starts its own
    run = process.active_run
    if run is not None:
        if run.timeline.started_at is not None:
            return  # a running run: Locust only changes its user count
        if run.key == run_key(environment, options):
            return  # prepared at start-up with these very options
        _discard_unused_run(process, run)
    open_run(environment, options)


def form_defaults(process: LoadProcess, scenario: str) -> dict[str, Any]:
    """What the start form shows for `scenario`: its users, ramp and time scale with the command line's
    options (None where the form's field does not apply: stages set their own users and ramps)."""
    command_line = process.command_line
    users, rate, scale = command_line.users, command_line.spawn_rate, command_line.time_scale
    overrides = list(command_line.overrides) + ([f"run.time_scale={scale}"] if scale else [])
    loaded = load_scenario(scenario_file(scenario or DEFAULT_SCENARIO), overrides)
    workload = loaded.workload
    own_users = workload.trace.users if workload.trace else workload.users
    stages = bool(workload.stages)
    return {
        "users": None if stages else users or own_users,
        "spawn_rate": None if stages else rate or workload.spawn_rate,
        "time_scale": loaded.run.time_scale,
    }


def _show_real_values(web_ui: Any, process: LoadProcess) -> None:
    """Locust fills its page from the command line: the users, ramp and time scale the run will have and
    the target the users will load are shown instead (Locust's `--time-scale` default of 0 means "the
    scenario's")."""
    update = web_ui.update_template_args

    def update_with_real_values() -> None:
        update()
        args = web_ui.template_args
        run = process.run
        scenario_path = run.setup.scenario_path if run is not None else ""
        try:
            shown = form_defaults(process, scenario_path)
        except HarnessError:
            return
        if shown["users"] is not None:
            args["num_users"], args["spawn_rate"] = shown["users"], shown["spawn_rate"]
        extra = args.get("extra_options") or {}
        if "time_scale" in extra:
            extra["time_scale"]["default_value"] = shown["time_scale"]
        if "scenario" in extra and scenario_path:
            extra["scenario"]["default_value"] = scenario_path
        if run is not None and run.stack is not None:
            args["host"] = run.stack.target_url

    web_ui.update_template_args = update_with_real_values


def _with_page_script(response: Response) -> Response:
    page = response.get_data(as_text=True)
    tag = f'<script src=".{STATIC_PATH}/{PAGE_SCRIPT}" defer></script>'
    if "templateArgs" in page and "</head>" in page and tag not in page:  # Locust's own page, not a report
        response.set_data(page.replace("</head>", f"{tag}</head>", 1))
    return response


def _discard_unused_run(process: LoadProcess, run: LoadRun) -> None:
    """A run prepared but never started, whose options changed before Start: stop its stack, drop it."""
    run.open = False
    if run.stack is not None:
        run.stack.stop()
    recording = run.recording
    if recording.writer is not None:
        recording.writer.close()
    recording.sink = None
    if recording.run_dir is not None:
        process.runs.pop(recording.run_dir.name, None)
        if recording.created_run_dir:
            shutil.rmtree(recording.run_dir, ignore_errors=True)


def _positive(text: str | None, kind: type) -> Any:
    try:
        value = kind(text) if text else None
    except ValueError:
        return None
    return value if value and value > 0 else None


def users_note(run: LoadRun | None) -> str:
    """Where the run's user count comes from: the form's field does not apply to stages."""
    workload = run.scenario.workload if run is not None else None
    if workload is not None and workload.stages:
        return "from the scenario's stages (the users field does not apply)"
    if workload is not None and workload.trace is not None:
        return f"{workload.trace.users} replaying the scenario's trace (the users field)"
    return f"{workload.users if workload else ''} (the users field)"  # the scenario holds the field's value


def sending_now(run: LoadRun | None) -> str | None:
    """Users of the schedule sending now, of the most it ever has at once (which is how many users Locust
    shows: they hold the seats, and wait between them)."""
    seats = run.schedule.seats if run is not None else None
    if run is None or not seats or run.timeline.started_at is None:
        return None
    now = run.elapsed()
    live = sum(1 for seat in seats if seat.start_s <= now < seat.end_s)
    return f"{live} of at most {peak_users(seats)}"


def throttling_snapshot(environment: Any) -> dict[str, Any]:
    """The Throttling tab's figures for the current (or last) run, with what run they belong to."""
    process = process_of(environment)
    run = process.run
    live = run.live if run is not None else None
    snapshot = live.snapshot() if live is not None else LiveThrottling(VirtualClock()).snapshot()
    scale = run.clock.scale if run is not None else 1.0
    run_dir = run.recording.run_dir if run is not None else None
    snapshot["run"] = {
        "run_id": run_dir.name if run_dir else None,
        "run_dir": str(run_dir) if run_dir else None,
        "scenario": run.setup.scenario_path if run is not None else None,
        "state": "running" if run is not None and run.open and run.timeline.started_at is not None else "not running",
        "target": environment.host,
        "users": users_note(run),
        "users_sending": sending_now(run),
        "clock": SCENARIO_CLOCK_NOTE % (scale, scale) if scale != 1 else "real time (time scale 1)",
        "report": f".{REPORT_PATH}" if process.last_finished else None,
        "report_of_run": process.last_finished,
    }
    return snapshot
