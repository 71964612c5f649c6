"""A backend with the quirks real AOAI-compatible servers have, served by uvicorn on a real loopback socket.

What it can do, set per test in `backend.quirks` (a `Quirks`): stream with another content type than
`text/event-stream` (or none), end a stream without `data: [DONE]` (with or without a `finish_reason`), or
with a bare `[DONE]` line, put the `finish_reason` inside the `delta`, answer a stream request with plain
JSON, cut the connection mid-stream, stay silent after the headers, and answer 429s whose `Retry-After` is
an HTTP date (dated by a clock the test gives) or whole seconds only (no `retry-after-ms`).
`AOAI_API_SIMULATOR` streams as microsoft/aoai-api-simulator does.

    with LoopbackServers() as servers:
        backend = QuirkyBackend(Quirks(content_type=None, done=False))
        url = servers.start(backend)

`LoopbackServers` runs uvicorn servers on 127.0.0.1 only, in one background thread, and stops them when the
`with` block ends or, whatever happens, after `lifetime` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

# Each piece is one token for the harness's tokenizer, and so is each piece in the joined text.
PIECES = ["Hello", " from", " a", " backend", " that", " streams", " in", " its", " own", " way", "."]
CHAT = "/openai/deployments/{deployment}/chat/completions"
EVENT_STREAM = "text/event-stream"


class BackendCut(Exception):
    """Raised from the body after the headers: uvicorn then closes the connection without ending the body."""


def _not_a_planned_cut(record: logging.LogRecord) -> bool:
    return not (record.exc_info and isinstance(record.exc_info[1], BackendCut))


logging.getLogger("uvicorn.error").addFilter(_not_a_planned_cut)  # a cut the test asked for is no error


@dataclass
class Quirks:
    """How the backend misbehaves; the defaults answer as AOAI does."""

    content_type: str | None = EVENT_STREAM  # of stream answers; None sends no content-type at all
    done: bool = True  # end streams with `data: [DONE]`
    bare_done: bool = False  # ... as a last `[DONE]` without `data:` nor a line end instead
    finish: bool = True  # send the chunk with `finish_reason`
    finish_in_delta: bool = False  # ... inside its `delta` (with `content: null`), not on the choice
    json_stream: bool = False  # answer a stream request with a plain JSON completion (usage included)
    usage: bool = False  # send a usage chunk (whatever the request asked)
    cut_after: int | None = None  # cut the connection after this many token chunks
    ttft: float = 0.0  # seconds from the headers to the first chunk
    per_token: float = 0.0  # seconds between token chunks
    throttle: str | None = None  # "http-date" or "seconds-only": answer 429s first
    throttles: int = 1  # how many requests get that 429
    retry_s: int = 2  # the wait the 429 advises, in whole seconds
    dated_at: float | None = None  # the epoch time the 429's `Date` says (None: the wall clock's now)


# Streams as microsoft/aoai-api-simulator sends them: no content type, each word with its role-less delta,
# `finish_reason` inside the last delta, and a bare `[DONE]` at the end.
AOAI_API_SIMULATOR = Quirks(content_type=None, done=False, bare_done=True, finish_in_delta=True)


@dataclass
class QuirkyBackend:
    """The ASGI app: AOAI chat completions (deployment route), answered as `quirks` says."""

    quirks: Quirks = field(default_factory=Quirks)
    seen: list[dict[str, Any]] = field(default_factory=list)  # each request's headers, body and query string
    throttled: int = 0

    def __post_init__(self) -> None:
        self.app = Starlette(routes=[Route(CHAT, self.chat, methods=["POST"])])

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)

    async def chat(self, request: Request) -> Response:
        body = json.loads(await request.body())
        self.seen.append({"headers": dict(request.headers), "body": body, "query": request.url.query})
        quirks = self.quirks
        if quirks.throttle is not None and self.throttled < quirks.throttles:
            self.throttled += 1
            return self._throttle(quirks)
        if body.get("stream") is True and not quirks.json_stream:
            headers = {} if quirks.content_type is None else {"content-type": quirks.content_type}
            return StreamingResponse(self._events(quirks), headers=headers)
        usage = {"prompt_tokens": 9, "completion_tokens": len(PIECES), "total_tokens": 9 + len(PIECES)}
        message = {"role": "assistant", "content": "".join(PIECES)}
        return JSONResponse(
            {
                "id": "chatcmpl-quirky",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": "gpt-4o",
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                "usage": usage,
            }
        )

    def _throttle(self, quirks: Quirks) -> Response:
        now = time.time() if quirks.dated_at is None else quirks.dated_at
        headers = {"date": email.utils.formatdate(now, usegmt=True)}
        if quirks.throttle == "http-date":
            headers["retry-after"] = email.utils.formatdate(int(now) + quirks.retry_s, usegmt=True)
        else:  # whole seconds, and no retry-after-ms
            headers["retry-after"] = str(quirks.retry_s)
        error = {"error": {"code": "429", "message": f"Rate limit reached. Retry after {quirks.retry_s} seconds."}}
        return JSONResponse(error, status_code=429, headers=headers)

    async def _events(self, quirks: Quirks) -> AsyncIterator[bytes]:
        await asyncio.sleep(quirks.ttft)
        opening = _chunk({"role": "assistant", "content": ""}, on_choice=not quirks.finish_in_delta)
        yield _event({"choices": [], "prompt_filter_results": []}) + opening
        for i, piece in enumerate(PIECES):
            if i > 0:
                await asyncio.sleep(quirks.per_token)
            if quirks.cut_after is not None and i >= quirks.cut_after:
                raise BackendCut(f"cut after {i} tokens")
            yield _chunk({"content": piece}, on_choice=not quirks.finish_in_delta)
        if quirks.finish and quirks.finish_in_delta:
            yield _chunk({"content": None, "role": None, "finish_reason": "stop"}, on_choice=False)
        elif quirks.finish:
            yield _chunk({}, finish="stop")
        if quirks.usage:
            usage = {"prompt_tokens": 9, "completion_tokens": len(PIECES), "total_tokens": 9 + len(PIECES)}
            yield _event({"choices": [], "usage": usage})
        if quirks.done:
            yield b"data: [DONE]\n\n"
        elif quirks.bare_done:
            yield b"[DONE]"


def _event(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def _chunk(delta: dict[str, Any], finish: str | None = None, on_choice: bool = True) -> bytes:
    choice: dict[str, Any] = {"index": 0, "delta": delta}
    if on_choice:  # aoai-api-simulator's choices carry no finish_reason of their own
        choice["finish_reason"] = finish
    return _event({"id": "chatcmpl-quirky", "object": "chat.completion.chunk", "model": "gpt-4o", "choices": [choice]})


class LoopbackServers:
    """uvicorn servers on 127.0.0.1, in one background event loop; all stop at `stop()` or after `lifetime` s."""

    def __init__(self, lifetime: float = 120.0) -> None:
        self.lifetime = lifetime
        self.loop = asyncio.new_event_loop()
        self.servers: list[uvicorn.Server] = []
        self.runs: list[Future[None]] = []
        self.thread = threading.Thread(target=self._run_loop, name="loopback-servers", daemon=True)
        self.thread.start()

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_later(self.lifetime, self._exit_all)  # bounded, even if a test never stops them
        self.loop.run_forever()
        self.loop.close()

    def _exit_all(self) -> None:
        for server in self.servers:
            server.should_exit = True

    def start(self, app: Any, timeout: float = 10.0) -> str:
        """Serve `app` (its lifespan run when it has one) on a free loopback port; returns its base URL."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        config = uvicorn.Config(
            app, loop="none", http="httptools", lifespan="auto", log_level="warning", timeout_graceful_shutdown=5
        )
        server = uvicorn.Server(config)
        self.servers.append(server)
        self.runs.append(asyncio.run_coroutine_threadsafe(server.serve(sockets=[sock]), self.loop))
        deadline = time.monotonic() + timeout
        while not server.started:
            if self.runs[-1].done() or time.monotonic() > deadline:
                raise RuntimeError(f"the loopback server did not start: {self.runs[-1]}")
            time.sleep(0.01)
        return f"http://127.0.0.1:{sock.getsockname()[1]}"

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self._exit_all)
        for run in self.runs:
            with contextlib.suppress(Exception):
                run.result(timeout=15)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=15)

    def __enter__(self) -> LoopbackServers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
