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
from harness.workload.shape import pacing_wait


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
    """A caller of the scenario's workload: one app, its client profile, requests drawn from its mixes."""

    abstract = False

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        self.transport: Transport | None = None
        self.transports: list[Transport] = []  # one per gateway replica this user sends to
        self.sequence = 0
        self.last_start: float | None = None
        self.mixes: Collection[str] | None = None  # the mixes --tags/--exclude-tags leave (None: all)

    def on_start(self) -> None:
        if not STATE.ready.wait(timeout=30):
            raise StopUser()
        assert STATE.scenario is not None and STATE.settings is not None and STATE.clock is not None
        workload = STATE.scenario.workload
        self.app = assign_app(workload.apps, STATE.app_counts)
        self.mixes = selected_mixes(self.environment)  # --tags / --exclude-tags
        number = STATE.users_started
        STATE.users_started += 1
        self.name = user_name(STATE.worker_index, number)
        self.rng = random.Random(f"{STATE.scenario.run.seed}:{self.name}")
        # As a load balancer in front of gateway units: each request to the next replica, or sticky per user
        urls = replica_urls(self.host or self.environment.host)
        if STATE.scenario.gateway.spread == "sticky":
            urls = [urls[number % len(urls)]]
        else:
            urls = urls[number % len(urls) :] + urls[: number % len(urls)]  # users start on different replicas
        self.transports = [Transport(url, STATE.clock, STATE.settings.timeout_s) for url in urls]
        self.transport = self.transports[0]
        start = STATE.ramp.claim()  # this user's place in the scenario's spawn schedule
        if start is not None and start > STATE.clock.now():
            STATE.clock.sleep(start - STATE.clock.now())

    def on_stop(self) -> None:
        for transport in self.transports:
            transport.close()

    def wait_time(self) -> float:
        assert STATE.scenario is not None and STATE.clock is not None
        scale = STATE.clock.scale
        if STATE.trace_rows:
            return 0.0
        stage = STATE.plan.at(STATE.elapsed()) if STATE.plan else None
        if stage is not None and stage.rate:
            since = STATE.clock.now() - (self.last_start or STATE.clock.now())
            return pacing_wait(stage.rate, max(1, stage.users), since) / scale
        return STATE.scenario.workload.think_time.sample(self.rng) / scale

    @task
    def request(self) -> None:
        assert STATE.scenario is not None and STATE.settings is not None and STATE.clock is not None
        plan = self._next_plan()
        if plan is None:
            gevent.sleep(0.2)  # the trace is used up: idle until the run ends
            return
        self.last_start = STATE.clock.now()
        self.sequence += 1
        self._send(plan)

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
