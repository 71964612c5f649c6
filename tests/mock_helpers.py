"""Helpers for the mock's tests: an in-process client on a virtual clock, and a raw ASGI call that timestamps
every body chunk in scenario time."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from harness.clock import VirtualClock
from harness.mock.app import build_mock_app
from harness.mock.log import MemoryLog
from harness.scenario import BackendInstance

API = "?api-version=2024-10-21"


@dataclass
class MockUnderTest:
    client: httpx.AsyncClient
    clock: VirtualClock
    log: MemoryLog
    app: Any

    async def chat(
        self, deployment: str = "gpt-4o", headers: dict[str, str] | None = None, **body: Any
    ) -> httpx.Response:
        body.setdefault("messages", [{"role": "user", "content": "Hello there"}])
        return await self.client.post(
            f"/openai/deployments/{deployment}/chat/completions{API}", json=body, headers=headers
        )


def backend(**fields: Any) -> BackendInstance:
    fields.setdefault("name", "east")
    return BackendInstance.model_validate(fields)


@asynccontextmanager
async def mock_app(start: float = 1_000.0, seed: int = 0, **fields: Any) -> AsyncIterator[MockUnderTest]:
    clock, log = VirtualClock(start), MemoryLog()
    app = build_mock_app(backend(**fields), clock, log, seed)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://mock") as client:
        yield MockUnderTest(client, clock, log, app)


ZERO_LATENCY = {"ttft": 0, "per_token": 0}


@dataclass
class TimedResponse:
    status: int
    headers: dict[str, str]
    chunks: list[tuple[float, bytes]]  # (scenario time it was sent, body bytes)

    @property
    def body(self) -> bytes:
        return b"".join(c for _, c in self.chunks)


async def call_asgi(
    app: Any, clock: VirtualClock, path: str, body: dict[str, Any], leave_after_chunks: int | None = None
) -> TimedResponse:
    """POST `body` to the app directly over ASGI, recording the scenario time of every chunk it sends.

    With `leave_after_chunks`, the client disconnects once it has received that many body chunks.
    """
    payload = json.dumps(body).encode()
    path, _, query = path.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())],
        "client": ("127.0.0.1", 1234),
        "server": ("mock", 80),
    }
    received = False
    response = TimedResponse(0, {}, [])
    gone = asyncio.Event()

    async def receive() -> dict[str, Any]:
        nonlocal received
        if not received:
            received = True
            return {"type": "http.request", "body": payload, "more_body": False}
        await gone.wait()  # a server's receive blocks until the client leaves
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            response.status = message["status"]
            response.headers = {k.decode(): v.decode() for k, v in message["headers"]}
        elif message["type"] == "http.response.body" and message.get("body"):
            if gone.is_set():
                return  # as uvicorn does: what is sent after the client left goes nowhere
            response.chunks.append((clock.now(), message["body"]))
            if leave_after_chunks is not None and len(response.chunks) >= leave_after_chunks:
                gone.set()

    await app(scope, receive, send)
    return response


def sse_events(body: bytes) -> list[Any]:
    """The JSON payloads of an SSE body ('[DONE]' kept as the string)."""
    text = body.decode()
    assert text.endswith("\n\n")
    events = []
    for block in text.split("\n\n")[:-1]:
        assert block.startswith("data: "), block
        data = block[len("data: ") :]
        events.append(data if data == "[DONE]" else json.loads(data))
    return events
