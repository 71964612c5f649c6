"""The Locust side's state: one `LoadProcess` per Environment and one `LoadRun` per run, no module globals."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.loadgen.state import Arrivals, LoadProcess, NotInstalledError, Timeline, attach, process_of
from harness.records import EndedBy
from harness.workload.trace import TraceRow

ROOT = Path(__file__).resolve().parents[1]

# every module of the Locust side, imported as the locustfile does, then searched for run state held at
# module level (a process, a run or a part of one, an event or a greenlet)
MODULE_SCAN = """
import importlib, json, pkgutil
import gevent, gevent.event
import harness.loadgen as package
from harness.loadgen import state
importlib.import_module("locustfiles.gateway")
kinds = (state.LoadProcess, state.LoadRun, state.RunSetup, state.Arrivals, state.Schedule, state.Timeline,
         state.InFlight, state.Recording, state.WorkerBook, gevent.Greenlet, gevent.event.Event)
found = []
for info in pkgutil.iter_modules(package.__path__):
    module = importlib.import_module(f"harness.loadgen.{info.name}")
    found += [f"{info.name}.{name}" for name, value in vars(module).items() if isinstance(value, kinds)]
print(json.dumps(found))
"""


def test_no_module_of_the_locust_side_holds_run_state() -> None:
    done = subprocess.run(
        [sys.executable, "-c", MODULE_SCAN], capture_output=True, text=True, cwd=ROOT, timeout=120, check=True
    )
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_the_harness_lives_on_the_environment_it_was_installed_on() -> None:
    class Environment:
        pass

    one, other = Environment(), Environment()
    process = attach(one, LoadProcess())
    assert process_of(one) is process
    with pytest.raises(NotInstalledError, match="not installed on this Locust environment"):
        process_of(other)


def test_trace_rows_are_dealt_round_robin_by_worker_index() -> None:
    rows = [TraceRow(float(i), "chat-app", "chat", 10, 10, False, None) for i in range(7)]
    dealt = []
    for index in range(3):
        arrivals = Arrivals(None, rows, worker_index=index, worker_count=3)
        dealt.append([row.offset_s for row in iter(arrivals.next_trace_row, None)])
    assert dealt == [[0.0, 3.0, 6.0], [1.0, 4.0], [2.0, 5.0]]


def test_the_first_end_cause_of_a_run_wins() -> None:
    timeline = Timeline()
    timeline.note_cause(EndedBy.COMPLETED)
    timeline.note_cause(EndedBy.SIGTERM)
    assert timeline.end_cause is EndedBy.COMPLETED
