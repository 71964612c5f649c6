"""The reference gateway's state for a run: pools, breakers, token limiter, metrics, log and upstream client.

Built once per gateway (per replica with `gateway.replicas`: each keeps its own counters and breakers, as
APIM's gateway units do, unless `gateway.shared_state: redis` shares them through
`harness.gateway.shared_state`) from the scenario; every request's `Exchange` (harness.gateway.exchange)
reads and updates it.
"""

from __future__ import annotations

from pathlib import Path

import httpx
from starlette.requests import Request
from starlette.responses import Response

from harness.clock import Clock
from harness.errors import ScenarioError
from harness.gateway.breaker import Transition
from harness.gateway.forwarding import build_breakers, deployment_routes
from harness.gateway.identity import Identifier
from harness.gateway.log import GatewayLog
from harness.gateway.metrics import OPENMETRICS_CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE, TokenMetrics
from harness.gateway.shared_state import SharedState, SharedStateMetrics, SharedTokenLimiter
from harness.gateway.throttle_metrics import ThrottleMetrics
from harness.gateway.token_limit import Ticket, TokenLimiter
from harness.gateway.transport import LoopbackTransport
from harness.gateway.transport import upstream_client as upstream_client_for
from harness.records import GATEWAY_LOG, SHARED_STATE_ENDED, shared_state_row
from harness.scenario import Scenario

GATEWAY_LOG_NAME = GATEWAY_LOG


class Gateway:
    """The gateway's state: pools, breakers, token limiter, metrics, log and the shared upstream client."""

    def __init__(
        self,
        scenario: Scenario,
        clock: Clock,
        upstreams: dict[str, str],
        log_dir: Path | None,
        upstream_client: httpx.AsyncClient | None = None,
        keep_log_rows: bool = False,
        replica: int | None = None,
        shared_prefix: str = "harness:",
    ) -> None:
        """`shared_prefix` names the run's keys on Redis with `shared_state: redis` (every replica the same)."""
        config = scenario.gateway
        # which of `gateway.replicas` this is, named in its answers and log rows; None when it is the only one
        self.replica = None if replica is None else str(replica)
        self.config = config
        self.clock = clock
        self.log = GatewayLog(log_dir / GATEWAY_LOG_NAME if log_dir is not None else None, keep=keep_log_rows)
        members = config.pool_members(b.name for b in scenario.backends)
        for member in members:
            if member.backend not in upstreams:
                raise ScenarioError("gateway.pool", f"backend '{member.backend}' has no URL to forward to")
        self.upstreams = {name: httpx.URL(url.rstrip("/")) for name, url in upstreams.items()}
        self.backends = {b.name: b for b in scenario.backends}
        self.shared: SharedState | None = None
        self.limiter: TokenLimiter | None = None
        if config.shared_state == "redis":
            if config.redis_url is None:
                raise ScenarioError("gateway.redis_url", "is needed by a gateway started on its own")
            shared = self.shared = SharedState(config.redis_url, shared_prefix, clock, self._on_shared_state)
            self.breakers = build_breakers(config, members, clock, self._on_transition, shared.breaker)
            if config.token_limit is not None:
                self.limiter = SharedTokenLimiter(config.token_limit, clock, shared)
        else:
            self.breakers = build_breakers(config, members, clock, self._on_transition)
            if config.token_limit is not None:
                self.limiter = TokenLimiter(config.token_limit, clock)
        self.deployments = deployment_routes(scenario, members, self.breakers)
        self.metrics = TokenMetrics(config.metrics.dimensions, clock, config.metrics.max_series)
        self.throttling = ThrottleMetrics(
            self.breakers, self.limiter, clock, config.metrics.keys_shown, config.metrics.exemplars
        )
        self.metrics.registry.register(self.throttling)
        if self.shared is not None:
            self.metrics.registry.register(SharedStateMetrics(self.shared))
        self.log.add_source(self.metrics.drain, self.metrics.drain_lines)
        self._urls: dict[tuple[str, bytes], httpx.URL] = {}
        self.timeout = config.timeout / clock.scale  # httpx waits in wall seconds
        self._own_client = upstream_client is None
        # With its own client, plain-http members are reached through the lean transport directly, which
        # skips the client's per-request machinery (auth, redirects, hooks); the client still serves https.
        self.direct: LoopbackTransport | None = LoopbackTransport() if upstream_client is None else None
        self.client = upstream_client or upstream_client_for(self.timeout, self.direct)
        self.identifier = Identifier(config.auth, clock)  # reads a JWKS file or URL now: a bad one stops the start

    def upstream_url(self, member: str, target: bytes) -> httpx.URL:
        """The member's URL for a path and query; cached, as a few targets repeat all run long."""
        url = self._urls.get((member, target))
        if url is None:
            if len(self._urls) > 4096:
                self._urls.clear()
            url = self._urls[(member, target)] = self.upstreams[member].copy_with(raw_path=target)
        return url

    def wall_now(self) -> float:
        return self.clock.wall()

    def region_of(self, member: str) -> str | None:
        return self.backends[member].region

    def read_shared_trips(self, ticket: Ticket | None) -> None:
        """Open the breakers of members another replica tripped: already done by a shared admission (`ticket`),
        else one Redis read; nothing without shared state."""
        if self.shared is not None and (ticket is None or not ticket.shared):
            self.shared.read_trips()

    def _on_shared_state(self, state: str, reason: str, fallbacks: int) -> None:
        self.log.write(
            shared_state_row(
                t=self.clock.now(),
                t_wall=self.clock.wall(),
                replica=self.replica,
                shared_state=state,
                reason=reason,
                fallbacks=fallbacks,
            )
        )

    def _on_transition(self, transition: Transition) -> None:
        self.log.breaker(transition, self.clock.wall(), self.replica)
        self.throttling.transition(transition)

    async def aclose(self) -> None:
        """Flush the log and close the upstream client (when the gateway made it)."""
        if self._own_client:
            await self.client.aclose()
        if self.shared is not None:
            fallbacks = sum(self.shared.fallbacks.values())
            if fallbacks:  # the replica's last count, for the report
                self._on_shared_state(SHARED_STATE_ENDED, "run ended", fallbacks)
            self.shared.close()
        await self.log.aclose()

    async def metrics_endpoint(self, request: Request) -> Response:
        # exemplars exist only in the OpenMetrics format: served when asked for it, and exemplars are on
        if self.config.metrics.exemplars and OPENMETRICS_CONTENT_TYPE.split(";")[0] in request.headers.get(
            "accept", ""
        ):
            return Response(self.metrics.exposition(openmetrics=True), media_type=OPENMETRICS_CONTENT_TYPE)
        return Response(self.metrics.exposition(), media_type=PROMETHEUS_CONTENT_TYPE)
