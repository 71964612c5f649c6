"""Running Locust with the harness's locustfile as a subprocess on loopback, for the end-to-end tests."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCUSTFILE = ROOT / "locustfiles" / "gateway.py"
LOCUST = str(Path(sys.executable).with_name("locust"))
RUN_TIMEOUT_S = 90
# a small scenario with no `checks:`: its exit code says only how the run itself went
PLAIN_SCENARIO = """\
run: {duration: 600, seed: 1}
backends:
  - name: aoai-eastus
    deployments:
      gpt-4o: {tpm: 1000000}
workload:
  users: 2
  apps: [{id: chat-app}]
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def locust(*args: str, cwd: Path) -> subprocess.Popen[str]:
    """Start `locust -f locustfiles/gateway.py ARGS` (stdout and stderr captured as text)."""
    return subprocess.Popen(
        [LOCUST, "-f", str(LOCUSTFILE), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd
    )


def wait_for(predicate, timeout_s: float = 30.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    """Poll `predicate` (every 0.1 s, at most `timeout_s`) until it returns something true."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def run_info(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


def records_written(run_dir: Path) -> bool:
    path = run_dir / "records.csv"
    return path.exists() and len(path.read_text().splitlines()) > 2


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
