"""The record schema: one flat row per HTTP attempt. The contract between the load generator and reports.

Reports read only these records and the two server logs. A column is never renamed or removed without
changing every reader; new columns go at the end.
"""

from __future__ import annotations

from typing import NamedTuple


class Column(NamedTuple):
    name: str
    kind: str  # "str", "int", "float" or "bool"; empty cells mean "not present"
    description: str


RECORD_COLUMNS: tuple[Column, ...] = (
    Column("run_id", "str", "identifier of the run (the run directory name)"),
    Column("t_scenario", "float", "scenario time the attempt started, seconds since the Unix epoch"),
    Column("t_wall", "float", "wall-clock time the attempt started, seconds since the Unix epoch"),
    Column("user", "str", "Locust user that sent it"),
    Column("app_id", "str", "app of the workload (also the JWT appid the gateway sees)"),
    Column("client_profile", "str", "client retry profile: none, openai-python-legacy, openai-python, custom"),
    Column("logical_id", "str", "id shared by every attempt of one logical request"),
    Column("attempt", "int", "1 for the first attempt, 2 for the first retry, ..."),
    Column("request_id", "str", "x-ms-client-request-id the client sent"),
    Column("gateway_request_id", "str", "the gateway's own request id (response header)"),
    Column("backend_request_id", "str", "apim-request-id / x-request-id of the backend that answered"),
    Column("operation", "str", "chat, completions or embeddings"),
    Column("deployment", "str", "deployment (or model on the v1 route) requested"),
    Column("stream", "bool", "streamed response requested"),
    Column("max_tokens", "int", "max_tokens sent (empty when unset)"),
    Column("prompt_tokens_est", "int", "prompt tokens as the client counted them"),
    Column("status", "int", "HTTP status; 0 when no response arrived (connection error, timeout)"),
    Column(
        "error_kind",
        "str",
        "empty on success, else: gateway_token_limit, gateway_quota, backend_429, "
        "breaker_open, server_error, client_error, timeout, connection, truncated_stream",
    ),
    Column("retry_after_s", "float", "Retry-After header as received, in seconds"),
    Column("retry_after_ms", "float", "retry-after-ms header as received"),
    Column("ratelimit_remaining_requests", "int", "x-ratelimit-remaining-requests"),
    Column("ratelimit_remaining_tokens", "int", "x-ratelimit-remaining-tokens"),
    Column("ratelimit_limit_requests", "int", "x-ratelimit-limit-requests"),
    Column("ratelimit_limit_tokens", "int", "x-ratelimit-limit-tokens"),
    Column("ratelimit_reset_requests", "float", "x-ratelimit-reset-requests (s)"),
    Column("ratelimit_reset_tokens", "float", "x-ratelimit-reset-tokens (s)"),
    Column("policy_id", "str", "policy-id of a backend 429"),
    Column("gateway_remaining_tokens", "int", "the gateway's remaining-tokens header"),
    Column("gateway_remaining_quota", "int", "the gateway's remaining-quota-tokens header"),
    Column("gateway_tokens_consumed", "int", "the gateway's tokens-consumed header"),
    Column("backend", "str", "pool member that served (x-backend)"),
    Column("region", "str", "x-ms-region"),
    Column("ttft_s", "float", "time to first token (streams) or to headers, scenario seconds"),
    Column("latency_s", "float", "time to the end of the body, scenario seconds"),
    Column("inter_token_s", "float", "mean time between streamed chunks, scenario seconds"),
    Column("usage_prompt", "int", "usage.prompt_tokens"),
    Column("usage_completion", "int", "usage.completion_tokens"),
    Column("usage_total", "int", "usage.total_tokens"),
    Column("usage_source", "str", "where usage came from: body, stream_usage_chunk, counted_deltas"),
    Column("decision", "str", "what the client did next: success, retry, give_up, fail"),
    Column("retry_wait_s", "float", "scenario seconds the client waited before the next attempt"),
    Column("retry_wait_source", "str", "retry-after-ms, retry-after, backoff (own backoff), or empty"),
)

RECORD_FIELDS: tuple[str, ...] = tuple(c.name for c in RECORD_COLUMNS)
