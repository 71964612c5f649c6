"""Relaying a member's stream: its chunks as they arrive, and an abort when it breaks off after the headers.

Once the 200 and its headers have gone out, the only honest way to tell the client that the answer is cut
is to abort its connection (as Envoy and APIM do): a chunked body ended cleanly reads as a whole answer.
Under uvicorn an exception from the body iterator after the response has started does exactly that (the
connection closes without the terminating chunk), so the relay raises `StreamCut`; the traceback uvicorn
would log for it is dropped, as the gateway log already has the row (outcome `upstream_error`).
"""

from __future__ import annotations

import contextlib

import httpx

from harness.errors import quiet_server_tracebacks
from harness.gateway.breaker import BACKEND_PROTOCOL_ERROR, BACKEND_TIMEOUT
from harness.gateway.proxy import UpstreamFailure


class StreamCut(Exception):
    """The member's stream broke off after the headers went out: the client connection is to be aborted."""


class UpstreamChunks:
    """The member's body chunk by chunk; a read that fails or times out raises an UpstreamFailure.

    `first()` waits for the first chunk before anything goes to the client, so a member that sends its
    headers and then nothing within the timeout still gets a 504 rather than a 200 with an empty body.
    """

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._chunks = response.aiter_raw()

    async def first(self) -> bytes:
        """The first chunk with bytes in it (b"" when the body is empty)."""
        async for chunk in self:
            if chunk:
                return chunk
        return b""

    def __aiter__(self) -> UpstreamChunks:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self._chunks.__anext__()
        except StopAsyncIteration:
            raise
        except httpx.TimeoutException as exc:
            raise UpstreamFailure(BACKEND_TIMEOUT, 504, f"the backend stopped sending ({type(exc).__name__})") from None
        except Exception as exc:  # a connection cut, a broken chunked body, an in-process backend's crash
            raise UpstreamFailure(
                BACKEND_PROTOCOL_ERROR, 502, f"the backend's answer broke off ({type(exc).__name__})"
            ) from None

    async def aclose(self) -> None:
        """Give the connection back (or close it, when the body was not read to its end)."""
        with contextlib.suppress(Exception):
            await self.response.aclose()


quiet_server_tracebacks(StreamCut)
