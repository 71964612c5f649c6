"""What one Locust process knows about the current run: shared by the hooks, the users and the shape.

Locust creates the users and the shape itself, so they find the run here rather than being handed it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gevent.event import Event

from harness.clock import ScaledClock
from harness.loadgen.live import LiveThrottling
from harness.loadgen.ramp import Ramp
from harness.loadgen.seats import LoadTally
from harness.loadgen.stack import EmbeddedStack
from harness.records import EndedBy, RecordWriter
from harness.scenario import Scenario
from harness.workload.session import RunSettings
from harness.workload.shape import Seat, StagePlan
from harness.workload.trace import TraceRow


@dataclass
class HarnessState:
    """Everything one process knows about the current run."""

    scenario: Scenario | None = None
    scenario_path: str = ""
    overrides: list[str] = field(default_factory=list)
    settings: RunSettings | None = None
    clock: ScaledClock | None = None
    run_dir: Path | None = None
    stack: EmbeddedStack | None = None
    writer: RecordWriter | None = None
    sink: Any = None
    flusher: Any = None
    run_info: dict[str, Any] = field(default_factory=dict)
    test_started_at: float | None = None
    test_stopped_at: float | None = None
    plan: StagePlan | None = None
    trace_rows: list[TraceRow] = field(default_factory=list)
    trace_next: int = 0
    app_counts: dict[str, int] = field(default_factory=dict)
    workers_done: set[str] = field(default_factory=set)
    ready: Event = field(default_factory=Event)
    load_start: Event = field(default_factory=Event)  # set once the load's start (test_started_at) is fixed
    worker_index: int = 0
    worker_count: int = 1
    # -u / -r as the user gave them; read at init, before headless mode fills in its defaults of 1
    users_option: int | None = None
    spawn_rate_option: float | None = None
    # what the command line said, which the web form shows unless changed: (-u, -r, --time-scale), the --set list
    cli_options: tuple[int | None, float | None, float] = (None, None, 0.0)
    cli_overrides: list[str] = field(default_factory=list)
    # the end of the current run: why the load stopped, and the scenario seconds it was planned to run
    end_cause: EndedBy | None = None
    # attempts sent whose record is not written yet; while draining (a signal ends the run) none start
    in_flight: int = 0
    draining: bool = False
    planned_s: float = 0.0
    run_open: bool = False  # between the start of a run and its records, summary and report being written
    run_key: tuple[Any, ...] = ()  # what the open run was prepared from (scenario, overrides, profile, ...)
    created_run_dir: bool = False
    exit_code: int = 0
    live: LiveThrottling | None = None
    # every run of this process (the web UI starts one per Start): run id -> run directory
    runs: dict[str, Path] = field(default_factory=dict)
    last_finished: str | None = None
    embedded_urls: set[str] = field(default_factory=set)
    embedded_gateway_port: int = 0  # the port every embedded gateway of this process takes when it can
    watchdog: Any = None
    ramp: Ramp = field(default_factory=Ramp)  # the seats of the run's schedule this process still has to start
    seats: list[Seat] | None = None  # the whole run's schedule (local or master), worked out at its first tick
    seats_dealt: bool = False  # the seats have gone to the processes that hold the users
    tally: LoadTally = field(default_factory=LoadTally)  # the load this process was asked for and offered
    load_by_worker: dict[str, dict[str, Any]] = field(default_factory=dict)  # master: each worker's tally
    workers_ready: set[str] = field(default_factory=set)  # master: workers that have set up the current run
    mixes: list[str] | None = None  # the request mixes --tags/--exclude-tags leave (None: every mix)

    def elapsed(self) -> float:
        assert self.clock is not None
        if self.test_started_at is None:
            return 0.0
        return self.clock.now() - self.test_started_at


STATE = HarnessState()
