"""The embedded stack: `harness serve` in its own process group, found through its ready lines.

The load generator never imports the servers (they are asyncio, Locust is gevent); it starts them as a
child process, waits for the ready file, and stops the whole process group when it quits. On Linux the
child also gets SIGTERM if this process dies without cleaning up, so no server is ever orphaned.

    stack = EmbeddedStack.start("scenarios/quickstart.yaml", [], run_dir, origin=clock.wall(), clock=clock)
    stack.target_url   # the gateway when it is there, else the first mock instance
    stack.stop()
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.clock import Clock
from harness.errors import HarnessError
from harness.scenario.handoff import OVERRIDES_ENV, SET_ENV_OPTION, overrides_env

READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 8.0
_PR_SET_PDEATHSIG = 1


class StackError(HarnessError):
    """The embedded stack could not start."""


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: SIGTERM it when the parent (this load generator) dies.
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def serve_command(scenario: str, overrides: list[str], ready_file: Path, log_dir: Path, origin: float) -> list[str]:
    """The `harness serve` command line, run with this interpreter so the same install is used. The overrides
    are not on it (they may hold api keys, and any user can read a command line): `serve_environment` has them."""
    command = [sys.executable, "-m", "harness.cli", "serve", "--scenario", scenario]
    if overrides:
        command += [SET_ENV_OPTION, OVERRIDES_ENV]
    return [*command, "--ready-file", str(ready_file), "--log-dir", str(log_dir), "--origin", repr(origin)]


def serve_environment(overrides: list[str]) -> dict[str, str]:
    """The environment of the `harness serve` child: this one's, and the overrides."""
    return {**os.environ, **overrides_env(overrides)}


@dataclass
class EmbeddedStack:
    """A running `harness serve` child and what it announced."""

    process: subprocess.Popen[bytes]
    ready: list[dict[str, Any]]
    stderr_path: Path
    only_mock: bool = False
    _stopped: bool = field(default=False, repr=False)

    @property
    def gateway_url(self) -> str | None:
        return next((line["url"] for line in self.ready if line.get("role") == "gateway"), None)

    @property
    def gateway_urls(self) -> list[str]:
        """Every gateway replica's URL, in replica order (one URL without `gateway.replicas`)."""
        return [line["url"] for line in self.ready if line.get("role") == "gateway"]

    @property
    def target_url(self) -> str:
        """Where users send requests: the gateway, or the first mock instance when no gateway runs."""
        return self.gateway_url or next(line["url"] for line in self.ready if line.get("role") == "mock")

    @classmethod
    def start(cls, scenario: str, overrides: list[str], run_dir: Path, origin: float, clock: Clock) -> EmbeddedStack:
        """Start mock pool + gateway; fall back to the mock pool alone when the gateway is not available."""
        try:
            return cls._start(scenario, overrides, run_dir, origin, clock, only_mock=False)
        except StackError as exc:
            if "gateway is not available" not in str(exc):
                raise
        return cls._start(scenario, overrides, run_dir, origin, clock, only_mock=True)

    @classmethod
    def _start(
        cls, scenario: str, overrides: list[str], run_dir: Path, origin: float, clock: Clock, only_mock: bool
    ) -> EmbeddedStack:
        run_dir.mkdir(parents=True, exist_ok=True)
        ready_file = run_dir / ".stack-ready.jsonl"
        ready_file.unlink(missing_ok=True)
        stderr_path = run_dir / "stack.log"
        command = serve_command(scenario, overrides, ready_file, run_dir, origin)
        if only_mock:
            command += ["--only", "mock"]
        with stderr_path.open("ab") as stderr:
            process = subprocess.Popen(
                command,
                env=serve_environment(overrides),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,  # its own process group: one signal stops every server
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            )
        stack = cls(process, [], stderr_path, only_mock)
        atexit.register(stack.stop)
        deadline = clock.wall() + READY_TIMEOUT_S
        while not ready_file.exists():
            if process.poll() is not None:
                stack.stop()
                raise StackError(f"the embedded stack exited at start: {_last_line(stderr_path)}")
            if clock.wall() > deadline:
                stack.stop()
                raise StackError(f"the embedded stack was not ready within {READY_TIMEOUT_S:g} s (see {stderr_path})")
            _pause(0.05)
        stack.ready = [json.loads(line) for line in ready_file.read_text().splitlines() if line.strip()]
        return stack

    def died(self) -> int | None:
        """The exit code when the servers exited without being stopped (None while they run or once stopped)."""
        return None if self._stopped else self.process.poll()

    def last_words(self) -> str:
        """The last line the servers wrote (why they died)."""
        return _last_line(self.stderr_path)

    def stop(self) -> None:
        """SIGTERM the process group, wait for a clean exit (logs flushed), SIGKILL what is left."""
        if self._stopped:
            return
        self._stopped = True
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                return
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(STOP_TIMEOUT_S)
        else:
            # the leader is gone; make sure nothing else of its group survives
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)


def _pause(seconds: float) -> None:
    # gevent-friendly once Locust has monkey-patched; a plain sleep otherwise
    import gevent

    gevent.sleep(seconds)


def _last_line(path: Path) -> str:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "(no output)"
    return lines[-1] if lines else "(no output)"
