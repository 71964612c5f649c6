"""Trace replay: a recorded workload (CSV or JSON lines) sent again in time order.

Columns: `offset_s` (scenario seconds from the start; `t` and `time` also accepted), `app`, `operation`,
`prompt_tokens`, `max_tokens` (empty = unset), `stream` (true/false), optionally `deployment`. An empty
`app` is the workload's first app; any other must be one of the workload's apps.

    >>> rows = parse_trace_text("offset_s,app,operation,prompt_tokens,max_tokens,stream\\n1.5,a,chat,20,,false\\n", "t.csv")
    >>> rows[0].offset_s, rows[0].max_tokens
    (1.5, None)
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.aoai.routes import OPERATIONS
from harness.errors import ScenarioError


@dataclass(frozen=True, slots=True)
class TraceRow:
    offset_s: float
    app: str
    operation: str
    prompt_tokens: int
    max_tokens: int | None
    stream: bool
    deployment: str | None = None


def trace_path(scenario_path: str, file: str) -> Path:
    """Where a scenario's trace file is: as given, else next to the scenario file.

    >>> trace_path("scenarios/x.yaml", "/abs/t.csv").as_posix()
    '/abs/t.csv'
    """
    path = Path(file)
    if not path.is_absolute() and not path.exists():
        path = Path(scenario_path).parent / file
    return path


def load_trace(path: str | Path, apps: Collection[str] = (), deployments: Collection[str] = ()) -> list[TraceRow]:
    """Rows of a trace file, sorted by offset; a bad row (or an app not in `apps`, a deployment not in
    `deployments`, when given) is a one-line error naming file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError("workload.trace.file", f"cannot read {path} ({exc.__class__.__name__})") from None
    return parse_trace_text(text, str(path), apps, deployments)


def parse_trace_text(
    text: str, source: str, apps: Collection[str] = (), deployments: Collection[str] = ()
) -> list[TraceRow]:
    stripped = text.lstrip()
    if stripped.startswith("{"):
        raw = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    raw.append((number, json.loads(line)))
                except ValueError:
                    raise ScenarioError("", f"{source}:{number}: not a JSON object") from None
    else:
        reader = csv.DictReader(io.StringIO(text))
        raw = [(number, row) for number, row in enumerate(reader, start=2)]
    rows = [_row(item, source, number, apps, deployments) for number, item in raw]
    rows.sort(key=lambda r: r.offset_s)
    return rows


def _row(item: Any, source: str, line: int, apps: Collection[str], deployments: Collection[str]) -> TraceRow:
    if not isinstance(item, dict):
        raise ScenarioError("", f"{source}:{line}: a trace row must be an object")

    def fail(message: str) -> ScenarioError:
        return ScenarioError("", f"{source}:{line}: {message}")

    offset = next((item[k] for k in ("offset_s", "t", "time", "offset") if item.get(k) not in (None, "")), None)
    try:
        offset_s = float(offset)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise fail("offset_s must be a number of seconds") from None
    operation = str(item.get("operation") or "chat")
    if operation not in OPERATIONS:
        raise fail(f"operation must be one of {', '.join(OPERATIONS)}")
    try:
        prompt = int(float(item.get("prompt_tokens") or 0))
        max_raw = item.get("max_tokens")
        max_tokens = None if max_raw in (None, "") else int(float(max_raw))
    except (TypeError, ValueError):
        raise fail("prompt_tokens and max_tokens must be whole numbers") from None
    app = str(item.get("app") or "")
    if app and apps and app not in apps:
        raise fail(f"app '{app}' is not one of the workload's apps ({', '.join(apps)})")
    deployment = item.get("deployment") or None
    if deployment and deployments and deployment not in deployments:
        raise fail(f"deployment '{deployment}' is not one the backends have ({', '.join(sorted(deployments))})")
    stream_raw = item.get("stream", False)
    stream = stream_raw if isinstance(stream_raw, bool) else str(stream_raw).strip().lower() in ("true", "1", "yes")
    return TraceRow(
        offset_s,
        app,
        operation,
        max(1, prompt),
        max_tokens,
        stream,
        deployment,
    )
