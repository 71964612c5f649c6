"""The reference gateway's ASGI app: AOAI routes in front of a backend pool, with APIM's GenAI policies.

One request goes: credentials -> body -> deployment -> token limit -> pool member (breaker, retry) ->
answer relayed with `x-backend`, `x-gateway-request-id` and the token headers -> tokens settled, metrics
and one log row. Every gateway-made answer is an AOAI-shaped JSON error.

    >>> from harness.clock import VirtualClock
    >>> from harness.scenario import load_scenario_text
    >>> app = build_gateway_app(load_scenario_text("{}"), VirtualClock(), {"aoai": "http://127.0.0.1:1"}, None)
    >>> sorted(app.state.gateway.deployments)
    ['gpt-4o']
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from harness.aoai.refusals import BAD_REQUEST, REFUSAL_HEADER
from harness.aoai.routes import route_patterns
from harness.clock import Clock
from harness.gateway.exchange import Exchange
from harness.gateway.replies import gateway_error
from harness.gateway.state import GATEWAY_LOG_NAME, Gateway
from harness.scenario import Scenario

__all__ = ["GATEWAY_LOG_NAME", "Gateway", "build_gateway_app"]


def build_gateway_app(
    scenario: Scenario,
    clock: Clock,
    upstreams: dict[str, str],
    log_dir: Path | None,
    upstream_client: httpx.AsyncClient | None = None,
    *,
    keep_log_rows: bool = False,
    replica: int | None = None,
    shared_prefix: str = "harness:",
) -> Starlette:
    """The gateway of `scenario`, forwarding to `upstreams` (backend name -> base URL) on `clock`.

    `upstream_client` replaces the gateway's own httpx client (tests wire it to in-process mocks);
    `keep_log_rows` keeps the log rows in `app.state.gateway.log.rows` as well; `replica` names this gateway
    among `gateway.replicas` (in the x-gateway-replica header and its log rows); `shared_prefix` names the
    run's keys with `gateway.shared_state: redis`.
    """
    gateway = Gateway(scenario, clock, upstreams, log_dir, upstream_client, keep_log_rows, replica, shared_prefix)

    def route(path: str, operation: str, by_path: bool) -> Route:
        async def endpoint(request: Request) -> Response:
            gateway.log.start()
            return await Exchange(gateway, request, operation).run(
                request.path_params["deployment"] if by_path else None
            )

        return Route(path, endpoint, methods=["POST"])

    routes = [Route("/metrics", gateway.metrics_endpoint, methods=["GET"])]
    for pattern, operation, by_path in route_patterns():
        routes.append(route(pattern, operation, by_path))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        gateway.log.start()
        # Everything built so far (modules, the tokenizer, the scenario) lives as long as the server: leave it
        # out of the collector's full passes, which would otherwise walk it again and again as callers come.
        gc.freeze()
        try:
            yield
        finally:
            await gateway.aclose()

    async def http_error(request: Request, exc: Exception) -> Response:
        # unknown routes and wrong methods answer like every other gateway error: AOAI-shaped JSON
        status = getattr(exc, "status_code", 500)
        code = {404: "NotFound", 405: "MethodNotAllowed"}.get(status, str(status))
        message = f"{request.method} {request.url.path}: {getattr(exc, 'detail', '') or 'not served here'}."
        return gateway_error(
            status, code, message, {REFUSAL_HEADER: BAD_REQUEST, **(getattr(exc, "headers", None) or {})}
        )

    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: http_error})
    app.state.gateway = gateway
    return app
