"""The gateway's own answers, shaped like AOAI's errors: `{"error": {"code": ..., "message": ...}}`, except
credential refusals, which APIM answers in its own shape before any API policy runs.

>>> gateway_error(404, "DeploymentNotFound", "no such deployment").body
b'{"error":{"code":"DeploymentNotFound","message":"no such deployment"}}'
>>> apim_error_body(401, "Access denied.")
b'{"statusCode":401,"message":"Access denied."}'
"""

from __future__ import annotations

import json

from starlette.responses import Response

from harness.aoai.errors import JSON, error_body


def gateway_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(error_body(code, message), status_code=status, headers=headers, media_type=JSON)


def apim_error_body(status: int, message: str) -> bytes:
    """APIM's body for a request refused at its door (subscription key, validate-jwt)."""
    return json.dumps({"statusCode": status, "message": message}, separators=(",", ":")).encode()
