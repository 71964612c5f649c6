"""The client reads an HTTP-date `Retry-After` against the answer's own `Date`, at every time scale.

Both dates are the server's clock, so the wait does not depend on the client's clock (scenario time, possibly
compressed) nor on how late a busy machine reads the answer. The backend here dates its 429 on a fixed day
in 2015: no wall clock is mixed with a scaled one, and a client that counted the date from its own clock
would see a date eleven years past and fall back to its own backoff.
"""

from __future__ import annotations

import email.utils
import random
from collections.abc import Iterator
from typing import Any

import pytest
from quirky_backend import LoopbackServers, Quirks, QuirkyBackend

from harness.client.profiles import ResponseInfo, parse_retry_after, profile_for
from harness.clock import Clock, ScaledClock, VirtualClock
from harness.loadgen.transport import Transport
from harness.scenario.workload import App
from harness.workload.requests import RequestPlan
from harness.workload.session import RunSettings, execute

DATED_AT = 1445412480.0  # Wed, 21 Oct 2015 07:28:00 GMT: the server's clock, unrelated to the client's
WAIT_S = 20


def dated(seconds_after: float) -> str:
    return email.utils.formatdate(DATED_AT + seconds_after, usegmt=True)


@pytest.mark.parametrize("client_now", [0.0, DATED_AT - 3600, DATED_AT + 3600, 2.0e9])
def test_an_http_date_is_counted_from_the_answers_date_not_the_clients_clock(client_now: float) -> None:
    headers = {"retry-after": dated(WAIT_S), "date": dated(0)}
    assert parse_retry_after(headers, client_now, None) == (float(WAIT_S), "retry-after")
    decision = profile_for("openai-python").decide(1, ResponseInfo(429, headers, now=client_now))
    assert (decision.retry, decision.wait_s, decision.source) == (True, float(WAIT_S), "retry-after")


def test_without_a_date_header_the_clients_clock_is_the_reference() -> None:
    headers = {"retry-after": dated(WAIT_S)}
    assert parse_retry_after(headers, DATED_AT + 5, None) == (float(WAIT_S - 5), "retry-after")


@pytest.fixture(scope="module")
def backend_url() -> Iterator[tuple[QuirkyBackend, str]]:
    with LoopbackServers(lifetime=120) as servers:
        backend = QuirkyBackend()
        yield backend, servers.start(backend)


def clock_at(scale: int) -> Clock:
    # time scale 1 on a virtual clock (the 20 s wait passes at once); 20 on the scaled clock a run uses (1 wall s)
    return VirtualClock(start=1.7e9) if scale == 1 else ScaledClock(float(scale))


@pytest.mark.parametrize("scale", [1, 20])
def test_the_client_waits_the_http_date_retry_after_at_time_scale(
    backend_url: tuple[QuirkyBackend, str], scale: int
) -> None:
    backend, url = backend_url
    backend.throttled = 0
    backend.quirks = Quirks(throttle="http-date", retry_s=WAIT_S, dated_at=DATED_AT)
    clock = clock_at(scale)
    settings = RunSettings(run_id="date", clock=clock, client_profile="openai-python")
    transport = Transport(url, clock, timeout_s=30 * scale)
    records: list[dict[str, Any]] = []
    plan = RequestPlan(App(id="date"), "chat", "chat", "gpt-4o", 30, 50, False)
    try:
        outcome = execute(plan, "u1", 1, transport, settings, random.Random(0), records.append)
    finally:
        transport.close()
    assert outcome.error_kind == "" and [r["decision"] for r in records] == ["retry", "success"]
    first, second = records
    assert (first["retry_after_s"], first["retry_wait_s"], first["retry_wait_source"]) == (
        float(WAIT_S),
        float(WAIT_S),
        "retry-after",
    )
    # the retry went out after the whole wait, in scenario time
    assert second["t_scenario"] - first["t_scenario"] >= WAIT_S
