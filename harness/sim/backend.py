"""A simulated AOAI resource: the mock's core (`harness.mock.core`) driven by events instead of HTTP.

A request is served by the same step as the mock's ASGI app serves it (`BackendCore.serve`: admission,
faults, the answer's length, the log row), with the headers the mock sends; only the bytes are not made.
The draws the step makes come from the same seeded streams in the same order per resource. The mock
server alone draws an answer's words and its token-by-token gaps, from a stream of their own
(`answer_rng`), so those never move the draws both make; the order of draws between concurrent requests
follows the order they reach the resource, which a live run's scheduling can change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness.clock import Clock
from harness.mock.core import BackendCore, DeploymentState, Served, Verdict
from harness.mock.headers import identity_headers
from harness.mock.log import BackendLog
from harness.records import backend_row
from harness.scenario import BackendInstance
from harness.sim.engine import Scheduler


@dataclass(slots=True)  # not frozen: made per request, and a frozen __init__ costs five times as much
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


@dataclass(slots=True)  # not frozen: made per request, and a frozen __init__ costs five times as much
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
    cut: bool = False  # the stream's connection broke off after `completion_tokens` (the cut_streams fault)


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
        row = backend_row(
            t=arrived,
            backend=self.backend.name,
            region=self.backend.region,
            request_id=request_id,
            client_request_id=call.client_request_id,
            gateway_request_id=call.gateway_request_id,
            operation=call.operation,
            stream=False,
        )
        steps = self.core.serve(
            state,
            call.operation,
            call.stream and call.operation != "embeddings",
            call.max_tokens,
            call.estimate,
            lambda: call.prompt_tokens,
            row,
        )
        self.scheduler.drive(steps, lambda served: self._decided(call, state, request_id, arrived, served, row, answer))

    def _decided(
        self,
        call: BackendCall,
        state: DeploymentState,
        request_id: str,
        arrived: float,
        served: Served,
        row: dict[str, Any],
        answer: Callable[[BackendAnswer], None],
    ) -> None:
        now = self.scheduler.clock.now()
        headers = identity_headers(request_id, self.backend.region, call.client_request_id)
        headers.update(served.headers)
        verdict = served.verdict
        if verdict.status != 200:
            done = now + verdict.added
            row["duration_s"] = done - arrived
            self.scheduler.at(done, self._answer, answer, BackendAnswer(verdict.status, headers, done, None, done), row)
            return
        prompt = served.prompt_tokens
        completion = served.completion.tokens if served.completion is not None else 0
        plan = self.core.latency_summary(state, completion, verdict.added)
        end = now + plan.total
        first_token = now + plan.ttft
        streamed = row["stream"]
        gap = (plan.total - plan.ttft) / (completion - 1) if streamed and completion > 1 else None
        cut = served.cut_after
        if cut is not None:  # the connection ends right after the chunk of the cut-th token
            end = first_token + (gap or 0.0) * (cut - 1)
            completion = cut
        # a cut stream logs no first-token time, as the mock's (it logs one for a stream sent whole)
        row.update(ttft_s=plan.ttft if cut is None else None, duration_s=end - arrived)
        # A stream's headers go out at admission, the rest when the whole answer is ready.
        reply = BackendAnswer(
            200, headers, now if streamed else end, first_token, end, prompt, completion, gap, cut is not None
        )
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
