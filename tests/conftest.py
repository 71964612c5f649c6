"""Shared fixtures: `serve_stack` starts `harness serve` as a subprocess and hands back its ready lines.

def test_something(serve_stack):
    stack = serve_stack("backends: [{name: east}]", only="mock")
    url = stack.url("east")
    ...
    assert stack.stop() == 0   # SIGTERM; the logs are complete afterwards
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0


# Modules whose tests all read one run made by a module-scoped fixture. Under pytest-xdist each goes to one worker
# whole, so its run is made once rather than once per worker. (xdist's `--dist loadgroup` would do this from
# `xdist_group` marks, but under pytest 9.2 it ignores them silently: pytest-dev/pytest-xdist#1386.)
ONE_RUN_MODULES = ("tests/test_distributed_e2e.py", "tests/test_report_e2e.py", "tests/test_telemetry.py")


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist: without it installed, there is nothing to schedule
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`--dist load` (what `-n` does by default), with each of ONE_RUN_MODULES dealt to one worker whole."""
    if config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class OneRunModules(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return module if module in ONE_RUN_MODULES else nodeid

    return OneRunModules(config, log)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A `serial` test must be `e2e` too: the development loop (`-m "not e2e"`) must never run one; the suite
    runs the serial ones by themselves, after the rest (`-m "e2e and not serial" -n 4`, then `-m serial`)."""
    loose = [item.nodeid for item in items if item.get_closest_marker("serial") and not item.get_closest_marker("e2e")]
    if loose:
        raise pytest.UsageError(f"marked serial but not e2e: {', '.join(loose)}")


@dataclass
class ServeProcess:
    """A running `harness serve`: its process, ready lines, and where it writes."""

    proc: subprocess.Popen[bytes]
    ready: list[dict[str, Any]]
    ready_file: Path
    log_dir: Path
    stdout_path: Path
    stderr_path: Path
    scenario_path: Path
    exit_code: int | None = field(default=None)

    def server(self, name: str) -> dict[str, Any]:
        for line in self.ready:
            if line["name"] == name:
                return line
        raise KeyError(f"no server named {name!r} in {self.ready}")

    def url(self, name: str) -> str:
        return str(self.server(name)["url"])

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text(encoding="utf-8")

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8")

    def log_rows(self, name: str = "backend.jsonl") -> list[dict[str, Any]]:
        """Rows of a server log (complete once the process has stopped)."""
        path = self.log_dir / name
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Signal the process and wait for it; returns its exit code (killed after STOP_TIMEOUT_S)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.exit_code = self.proc.returncode
        return self.exit_code


def scenario_error(text: str) -> str:
    """The ScenarioError a scenario text gives (from a file called s.yaml), checked to be one line."""
    from harness.errors import ScenarioError
    from harness.scenario import load_scenario_text

    with pytest.raises(ScenarioError) as info:
        load_scenario_text(text, source="s.yaml")
    message = str(info.value)
    assert "\n" not in message
    return message


def run_harness(args: list[str], cwd: Path, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run `harness ARGS...` to completion (for commands expected to exit by themselves)."""
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_env(),
    )


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
def serve_stack(tmp_path: Path) -> Iterator[Callable[..., ServeProcess]]:
    """A factory: `serve_stack(scenario, *extra_args, only="mock")` -> ServeProcess, stopped after the test.

    `scenario` is a path or YAML text. `only` is "mock", "gateway" or None (the whole stack).
    """
    started: list[ServeProcess] = []

    def start(scenario: str | Path, *extra: str, only: str | None = "mock") -> ServeProcess:
        index = len(started)
        work = tmp_path / f"serve-{index}"
        work.mkdir()
        if isinstance(scenario, Path) or ("\n" not in scenario and scenario.endswith((".yaml", ".yml"))):
            scenario_path = Path(scenario).resolve()
        else:
            scenario_path = work / "scenario.yaml"
            scenario_path.write_text(str(scenario), encoding="utf-8")
        ready_file, log_dir = work / "ready.jsonl", work / "logs"
        stdout_path, stderr_path = work / "stdout.txt", work / "stderr.txt"
        args = ["serve", "--scenario", str(scenario_path), "--ready-file", str(ready_file), "--log-dir", str(log_dir)]
        if only:
            args += ["--only", only]
        with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "harness.cli", *args, *extra], stdout=out, stderr=err, cwd=work, env=_env()
            )
        stack = ServeProcess(proc, [], ready_file, log_dir, stdout_path, stderr_path, scenario_path)
        started.append(stack)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ready_file.exists():  # written atomically once every server listens
            if proc.poll() is not None:
                pytest.fail(f"harness serve exited with {proc.returncode} before it was ready:\n{stack.stderr}")
            if time.monotonic() > deadline:
                pytest.fail(f"harness serve not ready after {START_TIMEOUT_S} s:\n{stack.stderr}")
            time.sleep(0.05)
        stack.ready = [json.loads(line) for line in ready_file.read_text(encoding="utf-8").splitlines()]
        return stack

    yield start
    for stack in started:
        stack.stop()


@pytest.fixture
async def make_stack() -> AsyncIterator[Callable[[str], Any]]:
    """Builds in-process gateway -> mock stacks from scenario YAML (on one virtual clock); closes them after."""
    from gateway_helpers import gateway_stack

    stacks: list[Any] = []

    def build(text: str) -> Any:
        stacks.append(gateway_stack(text))
        return stacks[-1]

    yield build
    for stack in stacks:
        await stack.aclose()
