"""What a Locust process knows: the process (`LoadProcess`, across runs) and each run of it (`LoadRun`).

Locust creates the users, the shape and the web UI itself and hands each the `Environment`; the process's
harness hangs on it (`environment.harness`, put there by the `init` listener), and its current run is
`environment.harness.run`. A run is a new `LoadRun` built whole when it opens (Start, the first run, or a
worker told of the master's run), so nothing of one run reaches the next; a user takes the run with its seat
and keeps it until the seat ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gevent
from gevent.event import Event

from harness.clock import ScaledClock
from harness.errors import HarnessError
from harness.loadgen.live import LiveThrottling
from harness.loadgen.ramp import Ramp
from harness.loadgen.seats import LoadTally
from harness.loadgen.stack import EmbeddedStack
from harness.records import EndedBy, RecordWriter
from harness.scenario import Scenario
from harness.workload.session import RunSettings
from harness.workload.shape import Seat, StagePlan
from harness.workload.trace import TraceRow

ATTRIBUTE = "harness"  # the Environment's attribute that holds the process's `LoadProcess`


class NotInstalledError(HarnessError):
    """Locust ran a harness part on an Environment the harness's `init` listener never saw."""


@dataclass(frozen=True)
class RunSetup:
    """What the run is: its scenario as loaded (with the overrides), the settings users send with, its clock."""

    scenario: Scenario
    scenario_path: str
    overrides: list[str]
    settings: RunSettings
    clock: ScaledClock
    mixes: list[str] | None = None  # the request mixes --tags/--exclude-tags leave (None: every mix)


@dataclass
class Arrivals:
    """What the users send when: the stage plan, and the trace rows dealt to workers round-robin by index."""

    plan: StagePlan | None = None
    trace_rows: list[TraceRow] = field(default_factory=list)
    next_row: int = 0
    worker_index: int = 0
    worker_count: int = 1

    def next_trace_row(self) -> TraceRow | None:
        """The next row this process sends."""
        while self.next_row < len(self.trace_rows):
            index = self.next_row
            self.next_row += 1
            if index % self.worker_count == self.worker_index:
                return self.trace_rows[index]
        return None


@dataclass
class Schedule:
    """The run's seats: the whole schedule, those this process still has to start, and the load it offered."""

    seats: list[Seat] | None = None  # the whole run's schedule (local or master), worked out at its first tick
    dealt: bool = False  # the seats have gone to the processes that hold the users
    ramp: Ramp = field(default_factory=Ramp)
    tally: LoadTally = field(default_factory=LoadTally)
    app_counts: dict[str, int] = field(default_factory=dict)  # users per app, for seats without an app


@dataclass
class Timeline:
    """When the load runs on the scenario clock, and why it ended."""

    started_at: float | None = None  # the load's start, fixed once every process holds its users
    stopped_at: float | None = None
    load_start: Event = field(default_factory=Event)  # set once `started_at` is fixed
    planned_s: float = 0.0  # the scenario seconds it was planned to run
    end_cause: EndedBy | None = None
    planned_end: gevent.Greenlet | None = None  # the timer that stops the users at the planned end

    def note_cause(self, cause: EndedBy) -> None:
        """Remember why the load is ending; the first cause wins (a signal during a planned end is not one)."""
        if self.end_cause is None:
            self.end_cause = cause


@dataclass
class InFlight:
    """Attempts sent whose record is not written yet; while draining (a signal ends the run) none start."""

    count: int = 0
    draining: bool = False


@dataclass
class Recording:
    """Where the run's records and facts go: the sink users write to; in the local (or master) process also
    the run directory, its records file and run.json's facts."""

    sink: Any = None  # WriterSink (local, master) or ShippingSink (worker); None once the run is closed
    run_dir: Path | None = None
    created_run_dir: bool = False  # removed again when the run is discarded unused
    writer: RecordWriter | None = None
    run_info: dict[str, Any] = field(default_factory=dict)


@dataclass
class WorkerBook:
    """Master: what each worker said of the current run."""

    ready: set[str] = field(default_factory=set)  # workers that have set up the run
    done: set[str] = field(default_factory=set)  # workers that shipped their last records
    load: dict[str, dict[str, Any]] = field(default_factory=dict)  # each worker's tally


@dataclass
class LoadRun:
    """One run of this process, from its opening to its records, summary and report being written."""

    setup: RunSetup
    arrivals: Arrivals
    recording: Recording
    stack: EmbeddedStack | None = None
    live: LiveThrottling | None = None
    key: tuple[Any, ...] = ()  # what the run was prepared from (scenario, overrides, profile, ...)
    schedule: Schedule = field(default_factory=Schedule)
    timeline: Timeline = field(default_factory=Timeline)
    in_flight: InFlight = field(default_factory=InFlight)
    workers: WorkerBook = field(default_factory=WorkerBook)
    open: bool = True  # until its records, summary and report are written (or it is discarded)
    watchdog: gevent.Greenlet | None = None

    @property
    def clock(self) -> ScaledClock:
        return self.setup.clock

    @property
    def scenario(self) -> Scenario:
        return self.setup.scenario

    def elapsed(self) -> float:
        """Scenario seconds since the load's start (0 before it)."""
        started = self.timeline.started_at
        return 0.0 if started is None else self.clock.now() - started


@dataclass(frozen=True)
class CommandLine:
    """What the command line said, which the web form shows unless changed: -u, -r, --time-scale, --set."""

    users: int | None = None
    spawn_rate: float | None = None
    time_scale: float = 0.0
    overrides: tuple[str, ...] = ()


@dataclass
class LoadProcess:
    """This Locust process across its runs (the web UI starts one per Start)."""

    command_line: CommandLine = field(default_factory=CommandLine)
    # -u / -r of the next run: the command line's, or the web form's where it changed them
    users_option: int | None = None
    spawn_rate_option: float | None = None
    run: LoadRun | None = None  # the current run, or the last one once it has ended
    ready: Event = field(default_factory=Event)  # a run is open and set up: users may take its seats
    runs: dict[str, Path] = field(default_factory=dict)  # run id -> run directory, for the web UI's links
    last_finished: str | None = None
    embedded_urls: set[str] = field(default_factory=set)
    embedded_gateway_port: int = 0  # the port every embedded gateway of this process takes when it can
    exit_code: int = 0  # the worst verdict of this process's runs
    flusher: gevent.Greenlet | None = None

    @property
    def active_run(self) -> LoadRun | None:
        """The run between its start and its records being written, if there is one."""
        return self.run if self.run is not None and self.run.open else None


def attach(environment: Any, process: LoadProcess) -> LoadProcess:
    setattr(environment, ATTRIBUTE, process)
    return process


def process_of(environment: Any) -> LoadProcess:
    """The harness of the process this Environment belongs to."""
    process = getattr(environment, ATTRIBUTE, None)
    if not isinstance(process, LoadProcess):
        raise NotInstalledError("the harness is not installed on this Locust environment: call install()")
    return process
