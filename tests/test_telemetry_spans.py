"""Span attributes in one process, exported to the OpenTelemetry SDK's in-memory exporter: a logical request's
client spans (RequestTrace), and the gateway's and backend's server spans of an in-process stack. Usage is on
the client's attempt spans only (the servers' counts under harness.usage.*), every error span has error.type,
and the whole is one trace from client to backend."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import gevent
import pytest
from gateway_helpers import gateway_stack
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from harness import telemetry
from harness.aoai.refusals import TOKEN_LIMIT
from harness.client.attempt import AttemptResult
from harness.clock import VirtualClock
from harness.scenario.workload import App
from harness.workload.request_trace import RequestTrace
from harness.workload.requests import RequestPlan
from harness.workload.session import RunSettings, execute

STACK = """
backends: [{name: east, deployments: {gpt-4o: {latency: {ttft: 0, per_token: 0}}}}]
gateway:
  token_limit: {counter-key: header:x-caller, tokens-per-minute: 100}
"""


@pytest.fixture
def exported(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    providers: dict[str, TracerProvider] = {}

    def tracer(service: str) -> Any:
        if service not in providers:
            provider = providers[service] = TracerProvider(resource=Resource.create({"service.name": service}))
            provider.add_span_processor(SimpleSpanProcessor(exporter))
        return providers[service].get_tracer("test")

    monkeypatch.setattr(telemetry, "tracer", tracer)
    yield exporter


def _service(span: ReadableSpan) -> str:
    return str(span.resource.attributes["service.name"])


async def test_usage_once_error_type_everywhere_and_one_trace(exported: InMemorySpanExporter) -> None:
    stack = gateway_stack(STACK)
    spans = RequestTrace("chat", "gpt-4o", {telemetry.APP_ID: "a"}, telemetry.server_attributes("http://gateway"))
    try:
        first: dict[str, str] = {"x-caller": "a"}
        spans.start_attempt(1, first)
        served = await stack.chat(headers=first)
        body = served.json()
        usage = body["usage"]
        spans.end_attempt(
            1,
            {"status": 200, "error_kind": "", "usage_prompt": usage["prompt_tokens"],
             "usage_completion": usage["completion_tokens"]},
            AttemptResult(200, response_id=body["id"], response_model=body["model"], finish_reasons=("stop",)),
        )  # fmt: skip
        second: dict[str, str] = {"x-caller": "a"}
        spans.start_attempt(2, second)
        refused = await stack.chat(headers=second, content="word " * 150)  # over the minute's 100 tokens
        spans.end_attempt(2, {"status": 429, "error_kind": "rate_limited"}, AttemptResult(429))
        spans.end("rate_limited")
    finally:
        await stack.aclose()
    assert (served.status_code, refused.status_code) == (200, 429)
    finished = exported.get_finished_spans()
    assert len({span.context.trace_id for span in finished}) == 1  # one trace, client to backend
    by_id = {span.context.span_id: span for span in finished}
    parent_service = {span.name: _service(by_id[span.parent.span_id]) for span in finished if span.parent}
    backend = [s for s in finished if _service(s) == "harness-mock"]
    assert len(backend) == 1 and parent_service[backend[0].name] == "harness-gateway"
    # usage: on the client's attempt spans only, and once
    holders = [s for s in finished if telemetry.GEN_AI_USAGE_INPUT_TOKENS in (s.attributes or {})]
    assert [(_service(s), s.kind) for s in holders] == [("harness-loadgen", SpanKind.CLIENT)]
    counted = sum(
        (s.attributes or {}).get(telemetry.GEN_AI_USAGE_INPUT_TOKENS, 0)
        + (s.attributes or {}).get(telemetry.GEN_AI_USAGE_OUTPUT_TOKENS, 0)
        for s in finished
    )
    assert counted == usage["prompt_tokens"] + usage["completion_tokens"]
    gateway_served = next(s for s in finished if _service(s) == "harness-gateway" and s.status.is_ok)
    assert (gateway_served.attributes or {})["harness.usage.input_tokens"] == usage["prompt_tokens"]
    assert (backend[0].attributes or {})["harness.usage.output_tokens"] == usage["completion_tokens"]
    # error.type on every span that ended in error: the root, the refused attempt, the gateway's refusal
    errors = {(_service(s), s.kind): (s.attributes or {}).get("error.type") for s in finished if not s.status.is_ok}
    assert all(s.status.status_code is StatusCode.ERROR for s in finished if not s.status.is_ok)
    assert errors == {
        ("harness-loadgen", SpanKind.INTERNAL): "rate_limited",
        ("harness-loadgen", SpanKind.CLIENT): "rate_limited",
        ("harness-gateway", SpanKind.SERVER): TOKEN_LIMIT,
    }
    # the answer's own facts, and who was called
    attempt = holders[0].attributes or {}
    assert attempt["gen_ai.response.id"] == body["id"] and attempt["gen_ai.response.model"] == body["model"]
    assert attempt["gen_ai.response.finish_reasons"] == ("stop",)
    assert (attempt["server.address"], attempt["server.port"]) == ("gateway", 80)
    assert ((gateway_served.attributes or {})["server.address"], (gateway_served.attributes or {})["server.port"]) == (
        "gateway",
        80,
    )


class _StoppedMidRequest:
    """A sender whose user is stopped while the attempt is in flight, as Locust stops a user (GreenletExit)."""

    server = telemetry.server_attributes("http://127.0.0.1:9")

    def send(self, path: str, body: bytes, headers: dict[str, str], stream: bool) -> AttemptResult:
        raise gevent.GreenletExit


def test_a_request_stopped_mid_flight_still_ends_its_spans_as_interrupted(exported: InMemorySpanExporter) -> None:
    plan = RequestPlan(App(id="a"), "chat", "chat", "gpt-4o", 30, 50, False)
    settings = RunSettings(run_id="t", clock=VirtualClock())
    with pytest.raises(gevent.GreenletExit):
        execute(plan, "u1", 1, _StoppedMidRequest(), settings, random.Random(0), lambda record: None)
    finished = exported.get_finished_spans()
    # the attempt's span and the root end, so the gateway's and backend's spans below them keep their parent
    assert sorted(s.kind.name for s in finished) == ["CLIENT", "INTERNAL"]
    for span in finished:
        assert span.status.status_code is StatusCode.ERROR
        assert (span.attributes or {})["error.type"] == telemetry.INTERRUPTED
