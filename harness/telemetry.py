"""OpenTelemetry, off by default: one trace per logical request, linked across client, gateway and backend.

On when the standard `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, as
every OpenTelemetry SDK reads it; spans and metrics go over OTLP/HTTP with the official exporter. A logical
request is a root span of the load generator with one child span per attempt; each attempt carries a W3C
`traceparent`, so the gateway's span is the attempt's child and the backend's span the gateway's. Attribute
names follow the OpenTelemetry GenAI semantic conventions, plus the harness's own (`harness.*`), and are
defined here once.

    >>> enabled({})
    False
    >>> enabled({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    True
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from functools import cache
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.context import Context

# GenAI semantic conventions (https://opentelemetry.io/docs/specs/semconv/gen-ai/)
GEN_AI_OPERATION = "gen_ai.operation.name"  # chat, text_completion, embeddings
GEN_AI_PROVIDER = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
GEN_AI_USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GEN_AI_RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
GEN_AI_TOKEN_TYPE = "gen_ai.token.type"  # input, output
PROVIDER = "azure.ai.openai"
OPERATION_NAMES = {"chat": "chat", "completions": "text_completion", "embeddings": "embeddings"}
HTTP_STATUS = "http.response.status_code"
GATEWAY_TOKENS = "harness.gateway.tokens"  # counter: the gateway's token metric, by its dimensions and token type

# the harness's own
OUTCOME = "harness.outcome"  # the record's error kind, or success
RETRY_AFTER_S = "harness.retry_after_s"
BACKEND = "harness.backend"
BREAKER_STATE = "harness.breaker_state"  # of the backend that answered, as the gateway saw it
CLIENT_PROFILE = "harness.client_profile"
APP_ID = "harness.app_id"
LOGICAL_ID = "harness.logical_id"
ATTEMPT = "harness.attempt"
DECISION = "harness.decision"  # what the client's retry logic decided after the attempt
BACKEND_DECISION = "harness.backend_decision"  # the backend's admission: ok, rate_limited_tokens, ...
STREAM = "harness.stream"

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")


def enabled(environ: Mapping[str, str] | None = None) -> bool:
    environ = os.environ if environ is None else environ
    return any(environ.get(name) for name in ENDPOINT_VARIABLES)


# One provider per component (not the global one): the gateway and the mock share a process under `harness
# serve`, and each must say which service it is.
_PROVIDERS: list[Any] = []


@cache
def tracer(service: str) -> trace.Tracer | None:
    """The component's tracer (OTLP/HTTP, batched), set up once; None when telemetry is off."""
    if not enabled():
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=_resource(service))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    _PROVIDERS.append(provider)
    return provider.get_tracer("aoai-throttle-harness")


@cache
def meter(service: str) -> Any | None:
    """The component's meter (OTLP/HTTP, every OTEL_METRIC_EXPORT_INTERVAL ms and at exit); None when off."""
    if not enabled():
        return None
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    provider = MeterProvider(
        resource=_resource(service), metric_readers=[PeriodicExportingMetricReader(OTLPMetricExporter())]
    )
    _PROVIDERS.append(provider)
    return provider.get_meter("aoai-throttle-harness")


def _resource(service: str) -> Any:
    from opentelemetry.sdk.resources import Resource

    return Resource.create({"service.name": service})


def flush() -> None:
    """Send what is buffered (providers also flush when the process exits)."""
    for provider in _PROVIDERS:
        provider.force_flush(timeout_millis=5_000)


def inject(headers: MutableMapping[str, str], context: Context | None = None) -> None:
    """Add `traceparent` (and `tracestate`) for the current span, or `context`'s, to outgoing headers."""
    propagate.inject(headers, context=context)


def extract(headers: Mapping[str, str]) -> Context:
    """The caller's context from incoming headers (an empty context when there is none)."""
    return propagate.extract(dict(headers))


def usage_attributes(prompt: int | None, completion: int | None) -> dict[str, int]:
    out = {}
    if prompt is not None:
        out[GEN_AI_USAGE_INPUT_TOKENS] = int(prompt)
    if completion is not None:
        out[GEN_AI_USAGE_OUTPUT_TOKENS] = int(completion)
    return out


_TRACE_HEADERS = (b"traceparent", b"tracestate")


class ServerSpan:
    """A server's span for one request (gateway or backend), a child of the caller's `traceparent`.

    Opened when the request arrives, closed with the request's log row; a no-op when telemetry is off.
    """

    def __init__(self, service: str, name: str, headers: Mapping[str, str]) -> None:
        self._tracer = tracer(service)
        self._span: trace.Span | None = None
        if self._tracer is not None:
            self._span = self._tracer.start_span(name, context=extract(headers), kind=trace.SpanKind.SERVER)

    def outgoing(self, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        """Raw headers for a call this request makes, carrying this span's traceparent instead of the caller's."""
        if self._span is None:
            return headers
        carrier: dict[str, str] = {}
        inject(carrier, trace.set_span_in_context(self._span))
        kept = [(name, value) for name, value in headers if name not in _TRACE_HEADERS]
        return kept + [(name.encode("latin-1"), value.encode("latin-1")) for name, value in carrier.items()]

    def end(self, attributes: Mapping[str, Any], error: str | None = None) -> None:
        if self._span is None:
            return
        self._span.set_attributes({k: v for k, v in attributes.items() if v is not None})
        if error:
            self._span.set_status(trace.Status(trace.StatusCode.ERROR, error))
        self._span.end()
        self._span = None


def operation_name(operation: str | None) -> str:
    return OPERATION_NAMES.get(operation or "", operation or "")
