"""The Locust user: one caller of the scenario's workload, sending requests drawn from its mixes or a trace.

Each logical request goes through `session.execute` (retries as the app's client would, a record per
attempt); Locust sees one request per logical request, in scenario milliseconds, plus one failure per
attempt the client retried, under an entry of its own per cause (`chat · 429 backend rate limit (retried)`):
retries that end well would otherwise hide every throttled attempt from Locust's failure figures.
"""

from __future__ import annotations

import random
from typing import Any

import gevent
from locust import User, task
from locust.exception import StopUser

from harness.client.attempt import AttemptResult
from harness.loadgen.live import retried_entry
from harness.loadgen.stack import EmbeddedStack
from harness.loadgen.state import InFlight, LoadRun, process_of
from harness.loadgen.tags import selected as selected_mixes
from harness.loadgen.transport import Transport
from harness.records.outcomes import CAUSE_NAMES
from harness.workload.requests import MixPicker, RequestPlan, assign_app, draw_request, replay_request, user_name
from harness.workload.session import execute
from harness.workload.shape import Seat, pacing_wait


def replica_urls(host: str, stack: EmbeddedStack | None) -> list[str]:
    """The gateway replicas behind `host`: every replica of the run's embedded stack when `host` is its
    gateway, else `host` alone (a load balancer of the user's own spreads the load itself)."""
    if stack is not None and stack.gateway_url == host:
        return stack.gateway_urls
    return [host]


class CountedSender:
    """A transport whose attempts count as in flight from their start until their record is written.

    A signal ending the run waits (bounded) for them (`harness.loadgen.run_end.drain`); while it does, no
    new attempt starts: the user waits there until the run stops it.
    """

    def __init__(self, transport: Transport, in_flight: InFlight) -> None:
        self.transport = transport
        self.in_flight = in_flight
        self.server = transport.server  # the endpoint's server.address/port, for the attempts' spans
        self.open = False  # an attempt of this user is in flight

    def send(self, path: str, body: bytes, headers: dict[str, str], stream: bool) -> AttemptResult:
        while self.in_flight.draining:
            gevent.sleep(1.0)  # the run is ending: stopping the users ends this wait
        self.in_flight.count += 1
        self.open = True
        return self.transport.send(path, body, headers, stream)

    def recorded(self) -> None:
        """The attempt's record is written (or it never will be: the user was stopped): no longer in flight."""
        if self.open:
            self.open = False
            self.in_flight.count -= 1


class RequestFailed(Exception):
    """A logical request the caller saw fail; its text is the cause, which Locust groups failures by."""


class Interrupted(Exception):
    """The run stopped while this logical request was still retrying."""


class GatewayUser(User):
    """A holder of seats of the run's schedule: it takes the next seat of its process, waits for the seat's
    start, sends as the seat's caller (one app, its client profile, requests drawn from its mixes) until the
    seat's end, and takes the next. Locust starts as many as the schedule ever has live at once.

    The run comes with the seat (`environment.harness.run` when it is claimed) and stays the user's until
    the seat ends: a request still on its way when the web UI opens the next run is recorded in its own."""

    abstract = False

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        self.transport: Transport | None = None
        self.transports: list[Transport] = []  # one per gateway replica this user sends to
        self.sequence = 0
        self.last_start: float | None = None
        self.mixes: MixPicker | None = None  # the app's mixes --tags/--exclude-tags leave
        self.sender: gevent.Greenlet | None = None
        self.in_request = False  # a logical request of the seat is on its way
        self.seat_over = False  # the seat has ended: no new request starts
        self.process = process_of(environment)

    def on_start(self) -> None:
        if not self.process.ready.wait(timeout=30):
            raise StopUser()

    def on_stop(self) -> None:
        if self.sender is not None:
            self.sender.kill(block=True)
        self._close()

    def wait_time(self) -> float:
        return 0.0  # a seat's own think times and pacing are kept in `_send_until_stopped`

    @task
    def hold_a_seat(self) -> None:
        run = self.process.run
        if run is None:
            self.process.ready.wait(timeout=1.0)
            return  # no run yet: ask again
        seat = run.schedule.ramp.claim(timeout_s=1.0)
        if seat is None:
            return  # no seat left for now: ask again
        clock, timeline = run.clock, run.timeline
        self._take(run, seat)  # before its start: at the start only the request is left to send (on_stop closes it)
        timeline.load_start.wait()  # the load's start is fixed once every process holds its users
        assert timeline.started_at is not None
        start, end = timeline.started_at + seat.start_s, timeline.started_at + seat.end_s
        if start > clock.now():
            clock.sleep(start - clock.now())  # a seat whose start has passed (a late message) starts at once
        if clock.now() >= end:
            self._close()
            return  # its time passed while it waited (a very late message)
        live_from = clock.now()
        run.schedule.tally.started_seat(live_from - timeline.started_at, live_from - start)
        self.sender = gevent.spawn(self._send_until_stopped, run)
        try:
            self.sender.join(timeout=max(0.0, end - clock.now()) / clock.scale)
            self._let_the_request_finish()
        finally:
            # Counted before the blocking kill: a stop that ends this user while it waits there (the seat and
            # the run ending together) would otherwise lose the seat's time from the offered load.
            run.schedule.tally.offered_user_s += max(0.0, min(clock.now(), end) - live_from)
            # the seat ends on the scenario clock: whatever it has in flight is cut, as Locust stops a user
            self.sender.kill(block=True)
            self.sender = None
            self._close()

    def _let_the_request_finish(self) -> None:
        """At the seat's end a request on its way may finish, for up to Locust's `--stop-timeout` (wall seconds),
        as Locust lets a stopping user finish its task; no new request starts. Without it, it is cut at once."""
        grace = float(self.environment.stop_timeout or 0)
        if grace <= 0 or self.sender is None or self.sender.dead or not self.in_request:
            return
        self.seat_over = True
        self.sender.join(timeout=grace)

    def _take(self, run: LoadRun, seat: Seat) -> None:
        """Become the seat's caller: its app, its name and draws (the simulator's user of the same number)."""
        scenario = run.scenario
        workload = scenario.workload
        apps = {app.id: app for app in workload.apps}
        self.app = apps.get(seat.app) or assign_app(workload.apps, run.schedule.app_counts)
        self.name = user_name(run.arrivals.worker_index, seat.number)
        self.rng = random.Random(f"{scenario.run.seed}:{user_name(0, seat.number)}")
        self.mixes = MixPicker(workload, self.app, selected_mixes(self.environment))  # --tags / --exclude-tags
        self.sequence, self.last_start = 0, None
        self.seat_over = False
        # As a load balancer in front of gateway units: each request to the next replica, or sticky per user
        number = seat.number
        urls = replica_urls(self.host or self.environment.host, run.stack)
        if scenario.gateway.spread == "sticky":
            urls = [urls[number % len(urls)]]
        else:
            urls = urls[number % len(urls) :] + urls[: number % len(urls)]  # users start on different replicas
        self.transports = [Transport(url, run.clock, run.setup.settings.timeout_s) for url in urls]
        self.transport = self.transports[0]

    def _close(self) -> None:
        for transport in self.transports:
            transport.close()
        self.transports = []

    def _send_until_stopped(self, run: LoadRun) -> None:
        while not self.seat_over:
            self.request(run)
            if not self.seat_over:
                run.clock.sleep(self._think_s(run))

    def _think_s(self, run: LoadRun) -> float:
        """Scenario seconds before the next request: the stage's pacing to its target rate, else think time."""
        arrivals = run.arrivals
        if arrivals.trace_rows:
            return 0.0
        stage = arrivals.plan.at(run.elapsed()) if arrivals.plan else None
        if stage is not None and stage.rate:
            since = run.clock.now() - (self.last_start or run.clock.now())
            return pacing_wait(stage.rate, max(1, stage.users), since)
        return run.scenario.workload.think_time.sample(self.rng)

    def request(self, run: LoadRun) -> None:
        plan = self._next_plan(run)
        if plan is None:
            gevent.sleep(0.2)  # the trace is used up: idle until the run ends
            return
        self.last_start = run.clock.now()
        self.sequence += 1
        self.in_request = True
        try:
            self._send(run, plan)
        finally:
            self.in_request = False

    def _next_plan(self, run: LoadRun) -> RequestPlan | None:
        workload = run.scenario.workload
        if not run.arrivals.trace_rows:
            assert self.mixes is not None  # set with the seat
            return draw_request(self.app, self.mixes.pick(self.rng), self.rng)
        row = run.arrivals.next_trace_row()
        if row is None:
            return None
        started_at = run.timeline.started_at
        wait = started_at + row.offset_s - run.clock.now() if started_at else 0.0
        if wait > 0:
            run.clock.sleep(wait)
        return replay_request(row, workload)

    def _send(self, run: LoadRun, plan: RequestPlan) -> None:
        assert self.transport is not None
        self.transport = self.transports[self.sequence % len(self.transports)]
        sender = CountedSender(self.transport, run.in_flight)
        attempts = [0]
        started = run.clock.now()
        recording = run.recording

        def sink(record: dict[str, Any]) -> None:
            attempts[0] += 1
            run_sink = recording.sink
            if run_sink is None:
                sender.recorded()
                return  # the run has just been closed under this request
            run_sink(record)
            sender.recorded()
            if record["decision"] == "retry":
                # an attempt the client retried is invisible in the logical request: its own entry shows it
                kind = record["error_kind"]
                cause = CAUSE_NAMES.get(kind, kind or f"status {record['status']}")
                self._fire(retried_entry(plan.request_type, cause), record["latency_s"], 0, RequestFailed(cause))

        try:
            outcome = execute(plan, self.name, self.sequence, sender, run.setup.settings, self.rng, sink)
        except gevent.GreenletExit:
            if attempts[0]:
                # stopped while retrying: still one logical request, so records = requests + retries holds
                self._fire(plan.request_type, run.clock.now() - started, 0, Interrupted("run stopped while retrying"))
            raise
        finally:
            sender.recorded()
        failure = outcome.failure
        self._fire(
            outcome.request_type, outcome.latency_s, outcome.response_bytes, RequestFailed(failure) if failure else None
        )

    def _fire(self, name: str, latency_s: float, length: int, exception: Exception | None) -> None:
        # Locust shows scenario milliseconds, the same unit as the records and the report
        self.environment.events.request.fire(
            request_type="POST",
            name=name,
            response_time=latency_s * 1000.0,
            response_length=length,
            exception=exception,
            context={"app": self.app.id},
        )
