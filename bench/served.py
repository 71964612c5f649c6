"""`harness serve` in a process of its own, pinned to one core, for the benchmarks to measure."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

START_TIMEOUT_S = 30


def taskset(core: str) -> list[str]:
    """The prefix that pins a command to `core` (nothing where taskset or a second core is missing)."""
    cores = os.cpu_count() or 1
    return ["taskset", "-c", core] if shutil.which("taskset") and cores > 1 else []


class Served:
    """A `harness serve --only ROLE` process pinned to `core`, logging as a real run does.

    `url`, `host` and `port` are those of the last server it announces (the gateway, or the first mock).
    """

    def __init__(self, role: str, scenario: str, core: str, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        path = workdir / "scenario.yaml"
        path.write_text(scenario)
        ready = workdir / "ready.jsonl"
        ready.unlink(missing_ok=True)
        cmd = [*taskset(core), sys.executable, "-m", "harness.cli", "serve", "--scenario", str(path)]
        cmd += ["--only", role, "--ready-file", str(ready), "--log-dir", str(workdir / "logs")]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ready.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                errors = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise SystemExit(f"the {role} did not start: {errors}")
            time.sleep(0.05)
        self.ready = [json.loads(line) for line in ready.read_text().splitlines()]
        gateways = [line for line in self.ready if line["role"] != "redis"]
        self.url = gateways[-1]["url"]
        host, port = self.url.removeprefix("http://").rsplit(":", 1)
        self.host, self.port = host, int(port)

    def cpu_seconds(self) -> float:
        """User + system CPU time the server process has used so far (from /proc/PID/stat)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mib(self) -> float:
        """Resident memory of the server process now (VmRSS of /proc/PID/status), in MiB."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=15)
