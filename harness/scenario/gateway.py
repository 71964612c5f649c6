"""The `gateway` section: the reference gateway's pool, breaker, token limits and metrics (APIM's terms).

Field names follow Azure API Management where APIM has them: the breaker uses the backend resource's
camelCase (`failureCondition`, `tripDuration`), the token limit the policy's hyphenated attributes
(`tokens-per-minute`, `counter-key`); durations accept ISO 8601 (`PT1M`) or seconds.

    >>> cfg = GatewayConfig.model_validate({"token_limit": {"tokens-per-minute": 1000}})
    >>> cfg.token_limit.tokens_per_minute, cfg.token_limit.retry_after_header_name
    (1000, 'Retry-After')
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, field_validator, model_validator

from harness.scenario.common import Duration, FieldError, Section, index_unique

MAX_POOL_MEMBERS = 30  # APIM's limit on a load-balanced pool
MAX_METRIC_DIMENSIONS = 10
MAX_REPLICAS = 32  # gateway replicas one run starts, a bound on processes and ports  # APIM's limit on custom dimensions of the token metric

# Dimensions the gateway knows how to fill; `header:<name>` adds a request header's value.
METRIC_DIMENSIONS = (
    "model",
    "deployment",
    "operation",
    "app_id",
    "client_ip",
    "subscription",
    "backend",
    "region",
    "streaming",
    "status",
)
_HEADER_NAME = r"[A-Za-z0-9!#$%&'*+.^_`|~-]+"
# Headers carrying secrets: never a counter key or a metric label (the subscription's id is the label).
CREDENTIAL_HEADERS = frozenset({"api-key", "authorization", "ocp-apim-subscription-key"})
# A counter key is one part or several joined by `+` (their values concatenated, as an APIM expression
# `@(context.Subscription.Id + "-" + ...)` does); `constant:<text>` is a literal, so a key made only of
# constants is one counter every caller shares.
_KEY_PART = rf"(appid|subscription|ip|header:{_HEADER_NAME}|constant:[^+]*)"
_COUNTER_KEY = re.compile(rf"^{_KEY_PART}(\s*\+\s*{_KEY_PART})*$")


def counter_key_parts(key: str) -> list[str]:
    """The parts of a counter key, in order.

    >>> counter_key_parts("subscription + constant:-gpt + header:x-team")
    ['subscription', 'constant:-gpt', 'header:x-team']
    >>> counter_key_parts("constant:everyone")
    ['constant:everyone']
    """
    return [part.strip() for part in key.split("+")]


_DIMENSION = re.compile(rf"^({'|'.join(METRIC_DIMENSIONS)}|header:{_HEADER_NAME})$")


def _no_credential_header(value: str) -> None:
    for part in counter_key_parts(value):
        if part.startswith("header:") and part.removeprefix("header:").lower() in CREDENTIAL_HEADERS:
            raise ValueError(f"'{part}' carries a secret: use subscription (the subscription's id) or appid instead")


class PoolMember(Section):
    """One backend of the load-balanced pool (APIM: `pool.services[]`)."""

    backend: str = Field(..., description="name of a backend instance of the scenario")
    priority: int = Field(1, ge=1, description="1 is the highest; lower groups serve only when higher are tripped")
    weight: int = Field(1, ge=1, le=1000, description="share of the traffic within its priority group")
    circuit_breaker: CircuitBreakerRule | None = Field(
        None,
        description="this member's own breaker rule (APIM keeps one per backend resource); unset: "
        "gateway.circuit_breaker applies",
    )


class Pool(Section):
    """Which backends the gateway forwards to, and how it picks one."""

    members: list[PoolMember] = Field(
        default_factory=list,
        max_length=MAX_POOL_MEMBERS,
        description="pool members; empty means every backend of the scenario at priority 1, weight 1",
    )
    selection: Literal["weighted", "round-robin", "latency"] = Field(
        "weighted",
        description="within a priority group: by weight (smooth weighted round-robin), plain round-robin, or "
        "latency (lowest recent response time; not an APIM mode)",
    )
    latency_smoothing: float = Field(
        0.3, gt=0, le=1, description="latency selection: weight of the newest response time in the moving average"
    )
    latency_probe_every: int = Field(
        20, ge=2, description="latency selection: every Nth pick goes round-robin so slower members stay measured"
    )

    @model_validator(mode="after")
    def _unique_members(self) -> Pool:
        index_unique((member.backend for member in self.members), "members", "backend")
        return self


class StatusCodeRange(Section):
    """An inclusive range of HTTP status codes (APIM: `statusCodeRanges[]`)."""

    min: int = Field(..., ge=100, le=599, description="lowest status of the range")
    max: int = Field(..., ge=100, le=599, description="highest status of the range")

    @model_validator(mode="after")
    def _ordered(self) -> StatusCodeRange:
        if self.max < self.min:
            raise FieldError("max", f"must be >= min ({self.min})")
        return self

    def __contains__(self, status: object) -> bool:
        return isinstance(status, int) and self.min <= status <= self.max


def _ranges(*pairs: tuple[int, int]) -> list[StatusCodeRange]:
    return [StatusCodeRange(min=low, max=high) for low, high in pairs]


class FailureCondition(Section):
    """When a backend's breaker trips: `count` failures, or `percentage` of requests failing, within `interval`."""

    count: int | None = Field(None, ge=1, description="failures within interval that trip the breaker")
    percentage: float | None = Field(
        None, gt=0, le=100, description="share of requests (%) failing within interval that trips the breaker"
    )
    interval: Duration = Field(60.0, gt=0, description="the window failures are counted in (ISO 8601, e.g. PT1M)")
    statusCodeRanges: list[StatusCodeRange] = Field(
        default_factory=lambda: _ranges((429, 429)),
        description="statuses that count as failures",
    )
    errorReasons: list[str] = Field(
        default_factory=list,
        description="gateway error reasons that count as failures besides transport failures (free text in APIM)",
    )

    @model_validator(mode="after")
    def _one_condition(self) -> FailureCondition:
        if self.count is not None and self.percentage is not None:
            raise FieldError("percentage", "set either count or percentage, not both")
        if self.count is None and self.percentage is None:
            self.count = 1
        return self

    def matches(self, status: int) -> bool:
        return any(status in r for r in self.statusCodeRanges)


class CircuitBreakerRule(Section):
    """APIM's backend circuit breaker rule, applied to each pool member on its own."""

    name: str = Field("breaker", description="rule name (reported in breaker log rows)")
    failureCondition: FailureCondition = Field(
        default_factory=FailureCondition, description="what counts as failing, and how much trips the breaker"
    )
    tripDuration: Duration = Field(60.0, gt=0, description="how long a tripped member stays out of the pool")
    acceptRetryAfter: bool = Field(
        False, description="trip for the backend's Retry-After instead of tripDuration when it sends one"
    )
    maxTripDuration: Duration | None = Field(
        None,
        gt=0,
        description="longest trip, whatever Retry-After asks (ISO 8601); off as in APIM, Envoy caps ejection at PT5M",
    )


PoolMember.model_rebuild()  # its circuit_breaker is a rule, defined after it


class GatewayRetry(Section):
    """Retry inside the gateway (APIM's "smart" load-balancing sample): at once, on the next available member."""

    enabled: bool = Field(False, description="off by default, as in APIM")
    max_attempts: int = Field(3, ge=1, le=50, description="attempts per request across members, the first included")
    on: list[StatusCodeRange] = Field(
        default_factory=lambda: _ranges((429, 429), (500, 599)),
        description="backend statuses that are retried on another member (transport failures always are)",
    )

    def retries(self, status: int) -> bool:
        return any(status in r for r in self.on)


QuotaPeriod = Literal["Hourly", "Daily", "Weekly", "Monthly", "Yearly"]


class TokenLimit(Section):
    """APIM's `llm-token-limit` / `azure-openai-token-limit` policy, per counter key."""

    counter_key: str = Field(
        "appid",
        alias="counter-key",
        description="who is counted: appid (JWT appid claim), subscription (its id), ip, header:<name> or "
        "constant:<text> (one counter shared by all), or several joined by + (their values concatenated)",
    )
    tokens_per_minute: int | None = Field(
        None, alias="tokens-per-minute", gt=0, description="prompt + completion tokens per minute (429 beyond)"
    )
    token_quota: int | None = Field(
        None, alias="token-quota", gt=0, description="tokens per token-quota-period (403 beyond)"
    )
    token_quota_period: QuotaPeriod = Field(
        "Monthly", alias="token-quota-period", description="calendar window of the quota, truncated in UTC"
    )
    estimate_prompt_tokens: bool = Field(
        True,
        alias="estimate-prompt-tokens",
        description="true: charge a tokenizer count of the prompt at admission; false: charge usage afterwards",
    )
    retry_after_header_name: str = Field(
        "Retry-After", alias="retry-after-header-name", description="header carrying the seconds to wait"
    )
    remaining_tokens_header_name: str | None = Field(
        None, alias="remaining-tokens-header-name", description="header with the tokens left this minute"
    )
    remaining_quota_tokens_header_name: str | None = Field(
        None, alias="remaining-quota-tokens-header-name", description="header with the quota tokens left"
    )
    tokens_consumed_header_name: str | None = Field(
        None, alias="tokens-consumed-header-name", description="header with the tokens the request consumed"
    )
    max_counter_keys: int = Field(
        10_000,
        alias="max-counter-keys",
        ge=1,
        description="counter keys kept at once; beyond it a key seen least recently whose minute window has emptied "
        "is forgotten, its quota used kept as one number, so no budget is reset; counted in /metrics (not an APIM "
        "attribute: APIM does not document its bound)",
    )

    @field_validator("counter_key")
    @classmethod
    def _known_key(cls, value: str) -> str:
        if not _COUNTER_KEY.match(value):
            raise ValueError(
                f"'{value}' is not a counter key (appid, subscription, ip, header:<name>, constant:<text>, or "
                "several joined by +)"
            )
        _no_credential_header(value)
        return value

    @model_validator(mode="after")
    def _some_limit(self) -> TokenLimit:
        if self.tokens_per_minute is None and self.token_quota is None:
            raise FieldError("tokens-per-minute", "set tokens-per-minute, token-quota or both")
        return self


class Metrics(Section):
    """APIM's `llm-emit-token-metric`: prompt, completion and total tokens split by dimensions."""

    dimensions: list[str] = Field(
        default_factory=lambda: ["model", "app_id", "backend"],
        max_length=MAX_METRIC_DIMENSIONS,
        description=f"dimensions of the token metrics: {', '.join(METRIC_DIMENSIONS)} or header:<name>",
    )
    max_series: int = Field(
        1_000,
        ge=1,
        description="sets of dimension values with their own series in /metrics: the ones counted most "
        "recently; the others are summed under `other` (each caller dimension's value `other`), so totals stay "
        "exact and /metrics bounded whatever the number of callers",
    )
    keys_shown: int = Field(
        100,
        ge=0,
        description="counter keys in the gateway_rate_limit_key_remaining_* gauges: those with the fewest tokens left",
    )
    exemplars: bool = Field(
        False,
        description="attach exemplars (the gateway request id) to the latency histograms; served in the "
        "OpenMetrics format to a scraper that asks for it",
    )

    @field_validator("dimensions")
    @classmethod
    def _known_dimensions(cls, values: list[str]) -> list[str]:
        for value in values:
            if not _DIMENSION.match(value):
                raise ValueError(f"'{value}' is not a dimension ({', '.join(METRIC_DIMENSIONS)} or header:<name>)")
            _no_credential_header(value)
        if len(set(values)) != len(values):
            raise ValueError("a dimension is listed twice")
        return values


class Subscription(Section):
    """An APIM subscription: its id names the caller in counters, logs and metrics; its key is the secret."""

    id: Annotated[str, StringConstraints(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@-]*$")] = Field(
        ..., description="name of the subscription (the counter key and metric label; never the key)"
    )
    key: Annotated[str, StringConstraints(min_length=1)] = Field(
        ..., description="the secret the caller sends as Ocp-Apim-Subscription-Key or api-key"
    )


# APIM's validate-jwt answers this when a token is missing or fails validation (failed-validation-error-message).
JWT_FAILED_MESSAGE = "Unauthorized. Access token is missing or invalid."


class JwtValidation(Section):
    """APIM's `validate-jwt` policy: the Bearer token's signature, issuer, audience and lifetime are checked
    before the token limit reads its `appid`; a token that fails is a 401."""

    issuers: list[str] = Field(default_factory=list, description="accepted `iss` values; any when empty")
    audiences: list[str] = Field(default_factory=list, description="accepted `aud` values; any when empty")
    jwks_file: str | None = Field(
        None, alias="jwks-file", description="JSON Web Key Set file with the signing keys (RS256, ES256, ...)"
    )
    jwks_url: str | None = Field(
        None,
        alias="jwks-url",
        description="JWKS URL (an identity provider's jwks_uri); read at start, again for an unknown `kid` at "
        "most every jwks-refresh",
    )
    jwks_refresh: Duration = Field(
        300.0, alias="jwks-refresh", gt=0, description="shortest wall time between two reads of jwks-url"
    )
    signing_secret: str | None = Field(
        None,
        alias="signing-secret",
        min_length=32,  # RFC 7518: an HS256 key of at least 256 bits
        description="HS256 shared secret (tests); the load generator then signs each app's token with it",
    )
    app_claim: str = Field("appid", alias="app-claim", min_length=1, description="claim naming the calling app")
    require_expiration_time: bool = Field(
        True, alias="require-expiration-time", description="a token without `exp` fails (APIM's default)"
    )
    clock_skew: Duration = Field(0.0, alias="clock-skew", ge=0, description="tolerance on exp and nbf")
    failed_validation_error_message: str = Field(
        JWT_FAILED_MESSAGE, alias="failed-validation-error-message", description="message of the 401 body"
    )
    cache_size: int = Field(
        10_000,
        alias="cache-size",
        ge=1,
        description="validated tokens remembered (least recently used forgotten; only successes are kept)",
    )

    @model_validator(mode="after")
    def _one_key_source(self) -> JwtValidation:
        given = [name for name in ("jwks_file", "jwks_url", "signing_secret") if getattr(self, name) is not None]
        if len(given) != 1:
            raise FieldError("jwks-file", "set exactly one of jwks-file, jwks-url or signing-secret")
        return self


class Auth(Section):
    """Callers' credentials, as APIM checks them: subscription keys and `validate-jwt`. All off by default."""

    subscriptions: list[Subscription] = Field(
        default_factory=list, description="known subscriptions; a key sent that is none of theirs is a 401"
    )
    subscription_required: bool = Field(
        True, description="with subscriptions listed: a request without a key is a 401 (APIM's default)"
    )
    jwt: JwtValidation | None = Field(
        None, description="validate the Bearer token (else its `appid` is read unverified, taken on trust)"
    )

    @model_validator(mode="after")
    def _unique_subscriptions(self) -> Auth:
        index_unique((s.id for s in self.subscriptions), "subscriptions", "id")
        keys: set[str] = set()
        for i, subscription in enumerate(self.subscriptions):
            if subscription.key in keys:  # the message must not repeat the secret
                raise FieldError(f"subscriptions[{i}].key", "is the key of another subscription")
            keys.add(subscription.key)
        return self


class GatewayConfig(Section):
    """The reference gateway. Field names follow Azure API Management's policies where APIM has them."""

    port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="fixed port (of the first replica; the others take the next ones); free when unset",
    )
    pool: Pool = Field(default_factory=Pool, description="backend pool: members, priorities, weights")
    circuit_breaker: CircuitBreakerRule | None = Field(
        None, description="breaker rule of every pool member without one of its own; null for none"
    )
    all_tripped_response: Literal[503, 429] = Field(
        503, description="status when every member is tripped: 503 (APIM) or 429 with the soonest Retry-After"
    )
    retry: GatewayRetry = Field(default_factory=GatewayRetry, description="retry on another member inside the gateway")
    token_limit: TokenLimit | None = Field(None, description="token limit per counter key; null for none")
    apim_compat: bool = Field(
        False, description="count streamed completions as APIM was observed to (not at all) instead of correctly"
    )
    metrics: Metrics = Field(default_factory=Metrics, description="token metrics and their dimensions")
    auth: Auth = Field(default_factory=Auth, description="callers' credentials")
    max_body_bytes: int = Field(4 * 1024 * 1024, gt=0, description="larger request bodies get 413")
    timeout: Duration = Field(120.0, gt=0, description="upstream timeout per attempt (scenario time)")
    replicas: int = Field(
        1, ge=1, le=MAX_REPLICAS, description="gateway units behind a load balancer (APIM: units of a gateway)"
    )
    spread: Literal["round-robin", "sticky"] = Field(
        "round-robin",
        description="how the load balancer in front of the replicas spreads requests: each request to the next "
        "replica, or every request of a user to the same one",
    )
    shared_state: Literal["none", "redis"] = Field(
        "none",
        description="none: each replica keeps its own token-limit counters and breakers (APIM's behaviour); "
        "redis: the replicas share them",
    )
    redis_url: str | None = Field(
        None,
        pattern=r"^rediss?://",
        description="with shared_state redis: an existing server (redis://host:port/db); the harness starts "
        "redis-server on loopback for the run when unset",
    )

    @model_validator(mode="after")
    def _redis_url_needs_redis(self) -> GatewayConfig:
        if self.redis_url is not None and self.shared_state != "redis":
            raise FieldError("redis_url", "is read only with shared_state: redis")
        if self.port and self.port + self.replicas - 1 > 65535:
            raise FieldError("port", f"leaves no room for {self.replicas} replicas on the ports after it")
        return self

    def pool_members(self, backends: Iterable[str]) -> list[PoolMember]:
        """The configured members, or every backend at priority 1, weight 1 when none are listed.

        >>> [m.backend for m in GatewayConfig().pool_members(["a", "b"])]
        ['a', 'b']
        """
        if self.pool.members:
            return list(self.pool.members)
        return [PoolMember(backend=name) for name in backends]

    def breaker_rule(self, member: PoolMember) -> CircuitBreakerRule | None:
        """The breaker rule of a pool member: its own, else the gateway's (None: the member has no breaker)."""
        return member.circuit_breaker if member.circuit_breaker is not None else self.circuit_breaker

    def check_members(self, backends: Iterable[str]) -> None:
        """Raise FieldError (path relative to the scenario) when a member names an unknown backend."""
        known = list(backends)
        for i, member in enumerate(self.pool.members):
            if member.backend not in known:
                raise FieldError(
                    f"gateway.pool.members[{i}].backend",
                    f"no backend named '{member.backend}' (known: {', '.join(known)})",
                )
