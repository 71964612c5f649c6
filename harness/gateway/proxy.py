"""Forwarding to a pool member over the shared `httpx.AsyncClient`, and relaying its answer.

Requests are sent with their body already read (so a retry can re-send it); answers are either read whole
(JSON) or relayed chunk by chunk as they arrive (SSE), never buffered. Transport failures come back as an
`UpstreamFailure` with APIM-style reasons the breaker counts, and the status the client gets (502/504).

    >>> sent = upstream_headers([(b"content-type", b"application/json"), (b"host", b"gw"), (b"api-key", b"k")], "s", "g1")
    >>> [name for name, _ in sent]
    [b'content-type', b'api-key', b'x-gateway-request-id', b'accept-encoding']
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

import httpx

from harness.aoai.headers import GATEWAY_REQUEST_ID
from harness.gateway.breaker import BACKEND_CONNECTION_FAILURE, BACKEND_PROTOCOL_ERROR, BACKEND_TIMEOUT
from harness.scenario.gateway import CREDENTIAL_HEADERS

# Not forwarded in either direction: they describe one connection, not the message.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "accept-encoding",
        "content-encoding",
    }
)
# The gateway's server sets these on every answer itself: relayed too, they would go out twice.
SERVER_OWN = frozenset({"date", "server"})
_HOP_BY_HOP_RAW = frozenset(name.encode() for name in HOP_BY_HOP)
_CREDENTIALS_RAW = frozenset(name.encode() for name in CREDENTIAL_HEADERS)
_GATEWAY_REQUEST_ID_RAW = GATEWAY_REQUEST_ID.encode()


class UpstreamFailure(Exception):
    """No usable answer came back from a member: `reason` for the breaker, `status` for the client."""

    def __init__(self, reason: str, status: int, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.status = status
        self.detail = detail


def upstream_headers(
    incoming: Iterable[tuple[bytes, bytes]],
    backend_key: str | None,
    gateway_request_id: str,
    keep_client_key: bool = True,
) -> list[tuple[bytes, bytes]]:
    """Headers sent to a member: the client's, minus hop-by-hop ones, with the member's own key when it has one.

    `incoming` are raw (lower-case) header pairs as the ASGI server gives them. Without a member key the
    client's credentials pass through (a gateway fronting real AOAI with the caller's key);
    `keep_client_key=False` drops a key that was meant for the gateway itself.
    """
    headers: list[tuple[bytes, bytes]] = []
    drop_keys = backend_key is not None
    for name, value in incoming:
        if name in _HOP_BY_HOP_RAW:
            continue
        if name in _CREDENTIALS_RAW and (drop_keys or (not keep_client_key and name != b"authorization")):
            continue
        headers.append((name, value))
    if backend_key is not None:
        headers.append((b"api-key", backend_key.encode("latin-1")))
    headers.append((_GATEWAY_REQUEST_ID_RAW, gateway_request_id.encode("latin-1")))
    headers.append((b"accept-encoding", b"identity"))  # the gateway reads usage from bodies: no compression
    return headers


def downstream_headers(upstream: httpx.Response) -> dict[str, str]:
    """The member's response headers the client gets (x-ms-region, x-ratelimit-*, retry-after, ids, ...).

    Read once from the raw pairs into a plain dict with lower-case names: httpx's own lookups re-decode
    every header on each `get`, which adds up on the hot path.
    """
    headers: dict[str, str] = {}
    for name, value in upstream.headers.raw:
        key = name.decode("latin-1").lower()
        if key not in HOP_BY_HOP and key not in SERVER_OWN:
            headers[key] = value.decode("latin-1")
    return headers


async def open_upstream(
    client: httpx.AsyncClient,
    url: httpx.URL,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    timeout: float,
    plain: httpx.AsyncBaseTransport | None = None,
) -> httpx.Response:
    """Send a request and return once the answer's headers are in (the body is read by the caller).

    `plain`, when given, carries http:// requests itself instead of the client.
    """
    # Built directly rather than with client.build_request: nothing needs merging, and it saves a URL parse.
    request = httpx.Request("POST", url, headers=headers, content=body, extensions={"timeout": _timeouts(timeout)})
    try:
        if plain is not None and url.scheme == "http":
            return await plain.handle_async_request(request)
        return await client.send(request, stream=True)
    except httpx.TimeoutException as exc:
        raise UpstreamFailure(
            BACKEND_TIMEOUT, 504, f"the backend did not answer in time ({type(exc).__name__})"
        ) from None
    except httpx.TransportError as exc:
        raise UpstreamFailure(
            BACKEND_CONNECTION_FAILURE, 502, f"the backend could not be reached ({type(exc).__name__})"
        ) from None
    except Exception as exc:  # an in-process backend that crashes surfaces its own exception here
        raise UpstreamFailure(BACKEND_PROTOCOL_ERROR, 502, f"the backend failed ({type(exc).__name__})") from None


@lru_cache(maxsize=8)
def _timeouts(seconds: float) -> dict[str, float]:
    return httpx.Timeout(seconds).as_dict()  # type: ignore[return-value]


async def read_body(response: httpx.Response) -> bytes:
    """The whole body of a non-streamed answer; a body cut short is an UpstreamFailure."""
    try:
        return await response.aread()
    except httpx.TimeoutException as exc:
        raise UpstreamFailure(BACKEND_TIMEOUT, 504, f"the backend stopped answering ({type(exc).__name__})") from None
    except Exception as exc:
        raise UpstreamFailure(
            BACKEND_PROTOCOL_ERROR, 502, f"the backend's answer broke off ({type(exc).__name__})"
        ) from None
    finally:
        await response.aclose()
