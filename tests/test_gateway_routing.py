"""In-process: gateway -> mock pool over ASGITransport on one VirtualClock. Pool, breaker, retry, headers."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest
from gateway_helpers import INSTANT, Stack

# 1,000 TPM: the mock allows one request per 10 s (RPM over 10 s windows), so the second one gets a 429.
SMALL = f"{{gpt-4o: {{tpm: 1000, latency: {INSTANT}}}}}"
LARGE = f"{{gpt-4o: {{tpm: 10000000, latency: {INSTANT}}}}}"


def _backends(**deployments: str) -> str:
    items = ", ".join(f"{{name: {name}, region: {name}-region, deployments: {d}}}" for name, d in deployments.items())
    return f"backends: [{items}]\n"


async def test_headers_identify_backend_region_and_request_ids(make_stack: Callable[[str], Stack]) -> None:
    stack = make_stack(_backends(east=LARGE))
    response = await stack.chat(headers={"x-ms-client-request-id": "client-1"})
    assert response.status_code == 200
    assert response.headers["x-backend"] == "east"
    assert response.headers["x-ms-region"] == "east-region"
    gateway_id = response.headers["x-gateway-request-id"]
    assert response.headers["x-ms-client-request-id"] == "client-1"
    (backend_row,) = stack.backend_log.rows
    assert backend_row["gateway_request_id"] == gateway_id and backend_row["client_request_id"] == "client-1"
    (row,) = stack.requests()
    assert row["backend_request_id"] == backend_row["request_id"] == response.headers["apim-request-id"]
    assert (row["backend"], row["region"], row["status"], row["outcome"]) == ("east", "east-region", 200, "ok")
    assert row["total_tokens"] == backend_row["total_tokens"] and row["tokens_counted_by"] == "usage"


async def test_v1_route_names_the_model_in_the_body(make_stack: Callable[[str], Stack]) -> None:
    stack = make_stack(_backends(east=LARGE))
    response = await stack.client.post(
        "/openai/v1/chat/completions", json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
    )
    assert response.status_code == 200 and response.headers["x-backend"] == "east"


async def test_weights_are_exact_through_the_gateway(make_stack: Callable[[str], Stack]) -> None:
    stack = make_stack(
        _backends(a=LARGE, b=LARGE)
        + "gateway: {pool: {members: [{backend: a, weight: 3}, {backend: b, weight: 1}], selection: weighted}}"
    )
    served = Counter()
    for _ in range(400):
        served[(await stack.chat()).headers["x-backend"]] += 1
    assert served == {"a": 300, "b": 100}
    assert Counter(r["backend"] for r in stack.backend_log.rows) == served


BREAKER = "circuit_breaker: {failureCondition: {count: 1, interval: PT1M}, tripDuration: PT1M}"


async def test_priority_group_two_serves_only_while_group_one_is_tripped(make_stack: Callable[[str], Stack]) -> None:
    stack = make_stack(
        _backends(primary=SMALL, spare1=LARGE, spare2=LARGE)
        + "gateway: {pool: {members: [{backend: primary, priority: 1}, {backend: spare1, priority: 2}, "
        "{backend: spare2, priority: 2}]}, " + BREAKER + "}"
    )
    assert (await stack.chat()).headers["x-backend"] == "primary"
    throttled = await stack.chat()
    assert throttled.status_code == 429 and throttled.headers["x-backend"] == "primary"  # passed through
    assert "retry-after" in throttled.headers
    served = Counter([(await stack.chat()).headers["x-backend"] for _ in range(10)])
    assert served == {"spare1": 5, "spare2": 5}
    stack.clock.advance(60)
    assert (await stack.chat()).headers["x-backend"] == "primary"
    transitions = [(r["backend"], r["from"], r["to"]) for r in stack.breaker_rows()]
    assert transitions == [("primary", "closed", "open"), ("primary", "open", "closed")]


async def test_a_throttling_member_without_a_tripped_breaker_keeps_serving(make_stack: Callable[[str], Stack]) -> None:
    stack = make_stack(
        _backends(primary=SMALL, spare=LARGE)
        + "gateway: {pool: {members: [{backend: primary, priority: 1}, {backend: spare, priority: 2}]}, "
        "circuit_breaker: {failureCondition: {count: 5}}}"
    )
    statuses = [(r.status_code, r.headers["x-backend"]) for r in [await stack.chat() for _ in range(4)]]
    assert statuses == [(200, "primary"), (429, "primary"), (429, "primary"), (429, "primary")]
    assert [r["outcome"] for r in stack.requests()] == ["ok", "backend_429", "backend_429", "backend_429"]


async def test_breaker_counts_failures_only_within_interval(make_stack: Callable[[str], Stack]) -> None:
    failing = f"{{gpt-4o: {{latency: {INSTANT}}}}}, faults: {{error_rates: {{500: 1.0}}}}"
    stack = make_stack(
        f"backends: [{{name: bad, deployments: {failing}}}, {{name: good, deployments: {LARGE}}}]\n"
        "gateway: {pool: {members: [{backend: bad}, {backend: good, priority: 2}]}, circuit_breaker: "
        "{failureCondition: {count: 3, interval: PT1M, statusCodeRanges: [{min: 500, max: 599}]}, tripDuration: PT2M}}"
    )
    for _ in range(2):
        assert (await stack.chat()).status_code == 500
    stack.clock.advance(61)
    for _ in range(2):
        assert (await stack.chat()).status_code == 500
    assert stack.breaker_rows() == []
    assert (await stack.chat()).status_code == 500  # third failure within a minute trips it
    assert stack.breaker_rows()[-1]["to"] == "open"
    stack.clock.advance(119)
    assert (await stack.chat()).headers["x-backend"] == "good"
    stack.clock.advance(1)
    assert (await stack.chat()).headers["x-backend"] == "bad"
    assert [r["to"] for r in stack.breaker_rows()] == ["open", "closed"]


async def test_breaker_trips_on_percentage_of_failures(make_stack: Callable[[str], Stack]) -> None:
    stack = make_stack(
        _backends(primary=SMALL, spare=LARGE)
        + "gateway: {pool: {members: [{backend: primary}, {backend: spare, priority: 2}]}, circuit_breaker: "
        "{failureCondition: {percentage: 40, interval: PT1M}, tripDuration: PT1M}}"
    )
    for _ in range(3):  # one request per 10 s fits the primary's request window
        assert (await stack.chat()).status_code == 200
        stack.clock.advance(10)
    assert (await stack.chat()).status_code == 200
    assert (await stack.chat()).status_code == 429  # 1 of 5 failed: 20 %
    assert stack.breaker_rows() == []
    assert (await stack.chat()).status_code == 429  # 2 of 6: 33 %
    assert (await stack.chat()).status_code == 429  # 3 of 7: 43 % >= 40 %
    assert [r["to"] for r in stack.breaker_rows()] == ["open"]
    assert (await stack.chat()).headers["x-backend"] == "spare"


@pytest.mark.parametrize("long_retry_after", [False, True])
async def test_accept_retry_after_keeps_the_member_out_for_the_backends_retry_after(
    make_stack: Callable[[str], Stack], long_retry_after: bool
) -> None:
    faults = ", faults: {long_retry_after: {probability: 1.0}}" if long_retry_after else ""
    stack = make_stack(
        f"backends: [{{name: primary, deployments: {SMALL}{faults}}}, {{name: spare, deployments: {LARGE}}}]\n"
        "gateway: {pool: {members: [{backend: primary}, {backend: spare, priority: 2}]}, circuit_breaker: "
        "{failureCondition: {count: 1}, tripDuration: PT1M, acceptRetryAfter: true}}"
    )
    assert (await stack.chat()).status_code == 200
    throttled = await stack.chat()
    retry_after = float(throttled.headers["retry-after-ms"]) / 1000
    assert throttled.status_code == 429
    if long_retry_after:
        assert throttled.headers["retry-after"] == "86400"
    else:
        assert 0 < retry_after <= 10  # the request window's own advice, shorter than tripDuration
    (opened,) = stack.breaker_rows()
    assert opened["until"] == pytest.approx(stack.clock.now() + retry_after)
    stack.clock.advance(retry_after - 0.5)
    assert (await stack.chat()).headers["x-backend"] == "spare"
    stack.clock.advance(0.5)
    if long_retry_after:  # the mock would still answer 86400; the member is back in the pool all the same
        assert (await stack.chat()).headers["x-backend"] == "primary"
    else:
        response = await stack.chat()
        assert (response.status_code, response.headers["x-backend"]) == (200, "primary")


@pytest.mark.parametrize(("configured", "status"), [("503", 503), ("429", 429)])
async def test_all_members_tripped_answers_503_or_429_with_the_soonest_retry_after(
    make_stack: Callable[[str], Stack], configured: str, status: int
) -> None:
    stack = make_stack(
        _backends(a=SMALL, b=SMALL) + "gateway: {circuit_breaker: {failureCondition: {count: 1}, tripDuration: PT1M}, "
        f"all_tripped_response: {configured}}}"
    )
    for _ in range(2):
        await stack.chat()  # each member serves one request
    await stack.chat()  # a trips
    stack.clock.advance(20)
    assert (await stack.chat()).headers["x-backend"] == "b"  # b's request window has moved on
    assert (await stack.chat()).status_code == 429  # b trips 20 s after a
    refused = await stack.chat()
    assert refused.status_code == status
    assert refused.headers["retry-after"] == "40"  # a comes back first
    assert refused.json()["error"]["message"]
    assert refused.headers["x-gateway-refusal"] == "breaker_open"  # typed: a 429 here is not a token limit
    assert stack.requests()[-1]["outcome"] == "breaker_open"
    assert len(stack.backend_log.rows) == 5  # the refused request reached no backend


async def test_retry_in_gateway_diverts_only_throttled_requests(make_stack: Callable[[str], Stack]) -> None:
    stack = make_stack(
        _backends(primary=SMALL, spare=LARGE)
        + "gateway: {pool: {members: [{backend: primary}, {backend: spare, priority: 2}]}, "
        "retry: {enabled: true, max_attempts: 2}}"
    )
    first = await stack.chat()
    second = await stack.chat()
    assert (first.status_code, first.headers["x-backend"]) == (200, "primary")
    assert (second.status_code, second.headers["x-backend"]) == (200, "spare")
    assert [r["attempts"] for r in stack.requests()] == [["primary"], ["primary", "spare"]]
    by_gateway_id = Counter(r["gateway_request_id"] for r in stack.backend_log.rows)
    assert by_gateway_id[first.headers["x-gateway-request-id"]] == 1
    assert by_gateway_id[second.headers["x-gateway-request-id"]] == 2  # the 429 and the retry
    assert [r["status"] for r in stack.backend_log.rows] == [200, 429, 200]


async def test_retry_gives_the_last_answer_when_every_member_throttles(make_stack: Callable[[str], Stack]) -> None:
    stack = make_stack(_backends(a=SMALL, b=SMALL) + "gateway: {retry: {enabled: true, max_attempts: 5}}")
    await stack.chat()
    await stack.chat()
    response = await stack.chat()
    assert response.status_code == 429
    assert stack.requests()[-1]["attempts"] in (["a", "b"], ["b", "a"])


async def test_latency_selection_prefers_the_faster_region(make_stack: Callable[[str], Stack]) -> None:
    slow = "{gpt-4o: {tpm: 10000000, latency: {ttft: 2.0, per_token: 0}}}"
    fast = "{gpt-4o: {tpm: 10000000, latency: {ttft: 0.2, per_token: 0}}}"
    stack = make_stack(
        _backends(slow=slow, fast=fast) + "gateway: {pool: {selection: latency, latency_probe_every: 10}}"
    )
    served = Counter([(await stack.chat()).headers["x-backend"] for _ in range(100)])
    assert served["fast"] >= 85 and served["slow"] >= 5
