"""One headless run of a shipped scenario, in one Locust process or as a master with workers on loopback, and
the figures that say whether both offered the same load: attempts, goodput, 429 rate, first attempt."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loadgen_helpers import LOCUST, LOCUSTFILE, ROOT, free_port

from harness.records import LOAD_STARTED_AT, OFFERED_LOAD, read_records

RUN_LIMIT_S = 240


def run_scenario(
    run_dir: Path, scenario: str, workers: int, *overrides: str, options: Sequence[str] = ()
) -> subprocess.CompletedProcess[str]:
    """`locust --headless` of `scenario` (its own users, ramp and duration unless `options` say otherwise); with
    `workers` > 0 a master and that many worker processes."""
    common = ["-f", str(LOCUSTFILE), "--scenario", str(ROOT / "scenarios" / scenario)]
    sets = [arg for o in overrides for arg in ("--set", o)]
    command = [LOCUST, *common, "--headless", "--only-summary", "--run-dir", str(run_dir), *sets, *options]
    if not workers:
        return subprocess.run(command, capture_output=True, text=True, timeout=RUN_LIMIT_S, cwd=run_dir.parent)
    port = free_port()
    worker_command = [LOCUST, *common, "--worker", "--master-host", "127.0.0.1", "--master-port", str(port)]
    procs = [
        subprocess.Popen(worker_command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=run_dir.parent)
        for _ in range(workers)
    ]
    try:
        master = [
            *command, "--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port),
            "--expect-workers", str(workers),
        ]  # fmt: skip
        result = subprocess.run(master, capture_output=True, text=True, timeout=RUN_LIMIT_S, cwd=run_dir.parent)
        for proc in procs:
            proc.wait(timeout=30)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=10)
    return result


def figures(run_dir: Path) -> dict[str, Any]:
    """What the comparison looks at, from the run directory."""
    info = json.loads((run_dir / "run.json").read_text())
    summary = info["summary"]
    records = read_records(run_dir / "records.csv")
    first = min(r["t_scenario"] for r in records)
    return {
        "attempts": summary["requests"]["attempts"],
        "goodput_tpm": summary["throughput"]["goodput_tpm"],
        "rate_429": summary["requests"]["rate_429"],
        "first_attempt_s": first - info[LOAD_STARTED_AT],
        "offered_share": info[OFFERED_LOAD]["offered_share"],
        "workers": sorted(info[OFFERED_LOAD]["by_process"]),
    }
