"""The gateway and the clients against a backend we did not write: its quirks on a real loopback socket.

A request with `"stream": true` is a stream whatever the content type; a stream that ends cleanly after a
`finish_reason` is whole even without `[DONE]`; a stream cut after the headers reaches the client as a broken
connection; a member silent past the gateway timeout gets a 504, never an empty 200.
"""

from __future__ import annotations

import json
import random
import socket
import statistics
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai import AzureOpenAI
from quirky_backend import CHAT, EVENT_STREAM, PIECES, LoopbackServers, Quirks
from wire_helpers import Wire

from harness.client.attempt import AttemptResult
from harness.clock import RealClock, ScaledClock
from harness.loadgen.transport import Transport
from harness.scenario.workload import App
from harness.workload.requests import RequestPlan
from harness.workload.session import RunSettings, execute

# real sockets and the wall clock (time scale 1): the servers answer in real seconds
pytestmark = pytest.mark.e2e

API_VERSION = "2024-10-21"
PATH = CHAT.format(deployment="gpt-4o") + f"?api-version={API_VERSION}"
STREAM_BODY = json.dumps({"messages": [{"role": "user", "content": "Stream it"}], "stream": True}).encode()
STREAM_PLAN = RequestPlan(App(id="quirks"), "chat", "chat", "gpt-4o", 30, 50, True, include_usage=False)
NO_SSE_NO_DONE = Quirks(content_type="application/json", done=False, ttft=0.3, per_token=0.02)


@pytest.fixture
def wire() -> Iterator[Wire]:
    with LoopbackServers(lifetime=120) as servers:
        yield Wire(servers)


@pytest.fixture
def short_timeout_wire() -> Iterator[Wire]:
    with LoopbackServers(lifetime=120) as servers:
        yield Wire(servers, "gateway: {timeout: 0.5, circuit_breaker: {failureCondition: {count: 5}}}")


def attempt(url: str) -> AttemptResult:
    transport = Transport(url, RealClock(), timeout_s=30)
    try:
        return transport.send(PATH, STREAM_BODY, {"content-type": "application/json"}, stream=True)
    finally:
        transport.close()


def sdk(url: str) -> AzureOpenAI:
    return AzureOpenAI(azure_endpoint=url, api_key="k", api_version=API_VERSION, max_retries=0, timeout=20)


def sdk_stream_text(url: str) -> str:
    stream = sdk(url).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "Stream it"}], stream=True
    )
    return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)


# -- 1. a stream is a stream whatever its content type --------------------------------------------------------


@pytest.mark.serial  # the gateway's TTFT within 50 wall ms of the backend's
def test_a_stream_without_the_sse_content_type_or_done_is_relayed_as_it_comes(wire: Wire) -> None:
    wire.backend.quirks = NO_SSE_NO_DONE
    ttft: dict[str, list[float]] = {"direct": [], "gateway": []}
    for _ in range(3):
        for target in ttft:
            result = attempt(wire.url(target))
            assert result.status == 200 and result.error is None and not result.truncated
            assert result.text == "".join(PIECES)
            assert result.ttft_s is not None
            ttft[target].append(result.ttft_s)
    direct, through = statistics.median(ttft["direct"]), statistics.median(ttft["gateway"])
    assert direct >= 0.3
    assert abs(through - direct) < 0.05, ttft  # buffered, it would be the whole answer: 0.3 s + 10 x 20 ms
    rows = wire.rows()
    assert [(r["outcome"], r["stream"]) for r in rows] == [("ok", True)] * 3
    assert {(r["completion_tokens"], r["tokens_counted_by"]) for r in rows} == {(len(PIECES), "counted_deltas")}
    assert wire.completion_tokens_metric() == 3 * len(PIECES)


@pytest.mark.parametrize("content_type", [None, "application/json", "text/plain"])
def test_stream_tokens_are_counted_whatever_the_content_type(wire: Wire, content_type: str | None) -> None:
    wire.backend.quirks = Quirks(content_type=content_type, done=False, usage=True)
    assert sdk_stream_text(wire.gateway) == "".join(PIECES)
    (row,) = wire.rows()
    assert (row["outcome"], row["completion_tokens"], row["tokens_counted_by"]) == ("ok", len(PIECES), "stream_usage")
    assert wire.completion_tokens_metric() == len(PIECES)


# -- 2. a clean end after a finish_reason is a whole answer -------------------------------------------------


def execute_stream(url: str) -> tuple[Any, list[dict[str, Any]]]:
    settings = RunSettings(run_id="quirks", clock=RealClock(), client_profile="none")
    transport = Transport(url, settings.clock, timeout_s=30)
    records: list[dict[str, Any]] = []
    try:
        outcome = execute(STREAM_PLAN, "u1", 1, transport, settings, random.Random(0), records.append)
    finally:
        transport.close()
    return outcome, records


@pytest.mark.parametrize("target", ["direct", "gateway"])
def test_the_client_records_success_for_a_stream_that_ends_after_its_finish_reason(wire: Wire, target: str) -> None:
    wire.backend.quirks = Quirks(content_type="application/json", done=False)
    outcome, (record,) = execute_stream(wire.url(target))
    assert outcome.error_kind == "" and record["decision"] == "success"
    assert (record["usage_source"], record["usage_completion"]) == ("counted_deltas", len(PIECES))
    assert sdk_stream_text(wire.url(target)) == "".join(PIECES)  # the openai SDK reads it without error too


@pytest.mark.parametrize("target", ["direct", "gateway"])
def test_a_stream_that_ends_without_done_or_finish_reason_is_truncated(wire: Wire, target: str) -> None:
    wire.backend.quirks = Quirks(done=False, finish=False)
    outcome, (record,) = execute_stream(wire.url(target))
    assert outcome.error_kind == "truncated_stream" and record["decision"] == "fail"


# -- 3. a stream cut by the backend is a broken connection to the client ------------------------------------


def raw_stream(url: str) -> tuple[bytes, bytes]:
    """The head and the raw (chunked) body of a stream request, read to EOF over a plain socket."""
    host, port = url.removeprefix("http://").split(":")
    request = (
        f"POST {PATH} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(STREAM_BODY)}\r\n\r\n"
    ).encode() + STREAM_BODY
    received = b""
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        while data := sock.recv(65536):
            received += data
    head, _, body = received.partition(b"\r\n\r\n")
    return head, body


@pytest.mark.parametrize("target", ["direct", "gateway"])
def test_a_stream_cut_by_the_backend_reaches_the_client_as_a_broken_connection(
    wire: Wire, target: str, caplog: pytest.LogCaptureFixture
) -> None:
    wire.backend.quirks = Quirks(cut_after=3, per_token=0.01)
    url = wire.url(target)
    head, body = raw_stream(url)
    assert head.startswith(b"HTTP/1.1 200") and b"transfer-encoding: chunked" in head.lower()
    assert b'"content":" a"' in body  # what came before the cut was relayed...
    assert not body.endswith(b"0\r\n\r\n")  # ... and the chunked body never ended: the connection was closed

    with pytest.raises(openai.APIConnectionError):  # the SDK raises instead of returning a cut answer
        sdk_stream_text(url)
    result = attempt(url)
    assert result.status == 200 and result.truncated and result.text == "".join(PIECES[:3])
    assert result.error_detail  # the connection broke: the body did not just end
    outcome, (record,) = execute_stream(url)
    assert outcome.error_kind == "truncated_stream" and record["decision"] == "fail"

    if target == "gateway":
        rows = wire.rows()
        assert [(r["status"], r["outcome"]) for r in rows] == [(200, "upstream_error")] * 4
        assert {r["completion_tokens"] for r in rows} == {3}  # what was streamed is settled and counted
        assert wire.completion_tokens_metric() == 4 * 3
        # the abort is in the gateway log, not a traceback on the server's stderr
        assert not [r for r in caplog.records if r.exc_info and "StreamCut" in repr(r.exc_info[1])]


def test_a_member_silent_after_its_headers_past_the_timeout_gets_a_504_not_an_empty_200(
    short_timeout_wire: Wire,
) -> None:
    wire = short_timeout_wire
    wire.backend.quirks = Quirks(ttft=2.0)
    started = time.monotonic()
    with pytest.raises(openai.InternalServerError) as caught:  # 504: a status the SDK can retry
        sdk_stream_text(wire.gateway)
    assert caught.value.status_code == 504 and time.monotonic() - started < 1.9
    assert caught.value.response.json()["error"]["code"] == "GatewayTimeout"
    (row,) = wire.rows()
    assert (row["status"], row["outcome"]) == (504, "upstream_error")


def test_a_member_silent_mid_stream_past_the_timeout_breaks_the_client_connection(short_timeout_wire: Wire) -> None:
    wire = short_timeout_wire
    wire.backend.quirks = Quirks(per_token=2.0)
    result = attempt(wire.gateway)
    assert result.status == 200 and result.truncated and result.text == PIECES[0]
    assert result.error_detail  # the connection broke: the body did not just end
    head, body = raw_stream(wire.gateway)
    assert head.startswith(b"HTTP/1.1 200") and not body.endswith(b"0\r\n\r\n")
    rows = wire.rows()
    assert [(r["status"], r["outcome"], r["completion_tokens"]) for r in rows] == [(200, "upstream_error", 1)] * 2


# -- 4. Retry-After as an HTTP date, or whole seconds only -------------------------------------------------


@pytest.mark.parametrize("target", ["direct", "gateway"])
@pytest.mark.parametrize("throttle", ["http-date", "seconds-only"])
def test_retry_after_as_an_http_date_or_whole_seconds_is_waited(wire: Wire, target: str, throttle: str) -> None:
    wire.backend.quirks = Quirks(throttle=throttle, retry_s=2)
    # The backend dates its answers on the wall clock, so the client runs on it too (time scale 1): an HTTP
    # date set against a compressed scenario clock would be read as already past, the sooner the busier the host
    settings = RunSettings(run_id="quirks", clock=ScaledClock(1.0), client_profile="openai-python")
    transport = Transport(wire.url(target), settings.clock, timeout_s=30)
    records: list[dict[str, Any]] = []
    plan = RequestPlan(App(id="quirks"), "chat", "chat", "gpt-4o", 30, 50, False)
    try:
        outcome = execute(plan, "u1", 1, transport, settings, random.Random(0), records.append)
    finally:
        transport.close()
    assert outcome.error_kind == "" and [r["decision"] for r in records] == ["retry", "success"]
    first = records[0]
    assert first["error_kind"] == "backend_429" and first["retry_wait_source"] == "retry-after"
    if throttle == "seconds-only":
        assert first["retry_after_s"] == first["retry_wait_s"] == 2.0
    else:  # read against the answer's own Date header, which through the gateway is the gateway's: its server
        # stamps Date once a wall second, so the wait read there can be one second longer than the backend's
        slack = 1.0 if target == "gateway" else 0.0
        assert 1.0 <= first["retry_after_s"] <= 2.0 + slack and 0 < first["retry_wait_s"] <= 2.0 + slack
    assert "retry_after_ms" not in first or first["retry_after_ms"] is None
    assert records[1]["usage_total"] == 9 + len(PIECES)


def test_the_quirky_backend_answers_as_aoai_by_default(wire: Wire) -> None:
    result = attempt(wire.direct)
    assert result.headers["content-type"].startswith(EVENT_STREAM) and not result.truncated
    assert sdk_stream_text(wire.gateway) == "".join(PIECES)
    assert wire.backend.seen[-1]["headers"]["x-gateway-request-id"]


@pytest.mark.parametrize("scale", [1.0, 20.0])
def test_the_gateway_trips_for_an_http_date_retry_after(scale: float) -> None:
    """acceptRetryAfter with `Retry-After: <HTTP date>`: the breaker trips until that date, counted from the
    backend's own Date header (which the relayed answer does not carry), not for the configured tripDuration
    (90 s here); the log keeps the wait. The wait is the backend's, whatever the gateway's time scale: 20 s of
    scenario time at scale 1 and at scale 20 alike."""
    breaker = (
        "gateway: {circuit_breaker: {failureCondition: {count: 1, statusCodeRanges: [{min: 429, max: 429}]}, "
        "tripDuration: PT90S, acceptRetryAfter: true}}"
    )
    with LoopbackServers(lifetime=60) as servers:
        wire = Wire(servers, breaker, ScaledClock(scale))
        wire.backend.quirks = Quirks(throttle="http-date", retry_s=20)
        httpx.post(wire.gateway + PATH, content=STREAM_BODY, headers={"content-type": "application/json"}, timeout=20)
        rows = wire.app.state.gateway.log.rows
    trips = [r for r in rows if r["kind"] == "breaker" and r["to"] == "open"]
    # dates have whole seconds, the server's own Date header (uvicorn's, renewed once a second) may lag one, and a
    # busy host may read the answer a second late
    assert len(trips) == 1 and 17.0 <= trips[0]["until"] - trips[0]["t"] <= 21.0  # not the 90 s configured
    request = next(r for r in rows if r["kind"] == "request")
    assert request["status"] == 429 and 17.0 <= request["retry_after"] <= 21.0
