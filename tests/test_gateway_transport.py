"""The gateway's lean HTTP/1.1 transport over real loopback sockets: keep-alive, streaming, closed connections."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from harness.gateway.transport import LoopbackTransport, upstream_client

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head + await reader.readexactly(length)


def _answer(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n%s" % (
        len(body),
        extra,
        body,
    )


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    servers: list[asyncio.Server] = []

    async def start(handler: Handler) -> str:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        servers.append(server)
        return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


async def test_requests_reuse_one_keep_alive_connection(serve: Callable[[Handler], Awaitable[str]]) -> None:
    connections = 0
    seen: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while True:
            try:
                seen.append(await _read_request(reader))
            except asyncio.IncompleteReadError:
                break
            writer.write(_answer(b'{"n": %d}' % len(seen)))
        writer.close()

    url = await serve(handler)
    client = upstream_client(timeout=5)
    try:
        for n in (1, 2, 3):
            response = await client.post(url + "/x?api-version=1", content=b'{"a": 1}', headers={"x-id": str(n)})
            assert response.json() == {"n": n}
    finally:
        await client.aclose()
    assert connections == 1
    assert seen[0].startswith(b"POST /x?api-version=1 HTTP/1.1\r\n")
    assert b"\r\nx-id: 1\r\n" in seen[0] and seen[0].endswith(b'\r\n\r\n{"a": 1}')


async def test_chunked_stream_arrives_piece_by_piece(serve: Callable[[Handler], Awaitable[str]]) -> None:
    first_seen = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        writer.write(b"6\r\ndata: \r\n")
        await writer.drain()
        await first_seen.wait()  # the rest is sent only once the client has the first piece: no buffering
        writer.write(b"3\r\none\r\n0\r\n\r\n")
        await writer.drain()
        writer.close()

    url = await serve(handler)
    transport = LoopbackTransport()
    request = httpx.Request("POST", url + "/s", content=b"{}", extensions={"timeout": {"read": 5, "connect": 5}})
    response = await transport.handle_async_request(request)
    pieces = []
    async for chunk in response.aiter_raw():
        pieces.append(chunk)
        first_seen.set()
    await response.aclose()
    await transport.aclose()
    assert pieces == [b"data: ", b"one"]


async def test_an_idle_connection_closed_by_the_server_is_replaced(serve: Callable[[Handler], Awaitable[str]]) -> None:
    connections = 0
    close_now = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await _read_request(reader)
        writer.write(_answer(b"{}"))
        await writer.drain()
        if connections == 1:
            await close_now.wait()
            writer.transport.abort()  # drop the kept-alive connection without a word
            return
        writer.close()

    url = await serve(handler)
    client = upstream_client(timeout=5)
    try:
        assert (await client.post(url, content=b"{}")).status_code == 200
        close_now.set()
        await asyncio.sleep(0)  # let the server act on the event (no time passes for any window)
        assert (await client.post(url, content=b"{}")).status_code == 200
    finally:
        await client.aclose()
    assert connections == 2


async def test_a_body_cut_short_is_a_protocol_error(serve: Callable[[Handler], Awaitable[str]]) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly part")
        await writer.drain()
        writer.close()

    url = await serve(handler)
    client = upstream_client(timeout=5)
    try:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post(url, content=b"{}")
    finally:
        await client.aclose()


async def test_unreachable_and_silent_servers_raise_httpx_errors(serve: Callable[[Handler], Awaitable[str]]) -> None:
    done = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        await done.wait()  # no answer while the client waits
        writer.close()

    url = await serve(silent)
    client = upstream_client(timeout=0.2)
    try:
        with pytest.raises(httpx.ReadTimeout):
            await client.post(url, content=b"{}")
        with pytest.raises(httpx.ConnectError):
            await client.post("http://127.0.0.1:1/", content=b"{}")
    finally:
        done.set()
        await client.aclose()
