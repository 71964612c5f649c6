"""Forwarding to a pool member over the shared `httpx.AsyncClient`, and relaying its answer.

Requests are sent with their body already read (so a retry can re-send it); answers are either read whole
(JSON) or relayed chunk by chunk as they arrive (SSE), never buffered. Transport failures come back as an
`UpstreamFailure` with APIM-style reasons the breaker counts, and the status the client gets (502/504).

    >>> upstream_headers({"content-type": "application/json", "host": "gw", "api-key": "k"}, "secret", "gw-1")
    {'content-type': 'application/json', 'api-key': 'secret', 'x-gateway-request-id': 'gw-1', 'accept-encoding': 'identity'}
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from email.utils import parsedate_to_datetime

import httpx

from harness.gateway.breaker import BACKEND_CONNECTION_FAILURE, BACKEND_PROTOCOL_ERROR, BACKEND_TIMEOUT

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
CREDENTIALS = frozenset({"api-key", "authorization", "ocp-apim-subscription-key"})


class UpstreamFailure(Exception):
    """No usable answer came back from a member: `reason` for the breaker, `status` for the client."""

    def __init__(self, reason: str, status: int, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.status = status
        self.detail = detail


def upstream_headers(
    incoming: Mapping[str, str],
    backend_key: str | None,
    gateway_request_id: str,
    keep_client_key: bool = True,
) -> dict[str, str]:
    """Headers sent to a member: the client's, minus hop-by-hop ones, with the member's own key when it has one.

    Without a member key the client's credentials pass through (a gateway fronting real AOAI with the
    caller's key); `keep_client_key=False` drops a key that was meant for the gateway itself.
    """
    headers: dict[str, str] = {}
    for name, value in incoming.items():
        if name in HOP_BY_HOP:
            continue
        if name in CREDENTIALS and (backend_key is not None or (not keep_client_key and name != "authorization")):
            continue
        headers[name] = value
    if backend_key is not None:
        headers["api-key"] = backend_key
    headers["x-gateway-request-id"] = gateway_request_id
    headers["accept-encoding"] = "identity"  # the gateway reads usage from bodies, so no compression upstream
    return headers


def downstream_headers(upstream: httpx.Headers) -> dict[str, str]:
    """The member's response headers the client gets (x-ms-region, x-ratelimit-*, retry-after, ids, ...)."""
    return {name: value for name, value in upstream.items() if name not in HOP_BY_HOP}


async def open_upstream(
    client: httpx.AsyncClient, url: str, headers: dict[str, str], body: bytes, timeout: float
) -> httpx.Response:
    """Send a request and return once the answer's headers are in (the body is read by the caller)."""
    request = client.build_request("POST", url, content=body, headers=headers, timeout=timeout)
    try:
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


def retry_after_seconds(headers: httpx.Headers) -> float | None:
    """The member's advice in seconds: `retry-after-ms` first, then `retry-after` (seconds or an HTTP date)."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            value = float(millis) / 1000
            if math.isfinite(value) and value >= 0:
                return value
        except ValueError:
            pass
    text = headers.get("retry-after")
    if not text:
        return None
    try:
        value = float(text)
        return value if math.isfinite(value) and value >= 0 else None
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    date = headers.get("date")
    try:
        now = parsedate_to_datetime(date) if date else None
    except (TypeError, ValueError):
        now = None
    return max(0.0, (when - now).total_seconds()) if now is not None else None
