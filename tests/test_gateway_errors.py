"""In-process: bad requests get AOAI-shaped errors; dead, crashing or silent backends give 502/504 and trip."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import httpx
import pytest
from gateway_helpers import API_VERSION, INSTANT, Stack
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from harness.aoai.refusals import REFUSAL_HEADER, UNAUTHORIZED
from harness.clock import VirtualClock
from harness.errors import ScenarioError
from harness.gateway.app import build_gateway_app
from harness.gateway.identity import INVALID_KEY, MISSING_KEY
from harness.gateway.relay import StreamCut
from harness.scenario import load_scenario_text

BACKEND = f"backends: [{{name: east, deployments: {{gpt-4o: {{latency: {INSTANT}}}}}}}]\n"
CHAT = f"/openai/deployments/gpt-4o/chat/completions?api-version={API_VERSION}"


def _is_aoai_error(response: httpx.Response, status: int) -> None:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] and error["message"]
    assert response.headers["x-gateway-request-id"]


async def test_invalid_json_is_400(make_stack: Callable[[str], Stack]) -> None:
    stack = make_stack(BACKEND)
    _is_aoai_error(await stack.client.post(CHAT, content=b"{not json"), 400)
    _is_aoai_error(await stack.client.post(CHAT, content=b"[1, 2]"), 400)
    assert stack.backend_log.rows == [] and {r["outcome"] for r in stack.requests()} == {"bad_request"}


async def test_unknown_deployment_is_404(make_stack: Callable[[str], Stack]) -> None:
    stack = make_stack(BACKEND)
    response = await stack.chat("gpt-5-nano")
    _is_aoai_error(response, 404)
    assert response.json()["error"]["code"] == "DeploymentNotFound"


async def test_oversize_body_is_413(make_stack: Callable[[str], Stack]) -> None:
    stack = make_stack(BACKEND + "gateway: {max_body_bytes: 1000}")
    _is_aoai_error(await stack.chat(content="x" * 2000), 413)
    assert (await stack.chat(content="x" * 100)).status_code == 200


SUBSCRIPTIONS = "gateway: {auth: {subscriptions: [{id: team-a, key: key-1}, {id: team-b, key: key-2}]}}"


async def test_subscription_keys_are_checked_when_configured(make_stack: Callable[[str], Stack]) -> None:
    stack = make_stack(BACKEND + SUBSCRIPTIONS)
    missing = await stack.chat()
    assert missing.status_code == 401 and missing.headers[REFUSAL_HEADER] == UNAUTHORIZED
    assert missing.json() == {"statusCode": 401, "message": MISSING_KEY}  # APIM's shape, not AOAI's
    wrong = await stack.chat(headers={"api-key": "nope"})
    assert wrong.status_code == 401 and wrong.json()["message"] == INVALID_KEY
    assert (await stack.chat(headers={"api-key": "key-1"})).status_code == 200
    assert (await stack.chat(headers={"Ocp-Apim-Subscription-Key": "key-2"})).status_code == 200
    assert [r["outcome"] for r in stack.requests()] == ["unauthorized", "unauthorized", "ok", "ok"]


async def test_the_backend_key_replaces_the_callers(make_stack: Callable[[str], Stack]) -> None:
    keyed = f"backends: [{{name: east, api_key: backend-secret, deployments: {{gpt-4o: {{latency: {INSTANT}}}}}}}]\n"
    stack = make_stack(keyed + "gateway: {auth: {subscriptions: [{id: team-a, key: key-1}]}}")
    assert (await stack.chat(headers={"api-key": "key-1"})).status_code == 200


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _gateway(text: str, upstreams: dict[str, str], client: httpx.AsyncClient | None = None) -> Starlette:
    return build_gateway_app(load_scenario_text(text), VirtualClock(0), upstreams, None, client, keep_log_rows=True)


async def _post(app: Starlette) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://gateway") as client:
        return await client.post(CHAT, json={"messages": [{"role": "user", "content": "hi"}]})


BREAKER = "gateway: {circuit_breaker: {failureCondition: {count: 2}, tripDuration: PT1M}}"


async def test_unreachable_backend_is_502_and_counts_for_the_breaker() -> None:
    app = _gateway(BACKEND + BREAKER, {"east": f"http://127.0.0.1:{_closed_port()}"})
    try:
        first = await _post(app)
        _is_aoai_error(first, 502)
        assert first.json()["error"]["code"] == "BadGateway"
        _is_aoai_error(await _post(app), 502)
        _is_aoai_error(await _post(app), 503)  # two connection failures tripped it
        rows = app.state.gateway.log.rows
        assert [r["to"] for r in rows if r["kind"] == "breaker"] == ["open"]
        assert [r["outcome"] for r in rows if r["kind"] == "request"] == ["upstream_error"] * 2 + ["breaker_open"]
    finally:
        await app.state.gateway.aclose()


async def test_crashing_backend_is_502_not_a_traceback() -> None:
    async def crash(request: Request) -> Response:
        raise RuntimeError("the backend fell over")

    broken = Starlette(routes=[Route("/openai/deployments/gpt-4o/chat/completions", crash, methods=["POST"])])
    upstream = httpx.AsyncClient(transport=httpx.ASGITransport(broken))
    app = _gateway(BACKEND + BREAKER, {"east": "http://east"}, upstream)
    try:
        _is_aoai_error(await _post(app), 502)
    finally:
        await upstream.aclose()
        await app.state.gateway.aclose()


async def test_silent_backend_times_out_as_504() -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    app = _gateway(BACKEND + "gateway: {timeout: 0.3}", {"east": f"http://127.0.0.1:{port}"})
    try:
        response = await asyncio.wait_for(_post(app), timeout=10)
        _is_aoai_error(response, 504)
        assert response.json()["error"]["code"] == "GatewayTimeout"
    finally:
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()
        await app.state.gateway.aclose()


async def test_a_pool_member_without_a_url_is_a_one_line_error() -> None:
    with pytest.raises(ScenarioError, match=r"gateway.pool: backend 'east' has no URL"):
        _gateway(BACKEND, {})


async def test_a_stream_cut_by_the_backend_is_an_upstream_error_for_log_and_breaker() -> None:
    async def cut_stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        event = b'data: {"choices":[{"delta":{"content":"Hi"}}]}\n\n'
        writer.write(b"%x\r\n%s\r\n" % (len(event), event))
        await writer.drain()
        writer.transport.abort()  # gone before the end of the stream

    server = await asyncio.start_server(cut_stream, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    app = _gateway(
        BACKEND + "gateway: {circuit_breaker: {failureCondition: {count: 1}}}", {"east": f"http://127.0.0.1:{port}"}
    )
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://gateway") as client:
            # the headers had gone out: the body raises, so the server aborts the client's connection
            # (tests/test_wire_quirks.py shows it over a real socket)
            with pytest.raises(StreamCut, match="backend 'east'"):
                await client.post(CHAT, json={"messages": [{"role": "user", "content": "hi"}], "stream": True})
        rows = app.state.gateway.log.rows
        assert [r["outcome"] for r in rows if r["kind"] == "request"] == ["upstream_error"]
        assert [r["to"] for r in rows if r["kind"] == "breaker"] == ["open"]
    finally:
        server.close()
        await server.wait_closed()
        await app.state.gateway.aclose()


async def test_unknown_routes_and_wrong_methods_answer_aoai_json(make_stack) -> None:
    stack = make_stack("backends: [{name: east}]")
    missing = await stack.client.get("/openai/deployments/gpt-4o/nothing-here")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "NotFound"
    wrong = await stack.client.get("/openai/deployments/gpt-4o/chat/completions")
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "MethodNotAllowed"
    assert wrong.headers["allow"] == "POST" and wrong.headers["x-gateway-refusal"] == "bad_request"


@pytest.mark.parametrize(
    "body",
    [
        {"messages": 5},
        {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 10**400},
        {"messages": [{"role": "user", "content": "hi"}], "temperature": 3},
        {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 16385},
    ],
)
async def test_a_body_aoai_refuses_gets_the_backends_own_400_without_charging_tokens(
    make_stack: Callable[[str], Stack], body: dict
) -> None:
    stack = make_stack(BACKEND + "gateway: {token_limit: {tokens-per-minute: 1000, counter-key: appid}}")
    refused = await stack.client.post(CHAT, json=body)
    _is_aoai_error(refused, 400)
    direct = await stack.upstream.post(f"http://east{CHAT}", json=body)  # the mock, asked the same
    assert refused.json() == direct.json() and refused.json()["error"]["type"] == "invalid_request_error"
    row = stack.requests()[0]
    assert (row["outcome"], row["counter_key"], row["backend"]) == ("bad_request", None, None)
    assert stack.gateway.limiter is not None and len(stack.backend_log.rows) == 1  # only the direct call


async def test_content_length_that_is_not_a_number_is_not_a_500(make_stack: Callable[[str], Stack]) -> None:
    stack = make_stack(BACKEND)
    body = b'{"messages": [{"role": "user", "content": "hi"}]}'
    response = await stack.client.post(CHAT, content=body, headers={"content-length": b"\xb2"})
    assert response.status_code < 500
