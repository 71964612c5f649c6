"""The Locust user: one caller of the scenario's workload, sending requests drawn from its mixes or a trace.

Each logical request goes through `session.execute` (retries as the app's client would, a record per
attempt); Locust sees one request per logical request, in scenario milliseconds, plus one failure per
attempt the client retried, under an entry of its own per cause (`chat · 429 backend rate limit (retried)`):
retries that end well would otherwise hide every throttled attempt from Locust's failure figures.
"""

from __future__ import annotations

import random
from collections.abc import Collection
from typing import Any

import gevent
from locust import User, task
from locust.exception import StopUser

from harness.client.attempt import AttemptResult
from harness.loadgen.arrivals import next_trace_row
from harness.loadgen.live import retried_entry
from harness.loadgen.state import STATE
from harness.loadgen.tags import selected as selected_mixes
from harness.loadgen.transport import Transport
from harness.records.outcomes import CAUSE_NAMES
from harness.workload.requests import RequestPlan, assign_app, draw_request, pick_mix, replay_request, user_name
from harness.workload.session import execute
from harness.workload.shape import Seat, pacing_wait


def replica_urls(host: str) -> list[str]:
    """The gateway replicas behind `host`: every replica of the embedded stack when `host` is its gateway,
    else `host` alone (a load balancer of the user's own spreads the load itself)."""
    stack = STATE.stack
    if stack is not None and stack.gateway_url == host:
        return stack.gateway_urls
    return [host]


class CountedSender:
    """A transport whose attempts count as in flight from their start until their record is written.

    A signal ending the run waits (bounded) for them (`harness.loadgen.run_end.drain`); while it does, no
    new attempt starts: the user waits there until the run stops it.
    """

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.server = transport.server  # the endpoint's server.address/port, for the attempts' spans
        self.open = False  # an attempt of this user is in flight

    def send(self, path: str, body: bytes, headers: dict[str, str], stream: bool) -> AttemptResult:
        while STATE.draining:
            gevent.sleep(1.0)  # the run is ending: stopping the users ends this wait
        STATE.in_flight += 1
        self.open = True
        return self.transport.send(path, body, headers, stream)

    def recorded(self) -> None:
        """The attempt's record is written (or it never will be: the user was stopped): no longer in flight."""
        if self.open:
            self.open = False
            STATE.in_flight -= 1


class RequestFailed(Exception):
    """A logical request the caller saw fail; its text is the cause, which Locust groups failures by."""


class Interrupted(Exception):
    """The run stopped while this logical request was still retrying."""


class GatewayUser(User):
    """A holder of seats of the run's schedule: it takes the next seat of its process, waits for the seat's
    start, sends as the seat's caller (one app, its client profile, requests drawn from its mixes) until the
    seat's end, and takes the next. Locust starts as many as the schedule ever has live at once."""

    abstract = False

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        self.transport: Transport | None = None
        self.transports: list[Transport] = []  # one per gateway replica this user sends to
        self.sequence = 0
        self.last_start: float | None = None
        self.mixes: Collection[str] | None = None  # the mixes --tags/--exclude-tags leave (None: all)
        self.sender: gevent.Greenlet | None = None
        self.in_request = False  # a logical request of the seat is on its way
        self.seat_over = False  # the seat has ended: no new request starts

    def on_start(self) -> None:
        if not STATE.ready.wait(timeout=30):
            raise StopUser()

    def on_stop(self) -> None:
        if self.sender is not None:
            self.sender.kill(block=True)
        self._close()

    def wait_time(self) -> float:
        return 0.0  # a seat's own think times and pacing are kept in `_send_until_stopped`

    @task
    def hold_a_seat(self) -> None:
        seat = STATE.ramp.claim(timeout_s=1.0)
        if seat is None or STATE.clock is None:
            return  # no seat left for now: ask again
        clock = STATE.clock
        self._take(seat)  # before its start: at the start only the request is left to send (on_stop closes it)
        STATE.load_start.wait()  # the load's start is fixed once every process holds its users
        assert STATE.test_started_at is not None
        start, end = STATE.test_started_at + seat.start_s, STATE.test_started_at + seat.end_s
        if start > clock.now():
            clock.sleep(start - clock.now())  # a seat whose start has passed (a late message) starts at once
        if clock.now() >= end:
            self._close()
            return  # its time passed while it waited (a very late message)
        live_from = clock.now()
        STATE.tally.started_seat(live_from - STATE.test_started_at, live_from - start)
        self.sender = gevent.spawn(self._send_until_stopped)
        try:
            self.sender.join(timeout=max(0.0, end - clock.now()) / clock.scale)
            self._let_the_request_finish()
        finally:
            # the seat ends on the scenario clock: whatever it has in flight is cut, as Locust stops a user
            self.sender.kill(block=True)
            self.sender = None
            STATE.tally.offered_user_s += max(0.0, min(clock.now(), end) - live_from)
            self._close()

    def _let_the_request_finish(self) -> None:
        """At the seat's end a request on its way may finish, for up to Locust's `--stop-timeout` (wall seconds),
        as Locust lets a stopping user finish its task; no new request starts. Without it, it is cut at once."""
        grace = float(self.environment.stop_timeout or 0)
        if grace <= 0 or self.sender is None or self.sender.dead or not self.in_request:
            return
        self.seat_over = True
        self.sender.join(timeout=grace)

    def _take(self, seat: Seat) -> None:
        """Become the seat's caller: its app, its name and draws (the simulator's user of the same number)."""
        assert STATE.scenario is not None and STATE.settings is not None and STATE.clock is not None
        workload = STATE.scenario.workload
        apps = {app.id: app for app in workload.apps}
        self.app = apps.get(seat.app) or assign_app(workload.apps, STATE.app_counts)
        self.name = user_name(STATE.worker_index, seat.number)
        self.rng = random.Random(f"{STATE.scenario.run.seed}:{user_name(0, seat.number)}")
        self.mixes = selected_mixes(self.environment)  # --tags / --exclude-tags
        self.sequence, self.last_start = 0, None
        self.seat_over = False
        # As a load balancer in front of gateway units: each request to the next replica, or sticky per user
        number = seat.number
        urls = replica_urls(self.host or self.environment.host)
        if STATE.scenario.gateway.spread == "sticky":
            urls = [urls[number % len(urls)]]
        else:
            urls = urls[number % len(urls) :] + urls[: number % len(urls)]  # users start on different replicas
        self.transports = [Transport(url, STATE.clock, STATE.settings.timeout_s) for url in urls]
        self.transport = self.transports[0]

    def _close(self) -> None:
        for transport in self.transports:
            transport.close()
        self.transports = []

    def _send_until_stopped(self) -> None:
        assert STATE.clock is not None
        while not self.seat_over:
            self.request()
            if not self.seat_over:
                STATE.clock.sleep(self._think_s())

    def _think_s(self) -> float:
        """Scenario seconds before the next request: the stage's pacing to its target rate, else think time."""
        assert STATE.scenario is not None and STATE.clock is not None
        if STATE.trace_rows:
            return 0.0
        stage = STATE.plan.at(STATE.elapsed()) if STATE.plan else None
        if stage is not None and stage.rate:
            since = STATE.clock.now() - (self.last_start or STATE.clock.now())
            return pacing_wait(stage.rate, max(1, stage.users), since)
        return STATE.scenario.workload.think_time.sample(self.rng)

    def request(self) -> None:
        assert STATE.scenario is not None and STATE.settings is not None and STATE.clock is not None
        plan = self._next_plan()
        if plan is None:
            gevent.sleep(0.2)  # the trace is used up: idle until the run ends
            return
        self.last_start = STATE.clock.now()
        self.sequence += 1
        self.in_request = True
        try:
            self._send(plan)
        finally:
            self.in_request = False

    def _next_plan(self) -> RequestPlan | None:
        assert STATE.scenario is not None and STATE.clock is not None
        workload = STATE.scenario.workload
        if not STATE.trace_rows:
            return draw_request(self.app, pick_mix(workload, self.app, self.rng, self.mixes), self.rng)
        row = next_trace_row()
        if row is None:
            return None
        wait = STATE.test_started_at + row.offset_s - STATE.clock.now() if STATE.test_started_at else 0.0
        if wait > 0:
            STATE.clock.sleep(wait)
        return replay_request(row, workload)

    def _send(self, plan: RequestPlan) -> None:
        assert STATE.settings is not None and self.transport is not None and STATE.clock is not None
        self.transport = self.transports[self.sequence % len(self.transports)]
        sender = CountedSender(self.transport)
        attempts = [0]
        started = STATE.clock.now()

        def sink(record: dict[str, Any]) -> None:
            attempts[0] += 1
            if STATE.sink is None:
                sender.recorded()
                return  # the run has just been closed under this request
            STATE.sink(record)
            sender.recorded()
            if record["decision"] == "retry":
                # an attempt the client retried is invisible in the logical request: its own entry shows it
                kind = record["error_kind"]
                cause = CAUSE_NAMES.get(kind, kind or f"status {record['status']}")
                self._fire(retried_entry(plan.request_type, cause), record["latency_s"], 0, RequestFailed(cause))

        try:
            outcome = execute(plan, self.name, self.sequence, sender, STATE.settings, self.rng, sink)
        except gevent.GreenletExit:
            if attempts[0]:
                # stopped while retrying: still one logical request, so records = requests + retries holds
                self._fire(plan.request_type, STATE.clock.now() - started, 0, Interrupted("run stopped while retrying"))
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
