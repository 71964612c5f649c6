"""OpenTelemetry, off by default: one trace per logical request, linked across client, gateway and backend.

On when the standard `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, as
every OpenTelemetry SDK reads it; spans and metrics go over OTLP/HTTP with the official exporter. A logical
request is a root span of the load generator with one child span per attempt; each attempt carries a W3C
`traceparent`, so the gateway's span is the attempt's child and the backend's span the gateway's. Attribute
names follow the OpenTelemetry GenAI semantic conventions, plus the harness's own (`harness.*`), and are
defined here once.

Where the tokens are counted: each attempt's CLIENT span is the GenAI inference span (`{operation} {model}`,
a call to the model service over HTTP), and only it carries `gen_ai.usage.input_tokens`/`output_tokens`: the
conventions put usage on the span of the call that consumed it, and an attempt is that call (a refused
attempt consumed nothing and carries none). Summed over a trace they give the logical request's usage once,
equal to records.csv. The root span (INTERNAL: the caller's logical request, its retries included) carries no
usage, and the gateway's and backend's SERVER spans record the tokens they counted as
`harness.usage.input_tokens`/`output_tokens` instead (`ServerSpan.end` moves them), so a query summing
`gen_ai.usage.*` over a trace never counts one answer three times, while a gateway that counts differently
from its backend (APIM counting a stream's prompt only) still shows.

Every span that ends in error carries `error.type`: the record's error kind on the client's spans (e.g.
`rate_limited`), the log's outcome on the gateway's and the backend's decision on the backend's, all
low-cardinality identifiers as the conventions ask. Client spans say which server they called
(`server.address`/`server.port` of the URL), server spans which address they were called on (the `Host`
header), and a client span of an answer says its `gen_ai.response.id`, `gen_ai.response.model` and
`gen_ai.response.finish_reasons`.

    >>> enabled({})
    False
    >>> enabled({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    True
    >>> server_attributes("http://127.0.0.1:8000/openai")
    {'server.address': '127.0.0.1', 'server.port': 8000}
    >>> server_usage({GEN_AI_USAGE_INPUT_TOKENS: 5, HTTP_STATUS: 200})
    {'harness.usage.input_tokens': 5, 'http.response.status_code': 200}
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from functools import cache
from typing import Any
from urllib.parse import urlsplit

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
GEN_AI_RESPONSE_ID = "gen_ai.response.id"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
ERROR_TYPE = "error.type"  # on every span that ended in error (general conventions)
INTERRUPTED = "interrupted"  # error.type of a client span whose request was stopped before its answer came
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
GEN_AI_TOKEN_TYPE = "gen_ai.token.type"  # input, output
PROVIDER = "azure.ai.openai"
OPERATION_NAMES = {"chat": "chat", "completions": "text_completion", "embeddings": "embeddings"}
HTTP_STATUS = "http.response.status_code"
GATEWAY_TOKENS = "harness.gateway.tokens"  # counter: the gateway's token metric, by its dimensions and token type

# the harness's own
SERVER_USAGE = {  # tokens a server (gateway, backend) counted: not gen_ai.usage.*, which the client span holds
    GEN_AI_USAGE_INPUT_TOKENS: "harness.usage.input_tokens",
    GEN_AI_USAGE_OUTPUT_TOKENS: "harness.usage.output_tokens",
}
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


def server_attributes(url: str) -> dict[str, Any]:
    """`server.address`/`server.port` of the URL a client calls (the port its scheme implies when none is given)."""
    parts = urlsplit(url if "://" in url else f"//{url}")
    if not parts.hostname:
        return {}
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:  # a port that is not a number: the address alone
        return {SERVER_ADDRESS: parts.hostname}
    return {SERVER_ADDRESS: parts.hostname, SERVER_PORT: port}


def server_usage(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """A server span's attributes with `gen_ai.usage.*` renamed `harness.usage.*` (see the module's docstring)."""
    return {SERVER_USAGE.get(name, name): value for name, value in attributes.items()}


_TRACE_HEADERS = (b"traceparent", b"tracestate")


class ServerSpan:
    """A server's span for one request (gateway or backend), a child of the caller's `traceparent`.

    Opened when the request arrives, closed with the request's log row; a no-op when telemetry is off.
    """

    def __init__(self, service: str, name: str, headers: Mapping[str, str]) -> None:
        self._tracer = tracer(service)
        self._span: trace.Span | None = None
        if self._tracer is not None:
            self._span = self._tracer.start_span(
                name,
                context=extract(headers),
                kind=trace.SpanKind.SERVER,
                attributes=server_attributes(headers.get("host", "")),  # the address this server was called on
            )

    def outgoing(self, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        """Raw headers for a call this request makes, carrying this span's traceparent instead of the caller's."""
        if self._span is None:
            return headers
        carrier: dict[str, str] = {}
        inject(carrier, trace.set_span_in_context(self._span))
        kept = [(name, value) for name, value in headers if name not in _TRACE_HEADERS]
        return kept + [(name.encode("latin-1"), value.encode("latin-1")) for name, value in carrier.items()]

    def end(self, attributes: Mapping[str, Any], error: str | None = None) -> None:
        """Close the span; `gen_ai.usage.*` become `harness.usage.*` (counted once, on the client's span), and
        `error` (a low-cardinality kind) is both the span's error status and its `error.type`."""
        if self._span is None:
            return
        self._span.set_attributes(server_usage({k: v for k, v in attributes.items() if v is not None}))
        if error:
            self._span.set_attribute(ERROR_TYPE, error)
            self._span.set_status(trace.Status(trace.StatusCode.ERROR, error))
        self._span.end()
        self._span = None


def operation_name(operation: str | None) -> str:
    return OPERATION_NAMES.get(operation or "", operation or "")
