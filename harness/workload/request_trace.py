"""The load generator's spans: a logical request is one trace, its root span, with a child span per attempt.

Each attempt's `traceparent` goes out with it, so the gateway's span and the backend's hang below it. The
attempt's span is the GenAI inference span and holds the attempt's usage; the root holds none, so usage is
counted once per trace (`harness.telemetry` says why). Nothing happens when telemetry is off. Contexts are passed explicitly rather than through the
current context, so concurrent users (greenlets) never see each other's spans.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from harness import telemetry
from harness.client.attempt import AttemptResult


class RequestTrace:
    """Spans of one logical request; every method is a no-op when telemetry is off."""

    def __init__(
        self, operation: str, deployment: str, attributes: dict[str, Any], server: dict[str, Any] | None = None
    ) -> None:
        self._tracer = telemetry.tracer("harness-loadgen")
        self._root: Span | None = None
        self._attempts: dict[int, Span] = {}
        if self._tracer is None:
            return  # telemetry off: nothing to build on every request
        self._name = f"{telemetry.OPERATION_NAMES.get(operation, operation)} {deployment}"
        self._attributes = {
            telemetry.GEN_AI_OPERATION: telemetry.OPERATION_NAMES.get(operation, operation),
            telemetry.GEN_AI_PROVIDER: telemetry.PROVIDER,
            telemetry.GEN_AI_REQUEST_MODEL: deployment,
            **{k: v for k, v in attributes.items() if v is not None},
        }
        self._server = server or {}  # server.address/port of the attempts' target
        self._root = self._tracer.start_span(self._name, kind=SpanKind.INTERNAL, attributes=self._attributes)

    def start_attempt(self, attempt: int, headers: dict[str, str]) -> None:
        """Open the attempt's span and put its traceparent in the request's headers."""
        if self._tracer is None or self._root is None:
            return
        span = self._tracer.start_span(
            self._name,
            context=trace.set_span_in_context(self._root),
            kind=SpanKind.CLIENT,
            attributes={**self._attributes, **self._server, telemetry.ATTEMPT: attempt},
        )
        self._attempts[attempt] = span
        telemetry.inject(headers, trace.set_span_in_context(span))

    def end_attempt(self, attempt: int, record: dict[str, Any], result: AttemptResult | None = None) -> None:
        """Close the attempt's span with what its record says (status, outcome, usage, Retry-After, decision) and
        what the answer said of itself (`result`: its id, model and finish reasons)."""
        span = self._attempts.pop(attempt, None)
        if span is None:
            return
        retry_after = record.get("retry_after_ms")
        retry_after_s = retry_after / 1000 if retry_after is not None else record.get("retry_after_s")
        error_kind = record.get("error_kind") or None
        values = {
            telemetry.HTTP_STATUS: record.get("status") or None,
            telemetry.OUTCOME: error_kind or "success",
            telemetry.ERROR_TYPE: error_kind,
            telemetry.RETRY_AFTER_S: retry_after_s,
            telemetry.BACKEND: record.get("backend"),
            telemetry.DECISION: record.get("decision"),
            **telemetry.usage_attributes(record.get("usage_prompt"), record.get("usage_completion")),
        }
        if result is not None:
            values[telemetry.GEN_AI_RESPONSE_ID] = result.response_id or None
            values[telemetry.GEN_AI_RESPONSE_MODEL] = result.response_model or None
            values[telemetry.GEN_AI_RESPONSE_FINISH_REASONS] = list(result.finish_reasons) or None
        span.set_attributes({k: v for k, v in values.items() if v is not None})
        if error_kind:
            span.set_status(Status(StatusCode.ERROR, str(error_kind)))
        span.end()

    def end(self, error_kind: str) -> None:
        if self._root is None:
            return
        self._root.set_attribute(telemetry.OUTCOME, error_kind or "success")
        if error_kind:
            self._root.set_attribute(telemetry.ERROR_TYPE, error_kind)
            self._root.set_status(Status(StatusCode.ERROR, error_kind))
        self._root.end()
        self._root = None

    def abandon(self) -> None:
        """End every span still open, in error (`error.type` interrupted): the request was stopped before its
        answer came, and the gateway's and backend's spans below it still need their parent."""
        for span in self._attempts.values():
            _interrupted(span)
        self._attempts.clear()
        if self._root is not None:
            _interrupted(self._root)
            self._root = None


def _interrupted(span: Span) -> None:
    span.set_attribute(telemetry.OUTCOME, telemetry.INTERRUPTED)
    span.set_attribute(telemetry.ERROR_TYPE, telemetry.INTERRUPTED)
    span.set_status(Status(StatusCode.ERROR, telemetry.INTERRUPTED))
    span.end()
