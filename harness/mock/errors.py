"""AOAI-shaped error bodies: `{"error": {"code": ..., "message": ...}}`.

>>> error_body("DeploymentNotFound", "no such deployment")
b'{"error":{"code":"DeploymentNotFound","message":"no such deployment"}}'
"""

from __future__ import annotations

__all__ = ["error_body", "fault_body", "rate_limit_body"]

from harness.aoai.errors import error_body

FAULT_CODES = {
    500: "InternalServerError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
    408: "Timeout",
}


def rate_limit_body(deployment: str, what: str, retry_after_s: int | None) -> bytes:
    """The 429 body; its message says when to retry, as AOAI's does (or only to retry later, when the answer
    tells no wait)."""
    when = "later" if retry_after_s is None else f"after {retry_after_s} seconds"
    return error_body(
        "429", f"The {what} limit of deployment '{deployment}' has been reached for now. Please retry {when}."
    )


def fault_body(status: int) -> bytes:
    code = FAULT_CODES.get(status, str(status))
    return error_body(code, f"The service could not complete the request ({status}). Please try again.")


def http_error_body(status: int, method: str, path: str) -> bytes:
    """The body of a 404 (no such route) or 405 (wrong method), as AOAI answers them.

    >>> http_error_body(404, "POST", "/openai/nope")
    b'{"error":{"code":"404","message":"Resource not found"}}'
    """
    if status == 405:
        return error_body("405", f"The method {method} is not allowed on {path}; use POST.")
    return error_body(str(status), "Resource not found")
