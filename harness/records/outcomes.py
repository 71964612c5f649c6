"""The values records and logs hold, each defined here once with what readers show for it.

Every module that writes one of these values imports it from here, and every reader (the report's tables,
sentences and colours, Locust's failure table, the live view) takes its label from here, so a value is never
spelled, nor labelled, twice.

- `ErrorKind`: an attempt's `error_kind` in records.csv ("" when it succeeded).
- `Decision`: an attempt's `decision`: what the client's retry logic did next.
- `GatewayOutcome`: a gateway.jsonl request row's `outcome` (the gateway's own refusals are the wire's
  refusal kinds, `harness.aoai.refusals`).
- `BackendDecision`: a backend.jsonl row's `decision`: what the resource decided about the request.

    >>> ErrorKind.BACKEND_429 == "backend_429", THROTTLING[ErrorKind.BACKEND_429].label
    (True, '429 from a backend')
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from harness.aoai import refusals


class ErrorKind(StrEnum):
    """Why an attempt failed, as records.csv's `error_kind` names it."""

    GATEWAY_TOKEN_LIMIT = "gateway_token_limit"
    GATEWAY_QUOTA = "gateway_quota"
    BACKEND_429 = "backend_429"
    BREAKER_OPEN = "breaker_open"
    SERVER_ERROR = "server_error"
    UNAUTHORIZED = "unauthorized"
    CLIENT_ERROR = "client_error"
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    TRUNCATED_STREAM = "truncated_stream"


# Human names of failure causes (Locust's failure table, the live view).
CAUSE_NAMES: dict[str, str] = {
    ErrorKind.GATEWAY_TOKEN_LIMIT: "429 gateway token limit",
    ErrorKind.GATEWAY_QUOTA: "403 gateway token quota",
    ErrorKind.BACKEND_429: "429 backend rate limit",
    ErrorKind.BREAKER_OPEN: "breaker open / no backend available",
    ErrorKind.SERVER_ERROR: "5xx server error",
    ErrorKind.UNAUTHORIZED: "401 unauthorized (subscription key or token)",
    ErrorKind.CLIENT_ERROR: "4xx client error",
    ErrorKind.TIMEOUT: "timeout",
    ErrorKind.CONNECTION: "connection error",
    ErrorKind.TRUNCATED_STREAM: "truncated stream (cut, or ended with neither [DONE] nor a finish_reason)",
}


@dataclass(frozen=True, slots=True)
class Throttling:
    """How reports show one kind of throttling: table label, figure colour, and the verb of a sentence."""

    label: str
    colour: str
    sentence: str  # "N requests <sentence>"


# The error kinds that are throttling, by who throttled, in the order reports list them.
THROTTLING: dict[ErrorKind, Throttling] = {
    ErrorKind.GATEWAY_TOKEN_LIMIT: Throttling(
        "429 gateway token limit", "#e6a100", "got 429 from the gateway token limit"
    ),
    ErrorKind.GATEWAY_QUOTA: Throttling("403 gateway quota", "#8c6d1f", "got 403 from the gateway quota"),
    ErrorKind.BACKEND_429: Throttling("429 from a backend", "#d9534f", "got 429 from a backend"),
    ErrorKind.BREAKER_OPEN: Throttling("503 breaker open", "#7b3fa0", "got 503 (breaker open)"),
}
THROTTLING_KINDS: tuple[str, ...] = tuple(THROTTLING)

# An attempt's outcome in the report: a success, one of the throttling kinds, or any other error.
SUCCESS = "success"
OTHER_ERROR = "other_error"
OUTCOMES: tuple[str, ...] = (SUCCESS, *THROTTLING_KINDS, OTHER_ERROR)
OUTCOME_LABELS: dict[str, str] = {
    SUCCESS: "success",
    **{kind: look.label for kind, look in THROTTLING.items()},
    OTHER_ERROR: "other error",
}
OUTCOME_COLOURS: dict[str, str] = {
    SUCCESS: "#4c9a2a",
    **{kind: look.colour for kind, look in THROTTLING.items()},
    OTHER_ERROR: "#6c757d",
}


class Decision(StrEnum):
    """What the client's retry logic did after an attempt (records.csv's `decision`)."""

    SUCCESS = "success"
    RETRY = "retry"
    GIVE_UP = "give_up"  # a failure the profile would retry, left alone: retries or waiting used up
    FAIL = "fail"  # a failure the profile does not retry


class WaitSource(StrEnum):
    """Where the wait before a retry came from (records.csv's `retry_wait_source`): a server header, or the
    client's own backoff."""

    RETRY_AFTER_MS = "retry-after-ms"
    RETRY_AFTER = "retry-after"
    BACKOFF = "backoff"


class GatewayOutcome(StrEnum):
    """A gateway.jsonl request row's `outcome`: the answer relayed, or the gateway's own refusal."""

    OK = "ok"
    BACKEND_429 = "backend_429"
    CLIENT_CLOSED = "client_closed"  # the client left before its stream ended (logged with status 499)
    TOKEN_LIMIT = refusals.TOKEN_LIMIT
    QUOTA = refusals.QUOTA
    BREAKER_OPEN = refusals.BREAKER_OPEN
    UPSTREAM_ERROR = refusals.UPSTREAM_ERROR
    BAD_REQUEST = refusals.BAD_REQUEST
    UNAUTHORIZED = refusals.UNAUTHORIZED


CLIENT_CLOSED_STATUS = 499  # nginx's status for a client that went away, as the log writes it


class BackendDecision(StrEnum):
    """What a (mock) resource decided about a request: backend.jsonl's `decision`."""

    OK = "ok"
    QUEUED_THEN_OK = "queued_then_ok"  # waited for room (PAYG queueing), then answered
    RATE_LIMITED_TOKENS = "rate_limited_tokens"
    RATE_LIMITED_REQUESTS = "rate_limited_requests"
    PTU_OVER_CAPACITY = "ptu_over_capacity"
    OUTAGE = "outage"
    FAULT = "fault"  # an injected error (or 429)
    CUT_STREAM = "cut_stream"  # admitted and streamed, then the connection was cut mid-way (an injected fault)
    BAD_REQUEST = "bad_request"
    UNAUTHORIZED = "unauthorized"
    NOT_FOUND = "not_found"
