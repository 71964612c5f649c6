"""One client request through the reference gateway: credentials, body, token limit, the walk over the pool
(harness.gateway.forwarding), the answer relayed (a stream chunk by chunk) or refused, then tokens settled,
metrics and one log row.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse

from harness import telemetry
from harness.aoai.errors import JSON, apim_error_body, error_body
from harness.aoai.headers import BACKEND, CLIENT_REQUEST_ID, GATEWAY_REPLICA
from harness.aoai.refusals import BAD_REQUEST, REFUSAL_HEADER, UNAUTHORIZED, UPSTREAM_ERROR
from harness.aoai.retry_after import advised_wait, retry_after_s
from harness.aoai.sse import StreamReader, Usage, usage_of_body
from harness.aoai.validation import Invalid, check_request, parse_body, too_large
from harness.gateway.forwarding import (
    OK,
    DeploymentRoute,
    Forwarding,
    Refusal,
    add_identity_headers,
    admit_tokens,
    consumed_when_stream_starts,
    counts_prompt,
    outcome_of_backend,
    pool_closed,
    refusal_headers,
    settle_tokens,
    stream_usage,
    token_headers,
    token_refusal,
)
from harness.gateway.identity import Caller, Denied, counter_key
from harness.gateway.proxy import (
    UpstreamFailure,
    downstream_headers,
    open_upstream,
    read_body,
    upstream_headers,
)
from harness.gateway.relay import StreamCut, UpstreamChunks
from harness.gateway.state import Gateway
from harness.gateway.token_limit import Ticket
from harness.records import gateway_request_row
from harness.tokens import count_prompt_tokens


class Exchange:
    """One client request on its way through the gateway; fills its log row as it goes."""

    def __init__(self, gateway: Gateway, request: Request, operation: str) -> None:
        self.gateway = gateway
        self.request = request
        self.operation = operation
        self.clock = gateway.clock
        self.started = self.clock.now()
        self.id = str(uuid.uuid4())
        self.ticket: Ticket | None = None
        self.prompt_estimate = 0
        self.route: DeploymentRoute  # known once the deployment is
        self.stream = False
        self.client_ip = request.client.host if request.client else ""
        self.caller: Caller  # known once the credentials are checked
        headers = request.headers
        self.row: dict[str, Any] = gateway_request_row(
            t=self.started,
            t_wall=self.clock.wall(),
            gateway_request_id=self.id,
            client_request_id=headers.get(CLIENT_REQUEST_ID),
            client_ip=self.client_ip,
            operation=operation,
            replica=gateway.replica,
        )
        self.span = telemetry.ServerSpan("harness-gateway", f"gateway {telemetry.operation_name(operation)}", headers)

    # -- the steps -------------------------------------------------------------------------------------------

    async def run(self, deployment_name: str | None) -> Response:
        refused = self._check_credentials()
        if refused is not None:
            return refused
        body_or_error = await self._read_body()
        if isinstance(body_or_error, Response):
            return body_or_error
        raw, payload = body_or_error
        if deployment_name is None:
            model = payload.get("model")
            deployment_name = model if isinstance(model, str) else ""
        route = self.gateway.deployments.get(deployment_name)
        if route is None:
            return self._finish_error(
                404, "DeploymentNotFound", f"The gateway has no deployment named '{deployment_name}'.", BAD_REQUEST
            )
        self.route = route
        self.row["deployment"] = route.name
        self.row["model"] = route.model
        invalid = check_request(payload, self.operation, route.model)
        if invalid is not None:  # refused here, as the backend would: no tokens charged, no member tried
            return self._bad_request(invalid)
        self.stream = payload.get("stream") is True and self.operation != "embeddings"
        self.row["stream"] = self.stream
        refused = self._admit(payload)
        if refused is not None:
            return refused
        return await self._forward(raw)

    def _check_credentials(self) -> Response | None:
        identity = self.gateway.identifier.identify(self.request.headers)
        if isinstance(identity, Denied):
            self.row["app_id"] = None  # nobody the gateway could vouch for
            return self._answer_error(identity.status, apim_error_body(identity.status, identity.message), UNAUTHORIZED)
        self.caller = identity
        self.row["app_id"] = identity.app_id
        return None

    async def _read_body(self) -> tuple[bytes, dict[str, Any]] | Response:
        limit = self.gateway.config.max_body_bytes
        declared = self.request.headers.get("content-length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > limit:
            return self._bad_request(too_large(limit))
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in self.request.stream():
                size += len(chunk)
                if size > limit:
                    return self._bad_request(too_large(limit))
                chunks.append(chunk)
        except ClientDisconnect:
            return self._finish_error(400, "BadRequest", "The client went away while sending the body.", BAD_REQUEST)
        raw = b"".join(chunks)
        payload = parse_body(raw, limit)
        if isinstance(payload, Invalid):
            return self._bad_request(payload)
        return raw, payload

    def _admit(self, payload: dict[str, Any]) -> Response | None:
        gateway = self.gateway
        policy = gateway.config.token_limit
        # The count is also the prompt figure of streams without a usage chunk.
        if counts_prompt(policy, self.stream):
            self.prompt_estimate = count_prompt_tokens(self.operation, payload, self.route.model)
        if gateway.limiter is None or policy is None:
            return None
        key = counter_key(policy.counter_key, self.caller, self.request.headers, self.client_ip)
        self.row["counter_key"] = key
        ticket = admit_tokens(gateway.limiter, key, self.prompt_estimate, self.stream)
        self.ticket = ticket
        if ticket.allowed:
            return None
        return self._refuse(token_refusal(policy, ticket))

    async def _forward(self, raw: bytes) -> Response:
        gateway = self.gateway
        gateway.read_shared_trips(self.ticket)  # a member another replica tripped is skipped from this request on
        walk = Forwarding(self.route.pool, gateway.breakers, gateway.config.retry)
        self.row["attempts"] = walk.tried
        scope = self.request.scope
        target = scope.get("raw_path") or scope["path"].encode()
        if scope.get("query_string"):
            target += b"?" + scope["query_string"]
        failure: UpstreamFailure | None = None
        while (member := walk.next_member()) is not None:
            backend = gateway.backends[member]
            url = gateway.upstream_url(member, target)
            headers = upstream_headers(
                scope["headers"], backend.api_key, self.id, keep_client_key=not gateway.identifier.checks_subscriptions
            )
            headers = self.span.outgoing(headers)  # the backend's span hangs below this one
            sent = self.clock.now()
            try:
                upstream = await open_upstream(gateway.client, url, headers, raw, gateway.timeout, gateway.direct)
            except UpstreamFailure as exc:
                failure = exc
                if walk.failed(member, exc.reason):
                    continue
                return self._upstream_failed(member, exc)
            status = upstream.status_code
            answer_headers = downstream_headers(upstream)
            # APIM documents acceptRetryAfter with the Retry-After header (seconds), not retry-after-ms; an HTTP
            # date counts from the backend's own Date, which the relayed headers no longer carry
            advice = retry_after_s(upstream.headers, self.clock.wall()) if status >= 400 else None
            if walk.answered(member, status, advice, self.clock.now() - sent):
                await upstream.aclose()  # another member gets the request; this answer is not used
                continue
            return await self._relay(member, upstream, answer_headers)
        if failure is not None:
            return self._upstream_failed(walk.tried[-1], failure)
        return self._refuse(pool_closed(self.route.pool, gateway.config))

    # -- answers ---------------------------------------------------------------------------------------------

    def _refuse(self, refusal: Refusal) -> Response:
        """A gateway-made answer (token limit, quota, closed pool), its Retry-After logged."""
        self.row["retry_after"] = refusal.retry_after
        return self._finish_error(
            refusal.status, refusal.code, refusal.message, refusal.outcome, refusal_headers(refusal)
        )

    def _upstream_failed(self, member: str, failure: UpstreamFailure) -> Response:
        self.row["backend"] = member
        self._settle(None)
        code = "GatewayTimeout" if failure.status == 504 else "BadGateway"
        return self._finish_error(failure.status, code, f"Backend '{member}': {failure.detail}.", UPSTREAM_ERROR)

    async def _relay(self, member: str, upstream: httpx.Response, headers: dict[str, str]) -> Response:
        row = self.row
        row["backend"] = member
        row["backend_request_id"] = headers.get("apim-request-id") or headers.get("x-request-id")
        row["region"] = headers.get("x-ms-region") or self.gateway.backends[member].region
        status = upstream.status_code
        self.gateway.throttling.backend_answered(self.route.name, member, headers)
        headers[BACKEND] = member
        if self.stream and status == 200:
            # A stream whatever its content type says: relayed as it comes, its tokens counted on the way.
            return await self._start_stream(member, UpstreamChunks(upstream), headers)
        try:
            body = await read_body(upstream)
        except UpstreamFailure as exc:
            return self._member_broke_off(member, exc)
        usage = usage_of_body(body) if 200 <= status < 300 else None
        self._settle(usage)
        self._add_token_headers(headers, consumed=usage.total if usage else 0)
        self._add_identity_headers(headers)
        if status == 429:
            row["retry_after"] = advised_wait(upstream.headers, self.clock.wall())
        self._finish(status, outcome_of_backend(status), usage, member)
        return Response(body, status_code=status, headers=headers)

    def _member_broke_off(self, member: str, failure: UpstreamFailure) -> Response:
        """The member's answer failed before anything went to the client: a 502/504 it counts for."""
        breaker = self.gateway.breakers.get(member)
        if breaker is not None:
            breaker.record(None, failure.reason)
        return self._upstream_failed(member, failure)

    async def _start_stream(self, member: str, chunks: UpstreamChunks, headers: dict[str, str]) -> Response:
        # The headers wait for the first chunk: a member silent past the timeout still gets a 504, not a 200.
        try:
            first = await chunks.first()
        except UpstreamFailure as exc:
            await chunks.aclose()
            return self._member_broke_off(member, exc)
        # Only the prompt is known when headers go out: tokens-consumed cannot include the completion.
        self._add_token_headers(headers, consumed=consumed_when_stream_starts(self.ticket, self.prompt_estimate))
        self._add_identity_headers(headers)
        self.row["status"] = 200
        self.row["ttft_s"] = self.clock.now() - self.started
        return StreamingResponse(self._relay_stream(member, chunks, first), status_code=200, headers=headers)

    async def _relay_stream(self, member: str, chunks: UpstreamChunks, first: bytes) -> AsyncIterator[bytes]:
        reader = StreamReader()
        outcome = OK
        cut: UpstreamFailure | None = None
        try:
            if first:
                reader.feed(first)
                yield first
                async for chunk in chunks:
                    reader.feed(chunk)
                    yield chunk
        except UpstreamFailure as exc:  # the member broke off mid-stream (or went silent past the timeout)
            cut, outcome = exc, UPSTREAM_ERROR
            breaker = self.gateway.breakers.get(member)
            if breaker is not None:
                breaker.record(None, exc.reason)
        finally:  # also when the client went away (the generator is closed or cancelled): book first, then close
            reader.close()
            usage = stream_usage(
                self.gateway.config.apim_compat,
                self.prompt_estimate,
                lambda: reader.tokens(self.prompt_estimate, self.route.model),
            )
            self._settle(usage)
            self._finish(200, outcome, usage, member)
            await chunks.aclose()
        if cut is not None:
            # Ending the body cleanly would pass a cut answer off as a whole one: abort the client's connection.
            raise StreamCut(f"backend '{member}': {cut.detail}")

    # -- bookkeeping -----------------------------------------------------------------------------------------

    def _settle(self, usage: Usage | None) -> None:
        settle_tokens(self.gateway.limiter, self.ticket, usage)

    def _add_token_headers(self, headers: dict[str, str], consumed: int | None = None) -> None:
        headers.update(token_headers(self.gateway.config.token_limit, self.ticket, consumed))

    def _add_identity_headers(self, headers: dict[str, str]) -> None:
        add_identity_headers(headers, self.id, self.row["client_request_id"])
        if self.gateway.replica is not None:
            headers[GATEWAY_REPLICA] = self.gateway.replica

    def _finish_error(
        self, status: int, code: str, message: str, outcome: str, headers: dict[str, str] | None = None
    ) -> Response:
        return self._answer_error(status, error_body(code, message), outcome, headers)

    def _bad_request(self, invalid: Invalid) -> Response:
        """A request the backend would refuse, refused with the backend's own 400 (or 413) body."""
        return self._answer_error(invalid.status, invalid.body(), BAD_REQUEST)

    def _answer_error(self, status: int, body: bytes, outcome: str, headers: dict[str, str] | None = None) -> Response:
        headers = dict(headers or {})
        self._add_token_headers(headers)
        self._add_identity_headers(headers)
        self._finish(status, outcome, None, self.row["backend"])
        headers[REFUSAL_HEADER] = outcome  # the kind, typed: clients never read the message
        return Response(body, status_code=status, headers=headers, media_type=JSON)

    def _finish(self, status: int, outcome: str, usage: Usage | None, member: str | None) -> None:
        row = self.row
        row["status"] = status
        row["outcome"] = outcome
        row["duration_s"] = self.clock.now() - self.started
        self.gateway.throttling.answered(outcome, member)
        if usage is not None:
            row["prompt_tokens"] = usage.prompt
            row["completion_tokens"] = usage.completion
            row["total_tokens"] = usage.total
            row["tokens_counted_by"] = usage.counted_by
            self._emit_metrics(usage, member, status)
        self.gateway.log.write(row)
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
                values[dimension] = self.caller.subscription or ""  # the id, never the key
            elif dimension == "status":
                values[dimension] = str(status)
            elif dimension.startswith("header:"):
                values[dimension] = headers.get(dimension[7:], "")
            else:
                value = row.get(dimension)
                values[dimension] = "" if value is None else str(value)
        self.gateway.metrics.record(values, usage.prompt, usage.completion)
