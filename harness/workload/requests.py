"""What one logical request is: drawn from the workload (or read from a trace), then turned into HTTP.

>>> import random
>>> from harness.scenario.workload import App, Mix
>>> plan = draw_request(App(id="a"), Mix(stream_share=0.0), random.Random(0))
>>> plan.request_type, plan.max_tokens, plan.path("2024-10-21", "deployments")
('chat', 100, '/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21')
"""

from __future__ import annotations

import base64
import json
import random
from bisect import bisect
from collections.abc import Collection
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

import jwt

from harness.aoai.routes import deployment_path, v1_path
from harness.clock import Clock
from harness.scenario import Scenario
from harness.scenario.gateway import JwtValidation
from harness.scenario.workload import App, Mix, Workload
from harness.tokens import count_prompt_tokens
from harness.workload.prompts import chat_messages, text_of_tokens
from harness.workload.trace import TraceRow


@dataclass(slots=True)  # not frozen: made per request, and a frozen __init__ costs five times as much
class RequestPlan:
    """One logical request, before it is sent."""

    app: App
    mix_label: str
    operation: str
    deployment: str
    prompt_tokens: int
    max_tokens: int | None
    stream: bool
    include_usage: bool = True
    seed: int = 0

    @property
    def request_type(self) -> str:
        """Locust's name for this kind of request: the mix, plus ` stream` for streamed ones."""
        return f"{self.mix_label} stream" if self.stream else self.mix_label

    def path(self, api_version: str, route: str) -> str:
        if route == "v1":
            return v1_path(self.operation)
        return deployment_path(self.operation, self.deployment, api_version)

    def body(self, route: str) -> dict[str, Any]:
        body: dict[str, Any]
        if self.operation == "chat":
            body = {"messages": chat_messages(self.prompt_tokens, self.deployment, self.seed)}
        elif self.operation == "completions":
            body = {"prompt": text_of_tokens(self.prompt_tokens, self.deployment, self.seed)}
        else:
            body = {"input": text_of_tokens(self.prompt_tokens, self.deployment, self.seed)}
        if route == "v1":
            body["model"] = self.deployment
        if self.operation != "embeddings":
            if self.max_tokens is not None:
                body["max_tokens"] = self.max_tokens
            if self.stream:
                body["stream"] = True
                if self.include_usage:
                    body["stream_options"] = {"include_usage": True}
        return body

    def counted_prompt_tokens(self, body: dict[str, Any]) -> int:
        return count_prompt_tokens(self.operation, body, self.deployment)


def draw_request(app: App, mix: Mix, rng: random.Random) -> RequestPlan:
    """A request of `mix` for `app`, its sizes and streaming drawn with `rng`."""
    prompt = max(1, round(mix.prompt_tokens.sample(rng)))
    max_tokens = (
        None if mix.max_tokens is None or mix.operation == "embeddings" else max(1, round(mix.max_tokens.sample(rng)))
    )
    stream = mix.operation != "embeddings" and rng.random() < mix.stream_share
    return RequestPlan(app, mix.label, mix.operation, mix.deployment, prompt, max_tokens, stream, mix.include_usage)


def replay_request(row: TraceRow, workload: Workload) -> RequestPlan:
    """The request a trace row describes; as with the mixes, embeddings send neither max_tokens nor stream.

    >>> from harness.scenario.workload import Trace
    >>> workload = Workload(apps=[App(id="a")], trace=Trace(file="t.csv", deployment="gpt-4o"))
    >>> plan = replay_request(TraceRow(0.0, "", "embeddings", 30, 50, True), workload)
    >>> plan.app.id, plan.request_type, plan.deployment, plan.max_tokens
    ('a', 'embeddings', 'gpt-4o', None)
    """
    app = workload.app(row.app) if row.app else workload.apps[0]
    deployment = row.deployment or (workload.trace.deployment if workload.trace else "gpt-4o")
    embeddings = row.operation == "embeddings"
    max_tokens = None if embeddings else row.max_tokens
    stream = row.stream and not embeddings
    return RequestPlan(app, row.operation, row.operation, deployment, row.prompt_tokens, max_tokens, stream)


def user_name(worker: int, number: int) -> str:
    """The name of the `number`-th user a process starts (from 0), which seeds the user's own draws (think
    times, mixes, retry jitter): a live run and a simulation of the same seed give their k-th users the same
    draws.

    >>> user_name(0, 3)
    'u0-3'
    """
    return f"u{worker}-{number}"


def assign_app(apps: list[App], counts: dict[str, int]) -> App:
    """The app of a new user: apps get users in proportion to their weights (largest deficit first, not by
    chance); `counts` (users per app so far) is updated.

    >>> counts: dict[str, int] = {}
    >>> [assign_app([App(id="a", weight=3), App(id="b")], counts).id for _ in range(4)]
    ['a', 'a', 'b', 'a']
    """
    total = sum(counts.get(a.id, 0) for a in apps) + 1
    weight_sum = sum(a.weight for a in apps)
    app = max(apps, key=lambda a: a.weight / weight_sum * total - counts.get(a.id, 0))
    counts[app.id] = counts.get(app.id, 0) + 1
    return app


def pick_app(workload: Workload, rng: random.Random) -> App:
    return rng.choices(workload.apps, weights=[a.weight for a in workload.apps])[0]


class MixPicker:
    """An app's mixes by weight; `only` (mix names) narrows the choice (Locust's --tags).

    The cumulative weights are added up once: `pick` draws what `rng.choices(mixes, weights=...)` draws, from
    the same stream, without adding them up for every request.

        >>> workload = Workload(mixes=[Mix(name="a", weight=1), Mix(name="b", weight=3)])
        >>> picker, rng, same = MixPicker(workload, App()), random.Random(1), random.Random(1)
        >>> [picker.pick(rng).label for _ in range(4)]
        ['a', 'b', 'b', 'b']
        >>> [same.choices(workload.mixes, weights=[1, 3])[0].label for _ in range(4)]
        ['a', 'b', 'b', 'b']
    """

    def __init__(self, workload: Workload, app: App, only: Collection[str] | None = None) -> None:
        mixes = [workload.mix(name) for name in app.mixes] if app.mixes else workload.mixes
        if only is not None:
            mixes = [mix for mix in mixes if mix.label in only]
        self.mixes = mixes
        self.cum_weights = list(accumulate(m.weight for m in mixes))
        self.total = self.cum_weights[-1] + 0.0 if mixes else 0.0

    def pick(self, rng: random.Random) -> Mix:
        # rng.choices(self.mixes, cum_weights=self.cum_weights)[0], spelled out for one pick
        return self.mixes[bisect(self.cum_weights, rng.random() * self.total, 0, len(self.mixes) - 1)]


def unsigned_token(claims: dict[str, Any]) -> str:
    """An unsigned JWT (`alg: none`) carrying `claims`: enough for a gateway that reads `appid` unverified.

    >>> unsigned_token({"appid": "a"}).split(".")[1]
    'eyJhcHBpZCI6ImEifQ'
    """

    def part(value: dict[str, Any]) -> str:
        raw = json.dumps(value, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


class TokenSigner:
    """Signs each app's token with the scenario's HS256 secret (`gateway.auth.jwt.signing-secret`), so a
    gateway that validates tokens admits the load; issuer and audience are the first the rule accepts.

    >>> from harness.clock import VirtualClock
    >>> from harness.scenario.gateway import JwtValidation
    >>> rule = JwtValidation.model_validate({"signing-secret": "s" * 32, "audiences": ["api://aoai"]})
    >>> token = TokenSigner(rule, VirtualClock(), lifetime=3600).token("app-1")
    >>> jwt.decode(token, "s" * 32, algorithms=["HS256"], audience="api://aoai", options={"verify_exp": False})
    {'appid': 'app-1', 'iat': 0, 'exp': 3600, 'aud': 'api://aoai'}
    """

    def __init__(self, rule: JwtValidation, clock: Clock, lifetime: float) -> None:
        self.rule = rule
        self.clock = clock
        self.lifetime = lifetime
        self._tokens: dict[str, str] = {}  # one per app, good for the whole run

    def token(self, app_id: str) -> str:
        token = self._tokens.get(app_id)
        if token is None:
            now = int(self.clock.wall())
            claims: dict[str, Any] = {self.rule.app_claim: app_id, "iat": now, "exp": now + int(self.lifetime)}
            if self.rule.issuers:
                claims["iss"] = self.rule.issuers[0]
            if self.rule.audiences:
                claims["aud"] = self.rule.audiences[0]
            token = self._tokens[app_id] = jwt.encode(claims, self.rule.signing_secret or "", algorithm="HS256")
        return token


def token_signer(scenario: Scenario, clock: Clock) -> TokenSigner | None:
    """The signer of a scenario whose gateway validates HS256 tokens (None otherwise: tokens go unsigned)."""
    rule = scenario.gateway.auth.jwt
    if rule is None or rule.signing_secret is None:
        return None
    # Valid past the run's end at any time scale, with an hour to spare for start-up and the last retries.
    lifetime = scenario.run.duration / min(1.0, clock.scale) + 3600
    return TokenSigner(rule, clock, lifetime)


def auth_headers(
    app: App, api_key: str | None, bearer: str | None, signer: TokenSigner | None = None
) -> dict[str, str]:
    """Credentials of `app`: its own keys, else the run's; its appid token (signed when the gateway checks
    signatures) unless a real bearer is given."""
    headers: dict[str, str] = {}
    key = app.api_key or api_key
    if key:
        headers["api-key"] = key
    if app.subscription_key:
        headers["ocp-apim-subscription-key"] = app.subscription_key
    if bearer:
        headers["authorization"] = f"Bearer {bearer}"
    elif app.send_token and signer is not None:
        headers["authorization"] = f"Bearer {signer.token(app.claim)}"
    elif app.send_token:
        headers["authorization"] = f"Bearer {unsigned_token({'appid': app.claim})}"
    return headers
