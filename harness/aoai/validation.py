"""What AOAI accepts as a request body, checked once for the mock and the gateway (sans-IO: bytes in, verdict out).

A body is read with `parse_body` (JSON, an object, not too large nor too deep) and, once the deployment (and so
its model) is known, checked with `check_request`: each known parameter of the right type and range, the
operation's required field present, max_tokens within the model's limit. A refusal is an `Invalid`: status, AOAI's error code, message
and the parameter it is about, rendered as AOAI's `invalid_request_error` body.

    >>> body = parse_body(b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}')
    >>> body, check_request(body, "chat", "gpt-4o")
    ({'messages': [{'role': 'user', 'content': 'hi'}], 'max_tokens': 5}, None)
    >>> check_request({"messages": 5}, "chat", "gpt-4o").message
    "Invalid type for 'messages': expected an array, but got an integer instead."
    >>> check_request({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 20000}, "chat", "gpt-4o").param
    'max_tokens'
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness.aoai.errors import error_body, invalid_request_body

# AOAI refuses larger bodies; the gateway has its own (configurable) limit in front of it.
MAX_BODY_BYTES = 4 * 1024 * 1024
# Deeper JSON is refused before anything walks it (a recursive reader would overflow the stack).
MAX_DEPTH = 64
# Integer parameters are 32-bit signed on the service.
MAX_INT = 2**31 - 1
CHAT_ROLES = ("system", "user", "assistant", "tool", "function", "developer")
# Inputs one embeddings request may carry (AOAI's limit, the same for every embeddings model).
MAX_EMBEDDING_INPUTS = 2048
# Most dimensions an embeddings model can shorten its vectors to, by model name prefix.
MAX_EMBEDDING_DIMENSIONS = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072}
# `best_of` as the completions API bounds it.
MAX_BEST_OF = 20
# api-version on the deployments route: a date, optionally a preview or alpha one. The first data-plane version
# AOAI served is the oldest it reads; a later date is taken as a version this mock was written before.
API_VERSION_FORMAT = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(-preview|-alpha)?$")
OLDEST_API_VERSION = "2022-03-01-preview"
# Most completion tokens one request may ask for, by model name prefix (longest prefix wins).
MAX_COMPLETION_TOKENS = {
    "gpt-35-turbo": 4096,
    "gpt-3.5-turbo": 4096,
    "gpt-4": 8192,
    "gpt-4-turbo": 4096,
    "gpt-4o": 16384,
    "gpt-4o-mini": 16384,
    "gpt-4.1": 32768,
    "o1": 100_000,
    "o3": 100_000,
    "o4-mini": 100_000,
}


@dataclass(frozen=True, slots=True)
class Invalid:
    """A request AOAI refuses: HTTP status, error code, message and the parameter at fault (None: the body)."""

    status: int
    code: str
    message: str
    param: str | None = None
    plain: bool = False  # the service's bare `{"error": {"code", "message"}}` rather than an invalid_request_error

    def body(self) -> bytes:
        if self.plain:
            return error_body(self.code, self.message)
        return invalid_request_body(self.code, self.message, self.param)


def too_large(limit: int) -> Invalid:
    """The 413 of a body over `limit` bytes."""
    return Invalid(413, "RequestEntityTooLarge", f"The request body is larger than {limit} bytes.")


def check_api_version(value: str | None) -> Invalid | None:
    """Why AOAI refuses the `api-version` query parameter of a deployments-route request (None: it reads it).

    Missing is a 400 that says so; one that is not a version at all finds no route, AOAI's bare 404; a date
    before the first version AOAI served is a version it does not support.

    >>> check_api_version("2024-10-21") is None, check_api_version("2025-04-01-preview") is None
    (True, True)
    >>> check_api_version("banana").status, check_api_version("2021-01-01").message
    (404, 'API version not supported')
    """
    if not value:
        return Invalid(400, "BadRequest", "The api-version query parameter is required.")
    match = API_VERSION_FORMAT.match(value)
    if match is None or not (1 <= int(match[2]) <= 12 and 1 <= int(match[3]) <= 31):
        return Invalid(404, "404", "Resource not found", plain=True)
    if value[:10] < OLDEST_API_VERSION[:10]:
        return Invalid(400, "BadRequest", "API version not supported", plain=True)
    return None


def parse_body(raw: bytes, max_body_bytes: int = MAX_BODY_BYTES) -> dict[str, Any] | Invalid:
    """A request body as AOAI reads it (a JSON object, not too large nor too deep), or why AOAI refuses it."""
    if len(raw) > max_body_bytes:
        return too_large(max_body_bytes)
    try:
        body = json.loads(raw, parse_constant=_no_constant)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return Invalid(
            400, "BadRequest", "We could not parse the JSON body of your request: it is not valid UTF-8 JSON."
        )
    if not isinstance(body, dict):
        return Invalid(400, "BadRequest", "The request body must be a JSON object.")
    if _depth_exceeds(body, MAX_DEPTH):
        return Invalid(400, "BadRequest", f"The request body is nested deeper than {MAX_DEPTH} levels.")
    return body


def check_request(body: dict[str, Any], operation: str, model: str) -> Invalid | None:
    """Why AOAI refuses a parsed `operation` body sent to a deployment of `model` (None: it does not).

    Each known parameter must have the right type and range, the operation's required field must be there,
    and max_tokens must be within what the model can write.
    """
    return _check_fields(body, operation) or _check_model_limits(body, model)


def _check_model_limits(body: dict[str, Any], model: str) -> Invalid | None:
    most = max_embedding_dimensions(model)
    dimensions = body.get("dimensions")
    if most is not None and isinstance(dimensions, int) and dimensions > most:
        return Invalid(
            400,
            "invalid_value",
            f"Invalid 'dimensions': this model makes vectors of at most {most} dimensions, but got "
            f"{_short(dimensions)} instead.",
            "dimensions",
        )
    limit = max_completion_tokens(model)
    for param in ("max_tokens", "max_completion_tokens"):
        value = body.get(param)
        if limit is not None and isinstance(value, int) and value > limit:
            return Invalid(
                400,
                "invalid_value",
                f"{param} is too large: {_short(value)}. This model supports at most {limit} completion tokens, "
                f"whereas you provided {_short(value)}.",
                param,
            )
    return None


def max_completion_tokens(model: str) -> int | None:
    """The most completion tokens `model` writes in one answer (None: not known, not checked).

    >>> max_completion_tokens("gpt-4o-mini"), max_completion_tokens("gpt-4-0613"), max_completion_tokens("x")
    (16384, 8192, None)
    """
    for prefix in sorted(MAX_COMPLETION_TOKENS, key=len, reverse=True):
        if model.startswith(prefix):
            return MAX_COMPLETION_TOKENS[prefix]
    return None


def max_embedding_dimensions(model: str) -> int | None:
    """The longest vector an embeddings `model` makes (None: not known, not checked).

    >>> max_embedding_dimensions("text-embedding-3-large"), max_embedding_dimensions("gpt-4o")
    (3072, None)
    """
    for prefix in sorted(MAX_EMBEDDING_DIMENSIONS, key=len, reverse=True):
        if model.startswith(prefix):
            return MAX_EMBEDDING_DIMENSIONS[prefix]
    return None


# -- the checks ------------------------------------------------------------------------------------------------

Check = Callable[[Any, str], "Invalid | None"]


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _depth_exceeds(value: Any, limit: int) -> bool:
    # iterative: the point is not to recurse over what a client sent
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(node, dict):
            stack.extend((child, depth + 1) for child in node.values() if isinstance(child, dict | list))
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node if isinstance(child, dict | list))
    return False


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _short(value: Any) -> str:
    """A value as a message quotes it: huge integers by their size, long text cut."""
    if isinstance(value, int) and abs(value) >= 10**30:
        return f"an integer of about {round(value.bit_length() * math.log10(2))} digits"
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _wrong_type(param: str, expected: str, value: Any) -> Invalid:
    return Invalid(
        400, "invalid_type", f"Invalid type for '{param}': expected {expected}, but got {_kind(value)} instead.", param
    )


def _integer(low: int, high: int = MAX_INT) -> Check:
    def check(value: Any, param: str) -> Invalid | None:
        if not isinstance(value, int) or isinstance(value, bool):
            return _wrong_type(param, "an integer", value)
        if value < low:
            return _out_of_range(param, value, "integer_below_min_value", f">= {low}")
        if value > high:
            return _out_of_range(param, value, "integer_above_max_value", f"<= {high}")
        return None

    return check


def _decimal(low: float, high: float) -> Check:
    def check(value: Any, param: str) -> Invalid | None:
        if not isinstance(value, int | float) or isinstance(value, bool):
            return _wrong_type(param, "a decimal", value)
        if value < low:
            return _out_of_range(param, value, "decimal_below_min_value", f">= {low:g}")
        if not value <= high:  # also 1e400, which JSON reads as infinity
            return _out_of_range(param, value, "decimal_above_max_value", f"<= {high:g}")
        return None

    return check


def _out_of_range(param: str, value: Any, code: str, bound: str) -> Invalid:
    kind, side = code.split("_")[0], "below minimum" if "below" in code else "above maximum"
    return Invalid(
        400,
        code,
        f"Invalid '{param}': {kind} {side} value. Expected a value {bound}, but got {_short(value)} instead.",
        param,
    )


def _boolean(value: Any, param: str) -> Invalid | None:
    return None if isinstance(value, bool) else _wrong_type(param, "a boolean", value)


def _string(value: Any, param: str) -> Invalid | None:
    return None if isinstance(value, str) else _wrong_type(param, "a string", value)


def _object(value: Any, param: str) -> Invalid | None:
    return None if isinstance(value, dict) else _wrong_type(param, "an object", value)


def _one_of(*choices: str) -> Check:
    def check(value: Any, param: str) -> Invalid | None:
        if not isinstance(value, str):
            return _wrong_type(param, "a string", value)
        if value not in choices:
            return _unsupported(param, value, choices)
        return None

    return check


def _unsupported(param: str, value: str, choices: tuple[str, ...]) -> Invalid:
    supported = ", ".join(f"'{c}'" for c in choices)
    return Invalid(
        400,
        "invalid_value",
        f"Invalid value for '{param}': '{_short(value)}'. Supported values are: {supported}.",
        param,
    )


def _stop(value: Any, param: str) -> Invalid | None:
    if isinstance(value, str):
        return None
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        return _wrong_type(param, "a string or an array of strings", value)
    if len(value) > 4:
        return Invalid(400, "array_above_max_length", f"Invalid '{param}': at most 4 stop sequences.", param)
    return None


def _stream_options(value: Any, param: str) -> Invalid | None:
    problem = _object(value, param)
    if problem is None and "include_usage" in value:
        problem = _boolean(value["include_usage"], f"{param}.include_usage")
    return problem


# Optional parameters every operation may carry (null means unset, as the service reads it).
COMMON: dict[str, Check] = {
    "model": _string,
    "user": _string,
    "stream": _boolean,
    "stream_options": _stream_options,
    "max_tokens": _integer(1),
    "max_completion_tokens": _integer(1),
    "temperature": _decimal(0, 2),
    "top_p": _decimal(0, 1),
    "n": _integer(1, 128),
    "presence_penalty": _decimal(-2, 2),
    "frequency_penalty": _decimal(-2, 2),
    "stop": _stop,
    "seed": _integer(-(2**63), 2**63 - 1),
    "logprobs": _boolean,
    "top_logprobs": _integer(0, 20),
    "logit_bias": _object,
}
BY_OPERATION: dict[str, dict[str, Check]] = {
    "chat": {"response_format": _object},
    "completions": {
        "best_of": _integer(0, MAX_BEST_OF),
        "echo": _boolean,
        "suffix": _string,
        "logprobs": _integer(0, 5),
    },
    "embeddings": {"dimensions": _integer(1), "encoding_format": _one_of("float", "base64")},
}
# Parameters of the completions API alone: the other operations do not know them.
COMPLETIONS_ONLY = ("best_of",)


def _unrecognized(param: str) -> Invalid:
    return Invalid(400, "unknown_parameter", f"Unrecognized request argument supplied: {param}", param)


def _best_of(body: dict[str, Any]) -> Invalid | None:
    """`best_of` against `n` and `stream`: it picks the best of that many candidates, so it cannot be fewer than
    the `n` returned, and a stream cannot wait for the best one."""
    best_of, n = body.get("best_of"), body.get("n")
    if not isinstance(best_of, int):
        return None
    if isinstance(n, int) and best_of < n:
        return Invalid(
            400, "invalid_value", f"best_of ({best_of}) must be greater than or equal to n ({n}).", "best_of"
        )
    if best_of > 1 and body.get("stream") is True:
        return Invalid(
            400, "invalid_value", "best_of cannot be used with stream: the answer is chosen at the end.", "best_of"
        )
    return None


def _check_fields(body: dict[str, Any], operation: str) -> Invalid | None:
    if operation != "completions":
        for param in COMPLETIONS_ONLY:
            if body.get(param) is not None:
                return _unrecognized(param)
    checks = {**COMMON, **BY_OPERATION.get(operation, {})}
    for param, check in checks.items():
        value = body.get(param)
        if value is not None:
            problem = check(value, param)
            if problem is not None:
                return problem
    if operation == "completions":
        problem = _best_of(body)
        if problem is not None:
            return problem
    if body.get("stream_options") is not None and body.get("stream") is not True:
        return Invalid(
            400,
            "invalid_value",
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            "stream_options",
        )
    required = {"chat": ("messages", _messages), "completions": ("prompt", _prompt), "embeddings": ("input", _input)}
    if operation not in required:
        return None
    param, check = required[operation]
    if body.get(param) is None:
        return Invalid(400, "missing_required_parameter", f"Missing required parameter: '{param}'.", param)
    return check(body[param], param)


def _non_empty_array(value: Any, param: str) -> Invalid | None:
    if not isinstance(value, list):
        return _wrong_type(param, "an array", value)
    if not value:
        return Invalid(
            400,
            "empty_array",
            f"Invalid '{param}': empty array. Expected an array with minimum length 1, but got an empty array instead.",
            param,
        )
    return None


def _messages(value: Any, param: str) -> Invalid | None:
    problem = _non_empty_array(value, param)
    if problem is not None:
        return problem
    for i, message in enumerate(value):
        where = f"{param}[{i}]"
        if not isinstance(message, dict):
            return _wrong_type(where, "an object", message)
        role = message.get("role")
        if role is None:
            return Invalid(
                400, "missing_required_parameter", f"Missing required parameter: '{where}.role'.", f"{where}.role"
            )
        problem = _one_of(*CHAT_ROLES)(role, f"{where}.role")
        if problem is not None:
            return problem
        problem = _content(message, where)
        if problem is not None:
            return problem
    return None


def _content(message: dict[str, Any], where: str) -> Invalid | None:
    param = f"{where}.content"
    content = message.get("content")
    if content is None:
        # only an assistant's turn that calls tools or functions may leave its content out
        if message.get("role") == "assistant" and ("tool_calls" in message or "function_call" in message):
            return None
        return Invalid(400, "missing_required_parameter", f"Missing required parameter: '{param}'.", param)
    if isinstance(content, str):
        return None
    if not isinstance(content, list):
        return _wrong_type(param, "one of a string or array of objects", content)
    for j, part in enumerate(content):
        if not isinstance(part, dict):
            return _wrong_type(f"{param}[{j}]", "an object", part)
        if not isinstance(part.get("type"), str):
            return Invalid(
                400,
                "missing_required_parameter",
                f"Missing required parameter: '{param}[{j}].type'.",
                f"{param}[{j}].type",
            )
        if part["type"] == "text" and not isinstance(part.get("text"), str):
            return _wrong_type(f"{param}[{j}].text", "a string", part.get("text"))
    return None


def _texts_or_tokens(value: Any, param: str, allow_empty_string: bool) -> Invalid | None:
    expected = "a string, an array of strings, or an array of token arrays"
    if isinstance(value, str):
        if not value and not allow_empty_string:
            return Invalid(400, "invalid_value", f"Invalid '{param}': the input must not be empty.", param)
        return None
    problem = _non_empty_array(value, param)
    if problem is not None:
        return problem
    for item in value:
        if isinstance(item, str) or (isinstance(item, int) and not isinstance(item, bool)):
            continue
        if isinstance(item, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in item):
            continue
        return _wrong_type(param, expected, value)
    return None


def _prompt(value: Any, param: str) -> Invalid | None:
    return _texts_or_tokens(value, param, allow_empty_string=True)


def _input(value: Any, param: str) -> Invalid | None:
    if isinstance(value, list) and value and not isinstance(value[0], int) and len(value) > MAX_EMBEDDING_INPUTS:
        # a list of token ids is one input; a list of texts or of token lists is one input per item
        return Invalid(
            400,
            "invalid_value",
            f"Too many inputs. The max number of inputs is {MAX_EMBEDDING_INPUTS}. Send them in several requests.",
            param,
        )
    return _texts_or_tokens(value, param, allow_empty_string=False)
