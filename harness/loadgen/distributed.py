"""Distributed runs: the master tells its workers what the run is; the workers ship their records back.

- at test start the master sends the run's identity (scenario, overrides, run id, scenario time origin,
  credentials, worker count) in RUN_MESSAGE; each worker sets up the same run from it and says so
  (READY_MESSAGE); the master waits for every worker (bounded);
- with Locust's dispatch each worker gets its seats of the run's schedule (SEATS_MESSAGE); once every
  worker has reported its users up, the master fixes the load's start a moment ahead on the shared scenario
  clock and tells them (START_MESSAGE), so users start and stop at their scenario times, and a seat whose
  start has passed (a late message) starts at once;
- workers ship their records every second (RECORDS_MESSAGE) and a last batch at test stop with the load
  they offered (RECORDS_DONE_MESSAGE); the master writes them into the one records.csv and waits (bounded)
  for every last batch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import gevent
from locust.runners import MasterRunner, WorkerRunner

from harness.clock import ScaledClock
from harness.errors import HarnessError
from harness.loadgen.arrivals import load_arrivals
from harness.loadgen.recorder import RECORDS_DONE_MESSAGE, RECORDS_MESSAGE, ShippingSink, WriterSink
from harness.loadgen.scenario_shape import planned_limit
from harness.loadgen.seats import seats_from_message, seats_to_message
from harness.loadgen.startup import keep_flushing, run_settings
from harness.loadgen.state import LoadRun, Recording, RunSetup, process_of
from harness.scenario import load_scenario
from harness.workload.shape import Seat

log = logging.getLogger("harness")

RUN_MESSAGE = "harness_run"
READY_MESSAGE = "harness_ready"
SEATS_MESSAGE = "harness_seats"
START_MESSAGE = "harness_start"
WORKER_USERS_WAIT_S = 30.0
WORKER_DONE_WAIT_S = 15.0
WORKER_READY_WAIT_S = 30.0
# wall seconds between the test's start (in a distributed run: the workers being ready) and the load's: time
# for the seats and Locust's spawn message to reach the processes and their users to take their seats (a
# seat whose start has passed starts at once, so a slower message costs only that)
START_LEAD_WALL_S = 0.25


def listen_as_worker(runner: WorkerRunner) -> None:
    """Worker: wait for the master's description of the run."""
    runner.register_message(RUN_MESSAGE, _on_run_message)
    runner.register_message(SEATS_MESSAGE, _on_seats_message)
    runner.register_message(START_MESSAGE, _on_start_message)


def listen_as_master(runner: MasterRunner) -> None:
    """Master: take in the records the workers ship, and note each worker's last batch."""
    runner.register_message(RECORDS_MESSAGE, _on_worker_records)
    runner.register_message(RECORDS_DONE_MESSAGE, _on_worker_done)
    runner.register_message(READY_MESSAGE, _on_worker_ready)


def announce_run(runner: MasterRunner, run: LoadRun) -> None:
    """Master at test start: tell every worker what the run is and wait until each has set it up."""
    settings = run.setup.settings
    workers = sorted(client.id for client in runner.clients.all)
    ready = run.workers.ready
    ready.clear()
    message = {
        "scenario": run.setup.scenario_path,
        "overrides": run.setup.overrides,
        "run_id": settings.run_id,
        "origin": run.clock.origin,
        "api_key": settings.api_key,
        "bearer_token": settings.bearer_token,
        "client_profile": settings.client_profile,
        "workers": len(workers),
    }
    runner.send_message(RUN_MESSAGE, message)
    waited = 0.0
    while waited < WORKER_READY_WAIT_S and not set(workers) <= ready:
        gevent.sleep(0.01)
        waited += 0.01
    missing = set(workers) - ready
    if missing:
        log.warning(
            "%d worker(s) not ready after %g s: their users start late: %s", len(missing), waited, sorted(missing)
        )


def deliver_seats(runner: Any, dealt: dict[str, list[Seat]]) -> None:
    """Master: each worker its seats, ahead of Locust's spawn message."""
    for worker, seats in dealt.items():
        runner.send_message(SEATS_MESSAGE, {"seats": seats_to_message(seats)}, client_id=worker)


def start_load_when_seated(
    runner: MasterRunner, run: LoadRun, load_starts: Callable[[Any, LoadRun, float], None]
) -> None:
    """Master (a greenlet of its own): once every worker reports the users Locust asked of it (bounded), fix
    the load's start a moment ahead and tell the workers; Locust's spawn message can take a few tenths of a
    wall second to reach a worker and start its users, several scenario seconds at a high time scale."""
    waited = 0.0
    while waited < WORKER_USERS_WAIT_S and (
        runner.target_user_count is None or runner.user_count < runner.target_user_count
    ):
        gevent.sleep(0.01)
        waited += 0.01
    if runner.target_user_count and runner.user_count < runner.target_user_count:
        log.warning(
            "workers hold %d of %d users after %g s: the load starts without the rest",
            runner.user_count,
            runner.target_user_count,
            waited,
        )
    at = run.clock.now() + START_LEAD_WALL_S * run.clock.scale
    runner.send_message(START_MESSAGE, {"started_at": at, "planned_s": planned_limit(runner, run)})
    load_starts(runner, run, at)


def _worker_run(environment: Any) -> LoadRun | None:
    """Worker: the run the master last described (None before its first message)."""
    return process_of(environment).run


def _on_seats_message(environment: Any, msg: Any, **_: Any) -> None:
    """Worker: its seats of the schedule (the load's start follows when every worker holds its users)."""
    run = _worker_run(environment)
    if run is None:
        log.error("worker got its seats before the run they belong to: ignored")
        return
    seats = seats_from_message(msg.data["seats"])
    run.schedule.tally.plan(seats)
    run.schedule.ramp.load(seats)


def _on_start_message(environment: Any, msg: Any, **_: Any) -> None:
    """Worker: the load's start on the master's scenario clock, and its planned length."""
    run = _worker_run(environment)
    if run is None:
        log.error("worker told to start before it knew the run: ignored")
        return
    run.timeline.started_at = float(msg.data["started_at"])
    run.timeline.planned_s = float(msg.data["planned_s"])
    run.timeline.load_start.set()


def _on_run_message(environment: Any, msg: Any, **_: Any) -> None:
    """Worker: set up this run as the master describes it, sharing its scenario clock: a new run."""
    data = msg.data
    runner = environment.runner
    process = process_of(environment)
    try:
        scenario = load_scenario(data["scenario"], data["overrides"])
    except HarnessError as exc:
        log.error("worker cannot load the scenario: %s", exc)
        return
    clock = ScaledClock(scenario.run.time_scale, origin=data["origin"])

    class _Options:
        api_key = data.get("api_key") or ""
        bearer_token = data.get("bearer_token") or ""
        client_profile = data.get("client_profile") or ""

    settings = run_settings(scenario, data["run_id"], clock, _Options)
    arrivals = load_arrivals(
        scenario,
        data["scenario"],
        worker_index=getattr(runner, "worker_index", 0) or 0,
        worker_count=max(1, int(data.get("workers") or 1)),
    )
    setup = RunSetup(scenario, data["scenario"], data["overrides"], settings, clock)
    process.run = LoadRun(setup, arrivals, Recording(sink=ShippingSink(runner.send_message)))
    keep_flushing(process)
    process.ready.set()
    runner.send_message(READY_MESSAGE, None)


def _master_run(environment: Any) -> LoadRun | None:
    return process_of(environment).run


def _on_worker_ready(environment: Any, msg: Any, **_: Any) -> None:
    run = _master_run(environment)
    if run is not None:
        run.workers.ready.add(msg.node_id)


def _on_worker_records(environment: Any, msg: Any, **_: Any) -> None:
    run = _master_run(environment)
    if run is not None and isinstance(run.recording.sink, WriterSink):
        run.recording.sink.write_cells(msg.data)


def _on_worker_done(environment: Any, msg: Any, **_: Any) -> None:
    run = _master_run(environment)
    if run is None:
        return
    # named as the records name the worker's users (`u<index>-...`), not by Locust's host-and-uuid id
    index = environment.runner.get_worker_index(msg.node_id)
    run.workers.load[f"worker {index}"] = dict(msg.data.get("load") or {})
    run.workers.done.add(msg.node_id)


def ship_last_records(runner: WorkerRunner) -> None:
    """Worker at test stop: send what is still buffered, then the count of everything it shipped."""
    run = _worker_run(runner.environment)
    if run is not None and isinstance(run.recording.sink, ShippingSink):
        sink = run.recording.sink
        sink.tick()
        # Locust's statistics otherwise reach the master only every few seconds: sent now, ahead of the message
        # the master waits for, they count every request these records count
        runner._send_stats()
        runner.send_message(RECORDS_DONE_MESSAGE, {"shipped": sink.shipped, "load": run.schedule.tally.as_dict()})


def collect_worker_records(runner: MasterRunner, run: LoadRun) -> None:
    """Make sure every worker has stopped and shipped its last records before the master quits."""
    from locust.rpc import Message

    done = run.workers.done
    workers = [client.id for client in runner.clients.all]
    for worker in workers:
        if worker not in done:
            runner.server.send_to_client(Message("stop", None, worker))
    waited = 0.0
    while waited < WORKER_DONE_WAIT_S and not set(workers) <= done:
        gevent.sleep(0.1)
        waited += 0.1
    missing = set(workers) - done
    if missing:
        log.warning("records of %d worker(s) may be incomplete: no final batch from %s", len(missing), sorted(missing))
    for worker in missing:  # its load is not known to have been offered: it counts as none
        run.workers.load[f"worker {runner.get_worker_index(worker)}"] = {"offered_user_s": 0.0, "reported": False}
