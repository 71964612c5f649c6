"""The gateway's own answers, shaped like AOAI's errors: `{"error": {"code": ..., "message": ...}}` (credential
refusals take APIM's own shape: `harness.aoai.errors.apim_error_body`).

>>> gateway_error(404, "DeploymentNotFound", "no such deployment").body
b'{"error":{"code":"DeploymentNotFound","message":"no such deployment"}}'
"""

from __future__ import annotations

from starlette.responses import Response, StreamingResponse

from harness.aoai.bodies import SLICED_FROM_BYTES, SlicedBody
from harness.aoai.errors import JSON, error_body


def gateway_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(error_body(code, message), status_code=status, headers=headers, media_type=JSON)


def relayed(body: bytes, status: int, headers: dict[str, str], media_type: str | None = None) -> Response:
    """An answer as the gateway sends it: a large one (a backend's 2,048-input embeddings answer) a slice per turn
    of the event loop, so the requests behind it are not held up while it goes out."""
    if len(body) < SLICED_FROM_BYTES:
        return Response(body, status_code=status, headers=headers, media_type=media_type)
    sliced = SlicedBody([body])
    return StreamingResponse(sliced, status_code=status, headers={**headers, **sliced.headers}, media_type=media_type)
