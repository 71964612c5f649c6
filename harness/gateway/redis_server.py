"""A `redis-server` for one run: started from the PATH on a free loopback port, with nothing saved to disk.

`harness serve` starts one when `gateway.shared_state: redis` has no `redis_url`, and stops it when the run
ends; on Linux it also stops if the harness dies without cleaning up.

It requires a password generated for the run: another local user or process cannot read or change the run's
counters. The password reaches redis-server in a configuration file only its owner can read (never on its
command line, which `ps` shows), and the replicas in the URL they inherit; `password_file` names a copy for
a user who wants to watch the counters (`redis-cli -p PORT --askpass`).

    with RedisServer() as url:
        ...  # redis://:PASSWORD@127.0.0.1:PORT/0
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import redis

from harness.errors import ServeError

START_TIMEOUT_S = 10.0
MISSING = (
    "gateway.shared_state: redis needs redis-server on the PATH (Debian/Ubuntu: apt-get install redis-server) "
    "or gateway.redis_url pointing at a running server"
)


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    # Linux: the kernel sends SIGTERM when the harness ends, even by SIGKILL; elsewhere stop() does it
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def check_reachable(url: str) -> None:
    """A ServeError naming `url` unless a Redis server answers PING there (a run must not quietly fall back)."""
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        raise ServeError(f"gateway.redis_url: {url} does not answer: {exc}") from None
    finally:
        client.close()


def _private_file(path: Path, text: str) -> Path:
    """`text` written to a new file only its owner can read or write."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(text)
    return path


class RedisServer:
    """One redis-server child process; `start()` returns its URL once it answers PING."""

    def __init__(self, host: str = "127.0.0.1", executable: str = "redis-server") -> None:
        self.host = host
        self.executable = executable
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""  # with the password: for the replicas, never printed
        self.public_url = ""  # without it: what may be announced or logged
        self.password_file: Path | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    def start(self) -> str:
        path = shutil.which(self.executable)
        if path is None:
            raise ServeError(MISSING)
        self._dir = tempfile.TemporaryDirectory(prefix="harness-redis-")  # mode 0700: this user's only
        directory = Path(self._dir.name)
        port = _free_port(self.host)
        password = secrets.token_hex(32)
        log = directory / "redis.log"  # read back only to say why it did not start
        # no RDB snapshots or AOF: a run's counters are thrown away with the server
        settings = {
            "port": str(port),
            "bind": self.host,
            "requirepass": password,
            "save": '""',
            "appendonly": "no",
            "dir": f'"{directory}"',
            "logfile": f'"{log}"',
            "loglevel": "warning",
            "daemonize": "no",
        }
        config = _private_file(directory / "redis.conf", "".join(f"{k} {v}\n" for k, v in settings.items()))
        self.password_file = _private_file(directory / "password", password + "\n")
        # a session of its own: a signal to the harness's process group (Ctrl-C, a stack being stopped) must not
        # take Redis away before the replicas have finished their last requests; stop() ends it after them
        self.process = subprocess.Popen(
            [path, str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
            start_new_session=True,
        )
        self.public_url = f"redis://{self.host}:{port}/0"
        self.url = f"redis://:{password}@{self.host}:{port}/0"
        client = redis.Redis(
            host=self.host, port=port, password=password, socket_connect_timeout=0.2, socket_timeout=0.2
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        try:
            while True:
                if self.process.poll() is not None:
                    error = log.read_text(errors="replace").strip() if log.exists() else ""
                    last = error.splitlines()[-1] if error else f"exit code {self.process.returncode}"
                    raise ServeError(f"redis-server did not start on {self.host}:{port}: {last}")
                with contextlib.suppress(redis.RedisError, OSError):
                    if client.ping():
                        return self.url
                if time.monotonic() > deadline:
                    raise ServeError(f"redis-server did not answer on {self.host}:{port} within {START_TIMEOUT_S:g}s")
                time.sleep(0.02)
        except BaseException:
            self.stop()
            raise
        finally:
            client.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None
            self.password_file = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()
