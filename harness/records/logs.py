"""The run directory's files and the rows of its two server logs, declared once for writers and readers.

gateway.jsonl holds rows of `kind` request (one per client request), breaker (one per transition),
metric (token metrics, aggregated by `harness.gateway.metrics`) and shared_state (a replica lost or got back
the Redis its shared state lives on); backend.jsonl one row per request a mock
resource answered. The ASGI servers and the simulator build their rows with `gateway_request_row`,
`breaker_row` and `backend_row`, so both write the same fields in the same order; the report reads them
with the kinds declared here.

    >>> row = backend_row(t=1.0, backend="east", status=429)
    >>> list(row)[:4], row["status"], row["queued_s"]
    (['t', 't_wall', 'backend', 'region'], 429, 0.0)
"""

from __future__ import annotations

from typing import Any

from harness.records.attempts import Column

RECORDS_FILE = "records.csv"
GATEWAY_LOG = "gateway.jsonl"
BACKEND_LOG = "backend.jsonl"
SCENARIO_FILE = "scenario.yaml"
RUN_INFO_FILE = "run.json"

# kinds: "str", "int", "float", "bool" (as in records.csv) and "list" (a JSON list of strings)
GATEWAY_LOG_COLUMNS: tuple[Column, ...] = (
    Column("kind", "str", "request, breaker, metric or shared_state"),
    Column("t", "float", "scenario time the request arrived (breaker: of the transition)"),
    Column("t_wall", "float", "wall-clock time the row was written"),
    Column("gateway_request_id", "str", "the gateway's own id of the request (x-gateway-request-id)"),
    Column("client_request_id", "str", "x-ms-client-request-id the client sent"),
    Column("backend_request_id", "str", "apim-request-id / x-request-id of the member that answered"),
    Column("app_id", "str", "appid claim of the caller's token"),
    Column("counter_key", "str", "the token limit's counter key for this request"),
    Column("client_ip", "str", "the caller's address"),
    Column("deployment", "str", "deployment the gateway routed"),
    Column("model", "str", "model of that deployment"),
    Column("operation", "str", "chat, completions or embeddings"),
    Column("stream", "bool", "streamed response requested"),
    Column("backend", "str", "pool member that answered (breaker: whose breaker)"),
    Column("region", "str", "region of that member"),
    Column("status", "int", "status the client got"),
    Column("outcome", "str", "ok, backend_429, or the refusal kind of harness.aoai.refusals"),
    Column("attempts", "list", "pool members tried, in order"),
    Column("retry_after", "float", "Retry-After the client was given (s)"),
    Column("prompt_tokens", "int", "prompt tokens as the gateway counted them"),
    Column("completion_tokens", "int", "completion tokens as the gateway counted them"),
    Column("total_tokens", "int", "prompt + completion"),
    Column("tokens_counted_by", "str", "usage, stream_usage, counted_deltas or apim_compat"),
    Column("duration_s", "float", "scenario seconds from arrival to the end of the answer"),
    Column("ttft_s", "float", "scenario seconds to the first byte of a stream"),
    Column("replica", "str", "gateway replica, 0-based (empty with one replica, and on breaker rows of shared state)"),
    # breaker rows
    Column("from", "str", "breaker state before the transition"),
    Column("to", "str", "breaker state after it: open or closed"),
    Column("reason", "str", "why the breaker changed state"),
    Column("until", "float", "scenario time an open breaker closes"),
    # shared_state rows (reason: why)
    Column(
        "shared_state",
        "str",
        "lost (Redis stopped answering: this replica's own counters decide), restored, or ended (its last count)",
    ),
    Column("fallbacks", "int", "decisions this replica made without Redis so far"),
)
_BREAKER_FIELDS = ("kind", "t", "t_wall", "backend", "from", "to", "reason", "until", "replica")
# what a shared_state row says happened (its `shared_state` field)
SHARED_STATE_LOST = "lost"
SHARED_STATE_RESTORED = "restored"
SHARED_STATE_ENDED = "ended"
_SHARED_STATE_FIELDS = ("kind", "t", "t_wall", "replica", "shared_state", "reason", "fallbacks")
_NOT_REQUEST_FIELDS = ("from", "to", "reason", "until", "shared_state", "fallbacks")
_REQUEST_FIELDS = tuple(c.name for c in GATEWAY_LOG_COLUMNS if c.name not in _NOT_REQUEST_FIELDS)

BACKEND_LOG_COLUMNS: tuple[Column, ...] = (
    Column("t", "float", "scenario time the request arrived"),
    Column("t_wall", "float", "wall-clock time the request arrived (the simulator: when the row was written)"),
    Column("backend", "str", "resource (backend instance) name"),
    Column("region", "str", "its region (x-ms-region)"),
    Column("request_id", "str", "apim-request-id / x-request-id it answered with"),
    Column("client_request_id", "str", "x-ms-client-request-id received"),
    Column("gateway_request_id", "str", "x-gateway-request-id received"),
    Column("deployment", "str", "deployment that answered"),
    Column("model", "str", "its model"),
    Column("operation", "str", "chat, completions or embeddings"),
    Column("stream", "bool", "streamed answer"),
    Column("status", "int", "HTTP status"),
    Column(
        "decision",
        "str",
        "ok, queued_then_ok, cut_stream, rate_limited_tokens, rate_limited_requests, ptu_over_capacity, ...",
    ),
    Column("estimate", "int", "the request's admission estimate, charged or not"),
    Column("estimate_charged", "int", "tokens charged at admission (0 when refused)"),
    Column("prompt_tokens", "int", "usage.prompt_tokens"),
    Column("completion_tokens", "int", "usage.completion_tokens (of the tokens sent, for a stream left early)"),
    Column("total_tokens", "int", "usage.total_tokens"),
    Column("remaining_requests", "int", "x-ratelimit-remaining-requests after the decision"),
    Column("remaining_tokens", "int", "x-ratelimit-remaining-tokens after the decision"),
    Column("utilization", "float", "PTU: the bucket's level after the decision, percent"),
    Column("retry_after", "float", "wait advertised on a 429 (s)"),
    Column("queued_s", "float", "time queued for room (PAYG queueing fault)"),
    Column("network_in_s", "float", "the resource's network delay drawn for the way in (backends[].network_latency)"),
    Column("network_out_s", "float", "and for the way back (included in ttft_s and duration_s)"),
    Column("ttft_s", "float", "time to the first token"),
    Column("duration_s", "float", "time to the end of the answer"),
)
BACKEND_LOG_FIELDS = tuple(c.name for c in BACKEND_LOG_COLUMNS)
_BACKEND_DEFAULTS: dict[str, Any] = {"status": 500, "decision": "fault", "estimate_charged": 0, "queued_s": 0.0}


class _RowKind:
    """One kind of row: its fields in order, with their defaults (None unless given), made by copying."""

    def __init__(self, fields: tuple[str, ...], defaults: dict[str, Any]) -> None:
        self.known = frozenset(fields)
        self.template = dict.fromkeys(fields)
        self.template.update(defaults)

    def row(self, values: dict[str, Any]) -> dict[str, Any]:
        if not self.known.issuperset(values):
            raise TypeError(f"not a field of this log: {', '.join(sorted(set(values) - self.known))}")
        row = self.template.copy()
        row.update(values)
        return row


_REQUEST_ROW = _RowKind(_REQUEST_FIELDS, {"kind": "request", "stream": False})
_BREAKER_ROW = _RowKind(_BREAKER_FIELDS, {"kind": "breaker"})
_SHARED_STATE_ROW = _RowKind(_SHARED_STATE_FIELDS, {"kind": "shared_state"})
_BACKEND_ROW = _RowKind(BACKEND_LOG_FIELDS, _BACKEND_DEFAULTS)


def gateway_request_row(**values: Any) -> dict[str, Any]:
    """A gateway.jsonl request row: every field, None where not given (`attempts` an empty list)."""
    row = _REQUEST_ROW.row(values)
    if "attempts" not in values:
        row["attempts"] = []  # a list of its own: the gateway appends the members it tries
    return row


def breaker_row(**values: Any) -> dict[str, Any]:
    """A gateway.jsonl breaker row (a transition)."""
    return _BREAKER_ROW.row(values)


def shared_state_row(**values: Any) -> dict[str, Any]:
    """A gateway.jsonl shared_state row: a replica lost Redis, or got it back."""
    return _SHARED_STATE_ROW.row(values)


def backend_row(**values: Any) -> dict[str, Any]:
    """A backend.jsonl row: every field, a failure until the request is answered."""
    return _BACKEND_ROW.row(values)
