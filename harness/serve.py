"""`harness serve`: start the mock AOAI pool and the reference gateway on loopback, in one asyncio loop.

Every server binds its port first; once all listen, one JSON ready line per server goes to stdout (and,
atomically, to `--ready-file`), mock instances first, then the gateway. SIGTERM or Ctrl-C stops all of
them, flushes the logs and exits 0.

    harness serve --scenario scenarios/quickstart.yaml --only mock --ready-file /tmp/ready.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import json
import os
import signal
import socket
import sys
from collections.abc import Generator
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import Any

import uvicorn

from harness.clock import Clock, ScaledClock
from harness.errors import ServeError
from harness.mock import BACKEND_LOG_NAME, BackendLog, JsonlLog, NullLog, build_mock_app, mock_instances
from harness.scenario import Scenario, load_scenario

# Wall seconds an open stream may take to finish once asked to stop, before it is cut.
GRACEFUL_SHUTDOWN_S = 3
KEEP_ALIVE_S = 240  # wall seconds an idle keep-alive connection stays open (Azure load balancers: 4 min)


@dataclass
class Listener:
    """A bound socket, the app that will serve it, and the ready line announcing it."""

    app: Any
    sock: socket.socket
    ready: dict[str, Any]


def bind(host: str, port: int, what: str) -> socket.socket:
    """A listening TCP socket on host:port (0 = a free port); a taken port is a one-line ServeError."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        reason = "the port is already in use" if exc.errno == errno.EADDRINUSE else exc.strerror or str(exc)
        raise ServeError(f"{what}: cannot listen on {host}:{port}: {reason}") from None
    sock.setblocking(False)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def mock_listeners(scenario: Scenario, clock: Clock, log: BackendLog, host: str) -> list[Listener]:
    """One listener per mock instance (instances with a real `url` are not started)."""
    listeners: list[Listener] = []
    try:
        for backend in mock_instances(scenario):
            sock = bind(host, backend.port or 0, f"backend {backend.name}")
            app = build_mock_app(backend, clock, log, scenario.run.seed)
            ready = {
                "role": "mock",
                "name": backend.name,
                "url": url_of(sock),
                "region": backend.region,
                "deployments": list(backend.deployments),
            }
            listeners.append(Listener(app, sock, ready))
    except BaseException:
        for listener in listeners:
            listener.sock.close()
        raise
    return listeners


def gateway_upstreams(scenario: Scenario, mocks: list[Listener], only_gateway: bool) -> dict[str, str]:
    """Backend instance name -> base URL the gateway forwards to (a started mock, or the backend's `url`)."""
    started = {listener.ready["name"]: listener.ready["url"] for listener in mocks}
    upstreams: dict[str, str] = {}
    for index, backend in enumerate(scenario.backends):
        url = backend.url or started.get(backend.name)
        if not url:
            hint = "set its url" if only_gateway else "it was not started"
            raise ServeError(f"backends[{index}] ({backend.name}): the gateway has no URL for it ({hint})")
        upstreams[backend.name] = url.rstrip("/")
    return upstreams


def gateway_listeners(
    scenario: Scenario, clock: Clock, upstreams: dict[str, str], log_dir: Path | None, host: str
) -> list[Listener]:
    """The reference gateway, built by `harness.gateway.build_gateway_app` (imported only when needed): one
    per `gateway.replicas`, each on its own port with its own counters and breakers, all logging to one file."""
    try:
        build_gateway_app = import_module("harness.gateway").build_gateway_app
    except (ImportError, AttributeError):
        raise ServeError("the reference gateway is not available; start the mock pool alone with --only mock") from None
    config = scenario.gateway
    if config.shared_state != "none":
        # Refused rather than run with per-replica state, which would answer another question
        raise ServeError(
            "gateway.shared_state: redis is modelled by `harness simulate` only so far; "
            "a live run keeps state per replica (set gateway.shared_state=none)"
        )
    count = config.replicas
    listeners: list[Listener] = []
    try:
        for i in range(count):
            replica = i if count > 1 else None
            app = build_gateway_app(scenario, clock, upstreams, log_dir, replica=replica)
            # a fixed port is the first replica's; the others take the ports after it
            sock = bind(host, config.port + i if config.port else 0, "gateway")
            ready: dict[str, Any] = {
                "role": "gateway",
                "name": "gateway",
                "url": url_of(sock),
                "backends": list(upstreams),
            }
            if replica is not None:
                ready.update(name=f"gateway-{i}", replica=i)
            listeners.append(Listener(app, sock, ready))
    except BaseException:
        for listener in listeners:
            listener.sock.close()
        raise
    return listeners


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals to `serve` (several run in one loop) and says when it listens."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.listening = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.listening.set()


def _server(app: Any) -> _Server:
    config = uvicorn.Config(
        app,
        loop="none",
        http="httptools",
        lifespan="on",  # the gateway starts and closes its log and upstream client in its lifespan
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        backlog=2048,
        # Clients pool connections across long idle spells; uvicorn's default of 5 s closed them under their
        # feet ("server disconnected"). AOAI and APIM keep idle connections for minutes.
        timeout_keep_alive=KEEP_ALIVE_S,
    )
    return _Server(config)


def write_ready_file(path: Path, lines: list[str]) -> None:
    """Write the ready lines so that a reader sees either nothing or all of them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    os.replace(temp, path)


async def serve(listeners: list[Listener], clock: Clock, log: BackendLog, ready_file: Path | None) -> None:
    """Run every listener until SIGTERM/SIGINT; announce them once all listen."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    servers = [_server(listener.app) for listener in listeners]
    tasks = [
        asyncio.create_task(server.serve(sockets=[listener.sock]))
        for server, listener in zip(servers, listeners, strict=True)
    ]
    flusher = asyncio.create_task(_flush_every_second(log, clock))
    try:
        started: asyncio.Future[Any] = asyncio.ensure_future(
            asyncio.gather(*(server.listening.wait() for server in servers))
        )
        starting: list[asyncio.Future[Any]] = [started, *tasks]
        await asyncio.wait(starting, return_when=asyncio.FIRST_COMPLETED)
        if not started.done():  # a server died while starting
            started.cancel()
            raise ServeError("a server stopped while starting")
        lines = [json.dumps(listener.ready) for listener in listeners]
        if ready_file is not None:
            write_ready_file(ready_file, lines)
        sys.stdout.write("".join(line + "\n" for line in lines))
        sys.stdout.flush()
        running: list[asyncio.Future[Any]] = [asyncio.create_task(stop.wait()), *tasks]
        await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for server in servers:
            server.should_exit = True
        await asyncio.gather(*tasks, return_exceptions=True)
        flusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await flusher


async def _flush_every_second(log: BackendLog, clock: Clock) -> None:
    flush = getattr(log, "flush", None)
    if flush is None:
        return
    while True:
        await clock.asleep(clock.scale)  # one wall second
        flush()


def run(args: argparse.Namespace) -> int:
    """Entry point of `harness serve` (see cli.py for the arguments)."""
    # A server does not send the workload: its deployments are the load generator's concern
    scenario = load_scenario(args.scenario, args.overrides, workload=False)
    clock = ScaledClock(scenario.run.time_scale, args.origin)
    log_dir = Path(args.log_dir) if args.log_dir else None
    ready_file = Path(args.ready_file) if args.ready_file else None
    log: BackendLog = NullLog()
    listeners: list[Listener] = []
    try:
        if args.only != "gateway":
            if log_dir is not None:
                log = JsonlLog(log_dir / BACKEND_LOG_NAME, clock)
            listeners += mock_listeners(scenario, clock, log, args.host)
        if args.only != "mock":
            upstreams = gateway_upstreams(scenario, listeners, args.only == "gateway")
            listeners += gateway_listeners(scenario, clock, upstreams, log_dir, args.host)
        _run_loop(serve(listeners, clock, log, ready_file))
    finally:
        for listener in listeners:
            listener.sock.close()
        close = getattr(log, "close", None)
        if close is not None:
            close()
    return 0


def _run_loop(main: Any) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - platforms without uvloop
        asyncio.run(main)
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)
