"""The rules of one mock AOAI resource, without HTTP: deployments, faults, admission and what an answer holds.

Both drivers call this: the ASGI app (`harness.mock.app`) around real requests, and the discrete-event
simulator (`harness.sim`) around simulated ones. A step that takes time is a generator that *yields* the
scenario seconds it waits and *returns* its result; each driver carries the waits out on its own clock
(`await clock.asleep(...)` in the server, an event in the simulator), so no rule exists twice.

    >>> from harness.clock import VirtualClock
    >>> from harness.scenario import BackendInstance
    >>> core = BackendCore(BackendInstance(), VirtualClock(), seed=0)
    >>> verdict = run_now(core.admit(core.find("gpt-4o"), estimate=300))
    >>> verdict.status, str(verdict.decision)
    (200, 'ok')
"""

from __future__ import annotations

import random
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

from harness.clock import Clock
from harness.mock.deployment import Admission, DeploymentModel
from harness.mock.faults import Faults
from harness.mock.headers import quota_headers, rate_limit_headers
from harness.mock.latency import LatencyModel, LatencyPlan, LatencySummary
from harness.mock.synth import MAX_GENERATED_TOKENS
from harness.records.outcomes import BackendDecision
from harness.scenario import BackendInstance, Deployment

# a step that waits: yields scenario seconds to wait, returns its result
Waits = Generator[float, None, "Verdict"]


@dataclass(slots=True)  # not frozen: made per request, and a frozen __init__ costs five times as much
class Verdict:
    """What the resource decided about one request before answering it.

    status 200 means admitted (answer with a completion); otherwise answer `status` at once, after the
    fault's `added` latency. `retry_after` is the wait a 429 advertises (the day-long fault included);
    `advertised` is False for an injected 429 that tells no wait at all (`injected_429.retry_after: null`).
    """

    status: int
    decision: str
    admission: Admission | None = None
    added: float = 0.0  # fault latency added to this answer (scenario s)
    queued_s: float = 0.0  # time spent queued for room (PAYG queueing fault)
    retry_after: float | None = None
    network_s: tuple[float, float] = (0.0, 0.0)  # the one-way delays drawn: to the resource, and back
    advertised: bool = True


@dataclass(slots=True)  # not frozen: made per request, and a frozen __init__ costs five times as much
class Completion:
    """How long the answer is and why it stopped."""

    tokens: int
    finish_reason: str  # "stop" or "length"


@dataclass(slots=True)  # not frozen: made per request, and a frozen __init__ costs five times as much
class Served:
    """What the resource answers one request, decided: a refusal (`verdict.status`, its headers, after
    `verdict.added`), or a 200 with the prompt's count and, but for embeddings, the completion's length.
    `cut_after` is set on a stream whose connection is cut (the fault): the tokens sent before the cut."""

    verdict: Verdict
    headers: dict[str, str]
    prompt_tokens: int = 0
    completion: Completion | None = None
    cut_after: int | None = None


@dataclass
class DeploymentState:
    """One deployment's quota and latency model."""

    name: str
    spec: Deployment
    quota: DeploymentModel
    latency: LatencyModel
    index: int


class BackendCore:
    """The deployments, faults and seeded random draws of one AOAI resource (`backend`)."""

    def __init__(self, backend: BackendInstance, clock: Clock, seed: int) -> None:
        self.backend = backend
        self.clock = clock
        self.rng = random.Random(f"{seed}:{backend.name}")
        # Draws only the server makes (an answer's words, the single gaps of a stream, embedding vectors),
        # kept off `rng` so that both drivers take the same draws from `rng` in the same order.
        self.answer_rng = random.Random(f"{seed}:{backend.name}:answer")
        # The network's delays have a stream of their own: a calibrated (random) network_latency leaves the
        # answers' draws where an uncalibrated run, live or simulated, has them.
        self.network_rng = random.Random(f"{seed}:{backend.name}:network")
        self.faults = Faults(backend.faults, clock.now(), self.rng)
        self.deployments: dict[str, DeploymentState] = {}
        self.by_model: dict[str, DeploymentState] = {}
        for index, (name, spec) in enumerate(backend.deployments.items()):
            state = DeploymentState(
                name, spec, DeploymentModel(spec, clock), LatencyModel(spec.latency_profile()), index
            )
            self.deployments[name] = state
            self.by_model.setdefault(spec.model, state)

    def find(self, name: str) -> DeploymentState | None:
        """The deployment called `name`, else the first one serving the model `name` (the v1 routes)."""
        return self.deployments.get(name) or self.by_model.get(name)

    def admit(self, deployment: DeploymentState, estimate: int) -> Waits:
        """Outage, admission (with PAYG queueing), rate limit or injected fault, in that order, as AOAI answers.

        An injected fault strikes admitted requests only; an injected 429 gives its tokens back (see
        `DeploymentModel.refuse_admitted`).

        The resource's network latency delays the decision (the request is still on its way) and is added
        to the answer's latency (the answer is on its way back): while both are in flight, a gateway has
        not yet seen a 429 and keeps sending, as it does against a real, distant resource.
        """
        faults, quota = self.faults, deployment.quota
        there = self.network_delay()
        if there > 0:
            yield there
        back = self.network_delay()
        network = (there, back)
        added = faults.added_latency() + back
        outage = faults.outage_status(self.clock.now())
        if outage is not None:
            return Verdict(outage, BackendDecision.OUTAGE, added=added, network_s=network)
        started = self.clock.now()
        admission = quota.admit(estimate, count_rejected=False)
        waited = 0.0
        if not admission.allowed:
            # On a share of would-be 429s (PAYG queueing) the request waits for room, up to the fault's budget.
            budget = 0.0 if quota.is_ptu else faults.queue_budget()
            while not admission.allowed and 0 < admission.retry_after <= budget - waited:
                yield admission.retry_after
                waited = self.clock.now() - started
                admission = quota.admit(estimate, count_rejected=False)
            if not admission.allowed:
                admission = quota.admit(estimate)  # counts the rejected request against the request window
                waited = 0.0
        if not admission.allowed:
            long_wait = faults.long_retry_after() if admission.decision != BackendDecision.PTU_OVER_CAPACITY else None
            wait = long_wait if long_wait is not None else admission.retry_after
            return Verdict(429, admission.decision, admission, added, retry_after=wait, network_s=network)
        error = faults.error_status()
        if error == 429:
            # AOAI's own 429 look (retry headers, policy-id, quota figures), and the tokens are not used
            injected = faults.profile.injected_429
            told = injected.retry_after is not None  # else a 429 with no wait in it (some servers, proxies)
            refused = quota.refuse_admitted(admission, injected.retry_after or 0.0, injected.policy_id)
            return Verdict(
                429,
                BackendDecision.FAULT,
                refused,
                added,
                retry_after=refused.retry_after if told else None,
                network_s=network,
                advertised=told,
            )
        if error is not None:
            return Verdict(error, BackendDecision.FAULT, admission, added, network_s=network)
        return Verdict(
            200,
            BackendDecision.QUEUED_THEN_OK if waited > 0 else BackendDecision.OK,
            admission,
            added,
            queued_s=waited,
            network_s=network,
        )

    def serve(
        self,
        deployment: DeploymentState,
        operation: str,
        stream: bool,
        max_tokens: int | None,
        estimate: int,
        prompt_tokens: Callable[[], int],
        row: dict[str, Any],
    ) -> Generator[float, None, Served]:
        """One request from admission to what is answered, filling its backend.jsonl `row` (both drivers).

        `stream` is a stream asked for (never an embeddings one); `prompt_tokens` counts the prompt, only
        for a request that is answered. Times are the driver's: it waits `verdict.added` (and the answer's
        latency) and sets `ttft_s` and `duration_s`.
        """
        row.update(deployment=deployment.name, model=deployment.spec.model, stream=stream, estimate=estimate)
        verdict = yield from self.admit(deployment, estimate)
        admission = verdict.admission
        row.update(status=verdict.status, decision=verdict.decision, network_in_s=verdict.network_s[0])
        row["network_out_s"] = verdict.network_s[1]
        if admission is None:  # the region is down
            return Served(verdict, {})
        row.update(
            estimate_charged=admission.estimate,
            remaining_requests=admission.remaining_requests,
            remaining_tokens=admission.remaining_tokens,
            utilization=admission.utilization,
            queued_s=verdict.queued_s,
        )
        if verdict.status == 429 and not verdict.advertised:  # no Retry-After, none logged
            return Served(verdict, rate_limit_headers(admission, advertise=False))
        if verdict.status == 429:  # the deployment's own (its decision logged) or an injected one (a fault)
            wait = verdict.retry_after if verdict.retry_after is not None else admission.retry_after
            row["retry_after"] = wait
            return Served(verdict, rate_limit_headers(admission, wait))
        if verdict.status != 200:
            return Served(verdict, quota_headers(admission))
        prompt = prompt_tokens()
        completion = None if operation == "embeddings" else self.completion(deployment, max_tokens)
        tokens = completion.tokens if completion is not None else 0
        cut = self.faults.stream_cut_after(tokens) if stream else None
        if cut is not None:  # only the tokens sent before the cut are used (and logged)
            row["decision"] = BackendDecision.CUT_STREAM
            tokens = cut
        row.update(prompt_tokens=prompt, completion_tokens=tokens, total_tokens=prompt + tokens)
        return Served(verdict, quota_headers(admission), prompt, completion, cut)

    def network_delay(self) -> float:
        """One way of the network between the gateway and this resource (from its own random stream)."""
        return max(0.0, self.backend.network_latency.sample(self.network_rng))

    def completion(self, deployment: DeploymentState, max_tokens: int | None) -> Completion:
        """The answer's length: drawn from the deployment's profile, cut at `max_tokens` ("length")."""
        wanted = max(1, round(deployment.spec.completion_tokens.sample(self.rng)))
        cap = max_tokens or MAX_GENERATED_TOKENS
        return Completion(min(wanted, cap), "length" if wanted > cap else "stop")

    def latency(self, deployment: DeploymentState, tokens: int, added: float) -> LatencyPlan:
        """When each token of the answer is due (the server sends them one by one)."""
        return deployment.latency.plan(tokens, self.rng, added, spread=self.answer_rng)

    def latency_summary(self, deployment: DeploymentState, tokens: int, added: float) -> LatencySummary:
        """The first-token and total time only, drawn from the same distribution (the simulator's need)."""
        return deployment.latency.summary(tokens, self.rng, added)


def run_now(steps: Waits) -> Verdict:
    """Drive a step whose waits are skipped (doctests and callers on a virtual clock that never waits)."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value
