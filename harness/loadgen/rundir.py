"""The run directory: records.csv, the scenario as run (scenario.yaml), and run metadata (run.json).

reports/runs/<run-id>/
    records.csv     one row per HTTP attempt (harness.records)
    scenario.yaml   the scenario file, overrides applied
    run.json        run id, client profile(s), time scale, host, embedded or not, versions, times
    backend.jsonl   the mock pool's log (embedded runs)
    gateway.jsonl   the gateway's log (embedded runs with a gateway)
"""

from __future__ import annotations

import json
import os
import secrets
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from harness.scenario import apply_overrides

DEFAULT_RUNS_DIR = Path("reports/runs")


def new_run_id(wall: float) -> str:
    """A sortable, unique run id: UTC start time plus a short random suffix."""
    stamp = datetime.fromtimestamp(wall, tz=UTC).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{secrets.token_hex(3)}"


def write_scenario_copy(run_dir: Path, scenario_path: str, overrides: list[str]) -> None:
    """The scenario exactly as given (comments kept) or, with overrides, the overridden data."""
    text = Path(scenario_path).read_text(encoding="utf-8")
    if overrides:
        data = apply_overrides(yaml.safe_load(text) or {}, overrides)
        header = "".join(f"# override: {o}\n" for o in overrides)
        text = f"# {scenario_path} with overrides applied\n{header}" + yaml.safe_dump(data, sort_keys=False)
    (run_dir / "scenario.yaml").write_text(text, encoding="utf-8")


def versions() -> dict[str, str]:
    found: dict[str, str] = {}
    for package, key in (("aoai-throttle-harness", "harness"), ("locust", "locust"), ("openai", "openai")):
        try:
            found[key] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[key] = ""
    return found


def write_run_json(run_dir: Path, info: dict[str, Any]) -> None:
    """Write run.json atomically (readers never see half a file)."""
    temp = run_dir / f".run.json.{os.getpid()}.tmp"
    temp.write_text(json.dumps(info, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    temp.replace(run_dir / "run.json")


def iso(wall: float) -> str:
    return datetime.fromtimestamp(wall, tz=UTC).isoformat(timespec="milliseconds")
