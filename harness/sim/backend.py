"""A simulated AOAI resource: the mock's core (`harness.mock.core`) driven by events instead of HTTP.

The answer a request gets is exactly what the mock's ASGI app decides (same core, same seeded draws in
the same order per resource), with the headers the mock sends; only the bytes are not made.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness.clock import Clock
from harness.mock.core import BackendCore, DeploymentState, Verdict
from harness.mock.headers import identity_headers, quota_headers, rate_limit_headers
from harness.mock.log import BackendLog
from harness.records import backend_row
from harness.scenario import BackendInstance
from harness.sim.engine import Scheduler


@dataclass(frozen=True, slots=True)
class BackendCall:
    """One request as a resource sees it: what its body says, already counted."""

    deployment: str
    operation: str
    stream: bool
    include_usage: bool
    max_tokens: int | None
    estimate: int  # AOAI's admission estimate of the body (prompt chars / 4 + max_tokens)
    prompt_tokens: int  # the tokenizer count the usage reports
    client_request_id: str | None
    gateway_request_id: str


@dataclass(frozen=True, slots=True)
class BackendAnswer:
    """What came back, with the scenario times the headers, the first token and the end arrived."""

    status: int
    headers: dict[str, str]
    headers_at: float
    first_token_at: float | None
    end_at: float
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    inter_token_s: float | None = None


class SimBackend:
    """One resource of the pool; `request` answers through the callback at the time its headers arrive."""

    def __init__(self, backend: BackendInstance, scheduler: Scheduler, log: BackendLog, wall: Clock, seed: int) -> None:
        self.backend = backend
        self.scheduler = scheduler
        self.log = log
        self.wall = wall
        self.core = BackendCore(backend, scheduler.clock, seed)
        self._served = 0

    def request(self, call: BackendCall, answer: Callable[[BackendAnswer], None]) -> None:
        state = self.core.find(call.deployment)
        if state is None:  # the scenario is checked first: a gateway never routes to a missing deployment
            raise LookupError(f"backend '{self.backend.name}' has no deployment '{call.deployment}'")
        self._served += 1
        request_id = f"{self.backend.name}-{self._served}"
        arrived = self.scheduler.clock.now()
        self.scheduler.drive(
            self.core.admit(state, call.estimate),
            lambda verdict: self._decided(call, state, request_id, arrived, verdict, answer),
        )

    def _decided(
        self,
        call: BackendCall,
        state: DeploymentState,
        request_id: str,
        arrived: float,
        verdict: Verdict,
        answer: Callable[[BackendAnswer], None],
    ) -> None:
        now = self.scheduler.clock.now()
        headers = identity_headers(request_id, self.backend.region, call.client_request_id)
        row = self._row(call, state, request_id, arrived, verdict)
        admission = verdict.admission
        if verdict.status != 200:
            if admission is not None:
                if verdict.status == 429:
                    headers.update(rate_limit_headers(admission, verdict.retry_after))
                    row["retry_after"] = verdict.retry_after
                else:
                    headers.update(quota_headers(admission))
            done = now + verdict.added
            row["duration_s"] = done - arrived
            self.scheduler.at(done, self._answer, answer, BackendAnswer(verdict.status, headers, done, None, done), row)
            return
        assert admission is not None
        headers.update(quota_headers(admission))
        prompt = call.prompt_tokens
        if call.operation == "embeddings":
            completion, plan = 0, self.core.latency_summary(state, 0, verdict.added)
        else:
            completion = self.core.completion(state, call.max_tokens).tokens
            plan = self.core.latency_summary(state, completion, verdict.added)
        end = now + plan.total
        first_token = now + plan.ttft
        streamed = call.stream and call.operation != "embeddings"
        gap = (plan.total - plan.ttft) / (completion - 1) if streamed and completion > 1 else None
        row.update(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)
        row.update(ttft_s=plan.ttft, duration_s=end - arrived)
        # A stream's headers go out at admission, the rest when the whole answer is ready.
        reply = BackendAnswer(200, headers, now if streamed else end, first_token, end, prompt, completion, gap)
        self.scheduler.at(reply.headers_at, answer, reply)
        self.scheduler.at(end, self._finish, state, verdict, prompt + completion, row)

    def _answer(self, answer: Callable[[BackendAnswer], None], reply: BackendAnswer, row: dict[str, Any]) -> None:
        self._write(row)
        answer(reply)

    def _finish(self, state: DeploymentState, verdict: Verdict, actual: int, row: dict[str, Any]) -> None:
        assert verdict.admission is not None
        state.quota.finish(verdict.admission, actual)  # a PTU charge is corrected when the answer is complete
        self._write(row)

    def _write(self, row: dict[str, Any]) -> None:
        row["t_wall"] = self.wall.wall()
        self.log.write(row)

    def _row(
        self, call: BackendCall, state: DeploymentState, request_id: str, arrived: float, verdict: Verdict
    ) -> dict[str, Any]:
        admission = verdict.admission
        return backend_row(
            t=arrived,
            backend=self.backend.name,
            region=self.backend.region,
            request_id=request_id,
            client_request_id=call.client_request_id,
            gateway_request_id=call.gateway_request_id,
            deployment=state.name,
            model=state.spec.model,
            operation=call.operation,
            stream=call.stream and call.operation != "embeddings",
            status=verdict.status,
            decision=verdict.decision,
            estimate=call.estimate,
            estimate_charged=admission.estimate if admission is not None else 0,
            remaining_requests=admission.remaining_requests if admission is not None else None,
            remaining_tokens=admission.remaining_tokens if admission is not None else None,
            utilization=admission.utilization if admission is not None else None,
            queued_s=verdict.queued_s,
            network_in_s=verdict.network_s[0],
            network_out_s=verdict.network_s[1],
        )
