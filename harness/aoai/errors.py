"""The AOAI error body, `{"error": {"code": ..., "message": ...}}`, for every error the mock or the gateway makes.

>>> error_body("DeploymentNotFound", "no such deployment")
b'{"error":{"code":"DeploymentNotFound","message":"no such deployment"}}'
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from harness.compact_json import to_bytes

JSON = "application/json"
INVALID_REQUEST = "invalid_request_error"  # the `type` of every 400 about the request itself


def error_body(code: str, message: str, **extra: Any) -> bytes:
    if not extra:
        return _plain_error_body(code, message)
    return to_bytes({"error": {"code": code, "message": message, **extra}})


@lru_cache(maxsize=1024)
def _plain_error_body(code: str, message: str) -> bytes:
    # a few refusals repeat all run long (the same limit, the same wait): encoded once each
    return to_bytes({"error": {"code": code, "message": message}})


def invalid_request_body(code: str, message: str, param: str | None) -> bytes:
    """AOAI's answer to a request it will not read: `type` invalid_request_error and the parameter at fault.

    >>> invalid_request_body("integer_below_min_value", "Invalid n: below 1.", "n")
    b'{"error":{"code":"integer_below_min_value","message":"Invalid n: below 1.","type":"invalid_request_error","param":"n"}}'
    """
    return error_body(code, message, type=INVALID_REQUEST, param=param)


def error_code_of(body: bytes) -> str | None:
    """The `error.code` of an AOAI error body (None when the body is not one).

    >>> error_code_of(b'{"error":{"code":"429","message":"slow down"}}')
    '429'
    """
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    error = payload.get("error") if isinstance(payload, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, str) else None


def apim_error_body(status: int, message: str) -> bytes:
    """APIM's body for a request refused at its door (subscription key, validate-jwt), before any API policy.

    >>> apim_error_body(401, "Access denied.")
    b'{"statusCode":401,"message":"Access denied."}'
    """
    return to_bytes({"statusCode": status, "message": message})
