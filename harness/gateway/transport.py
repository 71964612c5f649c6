"""A lean HTTP/1.1 transport for the gateway's httpx client: plain-http keep-alive connections, httptools parsing.

httpx's default transport (httpcore over anyio) costs several hundred microseconds of CPU per request,
more than the rest of the gateway together; on a 2-core machine that alone caps the gateway far below
1,000 requests/s. This transport writes each request in one send, parses answers with httptools (the
parser uvicorn uses), and hands the body to httpx as it arrives, so streams stay unbuffered. It serves
`http://` only; `https://` (a real AOAI endpoint) goes through httpx's own transport.

    >>> client = upstream_client(timeout=30)
    >>> client.timeout.read
    30
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from http.cookiejar import CookieJar
from typing import Any, cast

import httptools
import httpx

_END = object()  # marks the end of a body in a connection's chunk queue


class _Connection(asyncio.Protocol):
    """One keep-alive connection: sends a request, parses the answer, queues body chunks for the reader."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_done: asyncio.Future[int] | None = None
        self.chunks: asyncio.Queue[object] = asyncio.Queue()
        self.closed = False
        self.reusable = False
        self.error: Exception | None = None
        self.received = False  # any byte of an answer to the current request

    # -- asyncio.Protocol --
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's

    def data_received(self, data: bytes) -> None:
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"invalid answer from the backend: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(httpx.RemoteProtocolError("the backend closed the connection"))

    def _fail(self, error: Exception) -> None:
        self.reusable = False
        if self.error is None:
            self.error = error
        if self.head_done is not None and not self.head_done.done():
            self.head_done.set_exception(error)
        self.chunks.put_nowait(error)
        if self.transport is not None:
            self.transport.close()

    # -- httptools callbacks --
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self.head_done is not None and not self.head_done.done():
            self.head_done.set_result(self.parser.get_status_code())

    def on_body(self, body: bytes) -> None:
        self.chunks.put_nowait(bytes(body))

    def on_message_complete(self) -> None:
        self.reusable = self.parser.should_keep_alive()
        self.chunks.put_nowait(_END)

    # -- used by the transport --
    def start(self, payload: bytes) -> asyncio.Future[int]:
        self.headers = []
        self.chunks = asyncio.Queue()
        self.reusable = False
        self.received = False
        self.head_done = asyncio.get_running_loop().create_future()
        assert self.transport is not None
        self.transport.write(payload)
        return self.head_done

    def close(self) -> None:
        self.reusable = False
        if self.transport is not None:
            self.transport.close()


class _Body(httpx.AsyncByteStream):
    """The answer's body as it arrives; gives the connection back to the pool when fully read."""

    def __init__(
        self, transport: LoopbackTransport, key: tuple[str, int], conn: _Connection, read_timeout: float | None
    ):
        self.transport = transport
        self.key = key
        self.conn = conn
        self.read_timeout = read_timeout
        self.done = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        conn = self.conn
        chunks = conn.chunks
        while True:
            if not chunks.empty():  # usually the whole body is already in: no timer needed
                item = chunks.get_nowait()
            else:
                try:
                    item = await asyncio.wait_for(chunks.get(), self.read_timeout)
                except TimeoutError:
                    conn.close()
                    raise httpx.ReadTimeout("the backend stopped sending") from None
            if item is _END:
                self.done = True
                return
            if isinstance(item, Exception):
                raise item
            assert isinstance(item, bytes)
            yield item

    async def aclose(self) -> None:
        if self.done and self.conn.reusable and not self.conn.closed:
            self.transport._release(self.key, self.conn)
        else:
            self.conn.close()


class LoopbackTransport(httpx.AsyncBaseTransport):
    """Keep-alive HTTP/1.1 over plain TCP, pooled per host and port."""

    def __init__(self, max_idle_per_host: int = 512) -> None:
        self.max_idle = max_idle_per_host
        self._idle: dict[tuple[str, int], deque[_Connection]] = {}

    def _release(self, key: tuple[str, int], conn: _Connection) -> None:
        idle = self._idle.setdefault(key, deque())
        if len(idle) < self.max_idle:
            idle.append(conn)
        else:
            conn.close()

    def _idle_connection(self, key: tuple[str, int]) -> _Connection | None:
        idle = self._idle.get(key)
        while idle:
            candidate = idle.pop()
            if not candidate.closed:
                return candidate
        return None

    async def _connect(self, host: str, port: int, timeout: float | None) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(loop.create_connection(_Connection, host, port), timeout)
        except TimeoutError:
            raise httpx.ConnectTimeout(f"connecting to {host}:{port} timed out") from None
        except OSError as exc:
            raise httpx.ConnectError(f"cannot connect to {host}:{port}: {exc.strerror or exc}") from None
        return conn

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        host = url.host
        port = url.port or 80
        key = (host, port)
        timeouts = request.extensions.get("timeout", {})
        payload = _serialize(request)
        read_timeout = timeouts.get("read")
        conn = self._idle_connection(key)
        try:
            if conn is not None:
                try:
                    status = await asyncio.wait_for(conn.start(payload), read_timeout)
                except httpx.RemoteProtocolError:
                    if conn.received:
                        raise
                    # The member closed this idle connection as the request went out (keep-alive timeout):
                    # it produced no answer, so the request goes again on a fresh connection, once.
                    conn.close()
                    conn = None
            if conn is None:
                conn = await self._connect(host, port, timeouts.get("connect"))
                status = await asyncio.wait_for(conn.start(payload), read_timeout)
        except TimeoutError:
            if conn is not None:
                conn.close()
            raise httpx.ReadTimeout("the backend did not answer in time") from None
        except httpx.RemoteProtocolError:
            if conn is not None:
                conn.close()
            raise
        return httpx.Response(
            status,
            headers=conn.headers,
            stream=_Body(self, key, conn, read_timeout),
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def aclose(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()


def _serialize(request: httpx.Request) -> bytes:
    body = request.content  # the gateway always sends a body it has already read
    url = request.url
    target = url.raw_path.decode("ascii")
    lines = [f"{request.method} {target} HTTP/1.1", f"host: {url.netloc.decode('ascii')}"]
    for name, value in request.headers.raw:
        lowered = name.lower()
        if lowered in (b"host", b"content-length", b"transfer-encoding", b"connection"):
            continue
        lines.append(f"{name.decode('latin-1')}: {value.decode('latin-1')}")
    lines.append(f"content-length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def upstream_client(
    timeout: float, plain: LoopbackTransport | None = None, max_connections: int = 2000
) -> httpx.AsyncClient:
    """The gateway's shared client: the lean transport (`plain`) for http://, httpx's own (TLS) for https://."""
    tls = httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=500))
    return httpx.AsyncClient(
        timeout=timeout,
        mounts={"http://": plain or LoopbackTransport(), "https://": tls},
        trust_env=False,
        cookies=_NoCookies(),
    )


class _NoCookies(CookieJar):
    """A gateway keeps no cookies from its backends (and httpx's cookie parsing is costly per response)."""

    def extract_cookies(self, response: Any, request: Any) -> None:
        return None
