"""Large answer bodies sent a slice at a time, so that one answer never holds a server's event loop.

A 2,048-input embeddings answer is some 40 MB. Written in one piece, the copy into the socket's buffer (and
everything queued behind it) waits; in slices of `SLICE_BYTES`, with the loop's turn given between slices,
other requests are answered while it goes out. The length is sent as `content-length`, as for any JSON answer.

    >>> import asyncio
    >>> body = SlicedBody([b"x" * (SLICE_BYTES + 1), b"y"])
    >>> async def read(): return [len(piece) async for piece in body]
    >>> asyncio.run(read()), body.headers
    ([262144, 1, 1], {'content-length': '262146'})
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

SLICE_BYTES = 256 * 1024
# Bodies up to this size go out in one piece: slicing them would only add turns of the loop.
SLICED_FROM_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class SlicedBody:
    """A body made of parts, iterated asynchronously in slices of at most `SLICE_BYTES` (each cut as it is sent,
    not before) with a turn of the event loop after each."""

    parts: list[bytes]

    @property
    def headers(self) -> dict[str, str]:
        return {"content-length": str(sum(len(part) for part in self.parts))}

    def __bytes__(self) -> bytes:
        return b"".join(self.parts)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for part in self.parts:
            view = memoryview(part)
            for at in range(0, len(part), SLICE_BYTES):
                yield bytes(view[at : at + SLICE_BYTES])
                await asyncio.sleep(0)  # the socket may take it all at once: give the loop its turn anyway
