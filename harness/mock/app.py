"""The ASGI app of one mock AOAI resource: its routes (harness.aoai.routes) and AOAI-shaped 404/405 answers;
each request is handled by `harness.mock.handler`.

>>> from harness.clock import VirtualClock
>>> from harness.scenario import BackendInstance
>>> app = build_mock_app(BackendInstance(), VirtualClock(), MemoryLog(), seed=0)
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from harness.aoai.errors import JSON
from harness.aoai.routes import route_patterns
from harness.clock import Clock
from harness.mock.errors import http_error_body
from harness.mock.handler import MockBackend
from harness.mock.log import BackendLog, MemoryLog
from harness.scenario import BackendInstance

__all__ = ["MemoryLog", "build_mock_app"]


def build_mock_app(backend: BackendInstance, clock: Clock, log: BackendLog | None = None, seed: int = 0) -> Starlette:
    """The ASGI app of one mock AOAI resource (`backend`), on `clock`, writing rows to `log`.

    >>> from harness.clock import VirtualClock
    >>> app = build_mock_app(BackendInstance(name="east"), VirtualClock(), MemoryLog(), seed=1)
    >>> app.state.mock.backend.name
    'east'
    """
    mock = MockBackend(backend, clock, log, seed)

    def route(path: str, operation: str, by_path: bool) -> Route:
        async def endpoint(request: Request) -> Response:
            name = request.path_params["deployment"] if by_path else None
            return await mock.handle(request, operation, name)

        return Route(path, endpoint, methods=["POST"])

    routes = []
    for pattern, operation, by_path in route_patterns():
        routes.append(route(pattern, operation, by_path))
    app = Starlette(routes=routes, exception_handlers={404: _http_error, 405: _http_error})
    app.state.mock = mock
    return app


async def _http_error(request: Request, exc: Exception) -> Response:
    """An unknown route (404) or a wrong method (405), answered in AOAI's JSON error shape."""
    assert isinstance(exc, HTTPException)
    return Response(
        http_error_body(exc.status_code, request.method, request.url.path),
        status_code=exc.status_code,
        headers=exc.headers,
        media_type=JSON,
    )
