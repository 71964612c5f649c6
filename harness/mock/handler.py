"""One mock AOAI resource's request handling: credentials, body, the core's admission, and the answer made
(JSON body or SSE stream), with one backend log row per request. The rules themselves are in
`harness.mock.core`; this module turns them into HTTP.
"""

from __future__ import annotations

import uuid
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from harness import telemetry
from harness.aoai.errors import JSON
from harness.aoai.headers import CLIENT_REQUEST_ID, GATEWAY_REQUEST_ID
from harness.aoai.validation import Invalid, check_api_version, check_request, parse_body
from harness.clock import Clock
from harness.compact_json import to_bytes
from harness.mock.core import BackendCore, Completion, DeploymentState, Served, Verdict
from harness.mock.deployment import Admission
from harness.mock.errors import error_body, fault_body, rate_limit_body
from harness.mock.headers import identity_headers, limit_name, whole_seconds
from harness.mock.log import BackendLog, NullLog
from harness.mock.streaming import Generation, stream_events
from harness.mock.synth import EMBEDDING_DIMENSIONS, TextSource, chat_body, completions_body, embeddings_answer
from harness.records import backend_row
from harness.records.outcomes import BackendDecision
from harness.scenario import BackendInstance, Deployment
from harness.tokens import admission_estimate, prompt_counter, prompt_texts, requested_max_tokens


@dataclass
class DeploymentRuntime:
    """Everything the app keeps per deployment: the core's state plus what responses are made of."""

    state: DeploymentState
    text: TextSource
    reported_model: str  # as responses name it, e.g. gpt-4o-2024-08-06
    session: str  # azureml-model-session

    @property
    def name(self) -> str:
        return self.state.name

    @property
    def spec(self) -> Deployment:
        return self.state.spec


class MockBackend:
    """One AOAI resource: the core's rules, plus the log, behind the request handler."""

    def __init__(self, backend: BackendInstance, clock: Clock, log: BackendLog | None, seed: int) -> None:
        self.backend = backend
        self.clock = clock
        self.log: BackendLog = log if log is not None else NullLog()
        self.core = BackendCore(backend, clock, seed)
        self.faults = self.core.faults
        self.runtimes: dict[str, DeploymentRuntime] = {}
        for name, state in self.core.deployments.items():
            spec = state.spec
            self.runtimes[name] = DeploymentRuntime(
                state=state,
                text=TextSource(spec.model),
                reported_model=f"{spec.model}-{spec.model_version}" if spec.model_version else spec.model,
                session=f"{backend.name}-{name}-{state.index}".lower(),
            )

    def find(self, name: str) -> DeploymentRuntime | None:
        state = self.core.find(name)
        return self.runtimes[state.name] if state is not None else None

    def authorized(self, request: Request) -> bool:
        expected = self.backend.api_key
        if not expected:
            return True
        given = request.headers.get("api-key")
        if given is None:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            given = token.strip() if scheme.lower() == "bearer" else None
        return given == expected

    async def handle(self, request: Request, operation: str, deployment_name: str | None) -> Response:
        call = Call(self, request, operation)
        try:
            return await call.answer(deployment_name)
        finally:
            if not call.streaming:
                call.write_log()


class Call:
    """One request on its way through the mock; collects the log row as it goes."""

    def __init__(self, mock: MockBackend, request: Request, operation: str) -> None:
        self.mock = mock
        self.request = request
        self.operation = operation
        self.clock = mock.clock
        self.started = self.clock.now()
        self.started_wall = self.clock.wall()
        self.request_id = str(uuid.uuid4())
        self.streaming = False
        self.row: dict[str, Any] = backend_row(
            t=self.started,
            t_wall=self.started_wall,
            backend=mock.backend.name,
            region=mock.backend.region,
            request_id=self.request_id,
            client_request_id=request.headers.get(CLIENT_REQUEST_ID),
            gateway_request_id=request.headers.get(GATEWAY_REQUEST_ID),
            operation=operation,
            stream=False,
        )
        self.headers = identity_headers(self.request_id, mock.backend.region, self.row["client_request_id"])
        self.finish_reason: str | None = None
        self.span = telemetry.ServerSpan(
            "harness-mock", f"backend {telemetry.operation_name(operation)}", request.headers
        )

    def write_log(self) -> None:
        row = self.row
        if row["duration_s"] is None:
            row["duration_s"] = self.clock.now() - self.started
        self.mock.log.write(row)
        self.span.end(
            {
                telemetry.GEN_AI_OPERATION: telemetry.operation_name(self.operation),
                telemetry.GEN_AI_PROVIDER: telemetry.PROVIDER,
                telemetry.GEN_AI_REQUEST_MODEL: row["model"],
                telemetry.GEN_AI_RESPONSE_FINISH_REASONS: [self.finish_reason] if self.finish_reason else None,
                telemetry.HTTP_STATUS: row["status"],
                telemetry.BACKEND: row["backend"],
                telemetry.RETRY_AFTER_S: row["retry_after"],
                telemetry.STREAM: row["stream"],
                telemetry.BACKEND_DECISION: row["decision"],
                **telemetry.usage_attributes(row["prompt_tokens"], row["completion_tokens"]),
            },
            error=row["decision"] if (row["status"] or 500) >= 400 else None,
        )

    def reply(self, status: int, body: bytes, decision: str, headers: dict[str, str] | None = None) -> Response:
        self.row["status"] = status
        self.row["decision"] = decision
        return Response(body, status_code=status, headers={**self.headers, **(headers or {})}, media_type=JSON)

    async def answer(self, deployment_name: str | None) -> Response:
        request = self.request
        refused = check_api_version(request.query_params.get("api-version")) if deployment_name is not None else None
        if refused is not None:  # the v1 route takes no api-version
            return self.refuse(refused)
        if not self.mock.authorized(request):
            return self.reply(
                401,
                error_body("401", "Access denied: the API key is missing or wrong for this resource."),
                BackendDecision.UNAUTHORIZED,
            )
        body = parse_body(await request.body())
        if isinstance(body, Invalid):
            return self.refuse(body)
        if deployment_name is None:
            model = body.get("model")
            deployment_name = model if isinstance(model, str) else ""
        runtime = self.mock.find(deployment_name)
        if runtime is None:
            return self.reply(
                404,
                error_body("DeploymentNotFound", f"This resource has no deployment named '{deployment_name}'."),
                BackendDecision.NOT_FOUND,
            )
        refused = check_request(body, self.operation, runtime.spec.model)
        if refused is not None:
            return self.refuse(refused)
        return await self.serve(runtime, body)

    def refuse(self, invalid: Invalid) -> Response:
        """A request AOAI would not read: its 400 (or 413), as AOAI words it."""
        return self.reply(invalid.status, invalid.body(), BackendDecision.BAD_REQUEST)

    async def serve(self, runtime: DeploymentRuntime, body: dict[str, Any]) -> Response:
        clock, row, operation = self.clock, self.row, self.operation
        self.headers["azureml-model-session"] = runtime.session
        model = runtime.spec.model
        count = await prompt_counter(operation, body, model)  # a long prompt off the event loop
        served = await self.drive(
            self.mock.core.serve(
                runtime.state,
                operation,
                body.get("stream") is True and operation != "embeddings",
                requested_max_tokens(body),
                admission_estimate(operation, body, model, runtime.state.quota.default_completion),
                lambda: count(model),
                row,
            )
        )
        admitted_at = clock.now()  # after any queueing: the latency plan runs from here
        verdict, admission, headers = served.verdict, served.verdict.admission, {**self.headers, **served.headers}
        if verdict.status != 200:
            await self.wait(verdict.added)
            if verdict.status == 429 and admission is not None:
                wait = row["retry_after"]  # None: the 429 tells no wait
                told = whole_seconds(wait) if wait is not None else None
                error = rate_limit_body(runtime.name, limit_name(admission), told)
            else:
                error = fault_body(verdict.status)
            return Response(error, status_code=verdict.status, headers=headers, media_type=JSON)
        assert admission is not None
        prompt_tokens = served.prompt_tokens
        if served.completion is None:
            return await self.embeddings(runtime, body, prompt_tokens, admission, verdict, headers)
        generation = self.generate(runtime, served.completion, prompt_tokens)
        if served.cut_after is not None:
            self.finish_reason = None  # the stream breaks off before its finish chunk
        completion_tokens = generation.completion_tokens
        plan = self.mock.core.latency(runtime.state, completion_tokens, verdict.added)
        if row["stream"]:
            self.streaming = True
            options = body.get("stream_options")
            include_usage = isinstance(options, dict) and options.get("include_usage") is True
            return StreamingResponse(
                self.logged(
                    stream_events(generation, plan, clock, include_usage, admitted_at, served.cut_after),
                    plan.ttft,
                    runtime,
                    admission,
                    prompt_tokens,
                    completion_tokens,
                ),
                headers=headers,
                media_type="text/event-stream",
            )
        await self.wait(plan.total)
        runtime.state.quota.finish(admission, prompt_tokens + completion_tokens)  # a PTU charge corrected at the end
        row["ttft_s"] = plan.ttft
        make = chat_body if operation == "chat" else completions_body
        payload = make(
            runtime.reported_model,
            generation.text,
            generation.finish_reason,
            prompt_tokens,
            completion_tokens,
            generation.created,
        )
        return Response(_dumps(payload), status_code=200, headers=headers, media_type=JSON)

    async def drive(self, steps: Generator[float, None, Served]) -> Served:
        """Carry out a core step's waits on the scenario clock."""
        while True:
            try:
                wait = next(steps)
            except StopIteration as done:
                return done.value
            await self.clock.asleep(wait)

    def generate(self, runtime: DeploymentRuntime, completion: Completion, prompt_tokens: int) -> Generation:
        self.finish_reason = completion.finish_reason
        return Generation(
            operation=self.operation,
            model=runtime.reported_model,
            pieces=runtime.text.pieces(completion.tokens, self.mock.core.answer_rng),
            finish_reason=completion.finish_reason,
            prompt_tokens=prompt_tokens,
            created=int(self.clock.now()),
        )

    async def embeddings(
        self,
        runtime: DeploymentRuntime,
        body: dict[str, Any],
        prompt_tokens: int,
        admission: Admission,
        verdict: Verdict,
        headers: dict[str, str],
    ) -> Response:
        plan = self.mock.core.latency(runtime.state, 0, verdict.added)
        await self.wait(plan.total)
        runtime.state.quota.finish(admission, prompt_tokens)
        dimensions = body.get("dimensions")
        if not (isinstance(dimensions, int) and 0 < dimensions <= 3072):
            dimensions = EMBEDDING_DIMENSIONS
        answer = embeddings_answer(
            runtime.reported_model,
            max(1, len(prompt_texts("embeddings", body))),
            prompt_tokens,
            self.mock.core.answer_rng,
            dimensions,
            body.get("encoding_format") == "base64",
        )
        self.row["ttft_s"] = plan.ttft
        headers = {**headers, **answer.headers}
        return StreamingResponse(answer, status_code=200, headers=headers, media_type=JSON)  # a slice per loop turn

    async def wait(self, seconds: float) -> None:
        # A zero latency costs nothing: no sleep, not even a yield.
        if seconds > 0:
            await self.clock.asleep(seconds)

    async def logged(
        self, events: Any, ttft: float, runtime: DeploymentRuntime, admission: Admission, prompt: int, completion: int
    ) -> Any:
        """Pass the stream through; when it ends (or the client goes away) correct a PTU charge and log.

        Every chunk carries one token, so a stream the client leaves early used only the tokens it was sent:
        that is what the log (and a PTU's corrected charge) says, not the length it was going to have.
        """
        sent = 0
        try:
            async for chunk in events:
                yield chunk
                sent += 1  # resumed: the chunk was handed to the server
            self.row["ttft_s"] = ttft
        finally:
            completion = min(completion, sent)
            self.row["completion_tokens"] = completion
            self.row["total_tokens"] = prompt + completion
            runtime.state.quota.finish(admission, prompt + completion)
            self.row["duration_s"] = self.clock.now() - self.started
            self.write_log()


def _dumps(payload: dict[str, Any]) -> bytes:
    return to_bytes(payload)
