"""AOAI-shaped error bodies: `{"error": {"code": ..., "message": ...}}`.

>>> error_body("DeploymentNotFound", "no such deployment")
b'{"error":{"code":"DeploymentNotFound","message":"no such deployment"}}'
"""

from __future__ import annotations

import json
from typing import Any

FAULT_CODES = {
    500: "InternalServerError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
    408: "Timeout",
}


def error_body(code: str, message: str, **extra: Any) -> bytes:
    return json.dumps({"error": {"code": code, "message": message, **extra}}, separators=(",", ":")).encode()


def rate_limit_body(deployment: str, what: str, retry_after_s: int) -> bytes:
    """The 429 body; its message says when to retry, as AOAI's does."""
    return error_body(
        "429",
        f"The {what} limit of deployment '{deployment}' has been reached for now. "
        f"Please retry after {retry_after_s} seconds.",
    )


def fault_body(status: int) -> bytes:
    code = FAULT_CODES.get(status, str(status))
    return error_body(code, f"The service could not complete the request ({status}). Please try again.")
