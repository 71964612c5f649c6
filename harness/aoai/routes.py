"""The AOAI routes the harness serves and sends, and the operation each one is.

>>> operation_of_suffix("chat/completions")
'chat'
>>> deployment_path("embeddings", "text-embedding-3-small", "2024-10-21")
'/openai/deployments/text-embedding-3-small/embeddings?api-version=2024-10-21'
>>> endpoint_base("https://my-aoai.openai.azure.com/openai/")
'https://my-aoai.openai.azure.com'
"""

from __future__ import annotations

# route suffix -> operation, in the order the servers register them
SUFFIX_OPERATIONS = {"chat/completions": "chat", "completions": "completions", "embeddings": "embeddings"}
OPERATIONS = tuple(SUFFIX_OPERATIONS.values())
OPERATION_SUFFIXES = {operation: suffix for suffix, operation in SUFFIX_OPERATIONS.items()}

API_PREFIX = "/openai"  # every route starts with it
DEPLOYMENT_ROUTE = API_PREFIX + "/deployments/{deployment}/"  # + suffix; the deployment is in the path
V1_ROUTE = "/openai/v1/"  # + suffix; the model is in the body


def endpoint_base(url: str) -> str:
    """The endpoint the routes are joined to: a trailing `/openai` (and `/`) dropped, as a URL copied with the
    API's prefix still on it would otherwise send `/openai/openai/deployments/...` and find no deployment."""
    base = url.rstrip("/")
    return base.removesuffix(API_PREFIX).rstrip("/") if base.endswith(API_PREFIX) else base


def operation_of_suffix(suffix: str) -> str:
    return SUFFIX_OPERATIONS[suffix]


def deployment_path(operation: str, deployment: str, api_version: str) -> str:
    """The path and query of a request on the deployments route."""
    return f"/openai/deployments/{deployment}/{OPERATION_SUFFIXES[operation]}?api-version={api_version}"


def v1_path(operation: str) -> str:
    """The path of a request on the v1 route (the model goes in the body)."""
    return f"{V1_ROUTE}{OPERATION_SUFFIXES[operation]}"


def route_patterns() -> list[tuple[str, str, bool]]:
    """(Starlette path pattern, operation, deployment in the path) for every route a server registers."""
    patterns = []
    for suffix, operation in SUFFIX_OPERATIONS.items():
        patterns.append((DEPLOYMENT_ROUTE + suffix, operation, True))
        patterns.append((V1_ROUTE + suffix, operation, False))
    return patterns
