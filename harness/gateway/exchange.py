"""The gateway's live driver: one HTTP request carried through the gateway's steps (`harness.gateway.steps`).

The steps decide; this reads the client's body, sends to pool members over the shared httpx client, reads
or relays their answers (a stream chunk by chunk, its tokens counted on the way), and adds what only a live
gateway has: the span of the request and the token metrics.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse

from harness import telemetry
from harness.aoai.sse import StreamReader, Usage, usage_of_body
from harness.aoai.validation import Invalid, check_api_version, check_request, parse_body, too_large
from harness.gateway.forwarding import counts_prompt
from harness.gateway.identity import without_subscription_key
from harness.gateway.proxy import (
    UpstreamFailure,
    downstream_headers,
    open_upstream,
    read_body,
    upstream_headers,
)
from harness.gateway.relay import StreamCut, UpstreamChunks
from harness.gateway.replies import relayed
from harness.gateway.state import Gateway
from harness.gateway.steps import (
    AnswerBody,
    AwaitFirstChunk,
    Discard,
    ExchangeSteps,
    Failure,
    FirstChunk,
    ReadAnswer,
    ReadBody,
    Relay,
    Reply,
    RequestBody,
    Send,
    StreamEnd,
    Upstream,
)
from harness.tokens import prompt_counter


class Exchange:
    """One client request: the gateway's steps carried out over HTTP."""

    def __init__(self, gateway: Gateway, request: Request, operation: str) -> None:
        self.gateway = gateway
        self.request = request
        self.operation = operation
        self.clock = gateway.clock
        headers = request.headers
        client_ip = request.client.host if request.client else ""
        self.steps = ExchangeSteps(
            gateway, str(uuid.uuid4()), operation, headers, client_ip, self, query=request.query_params
        )
        self.row = self.steps.row
        self.span = telemetry.ServerSpan("harness-gateway", f"gateway {telemetry.operation_name(operation)}", headers)
        self._upstream: httpx.Response | None = None
        self._chunks: UpstreamChunks | None = None
        self._first = b""
        self._raw = b""
        self.forwarded_at: float | None = None  # when the first member was tried: gateway time ends, backend's begins

    async def run(self, deployment_name: str | None) -> Response:
        steps = self.steps.run(deployment_name)
        result: Any = None
        while True:
            try:
                effect = steps.send(result)
            except StopIteration as done:
                reply: Reply = done.value
                return relayed(reply.body, reply.status, reply.headers, reply.media_type)  # a large one in slices
            if isinstance(effect, Relay):
                return StreamingResponse(self._relay_stream(steps, effect), status_code=200, headers=effect.headers)
            result = await self._carry_out(effect)

    async def _carry_out(self, effect: ReadBody | Send | Discard | ReadAnswer | AwaitFirstChunk) -> Any:
        if isinstance(effect, ReadBody):
            return await self._read_body()
        if isinstance(effect, Send):
            return await self._send(effect.member)
        upstream = self._upstream
        assert upstream is not None
        if isinstance(effect, Discard):
            await upstream.aclose()  # another member gets the request; this answer is not used
            return None
        if isinstance(effect, ReadAnswer):
            try:
                body = await self._read_answer(upstream)
            except UpstreamFailure as exc:
                return _failure(exc)
            return AnswerBody(body, usage_of_body(body))
        chunks = self._chunks = UpstreamChunks(upstream)
        try:
            self._first = await chunks.first()
        except UpstreamFailure as exc:
            await chunks.aclose()
            return _failure(exc)
        return FirstChunk(self._first.lstrip().startswith(b"{"))

    async def _read_answer(self, upstream: httpx.Response) -> bytes:
        """The member's whole answer; after a first chunk (a plain JSON answer to a stream request), the rest."""
        chunks = self._chunks
        if chunks is None:
            return await read_body(upstream)
        try:
            return self._first + b"".join([chunk async for chunk in chunks])
        finally:
            await chunks.aclose()

    async def _read_body(self) -> RequestBody | Invalid:
        limit = self.gateway.config.max_body_bytes
        declared = self.request.headers.get("content-length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > limit:
            return too_large(limit)
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in self.request.stream():
                size += len(chunk)
                if size > limit:
                    return too_large(limit)
                chunks.append(chunk)
        except ClientDisconnect:
            return Invalid(400, "BadRequest", "The client went away while sending the body.")
        self._raw = b"".join(chunks)
        payload = parse_body(self._raw, limit)
        if isinstance(payload, Invalid):
            return payload
        operation = self.operation
        # the deployments route names its api-version (the v1 route has none): refused here as the backend would
        on_deployment_route = "deployment" in self.request.path_params
        version = check_api_version(self.request.query_params.get("api-version")) if on_deployment_route else None
        return RequestBody(
            payload,
            await prompt_counter(operation, payload, self._likely_model(payload)),  # a long prompt off the loop
            lambda model: version or check_request(payload, operation, model),
        )

    def _likely_model(self, payload: dict[str, Any]) -> str | None:
        """The model the prompt will be counted for, when it will be: the deployment's, if the gateway has it."""
        if not counts_prompt(self.gateway.config.token_limit, payload.get("stream") is True):
            return None
        name = self.request.path_params.get("deployment", payload.get("model"))
        route = self.gateway.deployments.get(name) if isinstance(name, str) else None
        return route.model if route is not None else None

    async def _send(self, member: str) -> Upstream | Failure:
        gateway = self.gateway
        if self.forwarded_at is None:
            self.forwarded_at = self.clock.now()
        scope = self.request.scope
        target = scope.get("raw_path") or scope["path"].encode()
        if scope.get("query_string"):
            target += b"?" + scope["query_string"]
        if gateway.identifier.checks_subscriptions:  # a checked key stays here, in the query as in the headers
            target = without_subscription_key(target)
        headers = upstream_headers(
            scope["headers"],
            gateway.backends[member].api_key,
            self.steps.id,
            keep_client_key=not gateway.identifier.checks_subscriptions,
        )
        headers = self.span.outgoing(headers)  # the backend's span hangs below this one
        try:
            upstream = await open_upstream(
                gateway.client,
                gateway.upstream_url(member, target),
                headers,
                self._raw,
                gateway.timeout,
                gateway.direct,
            )
        except UpstreamFailure as exc:
            return _failure(exc)
        self._upstream = upstream
        return Upstream(upstream.status_code, upstream.headers, downstream_headers(upstream))

    async def _relay_stream(self, steps: Any, relay: Relay) -> AsyncIterator[bytes]:
        chunks = self._chunks
        assert chunks is not None
        reader = StreamReader()
        cut: Failure | None = None
        ended = False
        try:
            if self._first:
                reader.feed(self._first)
                yield self._first
                async for chunk in chunks:
                    reader.feed(chunk)
                    yield chunk
            ended = True
        except UpstreamFailure as exc:  # the member broke off mid-stream (or went silent past the timeout)
            cut = _failure(exc)
        finally:  # also when the client went away (the generator is closed or cancelled): book first, then close
            reader.close()
            end = StreamEnd(reader.tokens, cut, client_gone=not ended and cut is None)
            with contextlib.suppress(StopIteration):  # the steps settle, log and end there
                steps.send(end)
            await chunks.aclose()
        if cut is not None:
            # Ending the body cleanly would pass a cut answer off as a whole one: abort the client's connection.
            raise StreamCut(f"backend '{self.row['backend']}': {cut.detail}")

    # -- what only the live gateway does beside the steps ----------------------------------------------------

    def backend_answered(self, deployment: str, member: str, headers: Mapping[str, str]) -> None:
        self.gateway.throttling.backend_answered(deployment, member, dict(headers))

    def finished(self, steps: ExchangeSteps, usage: Usage | None, member: str | None) -> None:
        self.gateway.throttling.answered(steps.row["outcome"], member, steps.row, self.forwarded_at)
        if usage is not None:
            self._emit_metrics(usage, member, steps.row["status"])
        self._end_span(member)

    def _end_span(self, member: str | None) -> None:
        row = self.row
        breaker = self.gateway.breakers.get(member) if member else None
        self.span.end(
            {
                telemetry.GEN_AI_OPERATION: telemetry.operation_name(self.operation),
                telemetry.GEN_AI_PROVIDER: telemetry.PROVIDER,
                telemetry.GEN_AI_REQUEST_MODEL: row["model"],
                telemetry.HTTP_STATUS: row["status"],
                telemetry.OUTCOME: row["outcome"],
                telemetry.BACKEND: member,
                telemetry.BREAKER_STATE: str(breaker.state) if breaker is not None else None,
                telemetry.RETRY_AFTER_S: row["retry_after"],
                telemetry.APP_ID: row["app_id"],
                telemetry.STREAM: row["stream"],
                **telemetry.usage_attributes(row["prompt_tokens"], row["completion_tokens"]),
            },
            error=row["outcome"] if row["status"] >= 400 else None,
        )

    def _emit_metrics(self, usage: Usage, member: str | None, status: int) -> None:
        row = self.row
        headers = self.request.headers
        values: dict[str, str] = {}
        for dimension in self.gateway.metrics.dimensions:
            if dimension == "streaming":
                values[dimension] = "true" if row["stream"] else "false"
            elif dimension == "subscription":
                values[dimension] = self.steps.caller.subscription or ""  # the id, never the key
            elif dimension == "status":
                values[dimension] = str(status)
            elif dimension.startswith("header:"):
                values[dimension] = headers.get(dimension[7:], "")
            else:
                value = row.get(dimension)
                values[dimension] = "" if value is None else str(value)
        self.gateway.metrics.record(values, usage.prompt, usage.completion)


def _failure(exc: UpstreamFailure) -> Failure:
    return Failure(exc.reason, exc.status, exc.detail)
