"""The gateway's own answers, shaped like AOAI's errors: `{"error": {"code": ..., "message": ...}}` (credential
refusals take APIM's own shape: `harness.aoai.errors.apim_error_body`).

>>> gateway_error(404, "DeploymentNotFound", "no such deployment").body
b'{"error":{"code":"DeploymentNotFound","message":"no such deployment"}}'
"""

from __future__ import annotations

from starlette.responses import Response

from harness.aoai.errors import JSON, error_body


def gateway_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(error_body(code, message), status_code=status, headers=headers, media_type=JSON)
