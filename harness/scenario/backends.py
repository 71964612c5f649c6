"""The `backends` section: the mock AOAI pool. One instance is one AOAI resource (region, deployments)."""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, StringConstraints, field_validator, model_validator

from harness.scenario.common import Distribution, Duration, FieldError, PositiveInt, Section, parse_duration

Name = Annotated[str, StringConstraints(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):  # `true` would otherwise be read as a price of 1
        raise ValueError("must be a number")
    return value


def _price(value: float) -> float:
    # Checked here rather than with Field(ge=0): pydantic reports a NaN as "must be >= 0".
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    if value < 0:
        raise ValueError("must be >= 0")
    return value


# A price: a finite number >= 0.
Price = Annotated[float, BeforeValidator(_not_bool), AfterValidator(_price)]


class LatencyProfile(Section):
    """Time to first token plus time per generated token, in scenario seconds."""

    ttft: Distribution = Field(
        default_factory=lambda: Distribution(kind="lognormal", median=0.5, p95=1.2),
        description="time from admission to the first token (s)",
    )
    per_token: Distribution = Field(
        default_factory=lambda: Distribution(kind="normal", mean=0.025, stddev=0.004, min=0.0),
        description="time between generated tokens (s)",
    )


# Provisioned deployments answer faster than pay-as-you-go ones; used when a PTU deployment sets no latency.
PTU_LATENCY = LatencyProfile(
    ttft=Distribution(kind="lognormal", median=0.25, p95=0.5),
    per_token=Distribution(kind="normal", mean=0.012, stddev=0.002, min=0.0),
)


class Deployment(Section):
    """A model deployment inside one AOAI resource: standard (TPM) or provisioned (PTU)."""

    model: str = Field("", description="model name; defaults to the deployment name")
    model_version: str = Field("2024-08-06", description="model version reported in responses")
    tpm: PositiveInt = Field(50_000, description="standard deployments: tokens per minute (capacity x 1,000)")
    rpm_per_1k_tpm: float = Field(
        6.0, gt=0, description="requests per minute granted per 1,000 TPM (6 for the classic chat models)"
    )
    ptu: PositiveInt | None = Field(None, description="provisioned deployments: number of PTUs (TPM is then unused)")
    ptu_tokens_per_minute: PositiveInt = Field(
        2_500, description="provisioned: tokens per minute one PTU drains from the utilization bucket"
    )
    ptu_initial_utilization: float = Field(
        0.0,
        ge=0,
        le=100,
        description="provisioned: utilization (percent) the deployment starts the run at. 0, a cold deployment: "
        "it admits while utilization is <= 100 %, so in its first minute it admits about twice its per-minute "
        "rate (one minute to fill, one minute drained meanwhile); 100: it starts full and admits its rate only",
    )
    count_rejected_requests: bool = Field(
        True,
        description="standard deployments: a rejected request (429) still takes a place in the 10 s request "
        "window, as Microsoft's quota documentation says of failed requests; clients that retry faster than "
        "the window frees then keep it full while tokens are free. false: only admitted requests count",
    )
    default_max_tokens: PositiveInt | None = Field(
        None,
        description="max_tokens charged at admission when a request sets none (per-model default when unset)",
    )
    completion_tokens: Distribution = Field(
        default_factory=lambda: Distribution(kind="lognormal", median=60, p95=300, min=1),
        description="length of generated completions in tokens, before the request's max_tokens cap",
    )
    latency: LatencyProfile | None = Field(
        None, description="time to first token and per-token time; PTU deployments default to faster ones"
    )

    @property
    def is_ptu(self) -> bool:
        return self.ptu is not None

    def latency_profile(self) -> LatencyProfile:
        if self.latency is not None:
            return self.latency
        return PTU_LATENCY if self.is_ptu else LatencyProfile()


class Outage(Section):
    """A window of scenario time (from run start) during which the instance answers only errors."""

    start: Duration = Field(60.0, description="when the outage begins, from the start of the run")
    duration: Duration = Field(30.0, description="how long it lasts")
    status: int = Field(503, ge=400, le=599, description="status answered during the outage")


class LongRetryAfter(Section):
    """The day-long `Retry-After: 86400` that S0 resources have been seen to send with a 429."""

    probability: float = Field(0.0, ge=0, le=1, description="share of rate-limit 429s that carry it")
    seconds: PositiveInt = Field(86_400, description="the Retry-After value sent")


class Queueing(Section):
    """PAYG sometimes queues a request (slow answer) instead of rejecting it with a 429."""

    probability: float = Field(0.0, ge=0, le=1, description="share of would-be 429s that wait instead")
    max_wait: Duration = Field(10.0, description="longest wait; beyond it the request gets its 429 after all")


class CutStreams(Section):
    """Streamed answers whose connection ends mid-way: some chunks, then no finish chunk, no usage chunk and no
    `data: [DONE]` (a network fault, or a proxy's idle or total timeout, in real life)."""

    probability: float = Field(0.0, ge=0, le=1, description="share of streamed answers (of two tokens or more) cut")
    after: float = Field(
        0.5,
        gt=0,
        lt=1,
        description="share of the answer's tokens sent before the cut (rounded down; at least the first token, "
        "never the last); the tokens sent are what the backend logs and charges",
    )


class Injected429(Section):
    """How an injected 429 (`error_rates: {429: ...}`) looks: like AOAI's own, with its tokens given back.

    It stands for the 429s AOAI sends below the quota figures the mock models (RPM is also enforced over
    1 s windows), hence a request-rate policy and a one-second wait by default.
    """

    retry_after: Duration | None = Field(
        1.0,
        description="the wait it advertises (retry-after, retry-after-ms); longer when the deployment's own "
        "windows admit the request only later. null sends neither header (nor a wait in the message), as some "
        "AOAI-compatible servers and proxies answer: the gateway and the clients fall back on their own backoff",
    )
    policy_id: Annotated[str, StringConstraints(min_length=1)] = Field(
        "DeploymentRatelimit-Requests",
        description="the policy-id header it carries on standard deployments (PTU 429s carry none)",
    )


class FaultProfile(Section):
    """Faults injected by one instance. Every fault is off by default."""

    error_rates: dict[int, Annotated[float, Field(ge=0, le=1)]] = Field(
        default_factory=dict,
        description="status code -> share of admitted requests answered with it (e.g. {500: 0.01}); a 429 "
        "looks like AOAI's (see injected_429) and gives its tokens back",
    )
    injected_429: Injected429 = Field(
        default_factory=Injected429, description="headers of the 429s error_rates injects"
    )
    added_latency: Distribution = Field(
        default_factory=lambda: Distribution(kind="constant", value=0.0),
        description="extra delay before every answer (s)",
    )
    outage: Outage | None = Field(None, description="a region outage window")
    long_retry_after: LongRetryAfter = Field(default_factory=LongRetryAfter, description="day-long Retry-After 429s")
    queueing: Queueing = Field(default_factory=Queueing, description="queue instead of answering 429")
    cut_streams: CutStreams = Field(
        default_factory=CutStreams,
        description="streamed answers cut mid-way: the connection ends after `after` of the tokens (backend.jsonl "
        "decision cut_stream); the gateway logs upstream_error and counts the tokens it relayed, the client "
        "records a truncated_stream",
    )

    @model_validator(mode="after")
    def _check_rates(self) -> FaultProfile:
        for status in self.error_rates:
            if not 400 <= status <= 599:
                raise FieldError(f"error_rates.{status}", "is not an HTTP error status (400-599)")
        if sum(self.error_rates.values()) > 1:
            raise FieldError("error_rates", "the shares add up to more than 1")
        return self


class Cost(Section):
    """What one instance costs, for the report's cost figures. Prices change: take them from the price list.

    PTU capacity is prepaid per PTU-hour, used or not; standard (pay-as-you-go) deployments are paid per
    1,000 prompt and per 1,000 completion tokens they serve.

        >>> Cost(ptu_per_hour=1.0, prompt_per_1k=0.0025).completion_per_1k
        0.0
    """

    ptu_per_hour: Price = Field(
        0.0,
        description="price of one PTU for one hour; charged for every PTU of the instance's PTU deployments "
        "over the whole run, used or not",
    )
    prompt_per_1k: Price = Field(
        0.0, description="pay-as-you-go price per 1,000 prompt tokens served by the instance's standard deployments"
    )
    completion_per_1k: Price = Field(
        0.0,
        description="pay-as-you-go price per 1,000 completion tokens served by the instance's standard deployments",
    )
    currency: Annotated[str, StringConstraints(min_length=1)] = Field(
        "USD", description="currency of these prices, a label only (every instance's must be the same)"
    )


class BackendInstance(Section):
    """One mock AOAI resource, served on its own loopback port."""

    name: Name = Field("aoai", description="unique name; used in logs and by the gateway pool")
    region: str = Field("East US", description="region reported in x-ms-region")
    port: Annotated[int, Field(ge=0, le=65535)] | None = Field(None, description="fixed port; a free one when unset")
    url: str | None = Field(
        None,
        description="a real AOAI endpoint instead of a mock (the gateway forwards there; nothing is started)",
    )
    api_key: str | None = Field(None, description="when set, requests must present this key (else 401)")
    deployments: dict[Name, Deployment] = Field(
        default_factory=lambda: {"gpt-4o": Deployment()}, description="deployment name -> deployment"
    )
    faults: FaultProfile = Field(default_factory=FaultProfile, description="injected faults (all off by default)")
    network_latency: Distribution = Field(
        default_factory=Distribution,
        description="one-way delay between the gateway and this resource (scenario time), drawn for each way of "
        "each request: a request is decided this long after it was sent and its answer, 429s included, arrives "
        "this much later. A number or a duration is a constant; a distribution (e.g. `{kind: lognormal, median: "
        "0.004, p95: 0.012}`) is what `harness calibrate` fits from a live run",
    )

    @field_validator("network_latency", mode="before")
    @classmethod
    def _duration_is_constant(cls, value: Any) -> Any:
        if isinstance(value, str):  # `PT0.01S`, `10ms`: a constant delay
            return {"kind": "constant", "value": parse_duration(value)}
        return value

    cost: Cost | None = Field(
        None, description="prices of this instance for the report's cost figures (none: unpriced)"
    )

    @model_validator(mode="before")
    @classmethod
    def _null_deployment_is_default(cls, data: Any) -> Any:
        # `deployments: {gpt-4o: }` in YAML means "a gpt-4o deployment with every default".
        if isinstance(data, dict) and isinstance(data.get("deployments"), dict):
            data = dict(data)
            data["deployments"] = {k: ({} if v is None else v) for k, v in data["deployments"].items()}
        return data

    @model_validator(mode="after")
    def _fill_models(self) -> BackendInstance:
        if not self.deployments:
            raise FieldError("deployments", "an instance needs at least one deployment")
        for name, deployment in self.deployments.items():
            if not deployment.model:
                deployment.model = name
        return self
