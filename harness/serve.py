"""`harness serve`: start the mock AOAI pool and the reference gateway on loopback.

The mock instances (and a single gateway) run in one asyncio loop. With `gateway.replicas` N > 1, each
replica is a process of its own, as gateway units are: it owns its counters and breakers, or shares them on
Redis with `gateway.shared_state: redis` (a `redis-server` is started for the run when no `redis_url` is
given). Every server binds its port first; once all listen, one JSON ready line per server goes to stdout
(and, atomically, to `--ready-file`), mock instances first, then the gateway(s). SIGTERM or Ctrl-C stops all
of them, flushes the logs and exits 0; a replica that dies stops the others with a one-line error.

    harness serve --scenario scenarios/quickstart.yaml --only mock --ready-file /tmp/ready.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import json
import multiprocessing
import os
import signal
import socket
import sys
import uuid
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from importlib import import_module
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import uvicorn

from harness.clock import Clock, ScaledClock
from harness.errors import HarnessError, ServeError
from harness.mock.app import build_mock_app
from harness.mock.log import BACKEND_LOG_NAME, BackendLog, JsonlLog, NullLog
from harness.mock.pool import mock_instances
from harness.scenario import Scenario, load_scenario

# Wall seconds an open stream may take to finish once asked to stop, before it is cut.
GRACEFUL_SHUTDOWN_S = 3
REPLICA_STOP_S = GRACEFUL_SHUTDOWN_S + 5  # wall seconds a replica process has to finish before it is killed
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


def _build_gateway_app() -> Callable[..., Any]:
    try:
        build: Callable[..., Any] = import_module("harness.gateway.app").build_gateway_app
        return build
    except (ImportError, AttributeError):
        raise ServeError("the reference gateway is not available; start the mock pool alone with --only mock") from None


def gateway_listeners(
    scenario: Scenario, clock: Clock, upstreams: dict[str, str], log_dir: Path | None, host: str, shared_prefix: str
) -> list[Listener]:
    """The reference gateway alone (`gateway.replicas: 1`), served in this process's loop."""
    app = _build_gateway_app()(scenario, clock, upstreams, log_dir, shared_prefix=shared_prefix)
    sock = bind(host, scenario.gateway.port or 0, "gateway")
    ready = {"role": "gateway", "name": "gateway", "url": url_of(sock), "backends": list(upstreams)}
    return [Listener(app, sock, ready)]


@dataclass
class Replica:
    """A gateway replica served by a process of its own: its socket, ready line and the pipes to it."""

    index: int
    sock: socket.socket
    ready: dict[str, Any]
    process: BaseProcess | None = None
    started: int = -1  # read end: the replica writes "ok" once it listens, or "error: <why>"


@dataclass
class Replicas:
    """A run's replica processes, and the parent's end of the pipe whose closing tells them it is gone."""

    members: list[Replica] = field(default_factory=list)
    lifeline: int = -1  # write end, held by the parent for as long as it lives

    def stop(self) -> None:
        """SIGTERM every replica process and wait for it to flush its log; kill one that does not finish."""
        running = [r.process for r in self.members if r.process is not None and r.process.is_alive()]
        for process in running:
            process.terminate()
        for process in running:
            process.join(REPLICA_STOP_S)
            if process.is_alive():
                process.kill()
                process.join()
        if self.lifeline >= 0:
            os.close(self.lifeline)
            self.lifeline = -1
        for replica in self.members:
            replica.sock.close()
            if replica.started >= 0:
                with contextlib.suppress(OSError):
                    os.close(replica.started)
                replica.started = -1

    async def started(self) -> None:
        """Return once every replica listens; a ServeError with the reason of one that did not start."""
        for replica in self.members:
            await _readable(replica.started)
            answer = os.read(replica.started, 4096).decode(errors="replace")
            if answer != "ok":
                why = answer.removeprefix("error: ") if answer else "it exited while starting"
                raise ServeError(f"gateway replica {replica.index}: {why}")

    async def died(self) -> None:
        """Wait until a replica process ends, then raise a ServeError naming it (never returns otherwise)."""
        processes = {r.process.sentinel: r for r in self.members if r.process is not None}
        if not processes:
            await asyncio.Event().wait()  # never
        waits = {_readable(fd): r for fd, r in processes.items()}
        try:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for future in waits:
                future.cancel()
        replica = waits[done.pop()]
        assert replica.process is not None
        replica.process.join()
        raise ServeError(f"gateway replica {replica.index} exited with code {replica.process.exitcode}")


def start_replicas(
    scenario: Scenario,
    clock: Clock,
    upstreams: dict[str, str],
    log_dir: Path | None,
    host: str,
    shared_prefix: str,
    parent_sockets: list[socket.socket],
) -> Replicas:
    """Bind a port per `gateway.replicas` and fork a process serving each (before any event loop runs here)."""
    config = scenario.gateway
    build = _build_gateway_app()
    lifeline_read, lifeline_write = os.pipe()
    replicas = Replicas(lifeline=lifeline_write)
    context = multiprocessing.get_context("fork")  # the child inherits the bound socket and the scenario
    try:
        for i in range(config.replicas):
            # a fixed port is the first replica's; the others take the ports after it
            sock = bind(host, config.port + i if config.port else 0, f"gateway replica {i}")
            ready = {
                "role": "gateway",
                "name": f"gateway-{i}",
                "url": url_of(sock),
                "backends": list(upstreams),
                "replica": i,
            }
            replicas.members.append(Replica(i, sock, ready))
        for replica in replicas.members:
            started_read, started_write = os.pipe()
            others = [s.fileno() for s in parent_sockets]
            others += [r.sock.fileno() for r in replicas.members if r is not replica]
            others += [r.started for r in replicas.members if r.started >= 0] + [lifeline_write, started_read]
            app_args = (scenario, clock, upstreams, log_dir)
            replica.process = context.Process(
                target=_replica_main,
                args=(
                    build,
                    app_args,
                    replica.index,
                    shared_prefix,
                    replica.sock,
                    started_write,
                    lifeline_read,
                    others,
                ),
                name=f"harness-gateway-{replica.index}",
            )
            replica.process.start()
            os.close(started_write)
            replica.started = started_read
            replica.ready["pid"] = replica.process.pid
    except BaseException:
        replicas.stop()
        raise
    finally:
        os.close(lifeline_read)
    return replicas


def _replica_main(
    build: Callable[..., Any],
    app_args: tuple[Any, ...],
    index: int,
    shared_prefix: str,
    sock: socket.socket,
    started: int,
    lifeline: int,
    closes: list[int],
) -> None:
    """A replica process: build its gateway (its own counters, its own Redis client) and serve until told."""
    for fd in closes:
        with contextlib.suppress(OSError):
            os.close(fd)
    try:
        app = build(*app_args, replica=index, shared_prefix=shared_prefix)
    except HarnessError as exc:
        os.write(started, f"error: {exc}".encode())
        sys.exit(2)
    _run_loop(_serve_replica(app, sock, started, lifeline))


async def _serve_replica(app: Any, sock: socket.socket, started: int, lifeline: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_reader(lifeline, stop.set)  # end of file: the parent died without stopping this replica
    server = _server(app)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    listening = asyncio.create_task(server.listening.wait())
    await asyncio.wait([listening, task], return_when=asyncio.FIRST_COMPLETED)
    if listening.done():
        os.write(started, b"ok")
    os.close(started)
    await asyncio.wait([asyncio.create_task(stop.wait()), task], return_when=asyncio.FIRST_COMPLETED)
    server.should_exit = True
    await task


def _readable(fd: int) -> asyncio.Future[None]:
    """A future done once `fd` can be read (data, end of file, or a process sentinel that ended)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def ready() -> None:
        if not done.done():
            done.set_result(None)

    loop.add_reader(fd, ready)
    done.add_done_callback(lambda _: loop.remove_reader(fd))  # once read, or when the wait is cancelled
    return done


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


async def serve(
    listeners: list[Listener],
    clock: Clock,
    log: BackendLog,
    ready_file: Path | None,
    replicas: Replicas | None = None,
    extra_ready: list[dict[str, Any]] | None = None,
) -> None:
    """Run every listener until SIGTERM/SIGINT; announce them, the replica processes and `extra_ready` (a
    redis-server started for the run) once all listen."""
    replicas = replicas or Replicas()
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
            asyncio.gather(*(server.listening.wait() for server in servers), replicas.started())
        )
        starting: list[asyncio.Future[Any]] = [started, *tasks]
        await asyncio.wait(starting, return_when=asyncio.FIRST_COMPLETED)
        if not started.done():  # a server died while starting
            started.cancel()
            raise ServeError("a server stopped while starting")
        started.result()  # a replica's reason for not starting
        lines = [json.dumps(listener.ready) for listener in listeners]
        lines += [json.dumps(replica.ready) for replica in replicas.members]
        lines += [json.dumps(line) for line in extra_ready or ()]
        if ready_file is not None:
            write_ready_file(ready_file, lines)
        sys.stdout.write("".join(line + "\n" for line in lines))
        sys.stdout.flush()
        died = asyncio.create_task(replicas.died())
        running: list[asyncio.Future[Any]] = [asyncio.create_task(stop.wait()), died, *tasks]
        await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
        if died.done():
            died.result()
        died.cancel()
    finally:
        # replicas first: their streams finish while the mocks still answer
        await asyncio.to_thread(replicas.stop)
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
    # folders first: a file in the way is a one-line error before any server starts, not after all have
    for folder in (log_dir, ready_file.parent if ready_file is not None else None):
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
    log: BackendLog = NullLog()
    listeners: list[Listener] = []
    replicas = Replicas()
    redis_server = None
    extra_ready: list[dict[str, Any]] = []
    try:
        if args.only != "gateway":
            if log_dir is not None:
                log = JsonlLog(log_dir / BACKEND_LOG_NAME, clock)
            listeners += mock_listeners(scenario, clock, log, args.host)
        if args.only != "mock":
            upstreams = gateway_upstreams(scenario, listeners, args.only == "gateway")
            config = scenario.gateway
            if config.redis_url is not None:
                import_module("harness.gateway.redis_server").check_reachable(config.redis_url)
            elif config.shared_state == "redis":
                redis_server = import_module("harness.gateway.redis_server").RedisServer()
                url = redis_server.start()
                scenario = scenario.model_copy(update={"gateway": config.model_copy(update={"redis_url": url})})
                # announced with the servers: a user can watch the counters with redis-cli, a test can stop it
                extra_ready.append(
                    {
                        "role": "redis",
                        "name": "redis",
                        "url": redis_server.public_url,  # the password stays off stdout and the ready file
                        "password_file": str(redis_server.password_file),
                        "pid": redis_server.process.pid,
                    }
                )
            # the run's keys on Redis: its replicas share them, another run on the same server does not
            shared_prefix = f"harness:{uuid.uuid4().hex[:12]}:"
            if config.replicas == 1:
                listeners += gateway_listeners(scenario, clock, upstreams, log_dir, args.host, shared_prefix)
            else:
                sockets = [listener.sock for listener in listeners]
                replicas = start_replicas(scenario, clock, upstreams, log_dir, args.host, shared_prefix, sockets)
        _run_loop(serve(listeners, clock, log, ready_file, replicas, extra_ready))
    finally:
        replicas.stop()
        if redis_server is not None:
            redis_server.stop()
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
